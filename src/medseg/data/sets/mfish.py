"""The M-FISH set as published (one sub-folder per slide of ``<id>D.tif`` DAPI + ``<id>K.tif`` karyotype pairs;
:mod:`medseg.data.mfish_metaphase`): whole metaphases as background / chromosome / overlap, split by slide."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import DataSet, Description, InfoRequest, Rows, register_data_set


def describe_mfish(path: Path) -> tuple[str, Rows]:
    """(title, rows) of the M-FISH source set: slides, metaphases (labelled, EX unlabelled), shapes, label values."""
    from medseg.data.mfish import near_duplicates_text, survey

    s = survey(path)
    files = s["label_files"]
    title = f"{path} (M-FISH set: DAPI + karyotype label map pairs)"
    return title, [
        (
            "slides",
            f"{s['n_slides']} slides in {s['n_folders']} folders (<slide>__<karyotype>: a slide's "
            "metaphases may lie in several folders; split by slide, never by image)",
        ),
        (
            "metaphases",
            f"{s['n_labelled']} labelled (<id>D.tif + <id>K.tif); {s['n_unlabelled']} EX "
            "(extreme) without a label map, skipped",
        ),
        ("image sizes", ", ".join(f"{k}: {v}" for k, v in s["shapes"].items())),
        (
            "label values",
            "0 background, 1-22 autosomes, 23 X, 24 Y, 255 overlap; pixels (files): "
            + ", ".join(f"{v}: {px:,} ({files[v]})" for v, px in s["label_pixels"].items()),
        ),
        ("overlap regions", f"{s['overlap_regions']:,} (8-connected regions of 255, any size)"),
        (
            "published twice",
            near_duplicates_text(s["near_duplicates"]) or "none (no two DAPI images alike)",
        ),
        ("licence", s["licence"] or "README.TXT not found: the licence requires its notice with every copy"),
        (
            "use",
            "medseg data mfish SRC OUT (3-class folder), medseg data mfish-pairs SRC -o pairs.h5 "
            "(Pommier-layout overlapping pairs)",
        ),
    ]


class MFishMetaphases(DataSet):
    """``data.format: mfish``, or ``auto`` on a folder in the published layout."""

    name = format = "mfish"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        from medseg.data.mfish_metaphase import is_mfish_config

        return is_mfish_config(cfg["data"])

    def load(self, cfg: dict, progress: bool = True):
        from medseg.data.mfish_metaphase import load_mfish_metaphases

        return load_mfish_metaphases(cfg, progress)

    def describe(self, path: Path, request: InfoRequest) -> Description:
        title, rows = describe_mfish(path)
        return Description(title, rows)


register_data_set(MFishMetaphases())
