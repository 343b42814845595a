"""Hostile inputs to the M-FISH, GI-tract and folder readers, and to `medseg plan`, tried as an attacker would:
each is refused with a one-line DataValidationError naming the file, before anything large is decoded."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.data.folder import read_image, read_mask
from medseg.data.mfish import find_metaphases, read_metaphase
from medseg.data.uwgi import CLASSES, check_consistency, masks_for, read_train_csv, scan_index
from medseg.errors import DataValidationError
from medseg.formats.limits import MAX_CLASSES
from medseg.planning import fingerprint, plan

SHAPE = (20, 24)  # (H, W) of the small valid files beside the hostile one


def _one_line(exc: pytest.ExceptionInfo, path: Path, *words: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text, text
    for word in words:
        assert word in text, text
    return text


def _tiff_header_only(path: Path, width: int, height: int) -> Path:
    """An 8-bit grey LZW TIFF whose header declares width × height pixels; its one strip is 4 bytes (an LZW clear
    code and end of information), so the file is tiny whatever it claims: what a compression bomb's header says."""
    strip = bytes([0x80, 0x00, 0x40, 0x40])
    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 5),
        (262, 3, 1),
        (273, 4, 8),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, len(strip)),
    ]
    entries = b"".join(
        struct.pack("<HHII", tag, kind, 1, value)
        if kind == 4  # LONG
        else struct.pack("<HHIHH", tag, kind, 1, value, 0)
        for tag, kind, value in tags
    )  # SHORT
    ifd = struct.pack("<H", len(tags)) + entries + b"\0\0\0\0"
    path.write_bytes(b"II*\0" + struct.pack("<I", 8 + len(strip)) + strip + ifd)
    return path


def _metaphase(root: Path, karyotype=None) -> Path:
    """One slide folder with a valid DAPI image A0101XYD.tif and (unless None) the label map ``karyotype``."""
    folder = root / "A01__XY"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(SHAPE, 40, np.uint8)).save(folder / "A0101XYD.tif", compression="tiff_lzw")
    if karyotype is not None:
        Image.fromarray(karyotype).save(folder / "A0101XYK.tif")
    return folder


# --- (a) a 13,000² pair of TIFFs of a few bytes: refused from the header --------------------------------------


def test_mfish_pair_over_the_pixel_budget_is_refused_from_the_header(tmp_path):
    folder = _metaphase(tmp_path / "mfish")
    dapi = _tiff_header_only(folder / "A0101XYD.tif", 13_000, 13_000)
    _tiff_header_only(folder / "A0101XYK.tif", 13_000, 13_000)
    assert dapi.stat().st_size < 200
    with pytest.raises(DataValidationError) as exc:
        read_metaphase(find_metaphases(tmp_path / "mfish")[0])
    _one_line(exc, dapi, "169,000,000 voxels", "exceeds the limit of 134,217,728")


def test_mfish_label_map_over_the_pixel_budget_is_refused_from_the_header(tmp_path, monkeypatch):
    folder = _metaphase(tmp_path / "mfish", np.zeros(SHAPE, np.uint8))
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", str(SHAPE[0] * SHAPE[1]))  # the DAPI image fits, 21 × 24 does not
    karyo = _tiff_header_only(folder / "A0101XYK.tif", SHAPE[1], SHAPE[0] + 1)
    with pytest.raises(DataValidationError) as exc:
        read_metaphase(find_metaphases(tmp_path / "mfish")[0])
    _one_line(exc, karyo, "karyotype label map of 504 voxels", "exceeds the limit of 480")


# --- (b) a 3-page label TIFF: not read as its first page -------------------------------------------------------


def test_multi_page_label_tiff_is_refused(tmp_path):
    folder = _metaphase(tmp_path / "mfish")
    pages = [Image.fromarray(np.full(SHAPE, v, np.uint8)) for v in (0, 3, 23)]
    karyo = folder / "A0101XYK.tif"
    pages[0].save(karyo, save_all=True, append_images=pages[1:], compression="tiff_lzw")
    with pytest.raises(DataValidationError) as exc:
        read_metaphase(find_metaphases(tmp_path / "mfish")[0])
    _one_line(exc, karyo, "3 pages")


def test_animated_png_mask_is_refused(tmp_path):
    frames = [Image.fromarray(np.full(SHAPE, v, np.uint8)) for v in (0, 1)]
    path = tmp_path / "m.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(DataValidationError) as exc:
        read_mask(path, 2)
    _one_line(exc, path, "2 frames")


# --- (c) NaN in a float label map: not cast to class 0 --------------------------------------------------------


def test_float_label_map_with_nan_is_refused(tmp_path):
    karyo = np.zeros(SHAPE, np.float32)
    karyo[2:6, 2:10] = 3
    karyo[4, 4] = np.nan
    folder = _metaphase(tmp_path / "mfish", karyo)
    with pytest.raises(DataValidationError) as exc:
        read_metaphase(find_metaphases(tmp_path / "mfish")[0])
    _one_line(exc, folder / "A0101XYK.tif", "karyotype label map holds 1 NaN")


