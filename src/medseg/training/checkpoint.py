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
from medseg.errors import ConfigError, DataValidationError

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


MAX_META_BYTES = 16 * 2**20  # a model.json is a few KB; a larger one is refused before it is parsed


def read_model_meta(directory: Path) -> dict:
    path = Path(directory) / MODEL_META
    if not path.is_file():
        raise DataValidationError(path, "no model.json here; give a trained fold directory or a run directory")
    if path.stat().st_size > MAX_META_BYTES:
        raise DataValidationError(path, f"model.json is {path.stat().st_size:,} bytes, more than {MAX_META_BYTES:,}: "
                                        "not a medseg model description")
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
        raise DataValidationError(directory / MODEL_META, f"'weights' must be a file name in the model folder, got "
                                                          f"{name!r}")
    return directory / name


def _weights_header(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header, without reading any tensor."""
    from safetensors import safe_open

    if not weights.is_file():
        raise DataValidationError(weights, "missing: the model has no weights")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise DataValidationError(weights, f"cannot read the weights ({' '.join(str(exc).split())})") from exc


def load_model(directory: Path, device: str | torch.device = "cpu", *, trust_code: bool = False
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
    header = _weights_header(weights)
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
        raise DataValidationError(weights, "weights do not fit the architecture in model.json: "
                                           f"missing {missing}, unexpected {unexpected}, other shapes "
                                           + str([f"{k}: {header[k]} vs {expected[k]}" for k in other]))
    del skeleton
    model = build_model(name, trust_code=trust_code, **kwargs)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise DataValidationError(weights, f"cannot read the weights ({' '.join(str(exc).split())})") from exc
    model.load_state_dict(state, strict=True)
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
    """Restore what :func:`save_training_state` wrote; ``None`` when there is nothing to resume.

    A damaged state (a truncated file from a full disk, a file edited by hand, a config changed since) is a
    DataValidationError naming the file and offering ``--restart``: resuming from half a state would
    silently train something else."""
    directory = Path(directory)
    state_path, tensor_path = directory / "last_state.json", directory / "last.safetensors"
    if not (state_path.is_file() and tensor_path.is_file()):
        return None
    damaged = "; resume is impossible: start this fold over with --restart"
    try:
        state = json.loads(state_path.read_text())
        if not isinstance(state, dict) or not isinstance(state.get("optimizers"), dict):
            raise ValueError("not a training state")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataValidationError(state_path, f"the saved training state is damaged ({exc}){damaged}") from exc
    try:
        tensors = load_file(str(tensor_path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise DataValidationError(tensor_path, f"the saved training tensors are damaged ({' '.join(str(exc).split())})"
                                               f"{damaged}") from exc
    try:
        target = getattr(model, "_orig_mod", model)
        target.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        for name, m in (extra_models or {}).items():
            prefix = f"{name}/"
            getattr(m, "_orig_mod", m).load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                                        if k.startswith(prefix)})
        for name, opt in optimizers.items():
            meta = state["optimizers"][name]
            sd_state = {}
            for pid, pstate in meta["state"].items():
                sd_state[int(pid)] = {key: (tensors[f"optim/{name}/{pid}/{key}"] if value == "__tensor__" else value)
                                      for key, value in pstate.items()}
            groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
            opt.load_state_dict({"state": sd_state, "param_groups": groups})
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataValidationError(tensor_path, "the saved training state does not fit this run's model and optimizer "
                                               f"(was the config changed?): {' '.join(str(exc).split())[:300]}"
                                               f"{damaged}") from exc
    return state


def finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
