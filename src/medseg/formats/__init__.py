"""File formats below the data sets: DICOM, NIfTI, HDF5, TIFF/PNG, zip safety, size limits, atomic writing.

Imports nothing from :mod:`medseg.data` or above (tests/test_layers.py).
"""
