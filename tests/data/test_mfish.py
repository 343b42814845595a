"""The real M-FISH metaphases as a 3-class folder set (medseg.data.mfish)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.data.folder import pair_files, read_mask
from medseg.data.mfish import find_metaphases, folder_of, read_metaphase, semantic_labels, write_semantic_folder
from medseg.errors import DataValidationError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mfish"


def _fake_set(root: Path, karyo_values=(0, 3, 23, 255)) -> Path:
    for folder in ("A01__XY", "P07__09"):
        d = root / folder
        d.mkdir(parents=True)
        for k in range(2):
            ident = f"{folder[:3]}0{k}"
            Image.fromarray(np.full((20, 24), 40 + k, np.uint8)).save(d / f"{ident}D.tif")
            kar = np.zeros((20, 24), np.uint8)
            kar[2:6, 2:10] = karyo_values[1]
            kar[8:12, 2:10] = karyo_values[2]
            kar[5:9, 4:6] = karyo_values[3]
            Image.fromarray(kar).save(d / f"{ident}K.tif")
    (root / "A01__XY" / "A0199D.tif").write_bytes(b"")  # DAPI without karyotype: left out
    (root / "README.TXT").write_text("licence notice")
    return root


def test_semantic_labels():
    k = np.array([[0, 1, 24, 255]], np.uint8)
    assert semantic_labels(k).tolist() == [[0, 1, 1, 2]]


def test_write_semantic_folder_round_trip(tmp_path):
    root = _fake_set(tmp_path / "mfish")
    manifest = write_semantic_folder(root, tmp_path / "out", progress=False)
    assert manifest["n_images"] == 4 and manifest["n_folders"] == 2
    assert (tmp_path / "out" / "README.TXT").read_text() == "licence notice"
    pairs = pair_files(tmp_path / "out" / "images", tmp_path / "out" / "masks")
    assert len(pairs) == 4
    name = "A01__XY__A0100"
    mask = read_mask(tmp_path / "out" / "masks" / f"{name}.png", 3)
    assert set(np.unique(mask)) == {0, 1, 2} and int((mask == 2).sum()) == 8  # 4×2 overlap pixels
    assert folder_of(name) == "A01__XY"
    assert manifest["pixels_per_class"]["overlap"] == 4 * 8


def test_bad_karyotype_value_names_the_file(tmp_path):
    root = _fake_set(tmp_path / "mfish", karyo_values=(0, 3, 30, 255))
    with pytest.raises(DataValidationError, match=r"K\.tif.*\[30\]"):
        read_metaphase(find_metaphases(root)[0])


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real M-FISH set is not beside the repository (../shared/data)")
def test_real_metaphases_read():
    metaphases = find_metaphases(SHARED)
    assert len(metaphases) == 133  # the labelled metaphases of ../shared/data/README.md
    dapi, karyo = read_metaphase(metaphases[0])
    labels = semantic_labels(karyo)
    assert dapi.shape == karyo.shape and dapi.shape in {(517, 645), (568, 768)}
    assert (labels == 1).sum() > 1000 and (labels == 2).sum() >= 0
    # DAPI is brighter inside chromosomes (README: ≈ 110 inside, ≈ 13 outside)
    assert dapi[labels > 0].mean() > 3 * dapi[labels == 0].mean()
