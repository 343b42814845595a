"""Experiment configuration: YAML files under ``configs/``, merged over defaults, validated, saved in each run.

A config is plain data (nnU-Net's "plans" idea): the run directory keeps the exact config that produced
it, so every number in a report traces back to a command. Its keys, types, defaults and checks are one
typed schema, :class:`medseg.config_schema.Config` (pydantic); this module reads the YAML files
(``_base_: other.yaml`` chains), merges them over the defaults, applies ``--set key=value`` overrides and
validates the result once, returning a plain dict for the rest of the code.

Unknown keys are errors, which catches typos such as ``batchsize`` silently doing nothing; the message
names the key's dotted path, the file it was found in and the nearest known key
(``unknown config key 'train.epoch' — did you mean train.epochs?``). Wrong types are refused the same way
(``config key 'train.epochs' must be an integer, got 'abc'``).

:func:`resolve_config` also records where each value came from (``default``, a file of the ``_base_`` chain,
``overrides`` or ``--set``): ``medseg config show`` prints it (:func:`format_config`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medseg.config_schema import (
    CHROMOSOME_CLASSES,
    Config,
    field_map,
    section_model,
    sub_model,
)
from medseg.errors import ConfigError

__all__ = [
    "CHROMOSOME_CLASSES",
    "DEFAULTS",
    "Config",
    "Resolved",
    "deep_merge",
    "format_config",
    "load_config",
    "parse_value",
    "resolve_config",
    "save_config",
    "section_settings",
    "set_dotted",
    "validate",
]

# The defaults as plain data, derived from the schema (the only place they are written).
DEFAULTS: dict[str, Any] = Config().model_dump(by_alias=True)

DEFAULT = "default"
SET = "--set"
OVERRIDES = "overrides"
# Mappings replaced whole by an override instead of merged key by key (name → class indices).
_REPLACED_WHOLE = {"task.derived"}


# --- merging --------------------------------------------------------------------------------------------


def _replaces(where: str, base: dict, value: dict) -> bool:
    """Whether ``value`` replaces the mapping ``base`` at ``where`` instead of being merged into it:
    ``task.derived`` always, and a model section naming another architecture (the defaults are the U-Net's)."""
    return where in _REPLACED_WHOLE or (where == "model" and value.get("name", base.get("name")) != base.get("name"))


def _leaves(data: dict, prefix: str, label: str) -> dict[str, str]:
    """``{dotted leaf path: label}`` of a (partial) config; lists and ``task.derived`` are leaves."""
    out: dict[str, str] = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and value and where not in _REPLACED_WHOLE:
            out.update(_leaves(value, where + ".", label))
        else:
            out[where] = label
    return out


def _under(path: str, key: str) -> bool:
    return key == path or key.startswith(path + ".")


def _merge_into(
    out: dict, override: dict, sources: dict[str, str], override_sources: dict[str, str], path: str = ""
) -> None:
    """Merge ``override`` into ``out`` in place (nested mappings key by key) and move the sources along."""
    for key, value in override.items():
        where = f"{path}{key}"
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and not _replaces(where, current, value):
            _merge_into(current, value, sources, override_sources, where + ".")
            continue
        out[key] = copy.deepcopy(value)
        for k in [k for k in sources if _under(where, k)]:
            del sources[k]
        sources.update({k: v for k, v in override_sources.items() if _under(where, k)})


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged over a copy of ``base`` (``task.derived`` and a model section naming another
    architecture replaced whole). Keys are not checked here: :func:`load_config` checks each layer."""
    out = copy.deepcopy(base)
    _merge_into(out, override, {}, {})
    return out


# --- unknown keys and error messages ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _known_paths() -> tuple[str, ...]:
    """Every dotted key of the schema (sections and leaves), for the did-you-mean suggestions."""
    out: list[str] = []

    def walk(cls, prefix: str) -> None:
        for key, field in field_map(cls).items():
            out.append(prefix + key)
            sub = sub_model(field)
            if sub is not None:
                walk(sub, f"{prefix}{key}.")

    walk(Config, "")
    return tuple(out)


def _unknown(where: str, siblings: Iterable[str]) -> str:
    """``unknown config key 'train.epoch' — did you mean train.epochs?`` (or the known keys of that level)."""
    siblings = [str(s) for s in siblings]
    match = difflib.get_close_matches(where, _known_paths(), n=1, cutoff=0.6)
    if not match:
        parent, _, last = where.rpartition(".")
        near = difflib.get_close_matches(last, siblings, n=1, cutoff=0.6)
        match = [f"{parent}.{near[0]}" if parent else near[0]] if near else []
    if match:
        return f"unknown config key '{where}' — did you mean {match[0]}?"
    return f"unknown config key '{where}' (known: {', '.join(sorted(siblings))})"


def _where(label: str | None) -> str:
    """The prefix naming a layer's file in a message (none for the defaults, ``overrides`` or ``--set``)."""
    return "" if label in (None, DEFAULT, SET, OVERRIDES) else f"{label}: "


def _check_keys(data: dict, label: str | None, cls=Config, prefix: str = "") -> None:
    """Refuse keys the schema does not know, in one layer (a YAML file, the overrides), naming the file."""
    fields = field_map(cls)
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(_where(label) + _unknown(where, fields))
        sub = sub_model(fields[key])
        if sub is not None and isinstance(value, dict):
            _check_keys(value, label, sub, where + ".")


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean (true/false)",
    "bool_parsing": "a boolean (true/false)",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "finite_number": "a finite number",
}


