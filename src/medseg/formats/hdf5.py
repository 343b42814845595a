"""HDF5 volumes (:func:`read_hdf5_volume`, :func:`write_hdf5_volume`) and the guarded HDF5 access every
HDF5 reader of medseg uses (:func:`hdf5_errors`, :func:`open_hdf5`; the Pommier reader too).

A volume file holds the datasets ``image`` (and optionally ``label``), gzip, one chunk per slice; each
dataset carries the attributes ``spacing`` (z, y, x), ``origin`` (x, y, z), ``direction`` (3×3),
``modality``, ``axes`` = "zyx". Every access runs under :func:`hdf5_errors`: a corrupt file is a
DataValidationError naming it, whatever h5py raises. The voxel budget and the data type are checked on a
dataset's metadata before its data are read; files are written under a temporary name and renamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.atomic import atomic_file, label_uint8
from medseg.formats.limits import check_voxels, exception_text
from medseg.formats.volume import Volume, check_dtype, validate_volume

__all__ = [
    "HDF5_SUFFIXES",
    "hdf5_errors",
    "hdf5_shape",
    "open_hdf5",
    "read_hdf5_volume",
    "write_hdf5_volume",
]

HDF5_SUFFIXES = (".h5", ".hdf5")

# What h5py raises on a corrupt file, depending on where the damage is: OSError ("bad local heap signature",
# "bad object header version number", "file signature not found"), KeyError (a link to a missing object),
# RuntimeError, ValueError, TypeError (an attribute or dtype it cannot map).
_HDF5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError, OverflowError, EOFError)


@contextmanager
def hdf5_errors(path: Path, what: str = "") -> Iterator[None]:
    """Turn any error h5py raises inside the block into a DataValidationError naming ``path`` (our own
    DataValidationErrors pass unchanged). Every HDF5 access of medseg's readers runs inside one: metadata
    are read lazily, so a corrupt file can fail on opening, on ``in``, on visiting, on an attribute or on
    the data."""
    try:
        yield
    except DataValidationError:
        raise
    except _HDF5_ERRORS as exc:
        where = f"{what} " if what else ""
        raise DataValidationError(
            path, f"{where}cannot be read: not a readable HDF5 file, or a corrupt one ({exception_text(exc)})"
        ) from exc


@contextmanager
def open_hdf5(path: Path) -> Iterator[h5py.File]:
    """An HDF5 file open for reading, all of whose use in the ``with`` block is guarded by
    :func:`hdf5_errors`; a missing file is a DataValidationError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(path, "file not found")
    with hdf5_errors(path), h5py.File(path, "r") as f:
        yield f


# ------------------------------------------------------------------------------------------------ volumes


def _json_safe(meta: dict) -> dict:
    """The part of ``meta`` that JSON can hold (values it cannot hold are written as strings)."""
    return json.loads(json.dumps(meta, default=str))


_INLINE_TEXT_BYTES = 32 * 1024  # below the 64 KiB an attribute may take in an object header


def _text_attr(text: str):
    """A string attribute stored fixed-length, inside the object header: a variable-length string lives in
    the file's global heap, and libhdf5 (seen with 2.0) can loop forever reading a damaged global heap.
    Only a text too long for the header (never the case for medseg's own) stays variable-length."""
    data = text.encode("utf-8")
    return np.bytes_(data) if len(data) <= _INLINE_TEXT_BYTES else text


def _geometry_attrs(volume: Volume) -> dict:
    meta = json.dumps(
        _json_safe(
            {
                k: v
                for k, v in volume.meta.items()  # per-file lists may outgrow an attribute
                if k not in ("sop_instance_uids", "files", "skipped_names")
            }
        )
    )
    return {
        "spacing": np.asarray(volume.spacing, float),
        "origin": np.asarray(volume.origin, float),
        "direction": np.asarray(volume.direction, float),
        "axes": _text_attr("zyx"),
        "modality": _text_attr(volume.modality or ""),
        "meta": _text_attr(meta),
    }


