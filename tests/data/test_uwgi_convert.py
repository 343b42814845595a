"""medseg.data.uwgi_convert: real (and small synthetic) volumes written in the UW-Madison layout, read back
with medseg.data.uwgi and scored with medseg.metrics.uw_score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data import uwgi
from medseg.data import uwgi_convert as conv
from medseg.data.uwgi_convert import (
    scan_filename,
    totalsegmentator_mr_to_uwgi,
    volume_to_uwgi,
    write_train_csv,
)
from medseg.errors import DataValidationError
from medseg.formats.volume import Volume
from medseg.metrics.uw_score import uw_scan_score

TS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "totalsegmentator"
MR, SEG, CLASS_MAP = TS / "example_mr_sm.nii.gz", TS / "example_seg_mr.nii.gz", TS / "class_map.json"
needs_shared = pytest.mark.skipif(
    not MR.is_file(),
    reason="the real TotalSegmentator MR example is not beside the repository (../shared/data/ct/totalsegmentator)",
)
MR_IDS = {"large_bowel": 15, "small_bowel": 13, "stomach": 6}  # "total_mr": colon, small_bowel, stomach


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_back(root: Path):
    index = uwgi.scan_index(root)
    rles = uwgi.read_train_csv(root / "train.csv")
    uwgi.check_consistency(index, rles)
    return index, rles


# ------------------------------------------------------------------------------------------ real MR volume


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not MR.is_file():
        pytest.skip("the real TotalSegmentator MR example is not beside the repository (../shared/data)")
    from medseg.formats.volume_files import read_volume

    out = tmp_path_factory.mktemp("uwgi_real")
    summary = totalsegmentator_mr_to_uwgi(MR, SEG, CLASS_MAP, out, case=7, day=3)
    image, labels = read_volume(MR), read_volume(SEG)
    index, rles = _read_back(out)
    return {"out": out, "summary": summary, "image": image, "labels": labels, "index": index, "rles": rles}


@needs_shared
def test_real_volume_reads_back_exactly(real):
    image, labels, index, rles = real["image"].array, real["labels"].array, real["index"], real["rles"]
    assert np.allclose(real["image"].direction, np.eye(3))  # written as it is: slice s = array[s - 1]
    depth, height, width = image.shape
    assert len(index) == depth == real["summary"]["n_slices"] == 20
    assert [r.slice for r in index] == list(range(1, depth + 1))
    assert {r.id for r in index} == set(rles)
    _sz, sy, sx = real["image"].spacing
    offset = real["summary"]["intensity"]["offset"]
    assert real["summary"]["intensity"]["mode"] == "exact" and offset == min(float(image.min()), 0.0)
    for z, rec in enumerate(index):
        assert (rec.case, rec.day) == (7, 3)
        info = uwgi.parse_scan_filename(rec.path)
        assert (info["width"], info["height"]) == (width, height)
        assert (info["pixel_w"], info["pixel_h"]) == (round(sx, 2), round(sy, 2))
        assert rec.path.name == f"slice_{z + 1:04d}_{width}_{height}_{sx:.2f}_{sy:.2f}.png"
        masks = uwgi.masks_for(rec, rles)
        for c, cls in enumerate(uwgi.CLASSES):
            np.testing.assert_array_equal(masks[..., c], labels[z] == MR_IDS[cls], err_msg=f"{rec.id} {cls}")
        pixels = uwgi.read_scan(rec)
        assert pixels.dtype == np.uint16
        np.testing.assert_array_equal(pixels.astype(np.int64), image[z].astype(np.int64) - int(offset))
    stack = np.stack([uwgi.read_scan(r) for r in index]).astype(float)
    assert np.corrcoef(stack.ravel(), image.astype(float).ravel())[0, 1] > 0.999999


@needs_shared
def test_real_organ_statistics(real):
    labels, s = real["labels"].array, real["summary"]
    present = np.stack([(labels == MR_IDS[c]).any(axis=(1, 2)) for c in uwgi.CLASSES])
    assert present.any(axis=1).all()  # all three organs appear in some slice
    assert np.count_nonzero(present.sum(axis=0) >= 2) == s["n_slices_with_2plus_organs"] == 20
    assert np.count_nonzero(present.all(axis=0)) == s["n_slices_with_3_organs"] == 5
    assert {c: o["voxels"] for c, o in s["per_organ"].items()} == {
        "large_bowel": 1683,
        "small_bowel": 356,
        "stomach": 4221,
    }
    assert {c: o["slices"] for c, o in s["per_organ"].items()} == {"large_bowel": 20, "small_bowel": 5, "stomach": 20}
    assert (s["width"], s["height"], s["pixel_w"], s["pixel_h"], s["slice_mm"]) == (117, 91, 3.0, 3.0, 3.0)


@needs_shared
def test_uw_score_on_real_anatomy(real):
    masks = np.stack([uwgi.masks_for(r, real["rles"]) for r in real["index"]])  # (D, H, W, C)
    truth = masks.transpose(3, 0, 1, 2).astype(bool)  # (C, D, H, W)
    assert uw_scan_score(truth, truth)["score"] == pytest.approx(1.0)
    shifted = np.roll(truth, (3, 3), axis=(2, 3))
    s_shift = uw_scan_score(shifted, truth)["score"]
    s_empty = uw_scan_score(np.zeros_like(truth), truth)["score"]
    assert s_empty < s_shift < 1.0
    # Every organ is in some slice: Hausdorff score 0; Dice 1 only on the (slice, organ) images empty in the truth.
    assert s_empty == pytest.approx(0.4 * np.mean(~truth.any(axis=(2, 3))))


@needs_shared
def test_real_append_second_day_and_refuse_clash(real, tmp_path):
    first = totalsegmentator_mr_to_uwgi(MR, SEG, CLASS_MAP, tmp_path, case=7, day=3)
    second = volume_to_uwgi(real["image"], real["labels"], tmp_path, case=2, day=1, organ_labels=MR_IDS)
    assert second["n_slices"] == first["n_slices"] == 20
    index, rles = _read_back(tmp_path)
    assert len(index) == len(rles) == 40
    ids = [line.split(",")[0] for line in (tmp_path / "train.csv").read_text().splitlines()[1:]]
    assert ids == sorted(ids, key=uwgi.parse_id) and ids[0] == "case2_day1_slice_0001"
    before = _files(tmp_path)
    with pytest.raises(DataValidationError, match="already holds 20 of the ids to write: case7_day3_slice_0001") as e:
        totalsegmentator_mr_to_uwgi(MR, SEG, CLASS_MAP, tmp_path, case=7, day=3)
    assert e.value.path == tmp_path / "train.csv"
    with pytest.raises(DataValidationError, match="pass append=True"):
        totalsegmentator_mr_to_uwgi(MR, SEG, CLASS_MAP, tmp_path, case=8, day=0, append=False)
    assert _files(tmp_path) == before


@needs_shared
def test_real_label_file_of_another_shape_is_named(tmp_path):
    from medseg.formats.volume_files import read_volume, write_nifti

    seg = read_volume(SEG)
    bad = write_nifti(seg.with_array(seg.array[:, :, :-1]), tmp_path / "cropped_seg.nii.gz", label=True)
    with pytest.raises(DataValidationError, match=r"label grid shape \(20, 91, 116\) differs") as e:
        totalsegmentator_mr_to_uwgi(MR, bad, CLASS_MAP, tmp_path / "out", case=1, day=0)
    assert e.value.path == bad
    assert not (tmp_path / "out").exists()


@needs_shared
def test_class_map_without_colon(tmp_path):
    table = json.loads(CLASS_MAP.read_text())
    table["total_mr"] = {k: v for k, v in table["total_mr"].items() if v != "colon"}
    bad = tmp_path / "class_map.json"
    bad.write_text(json.dumps(table))
    with pytest.raises(DataValidationError, match="total_mr has no class colon") as e:
        totalsegmentator_mr_to_uwgi(MR, SEG, bad, tmp_path / "out", case=1, day=0)
    assert e.value.path == bad


# ------------------------------------------------------------------------------------------ small synthetic


def _toy(depth=4, height=6, width=5, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 30.0, (depth, height, width))  # fractional values: the linear map
    labels = np.zeros((depth, height, width), np.uint8)
    labels[0, 1:3, 1:4] = 2
    labels[1, 2:5, 0:2] = 5
    labels[1, 0, 4] = 2
    labels[2, 3, 3] = 9
    return image, labels


def test_synthetic_round_trip(tmp_path):
    image, labels = _toy()
    organs = {"large_bowel": [2, 9], "small_bowel": [5, 9], "stomach": (2,)}  # 9 and 2 in two classes: overlap
    s = volume_to_uwgi(image, labels, tmp_path / "set", case=12, day=0, organ_labels=organs, spacing=(3, 1.5, 1.625))
    index, rles = _read_back(tmp_path / "set")
    assert [r.path.name for r in index] == [f"slice_{z:04d}_5_6_1.62_1.50.png" for z in range(1, 5)]
    assert index[0].spacing == (1.5, 1.62)  # (row, col) = (pixel_h, pixel_w)
    for z, rec in enumerate(index):
        masks = uwgi.masks_for(rec, rles)
        for c, cls in enumerate(uwgi.CLASSES):
            np.testing.assert_array_equal(masks[..., c], np.isin(labels[z], organs[cls]))
    assert rles["case12_day0_slice_0004"] == {c: "" for c in uwgi.CLASSES}
    stack = np.stack([uwgi.read_scan(r) for r in index]).astype(np.int64)
    assert s["intensity"]["mode"] == "linear" and stack.min() == 0 and stack.max() == 65535
    order = np.argsort(image.ravel(), kind="stable")
    assert np.all(np.diff(stack.ravel()[order]) >= 0)  # the map is monotone
    expect = np.rint((image - s["intensity"]["offset"]) * s["intensity"]["scale"])
    np.testing.assert_array_equal(stack, expect)
    assert s["n_slices_with_2plus_organs"] == 3 and s["n_slices_with_masks"] == 3
    assert s["per_organ"]["stomach"] == {"voxels": 7, "slices": 2}


def test_integer_image_keeps_raw_values(tmp_path):
    image = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) * 1000
    labels = np.zeros(image.shape, np.int32)
    labels[1, 1, 1] = 1
    s = volume_to_uwgi(image, labels, tmp_path, case=1, day=1, organ_labels={"stomach": [1]}, spacing=(1.0, 1.0))
    assert s["intensity"]["mode"] == "exact" and s["intensity"]["offset"] == 0
    index, _ = _read_back(tmp_path)
    np.testing.assert_array_equal(np.stack([uwgi.read_scan(r) for r in index]), image)


def test_volume_is_turned_to_axial_lps(tmp_path):
    image, labels = _toy()
    canon = Volume(image, spacing=(3.0, 1.5, 2.0))
    volume_to_uwgi(canon, canon.with_array(labels), tmp_path / "a", case=1, day=0, organ_labels={"stomach": [2]})

    # The same voxels stored with columns running right→left flipped and the axes in another order:
    # array (x, z, y), its x axis along -L.
    def stored(a):
        return np.flip(a, axis=2).transpose(2, 0, 1)

    direction = np.zeros((3, 3))  # columns: the LPS directions of array axes x (last), y (middle), z (first)
    direction[:, 0] = (0, 1, 0)  # last array axis (old y) → P
    direction[:, 1] = (0, 0, 1)  # middle array axis (old z) → S
    direction[:, 2] = (-1, 0, 0)  # first array axis (old x, flipped) → -L
    odd = Volume(stored(image), spacing=(2.0, 3.0, 1.5), direction=direction)
    s = volume_to_uwgi(
        odd, odd.with_array(stored(labels)), tmp_path / "b", case=1, day=0, organ_labels={"stomach": [2]}
    )
    assert s["orientation"]["axis_order"] == [1, 2, 0] and s["orientation"]["flipped"] == [False, False, True]
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_write_train_csv_and_scan_filename(tmp_path):
    assert uwgi.parse_scan_filename(scan_filename(3, 266, 310, 1.5, 1.625)) == {
        "slice": 3,
        "width": 266,
        "height": 310,
        "pixel_w": 1.5,
        "pixel_h": 1.62,
    }
    rles = {
        "case10_day2_slice_0001": {"large_bowel": "1 2", "small_bowel": "", "stomach": "5 1"},
        "case2_day20_slice_0002": {c: "" for c in uwgi.CLASSES},
    }
    write_train_csv(tmp_path / "train.csv", rles)
    assert uwgi.read_train_csv(tmp_path / "train.csv") == rles
    assert (tmp_path / "train.csv").read_text().splitlines()[1].startswith("case2_day20_slice_0002,large_bowel,")
    with pytest.raises(DataValidationError, match="no RLE for class"):
        write_train_csv(tmp_path / "x.csv", {"case1_day1_slice_0001": {"stomach": ""}})
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "change, match",
    [
        ({"labels": np.zeros((4, 6, 4), np.uint8)}, r"labels: label grid shape \(4, 6, 4\) differs .* \(4, 6, 5\)"),
        ({"image": np.zeros((6, 5))}, r"image: a 3D \(D, H, W\) volume is needed, got shape \(6, 5\)"),
        ({"labels": np.zeros((1, 4, 6, 5))}, r"labels: a 3D .* got shape \(1, 4, 6, 5\)"),
        ({"organ_labels": {"colon": [2]}}, r"unknown organ name\(s\) 'colon'"),
        (
            {"organ_labels": {"stomach": [2, 7], "small_bowel": [8]}},
            (
                r"absent from the label volume: stomach \[7\]; "
                r"small_bowel \[8\]"
            ),
        ),
        ({"organ_labels": {"stomach": [0]}}, "positive integer label ids"),
        ({"organ_labels": {}}, "organ_labels must map"),
        ({"spacing": None}, r"spacing: give the \(z, y, x\)"),
        ({"spacing": (1.0, -1.0)}, "spacing must be 2 or 3 positive numbers"),
        ({"case": -1}, "case must be an integer"),
        ({"day": True}, "day must be an integer"),
        ({"labels": np.full((4, 6, 5), 2.5)}, "label ids must be integers"),
        ({"image": np.full((4, 6, 5), np.nan)}, "image holds 120 NaN"),
    ],
)
def test_bad_input_is_refused(tmp_path, change, match):
    image, labels = _toy()
    args = {"image": image, "labels": labels, "case": 1, "day": 0, "organ_labels": {"stomach": [2]}, "spacing": (1, 1)}
    args.update(change)
    with pytest.raises(DataValidationError, match=match):
        volume_to_uwgi(args.pop("image"), args.pop("labels"), tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_refuses_existing_day_folder_and_foreign_columns(tmp_path):
    image, labels = _toy()
    kw = {"organ_labels": {"stomach": [2]}, "spacing": (1, 1)}
    (tmp_path / "a" / "train" / "case1" / "case1_day0" / "scans").mkdir(parents=True)
    with pytest.raises(DataValidationError, match="already exists: a scan of this case and day") as e:
        volume_to_uwgi(image, labels, tmp_path / "a", case=1, day=0, **kw)
    assert e.value.path == tmp_path / "a" / "train" / "case1" / "case1_day0"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "train.csv").write_text("id,class,segmentation,note\ncase1_day1_slice_0001,stomach,,x\n")
    with pytest.raises(DataValidationError, match="has column\\(s\\) note besides"):
        volume_to_uwgi(image, labels, tmp_path / "b", case=1, day=0, **kw)


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    image, labels = _toy()
    kw = {"organ_labels": {"stomach": [2]}, "spacing": (1, 1)}
    root = tmp_path / "set"
    volume_to_uwgi(image, labels, root, case=1, day=0, **kw)
    before = _files(root)
    real_write = conv._write_png
    calls = []

    def failing(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real_write(path, array)

    monkeypatch.setattr(conv, "_write_png", failing)
    with pytest.raises(OSError, match="simulated"):
        volume_to_uwgi(image, labels, root, case=2, day=0, **kw)  # a new case folder inside an existing set
    assert _files(root) == before and not (root / "train" / "case2").exists()
    folders = {"train", "train/case1", "train/case1/case1_day0", "train/case1/case1_day0/scans"}
    assert {str(p.relative_to(root)) for p in root.rglob("*")} == set(before) | folders  # no temporary left
    calls.clear()
    with pytest.raises(OSError, match="simulated"):
        volume_to_uwgi(image, labels, tmp_path / "new", case=1, day=0, **kw)
    assert not (tmp_path / "new").exists()

    # A failure writing train.csv, after the scan folder was moved into place, takes the folder back out.
    monkeypatch.setattr(conv, "_write_png", real_write)

    def no_csv(path, rles):
        raise OSError("csv failed (simulated)")

    monkeypatch.setattr(conv, "write_train_csv", no_csv)
    with pytest.raises(OSError, match="csv failed"):
        volume_to_uwgi(image, labels, root, case=1, day=1, **kw)
    assert _files(root) == before and not (root / "train" / "case1" / "case1_day1").exists()
    assert [p.name for p in (root / "train" / "case1").iterdir()] == ["case1_day0"]


def test_label_volume_off_the_image_grid(tmp_path):
    image, labels = _toy()
    vol = Volume(image, spacing=(3.0, 1.5, 1.5))
    with pytest.raises(DataValidationError, match=r"not on the image's grid: spacing \(3.0, 1.5, 2.0\)"):
        volume_to_uwgi(
            vol, Volume(labels, spacing=(3.0, 1.5, 2.0)), tmp_path / "out", case=1, day=0, organ_labels={"stomach": [2]}
        )
    with pytest.raises(DataValidationError, match="spacing is taken from the image volume"):
        volume_to_uwgi(vol, labels, tmp_path / "out", case=1, day=0, organ_labels={"stomach": [2]}, spacing=(1.0, 1.0))
    assert not (tmp_path / "out").exists()
