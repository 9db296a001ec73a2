"""drctl.reports"""
