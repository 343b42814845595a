"""Folders of CT volumes with their labels (the CTV thesis' data; :mod:`medseg.data.volume_folders`): what a config
with ``task.spatial_dims: 3`` reads, whatever its path."""

from __future__ import annotations

from collections.abc import Mapping

from medseg.data.registry import DataSet, register_data_set
from medseg.data.sets.readers import is_volume_config


class VolumeFolders(DataSet):
    """A phantom folder (``manifest.json``), images/ + labels/ volumes, or ``<case>_image`` + ``<case>_label``
    pairs and ``.h5`` volumes: preprocessed to one grid, split by patient."""

    name = "volumes"
    task = "ctv"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        return is_volume_config(cfg)

    def load(self, cfg: dict, progress: bool = True):
        from medseg.data.volume_folders import load_volume_data

        return load_volume_data(cfg, progress)


register_data_set(VolumeFolders())