def _dotted(loc: Iterable) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _source_of(path: str, sources: dict[str, str] | None) -> str | None:
    """The source of a key: its own, that of the mapping or list it lies in, or (a section checked as a
    whole) the one source its keys share."""
    if not sources:
        return None
    path = key = path.split("[", 1)[0]
    while key:
        if key in sources:
            return sources[key]
        key = key.rpartition(".")[0]
    below = {src for k, src in sources.items() if not path or k.startswith(path + ".")}
    return below.pop() if len(below) == 1 else None


def _siblings(loc: tuple) -> list[str]:
    cls = Config
    for part in loc:
        field = field_map(cls).get(part)
        sub = None if field is None else sub_model(field)
        if sub is None:
            return []
        cls = sub
    return list(field_map(cls))


def _message(err: dict, prefix: tuple, sources: dict[str, str] | None) -> str:
    loc = (*prefix, *err["loc"])
    path = _dotted(loc)
    kind, value = err["type"], err.get("input")
    if kind in ("value_error", "assertion_error"):
        msg = str(err["ctx"]["error"])
    elif kind == "extra_forbidden":
        msg = _unknown(path, _siblings(loc[:-1]))
    elif kind == "literal_error":
        msg = f"config key '{path}' must be {err['ctx']['expected']}, got {'null' if value is None else repr(value)}"
    elif kind in _EXPECTED and value is None:
        msg = f"config key '{path}' must be set ({_EXPECTED[kind]}), got null"
    elif kind in _EXPECTED:
        msg = f"config key '{path}' must be {_EXPECTED[kind]}, got {value!r}"
    elif kind == "missing":
        msg = f"config key '{path}' is missing"
    else:
        msg = f"config key '{path}': {err['msg']}"
    return _where(_source_of(path, sources)) + " ".join(msg.split())


def _config_error(exc: ValidationError, prefix: tuple = (), sources: dict[str, str] | None = None) -> ConfigError:
    errors = exc.errors()
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return ConfigError(_message(errors[0], prefix, sources) + more)


# --- validation -----------------------------------------------------------------------------------------


def validate(cfg: dict, sources: dict[str, str] | None = None) -> dict:
    """``cfg`` checked against the schema: a new plain dict with every default filled in, or a
    :class:`ConfigError` naming the key (and the file it came from, when ``sources`` says)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"a config must be a mapping, got {type(cfg).__name__}")
    try:
        return copy.deepcopy(Config.model_validate(cfg).model_dump(by_alias=True))
    except ValidationError as exc:
        raise _config_error(exc, sources=sources) from None


def section_settings(dotted: str, section: dict | None) -> dict:
    """One section (``"preprocess"``, ``"augment.volume"``...) checked by its schema model, defaults filled in:
    for code that is handed a section alone (a saved model.json's preprocessing, tests)."""
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"config key '{dotted}' must be a mapping, got {section!r}")
    try:
        return section_model(dotted).model_validate(section or {}).model_dump(by_alias=True)
    except ValidationError as exc:
        raise _config_error(exc, prefix=tuple(dotted.split("."))) from None


# --- loading --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Resolved:
    """A validated config, where each value came from, and the layers in order (files of the chain first)."""

    cfg: dict
    sources: dict[str, str]
    layers: list[str]

    def source(self, dotted: str) -> str:
        return _source_of(dotted, self.sources) or DEFAULT


