"""UW-Madison GI-tract folders (``train.csv`` beside ``train/``; :mod:`medseg.data.uwgi_dataset`): the slices of
each scan as multi-label organ masks, scored by the competition's rule (the ``gi`` task)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import Description, InfoRequest, register_data_set
from medseg.data.sets.readers import UWGILayout, describe_uwgi


class UWMadison(UWGILayout):
    """``data.format: uwgi``, or ``auto`` on a folder in the competition layout."""

    name = format = "uwgi"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        from medseg.data.uwgi_dataset import is_uwgi_folder

        fmt = cfg["data"].get("format", "auto")
        # synth:gi is a UW-Madison folder too, but its own data set's, which makes it
        return fmt == self.format or (
            fmt == "auto" and not spec.startswith("synth:") and is_uwgi_folder(Path(spec).expanduser())
        )

    def describe(self, path: Path, request: InfoRequest) -> Description:
        return Description(str(path), lines=describe_uwgi(path))


register_data_set(UWMadison())
