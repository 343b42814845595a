"""Real overlapping pairs from M-FISH karyotypes in the Pommier layout (medseg.data.mfish_pairs)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medseg.data.mfish import find_metaphases, read_metaphase
from medseg.data.mfish_pair_crops import isolate_pair
from medseg.data.mfish_pairs import (
    PairOptions,
    group_splits,
    isolated_chromosomes,
    order_pair,
    pairs_from_karyotype,
    run_mfish_pairs,
)
from medseg.data.pommier import read_pommier_h5
from medseg.data.splits import read_split_file, splits_from_names

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "mfish"
BG, ONE, TWO = 10, 100, 200  # DAPI grey: background, one chromosome, two (overlap)


def _rect(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _draw(shape, chromosomes) -> tuple[np.ndarray, np.ndarray]:
    """DAPI and karyotype of ``(class, mask)`` chromosomes: a pixel of two or more is an overlap (255)."""
    karyo = np.zeros(shape, np.uint8)
    count = np.zeros(shape, np.int32)
    for cls, mask in chromosomes:
        karyo[mask] = cls
        count += mask
    karyo[count >= 2] = 255
    dapi = np.where(count == 0, BG, np.where(count == 1, ONE, TWO)).astype(np.uint8)
    return dapi, karyo


def _cross(shape=(140, 150), extra=()):
    """A (class 7, horizontal, 8 x 90 = 720 px) crossing B (class 3, vertical, 80 x 8 = 640 px) in an 8 x 8 overlap;
    each is cut in two by it."""
    return _draw(shape, [(7, _rect(shape, 60, 68, 30, 120)), (3, _rect(shape, 30, 110, 70, 78)), *extra])


def _expected(karyo_window: np.ndarray, first: int, second: int) -> np.ndarray:
    out = np.zeros(karyo_window.shape, np.uint8)
    out[karyo_window == first] = 1
    out[karyo_window == second] = 2
    out[karyo_window == 255] = 3
    return out


def _window(array: np.ndarray, box, crop=(94, 93)) -> np.ndarray:
    return array[box[0] : box[0] + crop[0], box[1] : box[1] + crop[1]]


# ------------------------------------------------------------------------------------------ one metaphase


@pytest.mark.parametrize("rule, first, second", [("larger", 7, 3), ("lower-class", 3, 7), ("top-left", 7, 3)])
def test_two_crossing_chromosomes_give_one_pair(rule, first, second):
    dapi, karyo = _cross()
    pairs, counts = pairs_from_karyotype(dapi, karyo, PairOptions(rule=rule), folder="A01__XY", image_id="A0101XY")
    assert counts["overlaps"] == 1 and counts["kept"] == 1 and len(pairs) == 1
    p = pairs[0]
    assert p.image.shape == p.labels.shape == (94, 93) and p.image.dtype == p.labels.dtype == np.uint8
    # centred on the pair's bounding box (rows 30-110, columns 30-120)
    assert p.box == ((30 + 110 - 94) // 2, (30 + 120 - 93) // 2) and p.centred_on == "pair" and not p.cut
    np.testing.assert_array_equal(p.labels, _expected(_window(karyo, p.box), first, second))
    np.testing.assert_array_equal(p.image, _window(dapi, p.box))
    assert set(np.unique(p.labels)) == {0, 1, 2, 3}
    # both chromosomes are cut in two by the overlap and still whole: every piece carries its label
    areas = {7: 720, 3: 640}
    assert int((p.labels == 1).sum()) == areas[first] - 64 and int((p.labels == 2).sum()) == areas[second] - 64
    assert int((p.labels == 3).sum()) == 64 == p.overlap_px
    assert p.classes == (first, second) and p.areas == (areas[first], areas[second])
    assert p.record()["folder"] == "A01__XY" and p.record()["slide"] == "A01"


def test_order_pair_rules():
    a = _rect((50, 50), 5, 10, 5, 40)  # 175 px, high
    b = _rect((50, 50), 20, 45, 30, 38)  # 200 px, low
    assert not order_pair(a, b, 2, 9, "larger") and order_pair(b, a, 9, 2, "larger")
    assert order_pair(a, b, 2, 9, "lower-class") and not order_pair(a, b, 9, 2, "lower-class")
    assert order_pair(a, b, 9, 2, "top-left") and not order_pair(b, a, 2, 9, "top-left")
    with pytest.raises(ValueError, match="unknown rule"):
        PairOptions(rule="random")


def test_same_class_and_three_way_cluster_are_left_out_and_counted():
    shape = (300, 300)
    same = [(5, _rect(shape, 40, 48, 10, 100)), (5, _rect(shape, 10, 90, 50, 58))]  # two copies of chromosome 5
    diag = np.zeros(shape, bool)
    for r in range(185, 265):
        diag[r, r - 4 : r + 4] = True  # through (224, 224)
    three = [(1, _rect(shape, 220, 228, 170, 280)), (2, _rect(shape, 170, 280, 220, 228)), (4, diag)]
    pair = [(11, _rect(shape, 40, 48, 180, 280)), (12, _rect(shape, 10, 90, 230, 238))]
    speck = [(20, _rect(shape, 200, 240, 20, 40)), (21, _rect(shape, 238, 239, 30, 32))]  # 2 px "overlap"
    dapi, karyo = _draw(shape, same + three + pair + speck)
    pairs, counts = pairs_from_karyotype(dapi, karyo)
    assert counts["overlaps"] == 4
    assert (counts["kept"], counts["same_class"], counts["three_or_more"], counts["too_small"]) == (1, 1, 1, 1)
    assert counts["no_chromosome"] == counts["duplicate"] == counts["cut_by_crop"] == 0
    assert [p.classes for p in pairs] == [(11, 12)]
    # the 2-px region counts as an overlap with --min-overlap 1, but it borders one class only
    _, counts = pairs_from_karyotype(dapi, karyo, PairOptions(min_overlap_px=1))
    assert counts["too_small"] == 0 and counts["same_class"] == 2


def test_crossing_twice_gives_one_pair_and_a_duplicate():
    shape = (140, 140)
    u = _rect(shape, 20, 90, 30, 38) | _rect(shape, 20, 90, 70, 78) | _rect(shape, 82, 90, 30, 78)
    dapi, karyo = _draw(shape, [(6, u), (9, _rect(shape, 40, 48, 15, 95))])
    pairs, counts = pairs_from_karyotype(dapi, karyo)
    assert counts["overlaps"] == 2 and counts["kept"] == 1 and counts["duplicate"] == 1
    assert int((pairs[0].labels == 3).sum()) == 2 * 64  # both crossings are overlap in the one crop


def test_a_chromosome_crossing_a_third_elsewhere_stays_whole():
    shape = (140, 150)
    c = (12, _rect(shape, 40, 90, 100, 108))  # crosses A at columns 100-108, beyond B
    dapi, karyo = _draw(shape, [(7, _rect(shape, 60, 68, 30, 120)), (3, _rect(shape, 30, 110, 50, 58)), c])
    pairs, counts = pairs_from_karyotype(dapi, karyo)
    assert counts["kept"] == 2
    ab = next(p for p in pairs if p.classes == (7, 3))
    win = _window(karyo, ab.box)
    assert ((win == 255) & (ab.labels == 1)).sum() == 64  # A under C: A only in the pair (A, B)
    assert (ab.labels[win == 12] == 0).all()  # C itself: background
    assert int((ab.labels == 1).sum()) == 720 - 64  # A whole, its piece beyond C included
    assert ab.other_px == int((win == 12).sum()) > 0 and counts["with_other_chromosomes"] == 2


def _cross_beside_another():
    """A crossing with a third chromosome (class 9, 10 x 10) inside its crop: the metaphase, the one pair, the
    counts and the label map's window of the crop."""
    shape = (140, 150)
    dapi, karyo = _cross(shape, extra=[(9, _rect(shape, 35, 45, 35, 45))])
    (p,), counts = pairs_from_karyotype(dapi, karyo)
    return dapi, karyo, p, counts, _window(karyo, p.box)


