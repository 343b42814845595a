"""Weights as safetensors, everything else as JSON: nothing medseg loads is ever unpickled.

A model directory holds ``model.safetensors`` and ``model.json`` (architecture name and settings, class
names, task mode, the preprocessing the model expects, medseg version). The resumable training state is
``last.safetensors`` (model + optimizer tensors) and ``last_state.json`` (epoch, scheduler, early stopping,
history), each written to a temporary name and renamed, the JSON last, so a kill at any moment leaves the
previous complete state.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import medseg
from medseg.errors import DataValidationError

MODEL_WEIGHTS = "model.safetensors"
MODEL_META = "model.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _json_default(obj: Any):
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj)}")


def dump_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True))


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    return {k: v for k, v in model.state_dict().items()}


def save_model(directory: Path, model: nn.Module, meta: dict) -> Path:
    """Write ``model.safetensors`` + ``model.json`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(model_state(model), directory / MODEL_WEIGHTS, {"format": "pt", "medseg": medseg.__version__})
    meta = {**meta, "medseg_version": medseg.__version__, "weights": MODEL_WEIGHTS}
    dump_json(meta, directory / MODEL_META)
    return directory


def read_model_meta(directory: Path) -> dict:
    path = Path(directory) / MODEL_META
    if not path.is_file():
        raise DataValidationError(path, "no model.json here; give a trained fold directory or a run directory")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DataValidationError(path, f"model.json is not valid JSON ({exc})") from exc


def load_model(directory: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Build the architecture named in ``model.json`` and load its safetensors weights."""
    from medseg.models import build_model

    directory = Path(directory)
    meta = read_model_meta(directory)
    model = build_model(meta["model"]["name"], **meta["model"]["kwargs"])
    weights = directory / meta.get("weights", MODEL_WEIGHTS)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise DataValidationError(weights, f"cannot read the weights ({exc})") from exc
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes: weights of a different configuration
        raise DataValidationError(weights, f"weights do not fit the architecture in model.json ({exc})") from exc
    if missing or unexpected:
        raise DataValidationError(weights, f"weights do not fit the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval(), meta


def save_training_state(directory: Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                        state: dict, extra_models: dict[str, nn.Module] | None = None) -> None:
    """Everything needed to resume: tensors to ``last.safetensors``, the rest to ``last_state.json``."""
    tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in model_state(model).items()}
    for name, m in (extra_models or {}).items():
        tensors.update({f"{name}/{k}": v for k, v in model_state(m).items()})
    optim_meta = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        plain_state: dict[str, dict] = {}
        for pid, pstate in sd["state"].items():
            plain_state[str(pid)] = {}
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{name}/{pid}/{key}"] = value
                    plain_state[str(pid)][key] = "__tensor__"
                else:
                    plain_state[str(pid)][key] = value
        optim_meta[name] = {"state": plain_state, "param_groups": sd["param_groups"]}
    _atomic_save_tensors(tensors, Path(directory) / "last.safetensors")
    dump_json({**state, "optimizers": optim_meta}, Path(directory) / "last_state.json")


def load_training_state(directory: Path, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                        extra_models: dict[str, nn.Module] | None = None) -> dict | None:
    """Restore what :func:`save_training_state` wrote; ``None`` when there is nothing to resume."""
    directory = Path(directory)
    state_path, tensor_path = directory / "last_state.json", directory / "last.safetensors"
    if not (state_path.is_file() and tensor_path.is_file()):
        return None
    state = json.loads(state_path.read_text())
    tensors = load_file(str(tensor_path), device="cpu")
    target = getattr(model, "_orig_mod", model)
    target.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    for name, m in (extra_models or {}).items():
        prefix = f"{name}/"
        getattr(m, "_orig_mod", m).load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in optimizers.items():
        meta = state["optimizers"][name]
        sd_state = {}
        for pid, pstate in meta["state"].items():
            sd_state[int(pid)] = {key: (tensors[f"optim/{name}/{pid}/{key}"] if value == "__tensor__" else value)
                                  for key, value in pstate.items()}
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
        opt.load_state_dict({"state": sd_state, "param_groups": groups})
    return state


def finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
