"""The ``task`` section: the classes, which one is background, derived structures, the headline metric."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medseg.config_schema.base import Section

__all__ = ["CHROMOSOME_CLASSES", "TaskConfig", "scored_class_names"]

CHROMOSOME_CLASSES = ["background", "chromosome_alpha", "chromosome_beta", "overlap"]


class TaskConfig(Section):
    mode: Literal["multiclass", "multilabel"] = Field(
        "multiclass", description="multiclass (softmax, exclusive classes) | multilabel (sigmoid)"
    )
    class_names: list[str] = Field(
        default_factory=lambda: list(CHROMOSOME_CLASSES), description="class names, background first (multiclass)"
    )
    derived: dict[str, list[int]] | None = Field(
        default_factory=lambda: {"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]},
        description="Named unions of classes evaluated as extra structures and written by `predict` as whole "
        'objects: ARMS Net\'s "complete chromosome" IoU and the karyotyping cut-outs. Replaced whole '
        "by a YAML file or --set, never merged key by key.",
    )
    primary_metric: str = Field(
        "overlap",
        description="class (or derived structure) whose IoU heads reports and box plots and is logged each "
        "epoch; must be a scored class, so not the task.background one",
    )
    background: int | None = Field(
        0,
        description="index in task.class_names of the background class (multiclass): left out of the scored "
        "classes (validation and evaluation metrics, their mean, reports) and the 'foreground' of "
        "foreground accuracy is every other class; null: no background, every class is scored. "
        "multilabel: every channel is a structure and the background is where no channel is set, so "
        "every channel is scored; only 0 or null are accepted there.",
    )
    spatial_dims: Literal[2, 3] = Field(2, description="2 (images) or 3 (volumes)")

    @model_validator(mode="after")
    def _classes(self):
        n = len(self.class_names)
        if n < 2 and self.mode == "multiclass":
            raise ValueError("a multiclass task needs at least 2 classes (background included)")
        bg = self.background
        if self.mode == "multiclass" and bg is not None and not 0 <= bg < n:
            raise ValueError(
                f"task.background is {bg} but task.class_names holds {n} classes (0..{n - 1}); give the "
                "index of the background class, or null when no class is background"
            )
        if self.mode == "multilabel" and bg not in (0, None):
            raise ValueError(
                f"task.background is {bg}, but in multilabel mode every channel of task.class_names is a "
                "structure and the background is where no channel is set: use 0 (the default) or null"
            )
        for name, members in (self.derived or {}).items():
            bad = [m for m in members if not 0 <= int(m) < n]
            if bad:
                raise ValueError(f"task.derived.{name} names classes {bad} outside 0..{n - 1}")
            if self.mode == "multiclass" and bg is not None and bg in members:
                raise ValueError(
                    f"task.derived.{name} includes class {bg} ({self.class_names[bg]!r}), the "
                    "task.background class; a derived structure unites foreground classes only"
                )
        allowed = scored_class_names(self) + list(self.derived or {})
        if self.primary_metric not in allowed:
            why = ""
            if self.primary_metric in self.class_names:
                why = (
                    f" (class {self.class_names.index(self.primary_metric)} is task.background, which is never "
                    "scored; set task.background: null to score every class)"
                )
            raise ValueError(
                f"task.primary_metric {self.primary_metric!r} is not a class or derived structure that "
                f"is scored{why}; allowed: {', '.join(allowed)}"
            )
        return self


def scored_class_names(task: TaskConfig | dict) -> list[str]:
    """The classes a task's metrics score, in class order: every name of ``task.class_names`` but the
    ``task.background`` one (multiclass; all of them when it is null). Multilabel: every channel (the
    background is where no channel is set). The rule :meth:`medseg.metrics.segmentation.SegmentationMetrics.from_task`
    applies, checked here so that ``primary_metric`` names a class that will have a score."""
    get = task.get if isinstance(task, dict) else lambda key, default=None: getattr(task, key, default)
    names = [str(n) for n in get("class_names")]
    bg = get("background", 0)
    if get("mode", "multiclass") != "multiclass" or bg is None:
        return names
    return [name for k, name in enumerate(names) if k != int(bg)]