def test_other_chromosomes_are_background_and_optionally_masked():
    dapi, karyo, p, counts, win = _cross_beside_another()
    assert counts["with_other_chromosomes"] == 1 and p.other_px == 100
    assert (p.labels[win == 9] == 0).all() and (p.image[win == 9] == ONE).all()
    (masked,), _ = pairs_from_karyotype(dapi, karyo, PairOptions(mask_others=True))
    assert (masked.image[win == 9] == BG).all()
    np.testing.assert_array_equal(masked.labels, p.labels)


def test_a_pair_shown_alone_keeps_its_margin_and_paints_the_rest_with_the_background():
    _, _, p, _, win = _cross_beside_another()
    pair = p.labels > 0
    before = p.image.copy()
    alone = isolate_pair(p.image, pair, 2)
    np.testing.assert_array_equal(p.image, before)  # a copy: the crop itself is untouched
    near = ndimage.binary_dilation(pair, np.ones((3, 3), bool), iterations=2)
    np.testing.assert_array_equal(alone[near], p.image[near])  # the pair and 2 px around it as they were
    assert (alone[win == 9] == BG).all() and (p.image[win == 9] == ONE).all()  # the other chromosome gone
    assert (alone[~near] == BG).all() and alone.dtype == p.image.dtype
    np.testing.assert_array_equal(isolate_pair(p.image, pair, 0)[~pair], np.full((~pair).sum(), BG))


