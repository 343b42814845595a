"""The ``evaluate`` section (sliding window, TTA, published references, karyotype vote) and ``output``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medseg.config_schema.base import Section

__all__ = ["EvaluateConfig", "OutputConfig", "SlidingWindowConfig"]


class SlidingWindowConfig(Section):
    """Validation and inference by sliding window (MONAI, blended by `mode`), 2D and 3D alike: windows of
    roi_size ([H, W] in 2D, [D, H, W] in 3D; null: whole images/volumes) overlapping by `overlap`."""

    roi_size: list[int] | None = Field(
        None,
        description="[H, W] (2D) or [D, H, W] (3D) window; null: whole images or volumes (2D images larger "
        "than 1024 px a side are still tiled at inference)",
    )
    overlap: float = 0.5
    sw_batch_size: int = 1
    mode: Literal["gaussian", "constant"] = "gaussian"

    @model_validator(mode="after")
    def _checks(self):
        if self.roi_size is not None and (not self.roi_size or min(self.roi_size) < 1):
            raise ValueError(f"evaluate.sliding_window.roi_size must be positive voxel counts, got {self.roi_size!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"evaluate.sliding_window.overlap must be in [0, 1), got {self.overlap!r}")
        return self


class EvaluateConfig(Section):
    tta: bool | Literal["flips"] = Field(
        False,
        description="test-time augmentation: true = flips and 90° rotations (2D), flips = flips only (a model "
        "whose input has an orientation, e.g. upright chromosome cut-outs)",
    )
    batch_size: int = 32
    hausdorff: bool = True
    sliding_window: SlidingWindowConfig = Field(default_factory=SlidingWindowConfig)
    references: Literal["auto", "none"] = Field(
        "auto",
        description="published numbers set beside ours in the report (medseg.evaluation.paper_numbers): "
        "auto = the chromosome papers' rows for the model's family on the chromosome task "
        "(task.class_names = background, chromosome_alpha, chromosome_beta, overlap), the CTV "
        "thesis' rows for its model (ctv_unet3d), none for any other task | none = no "
        "published rows (a chromosome task's report then keeps its own rows and definitions)",
    )
    karyotype_vote: Literal["soft", "majority"] = Field(
        "soft",
        description="karyotype task (classes background, 1-22, X, Y; data.path mfish:karyotype): a "
        "chromosome's class from its pixels' probabilities: soft = argmax over 1-24 of the mean "
        "probability over its mask | majority = the most frequent pixel argmax "
        "(medseg.metrics.karyotype)",
    )


class OutputConfig(Section):
    root: str = "runs"
