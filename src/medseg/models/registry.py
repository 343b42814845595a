"""Name → constructor registry for networks, and the one gate through which a model is built.

``build_model("unet", depth=4, ...)`` builds a registered model. A dotted path
``"my_package.my_module:MyNet"`` builds a user's own architecture without editing medseg — but importing
a module runs its code, so it needs ``trust_code=True``: training from one's own config passes it; loading
a model folder (``medseg predict``, ``evaluate``, ``serve``) does not unless the user says ``--trust-code``.
A model folder is data: loading one may only build registered architectures with validated settings.

Settings read from a file are validated before any constructor runs (:func:`check_model_spec`): plain JSON
values only (numbers, strings, booleans, null and short lists of them), integers within a sane range, and
the constructor's own signature decides which names it takes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from medseg.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# Bounds on settings read from a model folder: widths, depths and kernel sizes of real networks sit far
# below them, while a hostile model.json asking for a 10⁹-channel layer is refused before it is built.
MAX_INT_SETTING = 2**16
MAX_LIST_SETTING = 64


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


def is_code_reference(name: str) -> bool:
    """True for ``package.module:Class``: a name that would import and run code outside medseg."""
    return ":" in str(name)


def _check_value(key: str, value: Any, depth: int = 0) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_INT_SETTING:
            raise ConfigError(f"model setting {key!r} = {value} is outside ±{MAX_INT_SETTING}")
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"model setting {key!r} is not a finite number ({value})")
        return
    if isinstance(value, (list, tuple)) and depth < 2:
        if len(value) > MAX_LIST_SETTING:
            raise ConfigError(f"model setting {key!r} is a list of {len(value)} values (at most {MAX_LIST_SETTING})")
        for v in value:
            _check_value(key, v, depth + 1)
        return
    raise ConfigError(
        f"model setting {key!r} has a value of type {type(value).__name__}; numbers, strings, "
        "booleans and short lists of them are allowed"
    )


def check_model_spec(name: Any, kwargs: Any, *, trust_code: bool = False) -> None:
    """Validate a model's name and settings as read from a file, without building anything.

    Raises :class:`ConfigError` for a code reference without ``trust_code``, an unknown name, or settings
    that are not plain bounded values.
    """
    _ensure_builtin()
    if not isinstance(name, str) or not name:
        raise ConfigError(f"the model name must be a non-empty string, got {name!r}")
    if is_code_reference(name):
        if not trust_code:
            raise ConfigError(
                f"the model is {name!r}, code outside medseg: building it would import and run that module. "
                "Load it only if you trust where it came from, with --trust-code"
            )
    elif name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    if not isinstance(kwargs, dict):
        raise ConfigError(f"the model settings must be a mapping, got {type(kwargs).__name__}")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"model setting name {key!r} is not a valid name")
        _check_value(key, value)


def build_model(name: str, /, *, trust_code: bool = False, **kwargs: Any) -> nn.Module:
    """Build ``name`` with ``kwargs`` after :func:`check_model_spec`; a constructor's TypeError (an unknown
    or missing setting) becomes a ConfigError."""
    check_model_spec(name, kwargs, trust_code=trust_code)
    if is_code_reference(name):
        module_name, _, attr = name.partition(":")
        try:
            ctor = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import model {name!r}: {exc}") from exc
    else:
        ctor = _MODELS[name]
    try:
        return ctor(**kwargs)
    except Exception as exc:  # noqa: BLE001
        # A constructor refusing its settings (TypeError for an unknown name), or settings that fit the
        # signature but not each other or the layers (a negative width, a depth whose channel count
        # overflows, spatial_dims 5): whatever the constructor raises, the settings are at fault.
        raise ConfigError(f"model {name!r} does not take these settings: {' '.join(str(exc).split())}") from exc