def test_pairs_cut_by_the_crop_kept_or_left_out():
    shape = (200, 240)
    dapi, karyo = _draw(shape, [(2, _rect(shape, 100, 108, 10, 230)), (8, _rect(shape, 60, 150, 120, 128))])
    (p,), counts = pairs_from_karyotype(dapi, karyo)
    assert p.cut and counts["cut"] == 1 and counts["cut_by_crop"] == 0
    assert p.centred_on == "pair/overlap"  # rows: the pair fits; columns: 220 px do not, centred on the overlap
    assert p.box[1] == (120 + 128 - 93) // 2
    pairs, counts = pairs_from_karyotype(dapi, karyo, PairOptions(keep_cut=False))
    assert pairs == [] and counts["cut_by_crop"] == 1 and counts["kept"] == 0


def test_small_metaphase_is_padded_to_the_crop():
    shape = (60, 70)
    dapi, karyo = _draw(shape, [(4, _rect(shape, 28, 34, 5, 65)), (5, _rect(shape, 5, 55, 30, 36))])
    (p,), _ = pairs_from_karyotype(dapi, karyo)
    assert p.labels.shape == (94, 93) and int((p.labels == 3).sum()) == 36 and p.box == (0, 0)


def test_isolated_chromosomes():
    shape = (140, 150)
    dapi, karyo = _cross(shape, extra=[(9, _rect(shape, 35, 45, 35, 45)), (22, _rect(shape, 120, 140, 0, 4))])
    found, small = isolated_chromosomes(dapi, karyo, margin=3)
    assert small == 0 and sorted(c.cls for c in found) == [9, 22]
    nine = next(c for c in found if c.cls == 9)
    assert nine.area == 100 and nine.box == (32, 32, 16, 16) and not nine.touches_other and not nine.at_border
    assert nine.mask.sum() == 100 and nine.image.shape == nine.mask.shape == (16, 16)
    assert next(c for c in found if c.cls == 22).at_border


def test_group_splits_keep_slides_together():
    groups = ["A01"] * 3 + ["A02"] * 2 + ["P07"] * 4 + ["V13"] + ["V15"] * 2
    split = group_splits(groups, "pairs", test_fraction=0.2, n_folds=2, seed=0)
    names = [f"pairs[{i}]" for i in range(len(groups))]
    sides = [set(split["test"])] + [set(f["val"]) for f in split["folds"]]
    for g in set(groups):
        members = {n for n, x in zip(names, groups, strict=True) if x == g}
        assert sum(bool(members & s) for s in sides[:1]) + sum(bool(members & s) for s in sides[1:]) == 1
        assert any(members <= s for s in sides)
    parsed = splits_from_names(split, Path("pairs.splits.json"), names, n_folds=2)
    assert len(parsed["test"]) == len(split["test"]) and len(parsed["folds"]) == 2
    assert group_splits(["A01", "A02"], "pairs") == {"test": []}


