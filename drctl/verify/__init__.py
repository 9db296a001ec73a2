"""drctl.verify"""