def test_float_label_map_with_fractions_is_refused_and_whole_floats_are_read(tmp_path):
    karyo = np.zeros(SHAPE, np.float32)
    karyo[2:6, 2:10] = 3
    folder = _metaphase(tmp_path / "mfish", karyo)
    _, read = read_metaphase(find_metaphases(tmp_path / "mfish")[0])
    assert read.dtype == np.uint8 and read[3, 3] == 3 and read[0, 0] == 0
    karyo[3, 3] = 2.5
    Image.fromarray(karyo).save(folder / "A0101XYK.tif")
    with pytest.raises(DataValidationError) as exc:
        read_metaphase(find_metaphases(tmp_path / "mfish")[0])
    _one_line(exc, folder / "A0101XYK.tif", "non-integer values")


# --- (d) two label files for one metaphase ---------------------------------------------------------------------


@pytest.mark.parametrize("second", ["A0101XYK.tiff", "A0101XYk.tif"])
def test_two_label_maps_for_one_metaphase_are_refused(tmp_path, second):
    folder = _metaphase(tmp_path / "mfish", np.zeros(SHAPE, np.uint8))
    Image.fromarray(np.full(SHAPE, 3, np.uint8)).save(folder / second, format="TIFF")
    with pytest.raises(DataValidationError) as exc:
        find_metaphases(tmp_path / "mfish")
    _one_line(exc, folder / second, "a second karyotype label map for metaphase A0101XY", "A0101XYK.tif")


# --- (e) a GI-tract RLE that does not fit its image names train.csv and its line --------------------------------


def _gi_root(root: Path, rle: str) -> Path:
    scans = root / "train" / "case1" / "case1_day0" / "scans"
    scans.mkdir(parents=True)
    Image.fromarray(np.zeros((5, 5), np.uint16)).save(scans / "slice_0001_5_5_1.50_1.50.png")
    rows = [f"case1_day0_slice_0001,{c},{rle if c == 'small_bowel' else ''}\n" for c in CLASSES]
    (root / "train.csv").write_text("id,class,segmentation\n" + "".join(rows))
    return root / "train.csv"


def test_gi_rle_longer_than_its_image_names_train_csv_and_the_line(tmp_path):
    csv_path = _gi_root(tmp_path / "gi", "7 3 25 2")  # ends at pixel 26 of a 5 × 5 image
    index, rles = scan_index(tmp_path / "gi"), read_train_csv(csv_path)
    for check in (lambda: check_consistency(index, rles), lambda: masks_for(index[0], rles)):
        with pytest.raises(DataValidationError) as exc:
            check()
        _one_line(exc, csv_path, "line 3 (id case1_day0_slice_0001 class small_bowel)", "longer than the image")


def test_gi_rows_keep_their_source_through_a_process_pool(tmp_path):
    rles = read_train_csv(_gi_root(tmp_path / "gi", "7 3"))
    copy = pickle.loads(pickle.dumps(rles))
    assert copy == rles and copy.path == rles.path and copy.lines == rles.lines
    assert masks_for(scan_index(tmp_path / "gi")[0], copy)[1, 1:4, 1].all()


# --- (f) a mask folder of 300 distinct values: no plan training cannot take ---------------------------------


def _folder(root: Path, mask: np.ndarray) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.zeros(mask.shape, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    return root / "masks" / "a.png"


def test_plan_refuses_masks_with_more_values_than_classes(tmp_path):
    mask = np.arange(300, dtype=np.uint16).reshape(15, 20) * 200  # 300 grey levels: an image, not a mask
    mask_path = _folder(tmp_path / "cells", mask)
    with pytest.raises(DataValidationError) as exc:
        fingerprint(tmp_path / "cells", progress=False)
    _one_line(exc, mask_path, "hold 300 distinct values", f"more than the {MAX_CLASSES} classes", "masks/")
    out = tmp_path / "plan.yaml"
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "cells"), "-o", str(out), "--device", "cpu"])
    assert result.exit_code != 0 and not out.exists()
    assert "distinct values" in " ".join(result.output.split())


def test_plan_backstop_refuses_a_fingerprint_with_more_values_than_classes():
    fp = {
        "kind": "folder2d",
        "spatial_dims": 2,
        "n_cases": 1,
        "n_sampled": 1,
        "path": "/data/cells",
        "label_values": list(range(300)),
        "label_frequency": {},
    }
    with pytest.raises(DataValidationError, match=r"/data/cells: the labels hold 300 distinct values"):
        plan(fp, device="cpu")


def test_binary_0_255_masks_still_plan_and_read(tmp_path):
    mask = np.zeros((15, 20), np.uint8)
    mask[3:9, 4:12] = 255
    mask_path = _folder(tmp_path / "cells", mask)
    fp = fingerprint(tmp_path / "cells", progress=False)
    assert fp["label_values"] == [0, 255]
    assert read_mask(mask_path, 2).max() == 1 and read_image(tmp_path / "cells" / "images" / "a.png").shape == (15, 20)