# ------------------------------------------------------------------------------------------ the command


def _fake_set(root: Path) -> Path:
    """Three slides (four folders) of LZW TIFFs like the published set, plus an EX metaphase and the licence."""
    shape = (140, 150)
    for folder, ident in (
        ("A01__XY", "A0101XY"),
        ("A02__15", "A020115"),
        ("A02__XY", "A0202XY"),
        ("P07__09", "P070109"),
    ):
        d = root / folder
        d.mkdir(parents=True)
        dapi, karyo = _cross(shape, extra=[(9, _rect(shape, 35, 45, 35, 45))])
        Image.fromarray(dapi).save(d / f"{ident}D.tif", compression="tiff_lzw")
        Image.fromarray(karyo).save(d / f"{ident}K.tif", compression="tiff_lzw")
    (root / "A30__EX").mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "A30__EX" / "A3001EXD.tif", compression="tiff_lzw")
    (root / "README.TXT").write_text("Copyright (c) 2000 Advanced Digital Imaging Research\n\nnotice\n---\nrest")
    return root


def test_run_writes_a_pommier_file_medseg_reads(tmp_path):
    src = _fake_set(tmp_path / "mfish")
    out = tmp_path / "out" / "pairs.h5"
    s = run_mfish_pairs(src, out, isolated_dir=tmp_path / "iso", preview=False, progress=False)
    images, labels, report = read_pommier_h5(out)
    assert images.shape == labels.shape == (4, 94, 93) and images.dtype == labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2, 3} and not report.stray_pixels
    with h5py.File(out) as f:
        assert [v.decode() for v in f["folder"][...]] == ["A01__XY", "A02__15", "A02__XY", "P07__09"]
        assert [v.decode() for v in f["slide"][...]] == ["A01", "A02", "A02", "P07"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["synthesized"] is False and meta["real"] is True and meta["n_images"] == 4
    assert meta["rule"]["name"] == "larger" and meta["shape"] == [94, 93]
    assert meta["source"]["n_metaphases"] == 4 and meta["source"]["n_unlabelled_skipped"] == 1
    assert meta["overlaps_found"] == 4 and meta["left_out"]["same_class"] == 0 and meta["with_other_chromosomes"] == 4
    assert meta["licence"]["notice"].startswith("Copyright (c) 2000") and "rest" not in meta["licence"]["notice"]
    assert (out.parent / "pairs.README.TXT").read_text().endswith("rest")
    assert [p["slide"] for p in meta["pairs"]] == ["A01", "A02", "A02", "P07"]
    assert s["isolated"]["n"] == 4 and (tmp_path / "iso" / "README.TXT").is_file()
    rows = list(csv.DictReader((tmp_path / "iso" / "index.csv").open()))
    assert [r["class"] for r in rows] == ["9"] * 4 and rows[0]["area"] == "100" and rows[0]["folder"] == "A01__XY"
    mask = np.array(Image.open(tmp_path / "iso" / "masks" / f"{rows[0]['name']}.png"))
    assert set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 100
    split = read_split_file(out.parent / "pairs.splits.json")
    splits_from_names(split, out.parent / "pairs.splits.json", [f"pairs[{i}]" for i in range(4)], n_folds=2)
    test = set(split["test"])
    assert ("pairs[1]" in test) == ("pairs[2]" in test)  # slide A02's two folders stay together


def test_cli_mfish_pairs_and_info(tmp_path):
    from typer.testing import CliRunner

    from medseg.cli import app

    src = _fake_set(tmp_path / "mfish")
    out = tmp_path / "pairs.h5"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["data", "mfish-pairs", str(src), "-o", str(out), "--rule", "lower-class", "--crop", "96x96", "--limit", "2"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "wrote 2 real pairs of 96x96 from 2 metaphases" in text and "1 unlabelled EX" in text
    _, labels, _ = read_pommier_h5(out)
    assert labels.shape == (2, 96, 96) and labels.max() == 3
    assert json.loads(out.with_suffix(".json").read_text())["rule"]["name"] == "lower-class"
    result = runner.invoke(app, ["data", "info", str(out)], catch_exceptions=False)
    assert result.exit_code == 0 and "synthesized" in result.output and "False" in result.output
    bad = runner.invoke(app, ["data", "mfish-pairs", str(src), "-o", str(out), "--rule", "random"])
    assert bad.exit_code != 0 and "unknown rule" in bad.output


# ------------------------------------------------------------------------------------------ the real set


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real M-FISH set is not beside the repository (../shared/data)")
def test_real_metaphase_gives_pairs_fast():
    started = time.perf_counter()
    metaphases = find_metaphases(SHARED)
    # the first labelled metaphase holding an overlap region (A0101XY, the very first, has none)
    m = next(m for m in metaphases if (read_metaphase(m)[1] == 255).any())
    dapi, karyo = read_metaphase(m)
    pairs, counts = pairs_from_karyotype(dapi, karyo, folder=m.folder, image_id=m.id)
    assert m.id == "A0102XY" and len(pairs) >= 1 and counts["kept"] == len(pairs)
    for p in pairs:
        assert p.labels.shape == (94, 93) and set(np.unique(p.labels)) == {0, 1, 2, 3}
        # DAPI is bright where the labels say chromosome
        assert p.image[p.labels > 0].mean() > 2 * p.image[p.labels == 0].mean()
    assert time.perf_counter() - started < 10


def test_pairs_of_one_slide_stay_on_one_side_of_every_split(tmp_path):
    """A Pommier-layout file with a ``slide`` dataset (as mfish-pairs writes) is split by slide, not by pair."""
    import h5py

    from medseg.config import load_config, set_dotted, validate
    from medseg.data.registry import load_any_data
    from medseg.data.runs import splits_for

    rng = np.random.default_rng(0)
    n = 60
    pairs = np.zeros((n, 94, 93, 2), np.uint8)
    pairs[..., 0] = rng.integers(0, 255, size=(n, 94, 93))
    pairs[:, 30:60, 30:60, 1] = rng.integers(0, 4, size=(n, 30, 30))
    slides = [f"S{i % 12:02d}" for i in range(n)]
    path = tmp_path / "pairs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset_1", data=pairs)
        f.create_dataset("slide", data=np.array(slides, dtype="S"))
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "chromosomes" / "unet.yaml")
    for key, value in {"data.path": str(path), "output.root": str(tmp_path / "runs"), "data.limit": "48"}.items():
        set_dotted(cfg, key, value)
    data = load_any_data(validate(cfg), progress=False)
    assert data.groups == slides[:48] and any("12 slides" in note for note in data.notes)
    splits, _ = splits_for(validate(cfg), data)
    test_slides = {data.groups[i] for i in splits["test"]}
    assert test_slides
    for fold in splits["folds"]:
        sides = [{data.groups[i] for i in fold[k]} for k in ("train", "val")]
        assert sides[0].isdisjoint(sides[1]) and sides[0].isdisjoint(test_slides) and sides[1].isdisjoint(test_slides)


def test_pairs_of_two_slides_warn_that_no_test_set_can_be_held_out(tmp_path):
    src = _fake_set(tmp_path / "mfish")
    out = tmp_path / "pairs.h5"
    with pytest.warns(
        UserWarning,
        match=r"2 slide\(s\) \(A01, A02\).*at least 5 slides.*holds no test set and no "
        "folds either: medseg train/cv on it will refuse it",
    ):
        s = run_mfish_pairs(src, out, limit=2, preview=False, progress=False)
    assert s["held_out_slides"] == [] and read_split_file(out.parent / "pairs.splits.json") == {"test": []}
