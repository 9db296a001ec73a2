"""drctl.cli"""
