"""Datasets, readers/writers, splits, transforms and the synthesizer."""
