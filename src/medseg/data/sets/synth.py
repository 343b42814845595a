"""``synth:demo`` and ``synth:pommier``: overlapping chromosome pairs synthesized by Pommier's procedure
(:mod:`medseg.data.synth`), written once under ``$MEDSEG_HOME/synth`` and read as a Pommier-layout file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import register_data_set
from medseg.data.sets.readers import PommierLayout
from medseg.paths import medseg_home


def synth_path(kind: str, n_pairs: int, seed: int) -> Path:
    if kind == "pommier":
        return medseg_home() / "synth" / f"pommier_13434_seed{seed}.h5"
    return medseg_home() / "synth" / f"demo_{n_pairs}_seed{seed}.h5"


class SynthPairs(PommierLayout):
    """``synth:demo`` (``data.synth_pairs`` pairs) or ``synth:pommier`` (the published 13,434 pairs of 94 × 93)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.name = self.spec = f"synth:{kind}"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        return spec == self.spec and cfg["data"].get("format", "auto") in ("auto", "pommier")

    def resolve(self, data_cfg: Mapping) -> tuple[Path, bool]:
        pommier = self.kind == "pommier"
        path = synth_path(self.kind, int(data_cfg["synth_pairs"]), int(data_cfg["synth_seed"]))
        if not path.exists():
            from medseg.data.synth import run_synth

            run_synth(
                path,
                pommier=pommier,
                n_pairs=None if pommier else int(data_cfg["synth_pairs"]),
                seed=int(data_cfg["synth_seed"]),
            )
        return path, True


register_data_set(SynthPairs("demo"))
register_data_set(SynthPairs("pommier"))
