"""Sliding-window application of a model to volumes larger than its patches (MONAI, Gaussian blending).

The settings come from ``evaluate.sliding_window`` as recorded in ``model.json``
(:func:`medseg.artifact.meta.sliding_window_settings`); validation during training uses the same function,
so a model is validated exactly as it is applied.
"""

from __future__ import annotations

import torch


def sliding_window_logits(model, x: torch.Tensor, settings: dict, *, sw_device=None, device=None) -> torch.Tensor:
    """``model``'s logits on ``x`` (B, C, D, H, W) stitched from MONAI sliding windows of ``settings``
    (:func:`~medseg.artifact.meta.sliding_window_settings`); ``sw_device`` runs the windows, ``device`` holds
    the stitched output."""
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(
        x,
        settings["roi_size"],
        settings["sw_batch_size"],
        model,
        overlap=settings["overlap"],
        mode=settings["mode"],
        sw_device=sw_device,
        device=device,
    )


__all__ = ["sliding_window_logits"]
