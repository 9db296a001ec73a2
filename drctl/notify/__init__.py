"""drctl.notify"""
