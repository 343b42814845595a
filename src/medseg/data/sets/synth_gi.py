"""``synth:gi``: an abdomen-like MRI set in the UW-Madison GI layout (SYNTHESIZED, not real anatomy;
:mod:`medseg.data.synth_gi`), written once under ``$MEDSEG_HOME/synth`` and read as a UW-Madison folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import Description, InfoRequest, info_config, register_data_set
from medseg.data.sets.readers import UWGILayout, describe_uwgi
from medseg.paths import medseg_home


def synth_gi_path(n_cases: int, seed: int) -> Path:
    """The ``synth:gi`` folder (UW-Madison layout, SYNTHESIZED), written once under $MEDSEG_HOME/synth: into a
    temporary sibling first and renamed, so an interrupted run never leaves half a set behind."""
    import shutil
    import tempfile

    from medseg.data.synth_gi import write_synth_gi

    path = medseg_home() / "synth" / f"gi_cases{n_cases}_seed{seed}"
    if (path / "manifest.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_synth_gi(tmp / "set", n_cases=n_cases, seed=seed)
        if path.exists():  # a folder without its manifest: an older interrupted run
            shutil.rmtree(path)
        (tmp / "set").replace(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


class SynthGI(UWGILayout):
    """``data.synth_gi_cases`` cases made with ``data.synth_seed``."""

    name = spec = "synth:gi"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        return spec == self.spec and cfg["data"].get("format", "auto") in ("auto", "uwgi")

    def resolve(self, data_cfg: Mapping) -> tuple[Path, bool]:
        return synth_gi_path(int(data_cfg.get("synth_gi_cases", 6)), int(data_cfg["synth_seed"])), True

    def describe(self, path: Path, request: InfoRequest) -> Description:
        folder, _ = self.resolve(info_config(path)["data"])
        return Description(str(folder), lines=describe_uwgi(folder))


register_data_set(SynthGI())
