"""Name → constructor registry for networks.

``build_model("unet", depth=4, ...)`` builds a registered model; a dotted path
``"my_package.my_module:MyNet"`` builds a user's own architecture without editing medseg.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from medseg.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def deco(fn):
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"model name {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def _ensure_builtin() -> None:
    # Importing the package registers the built-in architectures.
    importlib.import_module("medseg.models")


def available_models() -> list[str]:
    _ensure_builtin()
    return sorted(_MODELS)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    _ensure_builtin()
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            ctor = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import model {name!r}: {exc}") from exc
    elif name in _MODELS:
        ctor = _MODELS[name]
    else:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    try:
        return ctor(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r} does not take these settings: {exc}") from exc
