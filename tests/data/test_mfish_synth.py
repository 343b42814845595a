"""Tests of Pommier's procedure on real (isolated M-FISH) chromosomes: medseg.data.mfish_synth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.data.mfish_synth import (
    calibrate_blend,
    compare_pair_sets,
    crops_from_isolated,
    pair_statistics,
    run_mfish_synth,
    summarize,
)
from medseg.data.pommier import read_pommier_h5
from medseg.data.synth import place_pair, synthesize_pairs

MFISH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mfish"
FIELDS = ["name", "folder", "image", "class", "area", "top", "left", "height", "width", "touches_other", "at_border"]


def _bar(length: int, width: int, angle: float = 0.0) -> np.ndarray:
    """A bool bar mask of ``length`` x ``width`` pixels, rotated by a multiple of 90 degrees, with a margin."""
    m = np.zeros((length + 6, length + 6), bool)
    c = (length + 6) // 2
    m[3 : 3 + length, c - width // 2 : c - width // 2 + width] = True
    return np.rot90(m, int(angle // 90))


def _fake_iso(root: Path, slides: dict[str, int], per_slide: int = 4, touching: int = 0) -> Path:
    """An isolated-chromosome folder: ``per_slide`` bars per slide, each slide's bars of grey ``slides[s]``
    (+ ``touching`` extra bars per slide flagged as touching another, of grey 250)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for slide, grey in slides.items():
        for k in range(per_slide + touching):
            mask = _bar(int(rng.integers(18, 30)), int(rng.integers(4, 7)))
            flagged = k >= per_slide
            img = np.where(mask, 250 if flagged else grey, 12).astype(np.uint8)
            name = f"{slide}__XY__{slide}01XY__{k + 1:03d}_c{k + 1:02d}"
            Image.fromarray(img).save(root / "images" / f"{name}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{name}.png")
            rows.append(
                {
                    "name": name,
                    "folder": f"{slide}__XY",
                    "image": f"{slide}01XY",
                    "class": k + 1,
                    "area": int(mask.sum()),
                    "top": 0,
                    "left": 0,
                    "height": mask.shape[0],
                    "width": mask.shape[1],
                    "touches_other": int(flagged),
                    "at_border": 0,
                }
            )
    with (root / "index.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    (root / "README.TXT").write_text("Copyright notice of the test set\n---\nrest\n")
    return root


def test_crops_only_from_allowed_slides(tmp_path):
    iso = _fake_iso(tmp_path / "iso", {"A01": 60, "B02": 120, "C03": 200}, touching=1)
    crops, rec = crops_from_isolated(iso, exclude_slides="C03")
    assert rec["slides_used"] == ["A01", "B02"] and rec["slides_excluded"] == ["C03"]
    assert len(crops) == 8 and rec["left_out"]["touches_other"] == 2 and rec["left_out"]["other_slide"] == 5
    assert all(not c.name.startswith("C03") for c in crops)
    crops, rec = crops_from_isolated(iso, slides=["B02"])
    assert rec["slides_used"] == ["B02"] and {c.name[:3] for c in crops} == {"B02"}
    with pytest.raises(Exception, match="Z99"):
        crops_from_isolated(iso, slides="Z99")


def test_run_never_uses_excluded_slide(tmp_path):
    # slide A01 grey 60, B02 grey 100, excluded C03 grey 200: with the sum of two layers an overlap of the allowed
    # slides reaches at most (100 - 12) * 2 = 176 < 188 = one layer of C03, and singles at most 88
    iso = _fake_iso(tmp_path / "iso", {"A01": 60, "B02": 100, "C03": 200}, touching=1)
    out = tmp_path / "syn.h5"
    s = run_mfish_synth(iso, out, exclude_slides=["C03"], n_pairs=40, seed=1, blend="sum", progress=False)
    images, labels, _ = read_pommier_h5(out)
    assert len(images) == 40
    prov = json.loads(out.with_suffix(".json").read_text())
    assert prov["slides_used"] == ["A01", "B02"] == s["source"]["slides_used"]
    assert prov["source"]["slides_excluded"] == ["C03"]
    assert all(not n.startswith("C03") for n in prov["source"]["crops"])
    single = (labels == 1) | (labels == 2)
    assert images[single].max() <= 88 and images[labels == 3].max() <= 176
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert (images[labels == 0] == 0).all() and (images[labels > 0] > 0).all()
    assert out.with_name("syn.README.TXT").read_text().startswith("Copyright notice")
    assert prov["licence"]["notice"] == "Copyright notice of the test set"


def test_overlap_where_both_masks_and_weighted_blend():
    from medseg.data.synth import ChromosomeCrop

    a = ChromosomeCrop(image=np.where(_bar(20, 4), 110, 10).astype(np.uint8), mask=_bar(20, 4), name="a")
    b = ChromosomeCrop(image=np.where(_bar(20, 4), 60, 10).astype(np.uint8), mask=_bar(20, 4), name="b")
    res = {w: place_pair(a, b, angle_beta=90, offset=(0, 0), shape=(40, 40), blend=w) for w in ("sum", "max", 0.5)}
    lab = res["sum"].labels
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    assert all((r.labels == lab).all() for r in res.values())
    ov = lab == 3
    assert (res["sum"].image[ov] == 150).all() and (res["max"].image[ov] == 100).all()
    assert (res[0.5].image[ov] == 125).all()  # max + 0.5 * min = 100 + 25
    with pytest.raises(ValueError, match="blend"):
        place_pair(a, b, blend=1.5)


def test_statistics_of_hand_made_pair():
    lab = np.zeros((40, 40), np.uint8)
    img = np.zeros((40, 40), np.uint8)
    lab[5:35, 18:22] = 1  # vertical bar 30 x 4
    lab[18:22, 5:35] |= 2  # horizontal bar 4 x 30: where both, 3
    img[lab == 1], img[lab == 2], img[lab == 3] = 50, 50, 75
    s = pair_statistics(img, lab)
    assert s["area_a"][0] == 120 and s["area_b"][0] == 120 and s["overlap"][0] == 16
    assert s["angle"][0] == pytest.approx(90.0, abs=0.5)
    assert s["intensity_ratio"][0] == pytest.approx(1.5)
    lab2 = np.zeros((40, 40), np.uint8)
    lab2[5:35, 18:22] = 1
    lab2[5:35, 20:24] |= 2  # parallel bars
    assert pair_statistics(img, lab2)["angle"][0] == pytest.approx(0.0, abs=0.5)
    q = summarize({"x": np.array([1.0, 2.0, 3.0, np.nan])})["x"]
    assert q["n"] == 3 and q["median"] == 2.0 and q["q1"] == 1.5


def test_compare_writes_figure_and_json(tmp_path):
    iso = _fake_iso(tmp_path / "iso", {"A01": 60, "B02": 100})
    crops, _ = crops_from_isolated(iso)
    one = synthesize_pairs(crops, n_pairs=20, seed=0, blend="sum")[:2]
    two = synthesize_pairs(crops, n_pairs=20, seed=1, blend="max")[:2]
    summ = compare_pair_sets({"real": one, "synth": two}, tmp_path / "c.png", tmp_path / "c.json")
    assert (tmp_path / "c.png").stat().st_size > 1000
    data = json.loads((tmp_path / "c.json").read_text())
    assert data == json.loads(json.dumps(summ))
    assert set(data["real"]) == {"area_a", "area_b", "overlap", "intensity_ratio", "angle"}
    assert data["real"]["intensity_ratio"]["median"] > data["synth"]["intensity_ratio"]["median"]
    w, medians = calibrate_blend(crops, (medians_target := 1.5), n_pairs=20, weights=(0.0, 1.0))
    assert 0.0 <= w <= 1.0 and medians[0.0] < medians_target < medians[1.0]


@pytest.mark.skipif(not (MFISH / "README.TXT").is_file(), reason=f"M-FISH set not present at {MFISH}")
def test_real_isolated_chromosomes_one_slide(tmp_path):
    from medseg.data.mfish_pairs import run_mfish_pairs

    run_mfish_pairs(MFISH, tmp_path / "pairs.h5", limit=2, isolated_dir=tmp_path / "iso", preview=False, progress=False)
    crops, rec = crops_from_isolated(tmp_path / "iso")
    assert rec["slides_used"] and len(crops) >= 10
    s = run_mfish_synth(
        tmp_path / "iso", tmp_path / "syn.h5", n_pairs=10, progress=False, compare=tmp_path / "pairs.h5"
    )
    assert s["n_images"] == 10 and Path(s["compare_png"]).is_file()
    assert (tmp_path / "syn.README.TXT").is_file()


# --------------------------------------------------------------------------------------------------------
# Matching the real pairs: label rule, size weights, angle rejection; the demo's default output unchanged
# --------------------------------------------------------------------------------------------------------


def _slanted_bars(n: int = 10, seed: int = 0) -> list:
    """``n`` bar-shaped crops of varied lengths (16-36 px) and widths (4-6 px), axis-aligned (rotation is the
    synthesizer's)."""
    from medseg.data.synth import ChromosomeCrop

    rng = np.random.default_rng(seed)
    crops = []
    for k in range(n):
        m = _bar(int(rng.integers(16, 37)), int(rng.integers(4, 7)))
        crops.append(
            ChromosomeCrop(
                image=np.where(m, 80 + 10 * (k % 5), 10).astype(np.uint8),
                mask=m,
                name=f"A01__XY__A01XY__{k + 1:03d}_c{k + 1:02d}",
            )
        )
    return crops


def test_label_one_is_the_larger_chromosome(tmp_path):
    crops = _slanted_bars()
    _, labels, st = synthesize_pairs(crops, n_pairs=60, seed=3, rule="larger")
    s = pair_statistics(np.zeros_like(labels), labels)
    assert (s["area_a"] >= s["area_b"]).all()
    _, labels0, _ = synthesize_pairs(crops, n_pairs=60, seed=3)  # crop order: A is not always the larger
    s0 = pair_statistics(np.zeros_like(labels0), labels0)
    assert (s0["area_a"] < s0["area_b"]).any()
    # the same placements, only relabelled
    assert ((labels > 0) == (labels0 > 0)).all() and ((labels == 3) == (labels0 == 3)).all()
    # the command body orders by the larger by default
    iso = _fake_iso(tmp_path / "iso", {"A01": 60, "B02": 100})
    out = tmp_path / "syn.h5"
    s = run_mfish_synth(iso, out, n_pairs=30, seed=2, progress=False)
    _, lab, _ = read_pommier_h5(out)
    st = pair_statistics(np.zeros_like(lab), lab)
    assert (st["area_a"] >= st["area_b"]).all() and s["rule"] == "larger"
    with pytest.raises(ValueError, match="rule"):
        synthesize_pairs(crops, n_pairs=2, rule="biggest")


def test_angle_matching_moves_angles_toward_target():
    from medseg.data.mfish_synth import angle_acceptance

    crops = _slanted_bars()
    target = np.clip(np.random.default_rng(0).normal(85.0, 4.0, 300), 0, 90)
    _, lab_off, _ = synthesize_pairs(crops, n_pairs=150, seed=0)
    _, lab_on, st = synthesize_pairs(crops, n_pairs=150, seed=0, accept=angle_acceptance(target))
    off = np.nanmedian(pair_statistics(np.zeros_like(lab_off), lab_off)["angle"])
    on = np.nanmedian(pair_statistics(np.zeros_like(lab_on), lab_on)["angle"])
    assert st["rejected_accept"] > 0
    assert on > 75 and on - off > 20, (off, on)


def test_size_weights_match_real_areas():
    from medseg.data.mfish_synth import size_weights

    crops = _slanted_bars(20, seed=1)
    areas = np.array([c.area for c in crops])
    real = np.full(200, float(np.sort(areas)[-3:].mean())) + np.arange(200) % 7  # the largest chromosomes
    w = size_weights(areas, real, n_bins=4)
    assert w.shape == (20,) and (w > 0).all()
    assert w[np.argmax(areas)] > 10 * w[np.argmin(areas)]
    _, labels, st = synthesize_pairs(crops, n_pairs=80, seed=0, crop_weights=w)
    _, labels0, _ = synthesize_pairs(crops, n_pairs=80, seed=0)
    big = (labels > 0).reshape(80, -1).sum(1).mean()
    assert big > 1.2 * (labels0 > 0).reshape(80, -1).sum(1).mean()


def test_demo_synth_default_output_unchanged():
    """The default path (no rule, no weights, no acceptance) is the plain Pommier procedure: the options only act
    when given (checked by hand against the code before them, byte for byte: `medseg data synth --n-pairs 50`), so
    the demo's data do not move; a hard-coded checksum would break with a numpy/scipy release, not with medseg."""
    from medseg.data.synth import chromosome_library

    library = chromosome_library(6, seed=0)
    im, lab, st = synthesize_pairs(library, n_pairs=20, seed=0)
    im2, lab2, st2 = synthesize_pairs(library, n_pairs=20, seed=0, rule=None, crop_weights=None, accept=None)
    assert np.array_equal(im, im2) and np.array_equal(lab, lab2)
    assert np.array_equal(st["pair_index"], st2["pair_index"])
    assert "rejected_accept" not in st
    # every chromosome pair is visited in turn (not drawn with weights): the first pairs are distinct
    pairs = [tuple(p) for p in np.asarray(st["pair_index"])[:10]]
    assert len(set(pairs)) == len(pairs)
