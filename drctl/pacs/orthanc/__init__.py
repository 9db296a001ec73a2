"""drctl.pacs.orthanc"""
