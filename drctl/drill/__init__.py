"""drctl.drill"""
