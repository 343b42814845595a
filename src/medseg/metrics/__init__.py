"""Segmentation metrics (overlap, distance, accuracy) and model efficiency measurements."""

from medseg.metrics.efficiency import count_parameters, time_inference
from medseg.metrics.segmentation import (
    BASE_METRICS,
    SegmentationMetrics,
    binary_stats,
    confusion_matrix,
    hausdorff_distance,
    image_diagonal,
    scores_from_counts,
)
from medseg.metrics.uw_score import UWScore, uw_scan_score

__all__ = [
    "BASE_METRICS",
    "SegmentationMetrics",
    "UWScore",
    "binary_stats",
    "confusion_matrix",
    "count_parameters",
    "hausdorff_distance",
    "image_diagonal",
    "scores_from_counts",
    "time_inference",
    "uw_scan_score",
]
