"""HDF5 files in the Pommier layout (``dataset_1``: N × H × W × 2, image and label; :mod:`medseg.data.pommier`):
what ``data.format: pommier`` reads, and ``auto`` for any path that is not a folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import register_data_set
from medseg.data.sets.readers import PommierLayout


class PommierFiles(PommierLayout):
    """A Pommier-layout HDF5 file given by its path; a path that does not exist is refused by the reader, naming
    it (``data not found``)."""

    name = format = "pommier"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        fmt = cfg["data"].get("format", "auto")
        return fmt == self.format or (fmt == "auto" and not Path(spec).expanduser().is_dir())


register_data_set(PommierFiles())
