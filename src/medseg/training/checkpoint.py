"""The resumable training state of a fold: ``last.safetensors`` (model, extra networks and optimizer tensors)
and ``last_state.json`` (epoch, scheduler, early stopping, history), each written to a temporary name and
renamed, the JSON last, so a kill at any moment leaves the previous complete state. The trained model itself
is a model folder (:mod:`medseg.artifact`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from medseg.artifact.files import atomic_save_tensors, dump_json
from medseg.artifact.model_folder import model_state
from medseg.errors import DataValidationError


def save_training_state(
    directory: Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict,
    extra_models: dict[str, nn.Module] | None = None,
) -> None:
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
    atomic_save_tensors(tensors, Path(directory) / "last.safetensors")
    dump_json({**state, "optimizers": optim_meta}, Path(directory) / "last_state.json")


def load_training_state(
    directory: Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    extra_models: dict[str, nn.Module] | None = None,
) -> dict | None:
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
        raise DataValidationError(
            tensor_path, f"the saved training tensors are damaged ({' '.join(str(exc).split())}){damaged}"
        ) from exc
    try:
        target = getattr(model, "_orig_mod", model)
        target.load_state_dict({k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")})
        for name, m in (extra_models or {}).items():
            prefix = f"{name}/"
            getattr(m, "_orig_mod", m).load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        for name, opt in optimizers.items():
            meta = state["optimizers"][name]
            sd_state = {}
            for pid, pstate in meta["state"].items():
                sd_state[int(pid)] = {
                    key: (tensors[f"optim/{name}/{pid}/{key}"] if value == "__tensor__" else value)
                    for key, value in pstate.items()
                }
            groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
            opt.load_state_dict({"state": sd_state, "param_groups": groups})
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DataValidationError(
            tensor_path,
            "the saved training state does not fit this run's model and optimizer "
            f"(was the config changed?): {' '.join(str(exc).split())[:300]}"
            f"{damaged}",
        ) from exc
    return state


__all__ = ["load_training_state", "save_training_state"]
