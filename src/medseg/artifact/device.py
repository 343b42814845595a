"""Which torch device a command runs on: the one rule shared by training, inference and the server."""

from __future__ import annotations

import torch

from medseg.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" → CUDA when there is one, else the CPU; a name this machine cannot use is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU (use auto or cpu)")
    return device


__all__ = ["resolve_device"]
