"""The planner's task rules (:func:`medseg.planning.planner.plan`): class names, background, primary metric,
derived unions and the loss that follows from them.

The user's ``--set task.class_names / task.background / task.primary_metric`` (:data:`PLAN_INPUTS`) are inputs
of these decisions, not overrides applied after them: with ``task.background: null`` every class is scored, so
the primary metric is the rarest of all classes and the Dice loss covers every class, and each reason says
so; an explicit ``task.primary_metric`` is kept and named as the user's, beside what the plan would have picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import yaml

from medseg.errors import ConfigError, DataValidationError
from medseg.formats.limits import MAX_CLASSES


class Decision(NamedTuple):
    """One choice of the planner: the config key (dotted), the value and why."""

    key: str
    value: Any
    reason: str


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


# ``--set`` keys the planner decides from rather than overwrites: the metric, the background and the loss follow them.
PLAN_INPUTS = ("task.class_names", "task.background", "task.primary_metric")


def user_inputs(sets: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The :data:`PLAN_INPUTS` among ``sets`` (``--set`` pairs, values as typed or already parsed), parsed as
    :func:`medseg.config.set_dotted` does; the last one of a key wins, as when the sets are applied."""
    from medseg.config import parse_value

    user = {}
    for key, value in sets:
        if key in PLAN_INPUTS:
            try:
                user[key] = parse_value(value) if isinstance(value, str) else value
            except yaml.YAMLError as exc:
                raise ConfigError(f"--set {key}: the value {value!r} is not valid YAML") from exc
    return user


def loss_plan(background: int | None) -> Decision:
    """CE + batch Dice; the Dice leaves out class 0 only when it is the background (MONAI's Dice can leave out
    the first channel, no other)."""
    without_bg = background == 0
    if without_bg:
        why = "cross-entropy + batch soft Dice over the foreground classes (nnU-Net)"
    elif background is None:
        why = "task.background = null (your --set): cross-entropy + batch soft Dice over every class"
    else:
        why = (
            f"task.background = {background} (your --set): cross-entropy + batch soft Dice over every class (the "
            "Dice can leave out class 0 only)"
        )
    return Decision(
        "loss", [{"name": "ce"}, {"name": "dice", "batch": True, "include_background": not without_bg}], why
    )


def _stored_classes(
    fp: dict, values: list[int], freq: dict[int, float]
) -> tuple[list[int], list[str] | None, str, list[int] | None]:
    """The stored value of each class, the class names the layout fixes (or None), why, and the
    ``data.mask_values`` (None when the masks hold class indices)."""
    kind, dims = fp["kind"], int(fp["spatial_dims"])
    where = fp.get("path")
    stored = list(values)  # stored grey value of class k (2D folders)
    mask_values = None
    if kind == "pommier":
        from medseg.data.pommier import POMMIER_CLASSES

        names = list(POMMIER_CLASSES)
        stray = [v for v in values if v >= len(names)]
        stored = list(range(len(names)))
        reason = "the Pommier layout's classes (0 background, 1 α, 2 β, 3 overlap)"
        if stray:
            reason += (
                f"; stray label values {stray} ({', '.join(_pct(freq.get(v, 0)) for v in stray)} of the pixels)"
                " get their nearest valid pixel's label (data.stray_labels: nearest)"
            )
    elif dims == 3:
        top = max(values)
        if min(values) < 0 or top > 255:
            raise DataValidationError(
                where,
                f"label values {values[:10]} are not class indices 0..255; 3D labels "
                "must hold class indices 0..C-1 (convert them first)",
            )
        if top > 2 * len(values) + 8:
            raise DataValidationError(
                where,
                f"label values {values[:10]} are not class indices 0..C-1 (3D labels are "
                "read as class indices; stored 0/255 or other codes must be converted)",
            )
        stored = list(range(top + 1))
        names = None
        reason = f"label values {values} found in {fp['n_sampled']} label volumes"
        missing = sorted(set(stored) - set(values))
        if missing:
            reason += f"; classes {missing} never occur in them"
    else:
        if values == list(range(len(values))):
            reason = f"class indices {values} found in the {fp['n_cases']} masks"
        else:
            mask_values = values
            reason = f"mask grey values {values} found in the {fp['n_cases']} masks, one class each in that order"
        names = None
    return stored, names, reason, mask_values


