"""``mfish:pairs``, ``mfish:synth``, ``mfish:both``, ``mfish:karyotype``: the M-FISH transfer experiment's sets,
made from the real folder on first use (:mod:`medseg.data.mfish_sets`) and read as Pommier-layout files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import register_data_set
from medseg.data.sets.readers import PommierLayout

PREFIX = "mfish:"


class MFishSets(PommierLayout):
    """The sets named ``mfish:<kind>`` (:data:`medseg.data.mfish_sets.KINDS`)."""

    name = spec = PREFIX + "*"

    def names(self, spec: str) -> bool:
        return spec.startswith(PREFIX)

    def claims(self, spec: str, cfg: Mapping) -> bool:
        return self.names(spec) and cfg["data"].get("format", "auto") in ("auto", "pommier")

    def resolve(self, data_cfg: Mapping) -> tuple[Path, bool]:
        from medseg.data.datasets import is_synthesized
        from medseg.data.mfish_sets import mfish_set_path

        path = mfish_set_path(str(data_cfg["path"]).split(":", 1)[1], data_cfg)
        return path, is_synthesized(path)


register_data_set(MFishSets())
