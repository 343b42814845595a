"""The UW-Madison GI Tract layout (Kaggle): RLE, ids, file names, train.csv and the scans folder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from medseg.data.uwgi import (
    CLASSES,
    check_consistency,
    masks_for,
    parse_id,
    parse_scan_filename,
    read_scan,
    read_train_csv,
    rle_decode,
    rle_encode,
    scan_index,
)
from medseg.errors import DataValidationError

# A 3 × 4 mask (H = 3, W = 4) and its RLE computed by hand: row-major flattening gives
# 0 1 1 0 | 0 0 0 1 | 1 1 0 0, 1-based foreground pixels 2, 3 and 8, 9, 10 (a run across a row end).
HAND_MASK = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]], dtype=np.uint8)
HAND_RLE = "2 2 8 3"
# Column-major (Fortran) order would give 0 0 1 | 1 0 1 | 1 0 0 | 0 1 0 → "3 2 6 2 11 1": not the competition's.
FORTRAN_RLE = "3 2 6 2 11 1"


# -------------------------------------------------------------------------------------------------- RLE


def test_hand_checked_example_row_major():
    assert rle_encode(HAND_MASK) == HAND_RLE
    decoded = rle_decode(HAND_RLE, (3, 4))
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 4)
    np.testing.assert_array_equal(decoded, HAND_MASK)
    assert not np.array_equal(rle_decode(FORTRAN_RLE, (3, 4)), HAND_MASK)
    assert rle_encode(HAND_MASK.astype(bool)) == HAND_RLE


def test_more_hand_examples():
    np.testing.assert_array_equal(rle_decode("1 1", (2, 3)), [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(rle_decode("6 1", (2, 3)), [[0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(rle_decode("1 6", (2, 3)), np.ones((2, 3)))
    np.testing.assert_array_equal(rle_decode("3 2", (2, 3)), [[0, 0, 1], [1, 0, 0]])
    assert rle_encode(np.ones((2, 3))) == "1 6"
    assert rle_encode(np.array([[0, 0, 1], [1, 0, 0]])) == "3 2"
    # adjacent runs are valid input (the competition's encoder never writes them: it merges them)
    np.testing.assert_array_equal(rle_decode("1 2 3 1", (1, 4)), [[1, 1, 1, 0]])
    # extra whitespace, as in hand-edited files
    np.testing.assert_array_equal(rle_decode("  2 2   8 3 ", (3, 4)), HAND_MASK)


def test_empty():
    assert rle_encode(np.zeros((5, 7), np.uint8)) == ""
    empty = rle_decode("", (5, 7))
    assert empty.shape == (5, 7) and not empty.any()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_round_trip(mask):
    rle = rle_encode(mask)
    decoded = rle_decode(rle, mask.shape)
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    assert rle_encode(decoded) == rle  # canonical: encode(decode(x)) == x for an encoder's output
    values = [int(v) for v in rle.split()]
    assert len(values) % 2 == 0
    assert sum(values[1::2]) == int(mask.sum())
    assert all(v >= 1 for v in values)


@pytest.mark.parametrize(
    "rle, match",
    [
        ("1 2 3", "odd number of values"),
        ("5", "odd number of values"),
        ("1 2.5", "non-integer"),
        ("a 2", "non-integer"),
        ("1 2 nan 1", "non-integer"),
        ("0 2", "1-based"),
        ("-3 2", "1-based"),
        ("2 0", "length 0"),
        ("2 -1", "length -1"),
        ("5 2 1 1", "not after"),
        ("5 2 5 1", "not after"),
        ("1 3 2 1", "overlaps"),
        ("11 3", "mask longer than the image"),
        ("13 1", "mask longer than the image"),
        ("1 13", "mask longer than the image"),
    ],
)
def test_malformed_rle_refused(rle, match):
    with pytest.raises(DataValidationError, match=match) as info:
        rle_decode(rle, (3, 4), where="train.csv line 7 (id case1_day2_slice_0003)")
    assert "train.csv line 7 (id case1_day2_slice_0003)" in str(info.value)


def test_last_pixel_is_inside():
    assert rle_decode("12 1", (3, 4))[2, 3] == 1
    assert rle_decode("1 12", (3, 4)).all()


@pytest.mark.parametrize("shape", [(0, 4), (3, -1), (3,), "ab"])
def test_bad_shape_refused(shape):
    with pytest.raises(DataValidationError, match="shape"):
        rle_decode("", shape, where="x")


def test_huge_shape_refused_before_allocation(monkeypatch):
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", "100")
    with pytest.raises(DataValidationError, match="voxels"):
        rle_decode("1 1", (100, 100), where="x")


def test_encode_refuses_non_binary_and_non_2d():
    with pytest.raises(DataValidationError, match="binary"):
        rle_encode(np.array([[0, 2]]))
    with pytest.raises(DataValidationError, match="2D"):
        rle_encode(np.zeros((2, 2, 3)))


# ------------------------------------------------------------------------------------------ names and ids


def test_parse_id():
    assert parse_id("case123_day20_slice_0001") == (123, 20, 1)
    assert parse_id("case2_day0_slice_0144") == (2, 0, 144)


@pytest.mark.parametrize(
    "bad",
    [
        "case1_day2_slice_1",
        "case1_day2_slice_00001",
        "case1day2_slice_0001",
        "case1_day2_slice_0001.png",
        "",
        " case1_day2_slice_0001",
        "caseX_day2_slice_0001",
    ],
)
def test_parse_id_refuses(bad):
    with pytest.raises(DataValidationError, match="is not of the form"):
        parse_id(bad)


def test_parse_scan_filename():
    assert parse_scan_filename("slice_0001_266_266_1.50_1.50.png") == {
        "slice": 1,
        "width": 266,
        "height": 266,
        "pixel_w": 1.5,
        "pixel_h": 1.5,
    }
    info = parse_scan_filename("/data/train/case7/case7_day0/scans/slice_0080_360_310_1.50_1.63.png")
    assert info == {"slice": 80, "width": 360, "height": 310, "pixel_w": 1.5, "pixel_h": 1.63}


@pytest.mark.parametrize(
    "bad",
    [
        "slice_0001_266_266_1.50.png",
        "slice_0001_266_266_1.50_1.50.jpg",
        "slice_1_266_266_1.50_1.50.png",
        "slice_0001_266_x_1.50_1.50.png",
        "slice_0001_0_266_1.50_1.50.png",
        "slice_0001_266_266_0_1.50.png",
        "scan_0001_266_266_1.50_1.50.png",
    ],
)
def test_parse_scan_filename_refuses_naming_the_file(bad):
    with pytest.raises(DataValidationError) as info:
        parse_scan_filename(f"scans/{bad}")
    assert bad in str(info.value)


# ------------------------------------------------------------------------------------- a tiny fake folder


def _write_scan(root, case, day, slc, w, h, pw=1.5, ph=1.5, value=1000):
    folder = root / "train" / f"case{case}" / f"case{case}_day{day}" / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(h * w).reshape(h, w) * 37 + value) % 65535
    path = folder / f"slice_{slc:04d}_{w}_{h}_{pw:.2f}_{ph:.2f}.png"
    Image.fromarray(arr.astype(np.uint16)).save(path)
    return path, arr.astype(np.uint16)


def _write_csv(path, rows, header="id,class,segmentation"):
    path.write_text(header + "\n" + "".join(f"{i},{c},{s}\n" for i, c, s in rows))
    return path


@pytest.fixture
def fake(tmp_path):
    """Two cases, three scans, one non-square (W 6 × H 4) image; the large bowel lies inside the small bowel."""
    _write_scan(tmp_path, 1, 0, 1, 5, 5)
    _write_scan(tmp_path, 1, 0, 2, 5, 5)
    _write_scan(tmp_path, 1, 3, 1, 5, 5)
    _write_scan(tmp_path, 12, 20, 1, 6, 4, ph=1.63)
    small = np.zeros((4, 6), np.uint8)
    small[1:3, 1:5] = 1
    large = np.zeros((4, 6), np.uint8)
    large[1:3, 2:4] = 1  # entirely inside the small bowel
    stomach = np.zeros((4, 6), np.uint8)
    stomach[0, :] = 1
    stomach[1, 1] = 1  # overlaps the small bowel too
    rows = []
    for id_ in ("case1_day0_slice_0001", "case1_day0_slice_0002", "case1_day3_slice_0001"):
        rows += [(id_, c, "") for c in CLASSES]
    rows[1] = ("case1_day0_slice_0001", "small_bowel", "7 3 12 3")
    rows += [
        ("case12_day20_slice_0001", "large_bowel", rle_encode(large)),
        ("case12_day20_slice_0001", "small_bowel", rle_encode(small)),
        ("case12_day20_slice_0001", "stomach", rle_encode(stomach)),
    ]
    csv_path = _write_csv(tmp_path / "train.csv", rows)
    return tmp_path, csv_path, {"large": large, "small": small, "stomach": stomach}


def test_fake_folder_end_to_end(fake):
    root, csv_path, organs = fake
    rles = read_train_csv(csv_path)
    assert set(rles) == {
        "case1_day0_slice_0001",
        "case1_day0_slice_0002",
        "case1_day3_slice_0001",
        "case12_day20_slice_0001",
    }
    assert rles["case1_day0_slice_0001"] == {"large_bowel": "", "small_bowel": "7 3 12 3", "stomach": ""}
    index = scan_index(root)
    assert [r.id for r in index] == [
        "case1_day0_slice_0001",
        "case1_day0_slice_0002",
        "case1_day3_slice_0001",
        "case12_day20_slice_0001",
    ]  # numeric order: case 12 after case 1
    last = index[-1]
    assert (last.case, last.day, last.slice, last.width, last.height) == (12, 20, 1, 6, 4)
    assert last.shape == (4, 6) and last.spacing == (1.63, 1.5)
    check_consistency(index, rles)

    image = read_scan(last)
    assert image.dtype == np.uint16 and image.shape == (4, 6)
    assert image.max() > 255  # 16-bit values kept

    m = masks_for(last, rles)
    assert m.dtype == np.uint8 and m.shape == (4, 6, 3)
    np.testing.assert_array_equal(m[..., CLASSES.index("large_bowel")], organs["large"])
    np.testing.assert_array_equal(m[..., CLASSES.index("small_bowel")], organs["small"])
    np.testing.assert_array_equal(m[..., CLASSES.index("stomach")], organs["stomach"])
    # overlaps kept: 4 pixels in both bowels, 1 pixel in the small bowel and the stomach
    assert int((m[..., 0] & m[..., 1]).sum()) == 4
    assert int((m[..., 1] & m[..., 2]).sum()) == 1
    assert m.sum(axis=-1).max() == 2

    first = masks_for(index[0], rles)
    assert first.shape == (5, 5, 3)
    assert first[..., 1].sum() == 6 and first[1, 1:4, 1].all() and first[2, 1:4, 1].all()
    assert not first[..., 0].any() and not first[..., 2].any()
    assert not masks_for(index[1], rles).any()


def test_csv_id_without_image(fake):
    root, csv_path, _ = fake
    text = csv_path.read_text() + "".join(f"case9_day1_slice_0033,{c},\n" for c in CLASSES)
    csv_path.write_text(text)
    with pytest.raises(DataValidationError, match="case9_day1_slice_0033") as info:
        check_consistency(scan_index(root), read_train_csv(csv_path))
    assert "no image" in str(info.value)


def test_image_without_csv_rows(fake):
    root, csv_path, _ = fake
    path, _ = _write_scan(root, 1, 0, 7, 5, 5)
    index = scan_index(root)
    rles = read_train_csv(csv_path)
    with pytest.raises(DataValidationError, match="case1_day0_slice_0007") as info:
        check_consistency(index, rles)
    assert "no rows in train.csv" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(DataValidationError, match="case1_day0_slice_0007"):
        masks_for(next(r for r in index if r.slice == 7), rles)


def test_rle_longer_than_its_image(fake):
    root, csv_path, _ = fake
    csv_path.write_text(csv_path.read_text().replace("7 3 12 3", "7 3 25 2"))
    index, rles = scan_index(root), read_train_csv(csv_path)
    with pytest.raises(DataValidationError, match="case1_day0_slice_0001 class small_bowel.*longer than the image"):
        check_consistency(index, rles)
    with pytest.raises(DataValidationError, match="longer than the image"):
        masks_for(index[0], rles)


def test_read_scan_size_mismatch(tmp_path):
    path, _ = _write_scan(tmp_path, 1, 0, 1, 5, 5)
    wrong = path.with_name("slice_0001_5_6_1.50_1.50.png")
    path.rename(wrong)
    record = scan_index(tmp_path)[0]
    with pytest.raises(DataValidationError, match="5×5 pixels, its name declares 5×6") as info:
        read_scan(record)
    assert wrong.name in str(info.value)


def test_read_scan_corrupt_png(tmp_path):
    path, _ = _write_scan(tmp_path, 1, 0, 1, 5, 5)
    path.write_bytes(b"not a png")
    with pytest.raises(DataValidationError, match="cannot be read as a PNG image") as info:
        read_scan(scan_index(tmp_path)[0])
    assert path.name in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "rows, header, match",
    [
        ([("case1_day0_slice_0001", "large_bowel", "")], "id,class", "missing column"),
        ([("case1_day0_slice_0001", "liver", "")], "id,class,segmentation", "line 2 .*unknown class 'liver'"),
        ([("case1_day0_slice_1", "stomach", "")], "id,class,segmentation", "line 2: id 'case1_day0_slice_1'"),
        (
            [("case1_day0_slice_0001", "stomach", "1 2 3")],
            "id,class,segmentation",
            "line 2 \\(id case1_day0_slice_0001, class stomach\\): RLE holds an odd number",
        ),
        (
            [("case1_day0_slice_0001", c, "") for c in CLASSES] + [("case1_day0_slice_0001", "stomach", "1 1")],
            "id,class,segmentation",
            "line 5: duplicate row for id case1_day0_slice_0001 class stomach \\(first on line 4\\)",
        ),
        ([("case1_day0_slice_0001", "stomach", "")], "id,class,segmentation", "no row for class\\(es\\) large_bowel"),
        ([], "id,class,segmentation", "no rows"),
    ],
)
def test_read_train_csv_refuses(tmp_path, rows, header, match):
    path = _write_csv(tmp_path / "train.csv", rows, header=header)
    with pytest.raises(DataValidationError, match=match) as info:
        read_train_csv(path)
    assert "train.csv" in str(info.value)


def test_read_train_csv_missing_and_empty(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        read_train_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataValidationError, match="empty file"):
        read_train_csv(tmp_path / "empty.csv")


def test_scan_index_refuses_bad_names(tmp_path):
    with pytest.raises(DataValidationError, match="folder not found"):
        scan_index(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataValidationError, match="no scans found"):
        scan_index(tmp_path)
    _write_scan(tmp_path, 1, 0, 1, 5, 5)
    bad = tmp_path / "train" / "case1" / "case1_day0" / "scans" / "slice_0002.png"
    Image.fromarray(np.zeros((5, 5), np.uint16)).save(bad)
    with pytest.raises(DataValidationError, match="slice_0002.png"):
        scan_index(tmp_path)
    bad.unlink()
    (tmp_path / "train" / "case1" / "case2_day0" / "scans").mkdir(parents=True)
    with pytest.raises(DataValidationError, match="case2_day0.*case1_day"):
        scan_index(tmp_path)


def test_scan_index_refuses_two_files_for_one_slice(tmp_path):
    _write_scan(tmp_path, 1, 0, 1, 5, 5)
    _write_scan(tmp_path, 1, 0, 1, 6, 6)
    with pytest.raises(DataValidationError, match="a second file for slice 1"):
        scan_index(tmp_path)
