"""drctl.catalog"""
