"""drctl.pacs"""
