"""``synth:phantom``: the project's CT-like phantom (DEMO DATA, not clinical; :mod:`medseg.data.phantom`), written
once under ``$MEDSEG_HOME/synth`` with ``data.phantom`` and read as a volume folder."""

from __future__ import annotations

from collections.abc import Mapping

from medseg.data.registry import DataSet, register_data_set
from medseg.data.sets.readers import is_volume_config


class SynthPhantom(DataSet):
    """The phantom's cases, made on first use by :func:`~medseg.data.volume_folders.ensure_phantom`."""

    name = spec = "synth:phantom"
    task = "ctv"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        return spec == self.spec and is_volume_config(cfg)

    def names(self, spec: str) -> bool:
        # resolve_data_path finds 2D sets; the phantom is a set of volumes, which load_volume_data makes itself
        return False

    def load(self, cfg: dict, progress: bool = True):
        from medseg.data.volume_folders import load_volume_data

        return load_volume_data(cfg, progress)


register_data_set(SynthPhantom())
