"""The real M-FISH metaphases as a 3-class folder set (medseg.data.mfish)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.data.folder import pair_files, read_mask
from medseg.data.mfish import (
    find_metaphases,
    find_unlabelled,
    folder_of,
    is_mfish_folder,
    is_unlabelled_code,
    licence_notice,
    near_duplicates,
    read_metaphase,
    semantic_labels,
    slide_of,
    survey,
    write_semantic_folder,
)
from medseg.errors import DataValidationError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mfish"


def _fake_set(root: Path, karyo_values=(0, 3, 23, 255)) -> Path:
    for folder in ("A01__XY", "P07__09"):
        d = root / folder
        d.mkdir(parents=True)
        for k in range(2):
            ident = f"{folder[:3]}0{k}"
            # LZW, as the published files (tifffile cannot decode it without imagecodecs)
            Image.fromarray(np.full((20, 24), 40 + k, np.uint8)).save(d / f"{ident}D.tif", compression="tiff_lzw")
            kar = np.zeros((20, 24), np.uint8)
            kar[2:6, 2:10] = karyo_values[1]
            kar[8:12, 2:10] = karyo_values[2]
            kar[5:9, 4:6] = karyo_values[3]
            Image.fromarray(kar).save(d / f"{ident}K.tif", compression="tiff_lzw")
    (root / "A30__EX").mkdir()
    (root / "A30__EX" / "A3001EXD.tif").write_bytes(b"")  # an EX metaphase: published without karyotype, skipped
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
    with pytest.raises(DataValidationError, match=r"K\.tif.*\[30 \("):
        read_metaphase(find_metaphases(root)[0])


def test_unlabelled_rule_ex_skipped_other_missing_label_map_is_an_error(tmp_path):
    root = _fake_set(tmp_path / "mfish")
    assert len(find_metaphases(root)) == 4
    assert [p.name for p in find_unlabelled(root)] == ["A3001EXD.tif"]
    assert is_unlabelled_code("A30__EX", "A3001EX") and is_unlabelled_code("A23__EX", "A2303EX")
    assert not is_unlabelled_code("A01__XY", "A0101XY")
    (root / "A01__XY" / "A0199XYD.tif").write_bytes(b"")  # a labelled folder's DAPI without its K file
    with pytest.raises(DataValidationError, match=r"A0199XYD\.tif.*without its karyotype label map A0199XYK\.tif"):
        find_metaphases(root)
    (root / "A01__XY" / "A0199XYD.tif").unlink()
    (root / "P07__09" / "P0755K.tif").write_bytes(b"")  # a label map without its DAPI image
    with pytest.raises(DataValidationError, match=r"P0755K\.tif.*without its DAPI image"):
        find_metaphases(root)


def test_shape_mismatch_names_the_label_map(tmp_path):
    root = _fake_set(tmp_path / "mfish")
    m = find_metaphases(root)[0]
    Image.fromarray(np.zeros((20, 25), np.uint8)).save(m.karyotype, compression="tiff_lzw")
    with pytest.raises(DataValidationError, match=r"K\.tif.*20x25.*20x24"):
        read_metaphase(m)


def test_bad_values_listed_with_pixel_counts(tmp_path):
    root = _fake_set(tmp_path / "mfish")
    m = find_metaphases(root)[0]
    kar = np.zeros((20, 24), np.uint8)
    kar[0, :3] = 25
    kar[1, 0] = 254
    kar[2, 0] = 255  # overlap: allowed
    kar[3, 0] = 24  # Y: allowed
    Image.fromarray(kar).save(m.karyotype, compression="tiff_lzw")
    with pytest.raises(DataValidationError, match=r"A0100K\.tif.*\[25 \(3 px\), 254 \(1 px\)\]"):
        read_metaphase(m)


def test_corrupt_tiff_names_the_file(tmp_path):
    root = _fake_set(tmp_path / "mfish")
    m = find_metaphases(root)[0]
    m.dapi.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(DataValidationError, match=r"A0100D\.tif.*(cannot be read as a TIFF|holds no image).*corrupt"):
        read_metaphase(m)


def test_survey_and_detection(tmp_path):
    root = _fake_set(tmp_path / "mfish")
    assert is_mfish_folder(root) and not is_mfish_folder(tmp_path)
    s = survey(root, progress=False)
    assert (s["n_labelled"], s["n_unlabelled"], s["n_folders"], s["n_slides"]) == (4, 1, 3, 3)
    assert s["shapes"] == {"20x24": 4}
    assert set(s["label_pixels"]) == {0, 3, 23, 255} and s["label_files"][255] == 4
    assert s["overlap_regions"] == 4
    assert slide_of("A02__15") == slide_of("A02__XY") == "A02"
    path, text = licence_notice(root)
    assert path == root / "README.TXT" and text == "licence notice"


def test_data_info_on_an_mfish_folder(tmp_path):
    from typer.testing import CliRunner

    from medseg.cli import app

    root = _fake_set(tmp_path / "mfish")
    result = CliRunner().invoke(app, ["data", "info", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "4 labelled" in out and "1 EX" in out and "20x24: 4" in out and "255:" in out
    assert "none (no two DAPI images alike)" in out


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real M-FISH set is not beside the repository (../shared/data)")
def test_real_metaphases_read():
    metaphases = find_metaphases(SHARED)
    assert len(metaphases) == 133  # the labelled metaphases of ../shared/data/README.md
    assert len(find_unlabelled(SHARED)) == 17  # the EX ones
    dapi, karyo = read_metaphase(metaphases[0])
    labels = semantic_labels(karyo)
    assert dapi.shape == karyo.shape and dapi.shape in {(517, 645), (568, 768)}
    assert (labels == 1).sum() > 1000 and (labels == 2).sum() >= 0
    # DAPI is brighter inside chromosomes (README: ≈ 110 inside, ≈ 13 outside)
    assert dapi[labels > 0].mean() > 3 * dapi[labels == 0].mean()


def _blobs(seed: int, shape=(120, 150)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full(shape, 12.0)
    for _ in range(25):  # chromosome-sized bright rods at random places
        r, c = rng.integers(5, shape[0] - 15), rng.integers(5, shape[1] - 25)
        image[r : r + 6, c : c + 20] = rng.uniform(80, 160)
    return image


def test_near_duplicates_finds_one_metaphase_imaged_twice():
    first = _blobs(0)
    rng = np.random.default_rng(9)
    # the same metaphase exported again: other contrast and gamma, new noise
    again = np.clip(255 * (first / 255) ** 0.8 * 0.9 + rng.normal(0, 4, first.shape), 0, 255)
    other = _blobs(1)
    found = near_duplicates(["a", "b", "c", "d"], [first, other, again, _blobs(0, (120, 160))])
    assert [(d["first"], d["second"]) for d in found] == [("a", "c")]  # never across shapes, never two metaphases
    assert found[0]["correlation"] >= 0.95
    assert near_duplicates(["a", "b"], [first, other], threshold=-1.0)[0]["second"] == "b"
    with pytest.raises(ValueError, match="2 names for 1 images"):
        near_duplicates(["a", "b"], [first])


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real M-FISH set is not beside the repository (../shared/data)")
def test_real_metaphases_published_twice_stay_on_one_side_of_the_split():
    from medseg.data.mfish_metaphase import pair_test_slides

    metaphases = find_metaphases(SHARED)
    twice = near_duplicates([m.name for m in metaphases], [read_metaphase(m)[0] for m in metaphases])
    pairs = {(d["first"].split("__")[-1], d["second"].split("__")[-1]) for d in twice}
    assert pairs == {("A0402XY", "A0403XY"), ("V1301XY", "V1304XY"), ("V1805XY", "V2704XY")}
    # a pair split between training and test slides would leak the test metaphase into training
    test = set(pair_test_slides(SHARED)["test"])
    slide = {m.name: slide_of(m.folder) for m in metaphases}
    assert all((slide[d["first"]] in test) == (slide[d["second"]] in test) for d in twice)
