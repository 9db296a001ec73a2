"""drctl.storage"""
