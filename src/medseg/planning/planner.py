"""From a data fingerprint to a complete training config, as nnU-Net plans its experiments.

:func:`plan` turns the fingerprint of :func:`medseg.planning.fingerprint.fingerprint` into a config for
medseg's own pipeline (U-Net, CE + Dice, Adam, poly schedule) and records every choice as a
:class:`Decision` (config key, value, reason); :func:`write_plan` writes those keys as a YAML file with each
reason as a comment on its line (it loads with :func:`medseg.config.load_config`) and ``*.plan.json`` with
the fingerprint. The rules, in order:

* **task** (:mod:`medseg.planning.task_plan`) — classes from the label values found (or ``--classes``;
  nnU-Net's ``dataset.json`` names them when present), background = class 0, primary metric = the rarest
  scored class (its IoU is what a report leads with, and the one a planner should not lose sight of). The
  user's ``--set task.class_names / task.background / task.primary_metric`` are inputs of these decisions,
  not afterthoughts: with ``task.background: null`` every class is scored and the Dice loss covers them all.
* **data** — full resolution (``data.size: null``); 2D masks stored as other grey values than 0..C-1 (0/255)
  get ``data.mask_values``; 2D intensities z-scored per image (nnU-Net's rule for everything but CT: a 12-bit
  camera in a 16-bit PNG would otherwise use 1/16 of [0, 1]).
* **preprocess** (3D) — CT (the files say so, or Hounsfield-like values): clip to the foreground's 0.5/99.5
  percentiles, z-score with the foreground's mean/std (nnU-Net's CT normalisation); other modalities: each
  volume z-scored by itself. Resampling to the median spacing: ``depth``/``size_xy`` keep the volumes' median
  physical size, coarsened (the finer in-plane axes first, so anisotropy shrinks rather than grows) until a
  volume fits the voxel budget and the whole set the memory limit (:mod:`medseg.formats.limits`).
* **patch and network** — the patch starts at the median image (preprocessed volume) and shrinks, the axis
  with the largest physical extent first, until a batch of 2 fits the memory budget by
  :func:`estimate_memory`; the U-Net pools until the thinnest patch axis is 4–8 px at the bottleneck
  (isotropic poolings: medseg's U-Net pools every axis), each patch side a multiple of 2^depth;
  32 base channels (8 for a CPU), capped at 512 (2D) / 320 (3D) as nnU-Net; instance norm and leaky ReLU.
* **batch** — as many patches as the budget holds, at least 2, at most what covers 5 % of the data set's
  voxels (nnU-Net: larger batches on small data sets only overfit faster).
* **train** — ``train.iterations`` optimizer steps (50,000 on CUDA, 2,000 on a CPU), epochs of at most 250
  steps (nnU-Net's), Adam 3e-3 with the poly schedule, no early stopping (the budget is run out).
* **augment** — flips and 90° rotations in 2D (rotations only for square patches), ``augment.volume`` in 3D
  (rotations about z only for anisotropic volumes).
* **evaluate** — sliding window with the patch as its roi, Gaussian blending, half-overlap.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medseg.errors import ConfigError, DataValidationError
from medseg.planning.network_plan import (
    MIN_BOTTLENECK,
    _fmt_shape,
    _plan_network,
    choose_patch,
    depth_for,
    estimate_memory,
    unet_parameters,
)
from medseg.planning.task_plan import PLAN_INPUTS, Decision, class_plan, loss_plan, user_inputs

DEFAULT_BUDGET_GB = {"cuda": 8.0, "cpu": 2.0}
DEFAULT_ITERATIONS = {"cuda": 50_000, "cpu": 2_000}
EPOCH_STEPS = 250
VAL_IMAGES = 8  # per-epoch validation subset: cheap beside 250 steps, enough to pick the best epoch
LR = 3.0e-3
HU_AIR = -500.0  # minimum intensities below this look like CT in Hounsfield units (air is -1000)


# --- the plan ---------------------------------------------------------------------------------------------


def _looks_ct(fp: dict) -> tuple[bool, str]:
    modality = (fp.get("modality") or "").upper()
    if modality:
        return modality == "CT", f"modality {modality}"
    glob = (fp["intensity"][0] or {}).get("global") or {}
    if glob and glob["min"] <= HU_AIR and str(fp.get("dtype", "")).startswith("int"):
        return True, f"modality not recorded; values down to {glob['min']:g} look like Hounsfield units"
    return False, "modality not recorded and the values do not look like Hounsfield units"


def _resample_plan(fp: dict, decisions: list[Decision]) -> tuple[list[int], list[float]]:
    """preprocess.depth / size_xy: the median physical size at the median spacing, coarsened to fit."""
    from medseg.formats.limits import dataset_bytes_limit, voxel_budget

    spacing = [float(s) for s in fp["spacing"]["median"]]
    extent = [float(e) for e in fp["spacing"]["extent_mm"]["median"]]
    target = list(spacing)
    n = int(fp["n_cases"])
    max_voxels = voxel_budget()
    max_bytes = dataset_bytes_limit()
    shape = [max(1, round(e / s)) for e, s in zip(extent, target, strict=True)]
    coarsened = []
    while math.prod(shape) > max_voxels or n * math.prod(shape) * 5 > max_bytes:
        if math.prod(shape) == 1:
            raise DataValidationError(
                fp.get("path"),
                f"{n} volumes do not fit the memory limit of {max_bytes / 2**30:.1f} GB at any resolution",
            )
        finest, coarsest = min(target[1:]), max(target)
        if finest * 1.1 < coarsest and target[0] > finest:  # in-plane first: anisotropy shrinks
            target[1:] = [min(t * 1.1, target[0]) for t in target[1:]]
        else:
            target = [t * 1.1 for t in target]
        shape = [max(1, round(e / s)) for e, s in zip(extent, target, strict=True)]
        coarsened = target
    why = (
        f"median spacing {_fmt_shape(round(s, 3) for s in spacing)} mm (z, y, x), median size "
        f"{_fmt_shape(round(e) for e in extent)} mm"
    )
    if coarsened:
        why += (
            f"; coarsened to {_fmt_shape(round(t, 3) for t in target)} mm so a volume holds at most {max_voxels:,} "
            f"voxels and the {n} preprocessed cases at most {max_bytes / 2**30:.1f} GB"
        )
    decisions.append(Decision("preprocess.depth", shape[0], f"{shape[0]} slices: " + why))
    decisions.append(Decision("preprocess.size_xy", shape[1:], f"{_fmt_shape(shape[1:])} px in-plane: " + why))
    return shape, target


def _normalize_3d(fp: dict, decisions: list[Decision]) -> None:
    ct, why = _looks_ct(fp)
    stats = fp["intensity"][0]
    fg = stats.get("foreground") or stats.get("global")
    region = "foreground" if stats.get("foreground") else "all (no foreground found)"
    if ct:
        window = fg
        if not fg["p00_5"] < fg["p99_5"]:  # a constant foreground gives no window: the whole volumes' then
            window, region = stats["global"], f"all (the {region} voxels hold one value)"
        if window["p00_5"] < window["p99_5"]:
            decisions.append(
                Decision(
                    "preprocess.clip_min",
                    round(window["p00_5"], 4),
                    f"{why}: the {region} voxels' 0.5th percentile (nnU-Net's CT clipping)",
                )
            )
            decisions.append(
                Decision("preprocess.clip_max", round(window["p99_5"], 4), f"the {region} voxels' 99.5th percentile")
            )
        else:
            decisions.append(Decision("preprocess.clip_min", None, f"{why}; every voxel holds one value: no window"))
            decisions.append(Decision("preprocess.clip_max", None, "no window"))
        decisions.append(
            Decision(
                "preprocess.normalize",
                "zscore",
                "CT: one fixed z-score for every volume, so a tissue keeps its value (nnU-Net)",
            )
        )
        std = fg["std"] if fg["std"] > 1e-6 else 1.0
        decisions.append(Decision("preprocess.mean", round(fg["mean"], 4), f"mean of the {region} voxels"))
        decisions.append(Decision("preprocess.std", round(std, 4), f"std of the {region} voxels"))
    else:
        decisions.append(Decision("preprocess.clip_min", None, f"{why}: no fixed window"))
        decisions.append(Decision("preprocess.clip_max", None, "no fixed window"))
        decisions.append(
            Decision(
                "preprocess.normalize",
                "zscore",
                "each volume by its own mean and std (nnU-Net for non-CT: no absolute scale)",
            )
        )
        decisions.append(Decision("preprocess.mean", None, "each volume's own"))
        decisions.append(Decision("preprocess.std", None, "each volume's own"))


def _normalize_2d(fp: dict, decisions: list[Decision]) -> None:
    modality = (fp.get("modality") or "").upper()
    bits, top = fp.get("bits"), fp.get("max_value")
    if modality == "CT":
        decisions.append(Decision("data.normalize", "range", "CT: the stored range keeps Hounsfield units comparable"))
        return
    if bits == 16 and top is not None:
        why = (
            f"16-bit images using 0..{top:g} of 65535: the dtype range would squeeze them into "
            f"[0, {top / 65535:.3g}]; z-scored per image (nnU-Net for non-CT)"
        )
    elif bits == 8:
        why = "8-bit images, modality not CT: z-scored per image (nnU-Net for non-CT)"
    else:
        why = f"{fp.get('dtype')} images, modality not CT: z-scored per image (nnU-Net for non-CT)"
    decisions.append(Decision("data.normalize", "zscore", why))


def _device_kind(device: str) -> str:
    device = str(device).lower()
    if device.startswith("cuda"):
        return "cuda"
    if device == "cpu":
        return "cpu"
    raise ConfigError(f"plan: device must be cpu or cuda, got {device!r}")


def _plan_name(source: str) -> Decision:
    """``name``: the data's file or folder name, so runs of different data sets land apart."""
    stem = Path(source.split(":", 1)[1] if source.startswith("synth:") else source).name
    stem = re.sub(r"\.(h5|hdf5)$", "", stem, flags=re.IGNORECASE)
    return Decision("name", "plan_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "data"), "runs go to runs/<name>/")


def _plan_task_and_data(
    fp: dict,
    class_names: Sequence[str] | None,
    sets: Sequence[tuple[str, Any]],
    decisions: list[Decision],
    *,
    dims: int,
    n_cases: int,
) -> tuple[list[str], int | None, list[int], list[float] | None]:
    """``task.*``, ``data.*`` and ``preprocess.*`` (appended to ``decisions``); returns the class names, the
    background class, the median image (preprocessed volume) the patch starts from and its spacing (3D)."""
    source = str(fp["path"])
    decisions.append(
        Decision("task.spatial_dims", dims, f"{'volumes' if dims == 3 else 'images'} ({fp['kind']}, {n_cases} cases)")
    )
    user = user_inputs(sets)
    names, background, mask_decision = class_plan(fp, class_names, decisions, user)

    decisions.append(Decision("data.path", source, "the data planned from"))
    if mask_decision is not None:
        decisions.append(mask_decision)
    if fp["kind"] == "pommier" and fp.get("h5_key") not in (None, "dataset_1"):
        decisions.append(Decision("data.h5_key", fp["h5_key"], "the file's image/label dataset"))
    if dims == 2:
        decisions.append(
            Decision("data.size", None, "full resolution: each image keeps its own size, training takes patches")
        )
    spacing = None
    if dims == 3:
        median, spacing = _resample_plan(fp, decisions)
        _normalize_3d(fp, decisions)
    else:
        median = [int(v) for v in fp["shape"]["median"]]
        _normalize_2d(fp, decisions)
    if min(median) < 2 * MIN_BOTTLENECK:
        raise DataValidationError(
            fp.get("path"),
            f"the median {'volume' if dims == 3 else 'image'} is "
            f"{_fmt_shape(median)}: too small for a U-Net (at least "
            f"{2 * MIN_BOTTLENECK} px a side)",
        )
    return names, background, median, spacing


def _plan_training(kind: str, iterations: int | None, background: int | None, decisions: list[Decision]) -> None:
    """The loss and ``train.*`` but the batch: the step budget, epochs, validation, optimizer and schedule."""
    decisions.append(loss_plan(background))
    steps = int(iterations) if iterations is not None else DEFAULT_ITERATIONS[kind]
    decisions.append(
        Decision(
            "train.iterations",
            steps,
            "optimizer steps"
            + (
                ""
                if iterations is not None
                else f" (default for {'CUDA' if kind == 'cuda' else 'a CPU'}; nnU-Net runs 250,000 on a GPU)"
            ),
        )
    )
    decisions.append(
        Decision(
            "train.steps_per_epoch",
            EPOCH_STEPS,
            f"epochs of {EPOCH_STEPS} steps drawn with "
            "replacement (nnU-Net's), whatever the data's size: "
            "validation that often",
        )
    )
    decisions.append(
        Decision(
            "train.validation.images",
            VAL_IMAGES,
            f"each epoch {VAL_IMAGES} validation images at "
            "most (a fixed seeded subset): validating costs a few % of the time; the selected "
            "model is validated on all of them at the end",
        )
    )
    n_epochs = math.ceil(steps / EPOCH_STEPS)
    decisions.append(
        Decision(
            "train.early_stopping.patience",
            max(n_epochs, 1),
            "as many epochs as the budget takes: no early stopping, the poly schedule runs out "
            "(the best checkpoint is still kept)",
        )
    )
    decisions.append(Decision("train.lr", LR, "Adam"))
    decisions.append(Decision("train.scheduler.name", "poly", "lr·(1 − t/T)^0.9 (nnU-Net)"))


def _plan_augment_and_evaluate(
    fp: dict, patch: Sequence[int], batch: int, dims: int, decisions: list[Decision]
) -> None:
    """``augment.*`` (from the patch's shape and the spacing's anisotropy) and ``evaluate.*``."""
    if dims == 2:
        square = patch[0] == patch[1]
        decisions.append(Decision("augment.flip_prob", 0.5, "flips along both axes"))
        decisions.append(
            Decision(
                "augment.rot90_prob",
                0.5 if square else 0.0,
                "90° rotations" if square else "no 90° rotations: the patch is not square",
            )
        )
    else:
        decisions.append(Decision("augment.volume.enabled", True, "rotation, shift, flips and noise (thesis §2.1)"))
        anisotropic = fp["spacing"]["anisotropy"] > 3
        decisions.append(
            Decision(
                "augment.volume.rotate_axes",
                "axial" if anisotropic else "all",
                f"anisotropy {fp['spacing']['anisotropy']:.2g}: "
                + ("rotate about z only (thick slices)" if anisotropic else "rotate about every axis"),
            )
        )
    decisions.append(Decision("evaluate.sliding_window.roi_size", patch, "the training patch"))
    decisions.append(Decision("evaluate.sliding_window.overlap", 0.5, "half-overlapping windows"))
    decisions.append(Decision("evaluate.sliding_window.mode", "gaussian", "Gaussian blending (nnU-Net)"))
    decisions.append(Decision("evaluate.sliding_window.sw_batch_size", batch, "the training batch"))
    decisions.append(
        Decision(
            "evaluate.tta",
            True,
            "mirror test-time augmentation at evaluation and prediction "
            "(nnU-Net): flipped copies averaged; --no-tta to skip",
        )
    )
    if dims == 3 or not fp.get("same_shape", True):
        decisions.append(
            Decision(
                "evaluate.batch_size",
                1,
                "whole images of different sizes: one at a time" if dims == 2 else "whole volumes: one at a time",
            )
        )


def plan(
    fp: dict,
    *,
    memory_budget_gb: float | None = None,
    device: str = "cpu",
    class_names: Sequence[str] | None = None,
    iterations: int | None = None,
    sets: Sequence[tuple[str, Any]] = (),
) -> tuple[dict, list[Decision]]:
    """A complete, validated config for the data ``fp`` describes, and the decisions that made it.

    ``memory_budget_gb``: what one training step may take on the device (default 8 on CUDA, 2 on a CPU);
    ``device``: ``cpu`` or ``cuda`` (sets the widths, AMP and the step budget); ``class_names``: one per
    class, background first (default: from the labels); ``iterations``: optimizer steps (default 50,000 on
    CUDA, 2,000 on a CPU); ``sets``: the user's ``--set`` pairs — ``task.class_names``, ``task.background``
    and ``task.primary_metric`` are inputs of the decisions (the primary metric, the background, the loss
    follow them and say so), every other one is applied over the plan with :func:`apply_sets`.
    """
    from medseg.config import load_config

    kind = _device_kind(device)
    budget_gb = float(DEFAULT_BUDGET_GB[kind] if memory_budget_gb is None else memory_budget_gb)
    if not budget_gb > 0:
        raise ConfigError(f"plan: the memory budget must be > 0 GB, got {memory_budget_gb!r}")
    dims = int(fp["spatial_dims"])
    n_cases = int(fp["n_cases"])
    decisions: list[Decision] = [_plan_name(str(fp["path"]))]
    names, background, median, spacing = _plan_task_and_data(
        fp, class_names, sets, decisions, dims=dims, n_cases=n_cases
    )
    patch, batch = _plan_network(
        median, spacing, decisions, kind=kind, dims=dims, n_cases=n_cases, budget_gb=budget_gb, out_channels=len(names)
    )
    _plan_training(kind, iterations, background, decisions)
    _plan_augment_and_evaluate(fp, patch, batch, dims, decisions)
    cfg = load_config(overrides=_nest(decisions))
    return apply_sets(cfg, decisions, [(k, v) for k, v in sets if k not in PLAN_INPUTS])


# --- --set and writing ---------------------------------------------------------------------------------


def _nest(decisions: Sequence[Decision]) -> dict:
    out: dict = {}
    for d in decisions:
        node = out
        *parents, last = d.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = d.value
    return out


def _get(cfg: dict, dotted: str):
    node = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


def apply_sets(cfg: dict, decisions: list[Decision], sets: Sequence[tuple[str, Any]]) -> tuple[dict, list[Decision]]:
    """``--set key=value`` over a planned config: the validated config and the decisions, the set keys
    recorded as decided on the command line (a decision under a set mapping is replaced by it)."""
    from medseg.config import set_dotted, validate

    cfg = json.loads(json.dumps(cfg))  # a deep copy of plain data
    decisions = list(decisions)
    for key, value in sets:
        set_dotted(cfg, key, value)
        value = _get(cfg, key)
        parent = next((i for i, d in enumerate(decisions) if key.startswith(d.key + ".")), None)
        if parent is not None:
            d = decisions[parent]
            decisions[parent] = Decision(d.key, _get(cfg, d.key), f"{d.reason}; {key} set on the command line")
            continue
        decisions = [d for d in decisions if not (d.key == key or d.key.startswith(key + "."))]
        decisions.append(Decision(key, value, "set on the command line (--set)"))
    return validate(cfg), decisions


def format_value(value: Any) -> str:
    """A value as one line of YAML (lists and mappings in flow style)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**9, allow_unicode=True, sort_keys=False)
    return text.strip()[1:-1]


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def plan_yaml(cfg: dict, decisions: Sequence[Decision], header: Sequence[str] = ()) -> str:
    """The decided keys of ``cfg`` as YAML, grouped by section in the config's order, each with its reason
    as an end-of-line comment."""
    order = {k: i for i, k in enumerate(cfg)}
    tree: dict = {}
    reasons: dict[str, str] = {}
    for d in sorted(decisions, key=lambda d: order.get(d.key.split(".")[0], len(order))):
        node = tree
        *parents, last = d.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = _get(cfg, d.key)
        reasons[d.key] = d.reason
    lines = [f"# {_comment(h)}" for h in header]

    def emit(node: dict, prefix: str, indent: str) -> None:
        for key, value in node.items():
            where = f"{prefix}{key}"
            if where in reasons:
                lines.append(f"{indent}{format_value(key)}: {format_value(value)}  # {_comment(reasons[where])}")
            else:
                lines.append(f"{indent}{format_value(key)}:")
                emit(value, where + ".", indent + "  ")

    emit(tree, "", "")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    from medseg.formats.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def write_plan(
    cfg: dict,
    decisions: Sequence[Decision],
    path: str | Path,
    *,
    fingerprint: dict | None = None,
    json_path: str | Path | None = None,
    settings: dict | None = None,
) -> tuple[Path, Path | None]:
    """Write the plan as a commented YAML config at ``path`` (loads with :func:`medseg.config.load_config`)
    and, with a ``fingerprint``, the fingerprint, decisions, settings and whole config as JSON at
    ``json_path`` (default ``<path stem>.plan.json`` beside it). Returns both paths."""
    path = Path(path)
    settings = dict(settings or {})
    header = [
        f"planned by `medseg plan` from {cfg['data']['path']}"
        + (f" ({fingerprint['n_cases']} cases, {fingerprint['spatial_dims']}D)" if fingerprint else ""),
        *([", ".join(f"{k} {v}" for k, v in settings.items())] if settings else []),
        "each key carries the reason it was chosen; keys not listed keep medseg's defaults",
        f"train with: medseg train {path.name}",
    ]
    _atomic_write(path, plan_yaml(cfg, decisions, header))
    out_json = None
    if fingerprint is not None:
        out_json = Path(json_path) if json_path is not None else path.with_name(path.stem + ".plan.json")
        record = {
            "settings": settings,
            "fingerprint": fingerprint,
            "decisions": [{"key": d.key, "value": d.value, "reason": d.reason} for d in decisions],
            "config": cfg,
        }
        _atomic_write(out_json, json.dumps(_json_safe(record), indent=2, allow_nan=False) + "\n")
    return path, out_json


__all__ = [
    "Decision",
    "apply_sets",
    "choose_patch",
    "depth_for",
    "estimate_memory",
    "format_value",
    "plan",
    "plan_yaml",
    "unet_parameters",
    "write_plan",
]
