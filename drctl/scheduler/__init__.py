"""drctl.scheduler"""
