"""drctl.dicom"""
