"""drctl.indexdb"""
