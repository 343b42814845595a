"""What every file writer of medseg shares: the mode a new file gets, a temporary name beside the
destination (write there, then ``os.replace``: an interrupted write never leaves a half-written file), and
the uint8 check of label maps.

Used by the volume writers (:mod:`medseg.formats.dicom`, :mod:`medseg.formats.nifti`,
:mod:`medseg.formats.hdf5`) and by the Pommier and synthetic-data writers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError

__all__ = ["atomic_file", "default_file_mode", "label_uint8", "temp_sibling"]


def default_file_mode() -> int:
    """The mode an ordinary new file gets (0666 & ~umask); mkstemp-like temporaries start at 0600."""
    umask = None
    try:  # Linux: read it without touching it (os.umask would briefly change it for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except OSError:
        pass
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh name beside ``path`` (same file system, so os.replace is atomic), ending with ``suffix``."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


@contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Write to the yielded temporary sibling of ``path``; on success it gets the ordinary file mode and
    replaces ``path`` at once, on any error (or interrupt) it is removed and ``path`` is left as it was."""
    tmp = temp_sibling(Path(path), suffix)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_files(temps: dict[Path, Path]) -> Iterator[dict[Path, Path]]:
    """Several files that belong together (a data set, its JSON, its split, its licence notice): write each to
    its temporary path ``temps[final]``; on success every one replaces its final path, on any error (or interrupt)
    every temporary file is removed and the finals are left as they were."""
    try:
        yield temps
        for final, tmp in temps.items():
            os.replace(tmp, final)
    except BaseException:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)
        raise


def label_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """A label map as uint8; values that are not integers 0..255 are a DataValidationError naming ``path``."""
    a = np.asarray(array)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.size and (not np.all(np.mod(a, 1) == 0) or a.min() < 0 or a.max() > 255):
        raise DataValidationError(
            path, f"a label map must hold integers 0..255; got values {a.min()}..{a.max()} ({a.dtype})"
        )
    return a.astype(np.uint8)
