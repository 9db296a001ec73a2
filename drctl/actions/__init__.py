"""drctl.actions"""