def write_hdf5_volume(
    volume: Volume,
    path: str | Path,
    key: str = "image",
    label: Volume | np.ndarray | None = None,
    *,
    compression_level: int = 4,
) -> Path:
    """Write ``volume`` (dataset ``key``) and optionally ``label`` (dataset ``label``, uint8) to HDF5, gzip,
    one chunk per slice, geometry as dataset attributes; atomically."""
    path = Path(path)
    arrays = {key: (np.asarray(volume.array), volume)}
    if label is not None:
        lab = label.array if isinstance(label, Volume) else label
        lab = label_uint8(lab, path)
        if lab.shape != volume.shape:
            raise DataValidationError(path, f"label shape {lab.shape} differs from the image's {volume.shape}")
        arrays["label"] = (lab, volume)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["medseg_format"] = _text_attr("volume")
        f.attrs["version"] = 1
        for name, (arr, geo) in arrays.items():
            if arr.dtype == bool:
                arr = arr.astype(np.uint8)
            chunks = (1, *arr.shape[1:]) if arr.size else None
            d = f.create_dataset(
                name,
                data=arr,
                chunks=chunks,
                compression="gzip" if arr.size else None,
                compression_opts=compression_level if arr.size else None,
                shuffle=bool(arr.size),
            )
            for k, v in _geometry_attrs(geo).items():
                d.attrs[k] = v
    return path


def _hdf5_dataset(f, path: Path, key: str | None):
    """Dataset ``key`` of the open file ``f`` (None: "image", or "label" in a file that holds only a label)."""
    if key is None:
        key = "label" if "image" not in f and "label" in f else "image"
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DataValidationError(path, f"no dataset {key!r}; datasets here: {sorted(_h5_datasets(f))}")
    return f[key]


def hdf5_shape(path: str | Path, key: str | None = None) -> tuple[int, ...]:
    """The shape of dataset ``key`` (default as :func:`read_hdf5_volume`) from the file's metadata, nothing
    of the data read."""
    path = Path(path)
    with open_hdf5(path) as f:
        return tuple(int(n) for n in _hdf5_dataset(f, path, key).shape)


def _attr_array(path: Path, key: str, name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, float)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(
            path, f"attribute {name!r} of {key!r} is {' '.join(str(value).split())[:80]!r}, not numbers"
        ) from exc
    if array.shape != shape:
        raise DataValidationError(path, f"attribute {name!r} of {key!r} has shape {array.shape}, expected {shape}")
    return array


def _attr_text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_hdf5_volume(path: str | Path, key: str | None = "image", *, max_voxels: int | None = None) -> Volume:
    """Dataset ``key`` of an HDF5 file with its geometry attributes (on the dataset, else on the file).

    ``key=None``: "image", or "label" in a file that holds only a label. The voxel budget (``max_voxels``)
    and the data type are checked on the dataset's metadata before the data are read.
    """
    path = Path(path)
    with open_hdf5(path) as f:
        d = _hdf5_dataset(f, path, key)
        key = key if key is not None else d.name.lstrip("/")
        if d.ndim != 3:
            raise DataValidationError(path, f"dataset {key!r} has shape {d.shape}; a volume is (D, H, W)")
        check_voxels(path, d.shape, f"dataset {key!r}", max_voxels)
        check_dtype(path, d.dtype, f"dataset {key!r}")

        def attr(name, shape, default=None):
            value = d.attrs.get(name, f.attrs.get(name))
            if value is None:
                if default is None:
                    raise DataValidationError(
                        path,
                        f"dataset {key!r} has no {name!r} attribute (write the file "
                        "with write_hdf5_volume, or add spacing/origin/direction)",
                    )
                return default
            return _attr_array(path, key, name, value, shape)

        spacing = attr("spacing", (3,))
        origin = attr("origin", (3,), np.zeros(3))
        direction = attr("direction", (3, 3), np.eye(3))
        array = d[()]
        modality = _attr_text(d.attrs.get("modality", "")) or None
        try:
            meta = json.loads(_attr_text(d.attrs.get("meta", "{}")))
        except (ValueError, RecursionError):
            meta = {}
    meta = meta if isinstance(meta, dict) else {}
    meta.update({"format": "hdf5", "source": str(path), "key": key})
    return validate_volume(
        Volume(array, tuple(spacing), tuple(origin), direction, modality, meta), path, f"dataset {key!r}"
    )


def _h5_datasets(f) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names
