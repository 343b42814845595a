"""Data sets as plug-ins behind one registry, as networks are (:mod:`medseg.models.registry`).

Each kind of data set medseg reads — a Pommier HDF5 file, an images/ + masks/ folder, a folder of CT volumes,
the M-FISH set, a UW-Madison GI folder, and the sets medseg makes itself (``synth:demo``, ``synth:pommier``,
``synth:gi``, ``synth:phantom``, ``mfish:*``) — is one :class:`DataSet` in its own module under
:mod:`medseg.data.sets`, which registers them in the order their claims are asked. Every question about a
``data.path`` asks the registry, and the first data set that claims it answers:

- :func:`load_any_data` — which data set a whole config reads (:meth:`DataSet.claims`, :meth:`DataSet.load`);
- :func:`medseg.data.datasets.resolve_data_path` — where a set named by its ``data.path`` lies, made on first
  use (:meth:`DataSet.names`, :meth:`DataSet.resolve`);
- ``medseg data info PATH`` — what a path holds (:func:`info_config`, :meth:`DataSet.describe`).

So adding a data set is one module with its plug-in, imported in its place in :mod:`medseg.data.sets`. A data set
also names the task its data always are (:attr:`DataSet.task`: the UW-Madison slices, the CT volumes), whose
scores and report sections the evaluation's task plug-ins add (:mod:`medseg.evaluation.tasks`); sets whose task
the config's ``task.class_names`` decide (a Pommier file may hold chromosome pairs or karyotype cut-outs) name
none.

The built-in plug-ins are registered by importing :mod:`medseg.data` (its ``__init__`` imports
:mod:`medseg.data.sets`), not from here: they use the readers, and the readers ask this registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import DataValidationError

Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class InfoRequest:
    """What ``medseg data info`` was asked besides the path: how to read stray labels (HDF5), and the classes
    (names, number, stored mask values), each None when not given."""

    stray_labels: str = "nearest"
    names: list[str] | None = None
    n_classes: int | None = None
    mask_values: list[int] | None = None


@dataclass
class Description:
    """What ``medseg data info`` prints about a data set: a table of (field, value) ``rows`` under ``title``,
    or plain ``lines`` where a data set says it in sentences."""

    title: str
    rows: Rows = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class DataSet:
    """One kind of data set. A plug-in overrides :meth:`claims` and :meth:`load`, and what else it offers:
    :meth:`names` + :meth:`resolve` for a set named by its ``data.path`` (``synth:demo``), :meth:`describe`
    for ``medseg data info``."""

    #: how messages and tests call it
    name: str = ""
    #: the ``data.path`` that names this set itself (``synth:demo``), None for sets read from a path
    spec: str | None = None
    #: the ``data.format`` that asks for it explicitly, None where only ``auto`` (or its ``spec``) reaches it
    format: str | None = None
    #: the task its data always are (an evaluation task plug-in's name); None: ``task.class_names`` decide
    task: str | None = None

    def claims(self, spec: str, cfg: Mapping) -> bool:
        """Whether this data set reads ``spec`` (the ``data.path``) under the whole config ``cfg`` (its
        ``data`` and ``task`` sections)."""
        raise NotImplementedError

    def load(self, cfg: dict, progress: bool = True):
        """The :class:`~medseg.data.datasets.SegmentationData` of a config this data set claims."""
        raise NotImplementedError

    def names(self, spec: str) -> bool:
        """Whether ``spec`` names this set itself, so that :meth:`resolve` says where it lies."""
        return self.spec is not None and spec == self.spec

    def resolve(self, data_cfg: Mapping) -> tuple[Path, bool]:
        """The file or folder of the set :meth:`names` names (made if missing), and whether it is synthesized."""
        raise DataValidationError(None, f"{self.name} data are read from their path, not made from a name")

    def describe(self, path: Path, request: InfoRequest) -> Description:
        """What ``medseg data info`` says about ``path``."""
        raise DataValidationError(path, f"medseg data info does not describe {self.name} data")


_DATA_SETS: list[DataSet] = []


def register_data_set(data_set: DataSet, *, before: str | None = None) -> DataSet:
    """Add ``data_set`` to the registry: asked after every data set registered so far (first claim wins), or
    just before the one called ``before``. Returns it."""
    if not data_set.name or any(d.name == data_set.name for d in _DATA_SETS):
        raise ValueError(f"data set name {data_set.name!r} is empty or registered twice")
    names = [d.name for d in _DATA_SETS]
    if before is not None and before not in names:
        raise ValueError(f"no data set {before!r} to register {data_set.name!r} before; registered: {names}")
    _DATA_SETS.insert(names.index(before) if before is not None else len(names), data_set)
    return data_set


def data_sets() -> list[DataSet]:
    """Every registered data set, in the order their claims are asked."""
    return list(_DATA_SETS)


def data_set_for(cfg: Mapping) -> DataSet:
    """The first data set that claims the config's ``data.path``; a :class:`DataValidationError` naming the path
    when none does (a ``data.format`` no data set answers to)."""
    data = cfg["data"]
    spec = str(data["path"])
    for data_set in data_sets():
        if data_set.claims(spec, cfg):
            return data_set
    formats = ", ".join(d.format for d in data_sets() if d.format)
    raise DataValidationError(
        spec,
        f"no data set medseg knows reads this as data.format "
        f"{data.get('format', 'auto')!r}; data.format is auto (recognised from the "
        f"path) or one of {formats}",
    )


def data_set_named(spec: str) -> DataSet | None:
    """The data set that ``spec`` names itself (``synth:demo``, ``mfish:pairs``), None for a plain path."""
    return next((d for d in data_sets() if d.names(spec)), None)


def synthesizer_names() -> str:
    """The ``synth:`` names :func:`data_set_named` knows, as "synth:a, synth:b or synth:c" (for messages)."""
    names = [d.spec for d in data_sets() if d.spec and d.spec.startswith("synth:") and d.names(d.spec)]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def load_any_data(cfg: dict, progress: bool = True):
    """The dataset a whole config asks for, read by the first data set that claims it (volumes for
    ``task.spatial_dims: 3``; then the sets named by their path, the M-FISH and UW-Madison folders, a Pommier
    file and an image folder)."""
    return data_set_for(cfg).load(cfg, progress)


def info_config(path: str | Path) -> dict:
    """The config ``medseg data info`` asks the registry with: the defaults, reading ``path``."""
    from medseg.config import DEFAULTS

    return {**DEFAULTS, "data": {**DEFAULTS["data"], "path": str(path)}}


__all__ = [
    "DataSet",
    "Description",
    "InfoRequest",
    "Rows",
    "data_set_for",
    "data_set_named",
    "data_sets",
    "info_config",
    "load_any_data",
    "register_data_set",
    "synthesizer_names",
]
