"""Whole M-FISH metaphases as 3-class data split by slide (medseg.data.mfish_metaphase), on small crops of the REAL
metaphases made inside the test (the data are never copied into the repo)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config import load_config
from medseg.data.mfish import find_metaphases, read_metaphase, semantic_labels, slide_of
from medseg.data.mfish_pairs import pairs_from_karyotype, run_mfish_pairs
from medseg.errors import ConfigError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mfish"
needs_data = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the real M-FISH set is not here ({SHARED}); these tests cut their crops from it"
)
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mfish" / "metaphase_unet.yaml"


def crop_folder(out: Path, n_slides: int = 6, pad: int = 24) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small M-FISH-layout folder: from the first metaphase of each of ``n_slides`` slides that give pairs, a crop
    around its first pair (+ ``pad`` px), written as ``<folder>/<id>D.tif`` + ``<id>K.tif``; the last crop is 8 px
    narrower (two image sizes). Returns {name: (dapi, karyotype)}."""
    written: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seen: set[str] = set()
    for m in find_metaphases(SHARED):
        if slide_of(m.folder) in seen or len(seen) == n_slides:
            continue
        dapi, karyo = read_metaphase(m)
        pairs, _ = pairs_from_karyotype(dapi, karyo)
        if not pairs:
            continue
        seen.add(slide_of(m.folder))
        top, left = pairs[0].box
        r0, c0 = max(0, top - pad), max(0, left - pad)
        w = 93 + 2 * pad - (8 if len(seen) == n_slides else 0)
        d, k = dapi[r0 : r0 + 94 + 2 * pad, c0 : c0 + w], karyo[r0 : r0 + 94 + 2 * pad, c0 : c0 + w]
        (out / m.folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(d).save(out / m.folder / f"{m.id}D.tif", compression="tiff_lzw")
        Image.fromarray(k).save(out / m.folder / f"{m.id}K.tif", compression="tiff_lzw")
        written[m.name] = (d, k)
    shutil.copyfile(SHARED / "README.TXT", out / "README.TXT")
    return written


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip(f"the real M-FISH set is not here ({SHARED})")
    root = tmp_path_factory.mktemp("mfish_crops")
    return root, crop_folder(root)


def _cfg(root: Path, tmp_path: Path, **data) -> dict:
    return load_config(
        CONFIG,
        overrides={
            "data": {"path": str(root), "format": "auto", **data},
            "output": {"root": str(tmp_path / "runs")},
            "splits": {"val_fraction": 0.25},
        },
    )  # 5 training slides here


@needs_data
def test_reader_gives_three_classes_by_slide_on_a_canvas(crops, tmp_path, monkeypatch):
    from medseg.data.registry import load_any_data

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    root, written = crops
    data = load_any_data(_cfg(root, tmp_path), progress=False)  # format auto: recognised as the M-FISH set
    assert data.names == sorted(written) and not data.synthesized
    assert data.groups == [slide_of(n.rsplit("__", 1)[0]) for n in data.names]
    assert data.boxes is not None and len({b[2:] for b in data.boxes}) == 2  # two sizes on one canvas
    for i, name in enumerate(data.names):
        image, label = data.item(i)
        dapi, karyo = written[name]
        np.testing.assert_array_equal(label, semantic_labels(karyo))
        np.testing.assert_allclose(image, dapi / 255.0, atol=1e-6)
    assert set(np.unique(data.labels)) == {0, 1, 2}


@needs_data
def test_test_slides_are_the_pairs_test_slides(crops, tmp_path, monkeypatch):
    """The whole-metaphase split holds out exactly the slides `medseg data mfish-pairs` holds out."""
    import h5py

    from medseg.data.registry import load_any_data
    from medseg.data.runs import splits_for

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    root, _ = crops
    cfg = _cfg(root, tmp_path)
    data = load_any_data(cfg, progress=False)
    split, _ = splits_for(cfg, data)
    test_slides = {data.groups[i] for i in split["test"]}

    run_mfish_pairs(root, tmp_path / "pairs.h5", preview=False, progress=False)
    pair_split = json.loads((tmp_path / "pairs.splits.json").read_text())
    with h5py.File(tmp_path / "pairs.h5") as f:
        slides = [s.decode() if isinstance(s, bytes) else s for s in f["slide"][()]]
    pair_test = {slides[int(n.rsplit("[", 1)[1][:-1])] for n in pair_split["test"]}
    assert test_slides == pair_test and len(pair_test) >= 1
    for fold in split["folds"]:  # no slide on two sides
        train = {data.groups[i] for i in fold["train"]}
        val = {data.groups[i] for i in fold["val"]}
        assert not (train & test_slides) and not (val & test_slides) and not (train & val)


@needs_data
def test_reader_refuses_other_class_counts_and_folder_options(crops, tmp_path, monkeypatch):
    from medseg.data.mfish_metaphase import load_mfish_metaphases

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    root, _ = crops
    cfg = _cfg(root, tmp_path)
    cfg["task"]["class_names"] = ["background", "a", "b", "overlap"]
    with pytest.raises(ConfigError, match="task.class_names"):
        load_mfish_metaphases(cfg)
    cfg = _cfg(root, tmp_path, mask_values=[0, 255])
    with pytest.raises(ConfigError, match="mask_values"):
        load_mfish_metaphases(cfg)


@needs_data
def test_touching_config_gives_the_contact_class_through_the_reader(crops, tmp_path, monkeypatch):
    from medseg.data.mfish_metaphase import load_mfish_metaphases, touching_labels

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    root, written = crops
    cfg = load_config(
        CONFIG.with_name("metaphase_touching_unet.yaml"),
        overrides={
            "data": {"path": str(root)},
            "output": {"root": str(tmp_path / "runs")},
            "splits": {"val_fraction": 0.25},
        },
    )
    data = load_mfish_metaphases(cfg, progress=False)
    for i, name in enumerate(data.names):
        np.testing.assert_array_equal(data.item(i)[1], touching_labels(written[name][1], 2))
    assert 3 in np.unique(data.labels)  # the pairs' crops hold chromosomes that touch
    cfg["task"]["class_names"] = ["background", "chromosome", "overlap"]
    with pytest.raises(ConfigError, match="touching"):
        load_mfish_metaphases(cfg)


# --- `medseg data synth --metaphase`: chromosomes kept apart from nuclei and debris -----------------------------


def test_nucleus_shape_rule():
    from medseg.data.synth import NUCLEUS_MIN_AREA, is_nucleus_like

    yy, xx = np.mgrid[:100, :100]
    disk = (yy - 50) ** 2 + (xx - 50) ** 2 <= 35**2  # 3,850 px, round: a nucleus
    small = (yy - 50) ** 2 + (xx - 50) ** 2 <= 20**2  # 1,257 px: as large as a big chromosome, not a nucleus
    bar = np.zeros((40, 400), bool)
    bar[15:25, 20:380] = True  # 3,600 px but elongated: touching chromosomes, not a nucleus
    assert disk.sum() > NUCLEUS_MIN_AREA and is_nucleus_like(disk)
    assert not is_nucleus_like(small) and not is_nucleus_like(bar)


@needs_data
def test_metaphase_route_drops_nuclei_by_label_map_and_by_shape(tmp_path):
    """A0101XYD.tif holds interphase nuclei (2,670–7,141 px) beside its 46 chromosomes (at most ~650 px here): the
    synthesizer took them for chromosomes (a "pair" of two nuclei overlapping by 2,209 px)."""
    from medseg.data.mfish import _read_tif
    from medseg.data.synth import crops_from_metaphase, label_map_beside, run_synth

    dapi = SHARED / "A01__XY" / "A0101XYD.tif"
    assert label_map_beside(dapi) == SHARED / "A01__XY" / "A0101XYK.tif"
    by_shape: dict = {}
    crops = crops_from_metaphase(dapi, stats=by_shape)
    assert by_shape["dropped_nucleus_like"] >= 3 and max(int(c.mask.sum()) for c in crops) < 2000
    by_map: dict = {}
    karyo = _read_tif(label_map_beside(dapi))
    labelled = crops_from_metaphase(dapi, label_map=karyo, stats=by_map)
    assert by_map["dropped_unlabelled"] >= 3 and max(int(c.mask.sum()) for c in labelled) < 2000
    # the command's route: the label map beside the image is found and used, and said so in the provenance
    (tmp_path / "m").mkdir()
    for name in ("A0101XYD.tif", "A0101XYK.tif"):
        shutil.copyfile(SHARED / "A01__XY" / name, tmp_path / "m" / name)
    summary = run_synth(
        tmp_path / "s.h5", metaphase=tmp_path / "m" / "A0101XYD.tif", n_pairs=8, progress=False, preview=False
    )
    assert summary["source"]["kept_by"] == "label map A0101XYK.tif" and summary["source"]["dropped_unlabelled"] >= 3
    (tmp_path / "m" / "A0101XYK.tif").unlink()
    summary = run_synth(
        tmp_path / "s2.h5", metaphase=tmp_path / "m" / "A0101XYD.tif", n_pairs=8, progress=False, preview=False
    )
    assert summary["source"]["kept_by"].startswith("shape") and summary["source"]["dropped_nucleus_like"] >= 3