def class_plan(
    fp: dict, class_names: Sequence[str] | None, decisions: list[Decision], user: dict[str, Any]
) -> tuple[list[str], int | None, Decision | None]:
    """Class names, background and primary metric (appended to ``decisions``), decided after the user's
    ``task.*`` settings (``user``: dotted key → value); returns the class names, the background class and the
    ``data.mask_values`` decision (None when the masks hold class indices)."""
    values = [int(v) for v in fp["label_values"]]
    freq = {int(k): float(v) for k, v in (fp.get("label_frequency") or {}).items()}
    kind = fp["kind"]
    where = fp.get("path")
    if len(values) < 2 and kind != "pommier":
        raise DataValidationError(
            where,
            f"the labels hold only the value(s) {values}: nothing to segment (masks "
            "must mark at least one structure besides the background)",
        )
    stored, names, reason, mask_values = _stored_classes(fp, values, freq)
    n_classes = len(stored)
    if n_classes > MAX_CLASSES:  # training's mask reader refuses such a task: never plan it
        raise DataValidationError(
            where,
            f"the labels hold {n_classes} distinct values, more than the {MAX_CLASSES} "
            "classes a task can have (one class per stored value; labels are uint8)",
        )
    label_names = {int(k): v for k, v in (fp.get("label_names") or {}).items()}
    given = "--classes"
    if "task.class_names" in user:
        if class_names:
            raise ConfigError("--classes and --set task.class_names both name the classes: give them once")
        class_names, given = user["task.class_names"], "your --set task.class_names"
        if not isinstance(class_names, list):
            raise ConfigError(f"--set task.class_names takes a list of names ([a, b, ...]), got {class_names!r}")
    if class_names:
        class_names = [str(c).strip() for c in class_names]
        if len(class_names) != n_classes:
            raise ConfigError(
                f"{given} names {len(class_names)} classes ({', '.join(class_names)}) but the labels "
                f"hold {n_classes} (values {stored}); give one name per class, background first"
            )
        names, reason = class_names, reason + f"; names from {given}"
    elif names is None and label_names and all(v in label_names for v in stored):
        names, reason = [label_names[v] for v in stored], reason + "; names from dataset.json"
    elif names is None:
        names = ["background"] + (["foreground"] if n_classes == 2 else [f"class_{v}" for v in stored[1:]])
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must differ from one another, got {names}")
    decisions.append(Decision("task.mode", "multiclass", "one label per pixel (softmax over exclusive classes)"))
    decisions.append(Decision("task.class_names", names, reason))
    background, background_why = _background_plan(names, user)
    decisions.append(Decision("task.background", background, background_why))
    mask_decision = None
    if mask_values is not None:
        mask_decision = Decision(
            "data.mask_values",
            mask_values,
            "masks store " + ", ".join(f"{n} as {v}" for n, v in zip(names, mask_values, strict=True)),
        )
    decisions.append(_primary_metric_plan(names, [freq.get(v, 0.0) for v in stored], background, user))
    derived, derived_why = {}, "no unions of classes to report"
    if kind == "pommier":
        whole = {"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]}
        derived = {name: members for name, members in whole.items() if background not in members}
        derived_why = "whole chromosomes (own region + overlap), as ARMS Net reports them"
        if len(derived) < len(whole):  # a union may not hold the background class (config check)
            derived_why += f"; none holding class {background}, the background of your --set task.background"
    decisions.append(Decision("task.derived", derived, derived_why))
    return names, background, mask_decision


def _background_plan(names: Sequence[str], user: dict[str, Any]) -> tuple[int | None, str]:
    """``task.background``: class 0, or the user's ``--set task.background`` (an index or null)."""
    if "task.background" not in user:
        return 0, f"class 0 ({names[0]}) is the background: not scored"
    bg = user["task.background"]
    if bg is None:
        return None, "your --set: no background class, every class is scored"
    if isinstance(bg, bool) or not isinstance(bg, int) or not 0 <= bg < len(names):
        raise ConfigError(
            f"--set task.background={bg!r}: give the index of the background class ("
            f"{', '.join(f'{k} {n}' for k, n in enumerate(names))}), or null when no class is background"
        )
    return bg, f"your --set: class {bg} ({names[bg]}) is the background: not scored"


def _primary_metric_plan(
    names: Sequence[str], freq: Sequence[float], background: int | None, user: dict[str, Any]
) -> Decision:
    """``task.primary_metric``: the rarest *scored* class (every class but ``background``; all with none), whose
    IoU a report should lead with; the user's ``--set task.primary_metric`` wins and is named as theirs."""
    scored = [(f, k) for k, f in enumerate(freq) if k != background and f > 0]
    if background is None:
        why = "task.background = null (your --set): every class scored; rarest scored class"
    elif "task.background" in user:
        why = f"task.background = {background} (your --set): {names[background]} not scored; rarest scored class"
    else:
        why = "rarest foreground class"
    if scored:
        f, k = min(scored)
        others = ", ".join(f"{names[j]} {_pct(g)}" for g, j in sorted(scored) if j != k)
        rarest, why = names[k], f"{why}: {_pct(f)} of the voxels" + (f" ({others})" if others else "")
        pick = f"{rarest}, the rarest scored class ({_pct(f)} of the voxels)"
    else:
        rarest = pick = next(n for k, n in enumerate(names) if k != background)
        why = "no voxels of a scored class counted: the first scored class"
    if "task.primary_metric" in user:
        return Decision("task.primary_metric", user["task.primary_metric"], f"your --set; the plan's pick: {pick}")
    return Decision("task.primary_metric", rarest, why)


__all__ = ["PLAN_INPUTS", "class_plan", "loss_plan", "user_inputs"]
