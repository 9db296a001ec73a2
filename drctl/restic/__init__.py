"""drctl.restic"""
