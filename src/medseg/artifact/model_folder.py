"""A trained model as a folder of data: ``model.safetensors`` + ``model.json``; nothing is ever unpickled.

``model.json`` records the architecture (a registered name and plain settings), the task (class names, mode),
the preprocessing the model expects, how to apply it to volumes (sliding window) and the medseg version.
This is the one format that training writes and that inference, evaluation and the server read — so none of
them needs the trainer. Loading checks everything before allocating: the registry vets the architecture and
its settings (no code named by the folder is imported unless ``trust_code``), and the network is first built on
PyTorch's ``meta`` device and compared with the safetensors header.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

import medseg
from medseg.artifact.files import atomic_save_tensors, dump_json
from medseg.errors import ConfigError, DataValidationError

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    return {k: v for k, v in model.state_dict().items()}


def save_model(directory: Path, model: nn.Module, meta: dict) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(model_state(model), directory / MODEL_WEIGHTS, {"format": "pt", "medseg": medseg.__version__})
    meta = {**meta, "medseg_version": medseg.__version__, "weights": MODEL_WEIGHTS}
    dump_json(meta, directory / MODEL_META)
    return directory


MAX_META_BYTES = 16 * 2**20  # a model.json is a few KB; a larger one is refused before it is parsed


def read_model_meta(directory: Path) -> dict:
    path = Path(directory) / MODEL_META
    if not path.is_file():
        raise DataValidationError(path, "no model.json here; give a trained fold directory or a run directory")
    if path.stat().st_size > MAX_META_BYTES:
        raise DataValidationError(
            path,
            f"model.json is {path.stat().st_size:,} bytes, more than {MAX_META_BYTES:,}: "
            "not a medseg model description",
        )
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataValidationError(path, f"model.json is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise DataValidationError(path, "model.json has no 'model' section (name and kwargs): not a medseg model")
    task = meta.get("task")
    if not isinstance(task, dict) or not isinstance(task.get("class_names"), list) or not task["class_names"]:
        raise DataValidationError(path, "model.json has no task.class_names: not a medseg model")
    return meta


def check_model_meta(directory: Path, meta: dict, *, trust_code: bool = False) -> Path:
    """Validate what ``model.json`` asks to build (registered name or trusted code, plain settings) and
    where its weights are (a file name inside ``directory``, never a path elsewhere); returns the weights
    path. Nothing is imported or built here."""
    from medseg.models.registry import check_model_spec

    directory = Path(directory)
    try:
        check_model_spec(meta["model"].get("name"), meta["model"].get("kwargs", {}), trust_code=trust_code)
    except ConfigError as exc:
        raise DataValidationError(directory / MODEL_META, str(exc)) from exc
    name = meta.get("weights", MODEL_WEIGHTS)
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise DataValidationError(
            directory / MODEL_META, f"'weights' must be a file name in the model folder, got {name!r}"
        )
    return directory / name


def weights_header(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header, without reading any tensor."""
    from safetensors import safe_open

    if not weights.is_file():
        raise DataValidationError(weights, "missing: the model has no weights")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise DataValidationError(weights, f"cannot read the weights ({' '.join(str(exc).split())})") from exc


def load_model(
    directory: Path, device: str | torch.device = "cpu", *, trust_code: bool = False
) -> tuple[nn.Module, dict]:
    """Build the architecture named in ``model.json`` and load its safetensors weights.

    Nothing is allocated before the sizes agree: the architecture is first built on PyTorch's ``meta``
    device (shapes only) and its tensors compared with the safetensors header, so a model.json asking for
    an enormous network, or weights of another configuration, is refused at the cost of a few kilobytes.
    """
    from medseg.models import build_model

    directory = Path(directory)
    meta = read_model_meta(directory)
    weights = check_model_meta(directory, meta, trust_code=trust_code)
    header = weights_header(weights)
    name, kwargs = meta["model"]["name"], meta["model"].get("kwargs", {})
    try:
        with torch.device("meta"):
            skeleton = build_model(name, trust_code=trust_code, **kwargs)
    except ConfigError as exc:
        raise DataValidationError(directory / MODEL_META, str(exc)) from exc
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != header:
        missing = sorted(set(expected) - set(header))[:5]
        unexpected = sorted(set(header) - set(expected))[:5]
        other = sorted(k for k in set(expected) & set(header) if expected[k] != header[k])[:3]
        raise DataValidationError(
            weights,
            "weights do not fit the architecture in model.json: "
            f"missing {missing}, unexpected {unexpected}, other shapes "
            + str([f"{k}: {header[k]} vs {expected[k]}" for k in other]),
        )
    del skeleton
    model = build_model(name, trust_code=trust_code, **kwargs)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise DataValidationError(weights, f"cannot read the weights ({' '.join(str(exc).split())})") from exc
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta


__all__ = [
    "MAX_META_BYTES",
    "MODEL_META",
    "MODEL_WEIGHTS",
    "check_model_meta",
    "load_model",
    "model_state",
    "read_model_meta",
    "save_model",
    "weights_header",
]