def resolve_config(
    path: str | Path | None = None, overrides: dict | None = None, sets: Iterable[tuple[str, Any]] = ()
) -> Resolved:
    """Defaults ← YAML file (``_base_`` chain, root first) ← ``overrides`` ← ``sets`` (``--set`` key, value)."""
    cfg, sources, layers = copy.deepcopy(DEFAULTS), {}, [DEFAULT]
    if path is not None:
        data, file_sources = _read_yaml_chain(Path(path), layers=layers)
        _merge_into(cfg, data, sources, file_sources)
    if overrides:
        if not isinstance(overrides, dict):
            raise ConfigError(f"config overrides must be a mapping, got {overrides!r}")
        _check_keys(overrides, OVERRIDES)
        _merge_into(cfg, overrides, sources, _leaves(overrides, "", OVERRIDES))
        layers.append(OVERRIDES)
    for key, value in sets:
        set_dotted(cfg, key, value)
        node = cfg
        for k in key.split("."):
            node = node[k]
        for k in [k for k in sources if _under(key, k)]:
            del sources[k]
        sources.update(
            _leaves(node, key + ".", SET)
            if isinstance(node, dict) and node and key not in _REPLACED_WHOLE
            else {key: SET}
        )
        if layers[-1] != SET:
            layers.append(SET)
    return Resolved(validate(cfg, sources), sources, layers)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults ← YAML file (``_base_: other.yaml`` chains allowed) ← overrides, validated: a plain dict."""
    return resolve_config(path, overrides).cfg


def _label(path: Path) -> str:
    return os.path.normpath(str(path))


def _read_yaml_chain(path: Path, seen: tuple = (), layers: list[str] | None = None) -> tuple[dict, dict[str, str]]:
    """The merged data of a file and its ``_base_`` chain, and the file each key came from."""
    if path.is_dir():
        saved = [p for p in [path / "config.yaml", *sorted(path.glob("fold_*/config.yaml"))] if p.is_file()]
        hint = f"; this looks like a run folder, whose config is {saved[0]}" if saved else ""
        raise ConfigError(
            f"{path}: is a folder, not a config file (give a YAML such as configs/chromosomes/unet.yaml{hint})"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: _base_ chain loops")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping")
    label = _label(path)
    base = data.pop("_base_", None)
    _check_keys(data, label)
    own = _leaves(data, "", label)
    if base:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: _base_ must be the path of another YAML file, got {base!r}")
        parent, sources = _read_yaml_chain(path.parent / base, seen + (path.resolve(),), layers)
        _merge_into(parent, data, sources, own)
        data, own = parent, sources
    if layers is not None:
        layers.append(label)
    return data, own


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    """Apply ``--set train.epochs=3`` style overrides (value parsed as YAML). Only known keys can be set
    (any key under the free-form ``model``); :func:`validate` checks the value's type afterwards."""
    keys = dotted.split(".")
    node = cfg
    for i, k in enumerate(keys[:-1]):
        if k not in node:
            raise ConfigError(_unknown(dotted, node))
        if not isinstance(node[k], dict):
            raise ConfigError(f"unknown config key '{dotted}' ({'.'.join(keys[: i + 1])} is a value, not a mapping)")
        node = node[k]
    if keys[-1] not in node and keys[0] != "model":
        raise ConfigError(_unknown(dotted, node))
    if isinstance(value, str):
        try:
            value = parse_value(value)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--set {dotted}: the value {value!r} is not valid YAML ({' '.join(str(exc).split())})"
            ) from exc
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


# --- showing --------------------------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """A value as one line of YAML (lists and mappings in flow style)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**9, allow_unicode=True, sort_keys=False)
    return text.strip()[1:-1]


def format_config(resolved: Resolved) -> str:
    """The resolved config as YAML, each value's source as an end-of-line comment (``medseg config show``)."""
    rows: list[tuple[str, str | None]] = []

    def walk(node: dict, prefix: str, indent: str) -> None:
        for key, value in node.items():
            where = f"{prefix}{key}"
            if isinstance(value, dict) and value and where not in _REPLACED_WHOLE:
                rows.append((f"{indent}{_flow(key)}:", None))
                walk(value, where + ".", indent + "  ")
            else:
                rows.append((f"{indent}{_flow(key)}: {_flow(value)}", resolved.source(where)))

    walk(resolved.cfg, "", "")
    column = min(max(len(text) for text, src in rows if src is not None), 72) + 2
    head = [
        f"# resolved config: {' <- '.join(resolved.layers)} (later layers win)",
        "# each value's source is at the end of its line",
    ]
    body = [text if src is None else f"{text}{' ' * max(2, column - len(text))}# {src}" for text, src in rows]
    return "\n".join(head + body) + "\n"
