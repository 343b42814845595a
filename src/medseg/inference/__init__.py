"""Prediction for arrays, images and whole runs (fold ensembles, test-time augmentation)."""

from medseg.inference.predictor import Predictor

__all__ = ["Predictor"]
