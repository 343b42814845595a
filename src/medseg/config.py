"""Experiment configuration: YAML files under ``configs/``, merged over defaults, validated, saved in each run.

A config is plain data (nnU-Net's "plans" idea): the run directory keeps the exact config that produced
it, so every number in a report traces back to a command. Unknown keys are errors, which catches typos
such as ``batchsize`` silently doing nothing.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import ConfigError

CHROMOSOME_CLASSES = ["background", "chromosome_alpha", "chromosome_beta", "overlap"]

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "task": {
        "mode": "multiclass",  # multiclass (softmax, exclusive classes) | multilabel (sigmoid)
        "class_names": CHROMOSOME_CLASSES,
        # Named unions of classes evaluated as extra structures and written by `predict` as whole objects:
        # ARMS Net's "complete chromosome" IoU and the karyotyping cut-outs.
        "derived": {"chromosome_alpha_whole": [1, 3], "chromosome_beta_whole": [2, 3]},
        "primary_metric": "overlap",  # class whose IoU heads reports and box plots
        "spatial_dims": 2,
    },
    "data": {
        # An HDF5 file in the Pommier layout, a folder (images/ + masks/), or "synth:demo" / "synth:pommier"
        # for the project's own synthesized sets (made on first use, no download).
        "path": "synth:demo",
        "format": "auto",  # auto | pommier | folder
        "h5_key": "dataset_1",
        "size": [128, 128],  # the papers pad 94x93 to 128x128
        "image_pad_value": "border",  # number, or "border" (median of each image's border)
        "stray_labels": "nearest",  # reject | background | nearest — the real file has a few label-4 pixels
        "mask_values": None,  # folder masks: stored grey values of classes 0..C-1, in order
        "limit": None,  # use only the first N images (quick runs)
        "synth_pairs": 1500,  # size of the synth:demo set
        "synth_seed": 0,
        # 3D: train on random patches [D, H, W] instead of whole volumes (medseg.data.transforms3d); null = whole.
        "patch_size": None,
        "patch_pos_fraction": None,  # null: patch centre uniform; p: in the target with probability p
        # 3D: `data.path: synth:phantom` writes this many CT-like phantom cases (DEMO DATA) once under
        # $MEDSEG_HOME/synth; shape (z, y, x) voxels, spacing (z, y, x) mm (medseg.data.phantom).
        "phantom": {"n": 12, "shape": [24, 96, 96], "spacing": [3.0, 1.0, 1.0], "seed": 0},
        # 3D: regular expression whose first group is the patient id in a case name; splits keep a patient's
        # series together. null: every case is its own patient.
        "patient_pattern": None,
    },
    # 3D CT preprocessing (CTV thesis §2.1, medseg.data.transforms3d.preprocess_volume): clip to
    # [clip_min, clip_max], map to [0, 1], resample to `depth` slices (linear in z) and size_xy in x/y.
    "preprocess": {"clip_min": 0.0, "clip_max": 1600.0, "normalize": "range", "depth": 72, "size_xy": [256, 256],
                   "depth_mode": "trilinear", "align_corners": False},
    "splits": {"test_fraction": 0.2, "n_folds": 5, "seed": 0, "protocol": "random", "file": None},
    "model": {"name": "unet", "depth": 4, "base_channels": 64, "norm": "batch"},
    "loss": [{"name": "ce"}],
    "train": {
        "epochs": 300,
        "batch_size": 8,
        "lr": 1.0e-3,
        "weight_decay": 0.0,
        "scheduler": {"factor": 0.5, "patience": 3, "min_lr": 1.0e-7},
        # monitor: a history column, lower is better (val_loss; train_loss/train_g_loss as AMFL stops on training loss)
        "early_stopping": {"patience": 9, "min_delta": 0.0, "monitor": "val_loss"},
        "seed": 0,
        "amp": True,  # CUDA only
        "channels_last": True,  # CUDA only
        "num_workers": 0,
        "device": "auto",
        "max_batches_per_epoch": None,  # cap for quick CPU runs
        "val_max_batches": None,
        "deterministic": False,
    },
    # Adversarial training (AMFL §II-B/C): LSGAN against a discriminator on (image, segmentation) pairs.
    "adversarial": {"enabled": False, "lambda_seg": 10.0, "lr": 2.0e-4, "betas": [0.5, 0.999],
                    "discriminator": {"name": "patchgan", "channels": [64, 128, 256, 512], "strides": [2, 2, 2, 1, 1],
                                      "padding": 2, "norm": "none", "sigmoid": True}},
    # Training on noisy labels (thesis ch. 3, medseg/training/noisy_labels.py). `enabled` simulates annotation
    # noise on each fold's TRAINING samples only (never validation/test); qam/ocm pick the NoisyLabelTrainer
    # and work with or without simulated noise.
    "noisy_labels": {
        "enabled": False,
        "fraction": 0.0,  # share of the fold's training samples corrupted (Table 3.1: 0, 0.25, 0.5, 0.75)
        "dilate_range": [1, 8],  # n ~ uniform integer in [lo, hi] px, for dilation and shrinking (Table 3.1: 1-8, 5-13)
        "mode": "both",  # dilate | erode | both (each corrupted sample dilated or eroded with probability ½)
        "structures": "classes",  # classes (each foreground class) | derived (task.derived unions: whole chromosomes)
        "seed": 0,
        # Quality awareness module (§3.2.2): VGG-shaped Φ(image ⊕ label) → score, softmax over the batch.
        "qam": {"enabled": False, "lr": 1.0e-4, "channels": [64, 128, 256, 512, 512], "convs": [2, 2, 3, 3, 3],
                "norm": "none"},
        "ocm": {"enabled": False, "lambda": 2.0},  # overfitting control (§3.2.3): λ·tanh on the scores
    },
    "augment": {"flip_prob": 0.0, "rot90_prob": 0.0,
                # 3D volumes (task.spatial_dims 3) only, CTV thesis §2.1: rotation <= 10°, x/y/z flips, shifts
                # <= 8 voxels, Gaussian noise of variance 0.001 (medseg.data.transforms3d).
                "volume": {"enabled": True, "rotate_deg": 10.0, "rotate_axes": "axial", "shift_voxels": 8.0,
                           "affine_prob": 1.0, "flip_axes": [0, 1, 2], "flip_prob": 0.5, "noise_var": 0.001,
                           "noise_prob": 1.0, "padding_mode": "zeros"}},
    "evaluate": {"tta": False, "batch_size": 32, "hausdorff": True,
                 # 3D: sliding-window inference with this roi (null: whole volumes), Gaussian blending.
                 "sliding_window": {"roi_size": None, "overlap": 0.5, "sw_batch_size": 1, "mode": "gaussian"}},
    "output": {"root": "runs"},
}


def deep_merge(base: dict, override: dict, path: str = "", strict: bool = True) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if strict and key not in base:
            raise ConfigError(f"unknown config key '{where}' (known: {', '.join(sorted(base))})")
        # Free-form mappings are not checked key by key: derived structures are replaced whole, and a model
        # section naming another architecture replaces the defaults (they are the U-Net's settings).
        free = where == "model" or where.startswith("model.")
        replace_whole = where == "task.derived" or (
            where == "model" and isinstance(value, dict) and isinstance(base.get(key), dict)
            and value.get("name", base[key].get("name")) != base[key].get("name"))
        if replace_whole:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = deep_merge(base[key], value, where + ".", strict=strict and not free)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _kind(value: Any) -> str | None:
    """The type a config value must keep when it is overridden: numbers stay numbers, flags stay flags."""
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return None


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


# Keys whose default is a string but which also take a number (data.image_pad_value: "border" or a value).
_STRING_OR_NUMBER = {"data.image_pad_value"}
# Keys without which nothing can run: null is refused for them (elsewhere null means "not set").
_REQUIRED = {"task.mode", "task.class_names", "task.primary_metric", "task.spatial_dims", "data.path",
             "data.stray_labels", "train.epochs", "train.batch_size", "train.lr"}


def check_types(cfg: dict, defaults: dict = DEFAULTS, path: str = "") -> None:
    """Every value whose default is a number, flag, string or list keeps that type (``None`` always allowed),
    so ``--set train.epochs=abc`` fails here, naming the key, instead of deep in training. Free-form sections
    (``model``: each architecture has its own settings; ``loss``: a list of terms) are not checked."""
    for key, default in defaults.items():
        where = f"{path}{key}"
        if where in ("model", "loss", "task.derived") or key not in cfg:
            continue
        value = cfg[key]
        if value is None and where in _REQUIRED:
            raise ConfigError(f"config key '{where}' must be set ({_kind(default)}), got null")
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}' must be a mapping, got {value!r}")
            check_types(value, default, where + ".")
        elif value is not None and default is not None and not _fits(value, default) and not (
                where in _STRING_OR_NUMBER and isinstance(value, (int, float))):
            raise ConfigError(f"config key '{where}' must be {_kind(default)}, got {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{where}' must be a finite number, got {value!r}")


def validate(cfg: dict) -> dict:
    check_types(cfg)
    task = cfg["task"]
    if task["mode"] not in ("multiclass", "multilabel"):
        raise ConfigError(f"task.mode must be multiclass or multilabel, got {task['mode']!r}")
    n = len(task["class_names"])
    if n < 2 and task["mode"] == "multiclass":
        raise ConfigError("a multiclass task needs at least 2 classes (background included)")
    for name, members in (task.get("derived") or {}).items():
        bad = [m for m in members if not 0 <= int(m) < n]
        if bad:
            raise ConfigError(f"task.derived.{name} names classes {bad} outside 0..{n - 1}")
    if task["primary_metric"] not in task["class_names"] and task["primary_metric"] not in (task.get("derived") or {}):
        raise ConfigError(f"task.primary_metric {task['primary_metric']!r} is not a class or derived structure")
    tr = cfg["train"]
    if int(tr["batch_size"]) < 1 or int(tr["epochs"]) < 1 or float(tr["lr"]) <= 0:
        raise ConfigError("train.batch_size and train.epochs must be >= 1 and train.lr > 0")
    if cfg["data"]["stray_labels"] not in ("reject", "background", "nearest"):
        raise ConfigError("data.stray_labels must be reject, background or nearest")
    return cfg


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults ← YAML file (``_base_: other.yaml`` chains allowed) ← overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = deep_merge(cfg, _read_yaml_chain(Path(path)))
    if overrides:
        cfg = deep_merge(cfg, overrides)
    return validate(cfg)


def _read_yaml_chain(path: Path, seen: tuple = ()) -> dict:
    if path.is_dir():
        saved = [p for p in [path / "config.yaml", *sorted(path.glob("fold_*/config.yaml"))] if p.is_file()]
        hint = f"; this looks like a run folder, whose config is {saved[0]}" if saved else ""
        raise ConfigError(f"{path}: is a folder, not a config file (give a YAML such as "
                          f"configs/chromosomes/unet.yaml{hint})")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: _base_ chain loops")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping")
    base = data.pop("_base_", None)
    if base:
        parent = _read_yaml_chain((path.parent / base), seen + (path.resolve(),))
        return deep_merge(parent, data, strict=False)
    return data


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    """Apply ``--set train.epochs=3`` style overrides (value parsed as YAML)."""
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        if k not in node or not isinstance(node[k], dict):
            raise ConfigError(f"unknown config key '{dotted}'")
        node = node[k]
    free = keys[0] == "model"
    if keys[-1] not in node and not free:
        raise ConfigError(f"unknown config key '{dotted}'")
    if isinstance(value, str):
        try:
            value = parse_value(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {dotted}: the value {value!r} is not valid YAML "
                              f"({' '.join(str(exc).split())})") from exc
    node[keys[-1]] = value


def parse_value(text: str):
    """YAML parsing, plus the floats YAML 1.1 leaves as strings (``1e-4``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def save_config(cfg: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(path)
