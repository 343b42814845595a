"""Tests of the overlapping-chromosome synthesizer (medseg.data.synth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medseg.data import synth
from medseg.data.pommier import read_pommier_h5
from medseg.data.synth import (
    ChromosomeCrop,
    chromosome_library,
    crops_from_folder,
    crops_from_metaphase,
    otsu_threshold,
    place_pair,
    render_chromosome,
    rotate_crop,
    run_synth,
    synthesize_pairs,
)
from medseg.errors import DataValidationError

EIGHT = np.ones((3, 3), bool)
OUTCOMES = ("kept", "rejected_no_overlap", "rejected_covered", "rejected_outside")


def _extent_along_axis(mask: np.ndarray) -> tuple[float, float]:
    """Length along the principal axis and mean width of a mask (pixel counts)."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([ys, xs], 1).astype(float)
    pts -= pts.mean(0)
    _, _, vt = np.linalg.svd(pts, full_matrices=False)
    proj = pts @ vt[0]
    length = proj.max() - proj.min() + 1
    return length, mask.sum() / length


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def library() -> list[ChromosomeCrop]:
    return chromosome_library(10, seed=3)


# ---------------------------------------------------------------------------------------------- render


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_render_shapes_dtypes_and_mask_covers_bright_pixels(seed):
    rng = np.random.default_rng(seed)
    c = render_chromosome(rng, length=40, width=7, n_bands=8, bend=0.8, centromere=0.35, name="x")
    assert c.image.dtype == np.uint8 and c.image.ndim == 2
    assert c.mask.dtype == bool and c.mask.shape == c.image.shape
    assert c.name == "x"
    _, n = ndimage.label(c.mask, EIGHT)
    assert n == 1
    # tight crop: the mask's bounding box with a small margin
    ys, xs = np.nonzero(c.mask)
    assert ys.min() <= 2 and xs.min() <= 2
    assert c.image.shape[0] - ys.max() - 1 <= 2 and c.image.shape[1] - xs.max() - 1 <= 2
    bg = np.median(c.image[~c.mask])
    inside = np.median(c.image[c.mask])
    assert bg < 20 and inside > bg + 40  # bright chromosome on a dark background
    bright = c.image > bg + 0.6 * (inside - bg)
    assert not (bright & ~c.mask).any()  # every bright pixel is the chromosome's own
    assert (c.image[c.mask] > bg + 10).mean() > 0.97


def test_render_geometry_length_width_and_centromere():
    rng = np.random.default_rng(5)
    c = render_chromosome(rng, length=50, width=8, n_bands=6, bend=0.0, centromere=0.5, noise=0, blur=0)
    length, width = _extent_along_axis(c.mask)
    assert 46 <= length <= 54
    assert 5.5 <= width <= 8.5  # a little under 8: constriction and rounded ends
    # the constriction: the mask is narrowest near the middle of the length, not at the arms
    ys, xs = np.nonzero(c.mask)
    pts = np.stack([ys, xs], 1).astype(float)
    centred = pts - pts.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = np.rint(centred @ vt[0]).astype(int)
    counts = np.bincount(proj - proj.min())
    mid = len(counts) // 2
    fifth = len(counts) // 5
    arms = np.concatenate([counts[fifth : 2 * fifth], counts[3 * fifth : 4 * fifth]])
    assert counts[mid - 2 : mid + 3].min() < arms.mean()


def test_render_banding_and_telomeres():
    kw = dict(length=50, width=8, n_bands=8, bend=0.2, centromere=0.4, noise=0)
    with_t = render_chromosome(np.random.default_rng(7), telomeres=True, **kw)
    without = render_chromosome(np.random.default_rng(7), telomeres=False, **kw)
    assert with_t.image.max() > without.image.max() + 20  # telomere spots
    # same chromosome (same seed, no noise): the difference is the spots, near the two ends
    assert with_t.image.shape == without.image.shape and _iou(with_t.mask, without.mask) > 0.9
    spots, n = ndimage.label(with_t.image.astype(int) - without.image.astype(int) > 15)
    centres = np.array(ndimage.center_of_mass(spots > 0, spots, range(1, n + 1)))
    cy, cx = np.argwhere(with_t.mask).mean(0)
    length, _ = _extent_along_axis(with_t.mask)
    assert n >= 2
    assert (np.hypot(centres[:, 0] - cy, centres[:, 1] - cx) > 0.35 * length).all()
    span = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1)).max()
    assert span > 0.7 * length  # spots at both ends
    # banding: intensity varies along the chromosome, not only at the edges
    core = ndimage.binary_erosion(without.mask, iterations=2)
    vals = without.image[core].astype(float)
    assert vals.max() - vals.min() > 25


def test_render_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        render_chromosome(rng, length=0, width=5, n_bands=3, bend=0, centromere=0.5)
    with pytest.raises(ValueError):
        render_chromosome(rng, length=30, width=5, n_bands=3, bend=0, centromere=1.5)


def test_library_scale_variety_and_determinism():
    lib = chromosome_library(24, seed=11)
    assert len(lib) == 24 and len({c.name for c in lib}) == 24
    lengths = []
    for c in lib:
        length, width = _extent_along_axis(c.mask)
        lengths.append(length)
        assert 15 <= length <= 66
        assert 3.5 <= width <= 9.5
        assert max(c.image.shape) <= 70
    assert max(lengths) > 45 and min(lengths) < 30  # varied, karyotype-like
    assert lengths[0] > lengths[-4]  # chromosome 1 before chromosome 21
    again = chromosome_library(24, seed=11)
    assert all((a.image == b.image).all() and (a.mask == b.mask).all() for a, b in zip(lib, again, strict=True))
    other = chromosome_library(24, seed=12)
    assert any(a.image.shape != b.image.shape or (a.image != b.image).any() for a, b in zip(lib, other, strict=True))


# ---------------------------------------------------------------------------------------------- pairs


def test_synthesize_one_pass_labels_and_counts(library):
    images, labels, stats = synthesize_pairs(library, seed=0, min_overlap_px=5)
    n_all = len(library) * (len(library) - 1) // 2
    assert stats["generated"] == n_all  # one pass over every unordered pair
    assert stats["kept"] == len(images) == len(labels) > 0
    assert sum(stats[k] for k in OUTCOMES) == n_all
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.shape == labels.shape == (stats["kept"], 94, 93)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    flat = labels.reshape(len(labels), -1)
    assert ((flat == 3).sum(1) >= 5).all()
    assert ((flat == 1).sum(1) > 0).all() and ((flat == 2).sum(1) > 0).all()
    assert ((images > 0) == (labels > 0)).all()  # black background, every labelled pixel lit
    pairs = stats["pair_index"]
    assert pairs.shape == (len(images), 2) and (pairs[:, 0] < pairs[:, 1]).all()
    assert len({tuple(p) for p in pairs}) == len(pairs)  # one placement per pair in a single pass
    assert (stats["overlap_px"] == (flat == 3).sum(1)).all()


def test_synthesize_repeats_passes_until_n_pairs(library):
    n_all = len(library) * (len(library) - 1) // 2
    images, labels, stats = synthesize_pairs(library, n_pairs=2 * n_all + 7, seed=1)
    assert len(images) == stats["kept"] == 2 * n_all + 7
    assert stats["passes"] >= 3
    assert stats["generated"] == sum(stats[k] for k in OUTCOMES)
    seen = {tuple(p) for p in stats["pair_index"]}
    assert len(seen) >= 0.9 * n_all and all(i < j for i, j in seen)
    counts = np.unique(stats["pair_index"], axis=0, return_counts=True)[1]
    assert counts.max() <= stats["passes"]  # at most one placement per pair and pass


def test_synthesize_overlap_sizes_vary(library):
    _, labels, stats = synthesize_pairs(library, n_pairs=300, seed=2)
    ov = stats["overlap_px"]
    assert ov.min() < 10 and ov.max() > 80 and 15 < np.median(ov) < 80  # tips crossing to large overlaps


def test_synthesize_is_deterministic(library):
    a = synthesize_pairs(library, n_pairs=40, seed=4)
    b = synthesize_pairs(library, n_pairs=40, seed=4)
    c = synthesize_pairs(library, n_pairs=40, seed=5)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and (a[2]["pair_index"] == b[2]["pair_index"]).all()
    assert not (a[0] == c[0]).all()


def test_synthesize_errors(library):
    with pytest.raises(ValueError, match="two"):
        synthesize_pairs(library[:1])
    with pytest.raises(ValueError, match="blend"):
        synthesize_pairs(library, n_pairs=2, blend="mean")
    # crops that cannot fit the frame: the loop must stop with a clear message, not spin
    with pytest.raises(ValueError, match="frame"):
        synthesize_pairs(library, n_pairs=5, shape=(20, 20))


def _rect_crop(h: int, w: int, value: int, name: str, bg: int = 10, margin: int = 2) -> ChromosomeCrop:
    img = np.full((h + 2 * margin, w + 2 * margin), bg, np.uint8)
    mask = np.zeros(img.shape, bool)
    img[margin : margin + h, margin : margin + w] = value
    mask[margin : margin + h, margin : margin + w] = True
    return ChromosomeCrop(img, mask, name)


def test_place_pair_deterministic_relabelling():
    alpha = _rect_crop(4, 20, 110, "a")  # rotated by 90 degrees: 20 rows x 4 cols
    beta = _rect_crop(3, 15, 70, "b")  # not rotated: 3 rows x 15 cols
    res = place_pair(alpha, beta, angle_alpha=90, angle_beta=0, offset=(8, -5), shape=(40, 30))
    assert res.status == "kept"
    # union box: rows 0..19 (alpha) and 8..10 (beta); cols -5..9 -> 20 x 15, centred in 40 x 30
    top, left = (40 - 20) // 2, (30 - 15) // 2
    assert res.alpha_origin == (top, left + 5) and res.beta_origin == (top + 8, left)
    a_mask = np.zeros((40, 30), bool)
    a_mask[top : top + 20, left + 5 : left + 9] = True
    b_mask = np.zeros((40, 30), bool)
    b_mask[top + 8 : top + 11, left : left + 15] = True
    assert ((res.labels == 1) | (res.labels == 3)).tolist() == a_mask.tolist()
    assert ((res.labels == 2) | (res.labels == 3)).tolist() == b_mask.tolist()
    assert res.overlap_px == (a_mask & b_mask).sum() == 12
    # grey values: background-subtracted signals, added in the overlap
    assert (res.image[a_mask & ~b_mask] == 100).all()
    assert (res.image[b_mask & ~a_mask] == 60).all()
    assert (res.image[a_mask & b_mask] == 160).all()
    assert (res.image[~(a_mask | b_mask)] == 0).all()
    mx = place_pair(alpha, beta, angle_alpha=90, offset=(8, -5), shape=(40, 30), blend="max")
    assert (mx.image[a_mask & b_mask] == 100).all()


def test_place_pair_rejections():
    alpha = _rect_crop(4, 20, 110, "a")
    beta = _rect_crop(3, 15, 70, "b")
    assert place_pair(alpha, beta, offset=(10, 0), shape=(60, 60)).status == "no_overlap"
    assert place_pair(alpha, beta, offset=(2, 10), shape=(10, 10)).status == "outside"
    small = _rect_crop(2, 5, 70, "s")
    assert place_pair(alpha, small, offset=(1, 3), shape=(60, 60)).status == "covered"
    assert place_pair(alpha, beta, offset=(3, 17), shape=(60, 60), min_overlap_px=5).status == "no_overlap"
    assert place_pair(alpha, beta, offset=(3, 17), shape=(60, 60), min_overlap_px=3).status == "kept"


@pytest.mark.parametrize("angles", [(37.0, 211.0), (123.5, 0.0)])
def test_labels_match_rotated_translated_masks(library, angles):
    alpha, beta = library[1], library[6]
    offset = (4, 3)
    res = place_pair(alpha, beta, angle_alpha=angles[0], angle_beta=angles[1], offset=offset, shape=(94, 93))
    assert res.status == "kept"
    _, ma = rotate_crop(alpha, angles[0])
    _, mb = rotate_crop(beta, angles[1])
    expect_a = np.zeros((94, 93), bool)
    expect_b = np.zeros((94, 93), bool)
    ay, ax = res.alpha_origin
    by, bx = res.beta_origin
    assert (by - ay, bx - ax) == offset
    expect_a[ay : ay + ma.shape[0], ax : ax + ma.shape[1]] = ma
    expect_b[by : by + mb.shape[0], bx : bx + mb.shape[1]] = mb
    assert (np.isin(res.labels, (1, 3)) == expect_a).all()
    assert (np.isin(res.labels, (2, 3)) == expect_b).all()
    assert abs(int(ma.sum()) - alpha.area) <= 0.15 * alpha.area  # a rotation keeps the area


# ---------------------------------------------------------------------------------------------- folder


def _blob_image(shape=(30, 40), value=150, bg=20, speck=True) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = ((yy - 15) / 6.0) ** 2 + ((xx - 20) / 14.0) ** 2 <= 1
    img = np.full(shape, bg, np.uint8)
    img[mask] = value
    if speck:
        img[1:3, 1:3] = value  # a smaller object: the largest one is the chromosome
    return img, mask


def test_crops_from_folder_8bit_16bit_rgb_and_polarity(tmp_path, library):
    img, mask = _blob_image()
    Image.fromarray(img).save(tmp_path / "a_grey8.png")
    Image.fromarray(img.astype(np.uint16) * 250 + 1000).save(tmp_path / "b_grey16.png")
    inverted_rgb = np.repeat((255 - img)[..., None], 3, axis=2)  # dark chromosome on a bright background
    Image.fromarray(inverted_rgb).save(tmp_path / "c_rgb_inverted.png")
    Image.fromarray(library[0].image).save(tmp_path / "d_real.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with Image.open(tmp_path / "b_grey16.png") as im:
        assert np.asarray(im).max() > 255  # really a 16-bit file

    crops = crops_from_folder(tmp_path)
    assert [c.name for c in crops] == ["a_grey8", "b_grey16", "c_rgb_inverted", "d_real"]
    for c in crops[:3]:
        assert c.image.dtype == np.uint8
        assert c.mask.sum() == mask.sum()  # the ellipse, not the speck
        assert c.image[c.mask].mean() > c.image[~c.mask].mean() + 80  # bright on dark
        assert c.mask.shape == (mask.any(1).sum() + 4, mask.any(0).sum() + 4)  # tight, margin 2
    assert crops[1].image.max() == 255  # 16-bit stretched to the 8-bit range
    assert _iou(crops[3].mask, library[0].mask) > 0.8
    half = crops_from_folder(tmp_path, scale=0.5)
    assert abs(half[0].mask.sum() - mask.sum() / 4) < 0.2 * mask.sum() / 4


def test_crops_from_folder_tiff(tmp_path):
    import tifffile

    img, mask = _blob_image(speck=False)
    tifffile.imwrite(tmp_path / "x.tif", img.astype(np.uint16) * 16)
    (crop,) = crops_from_folder(tmp_path)
    assert crop.mask.sum() == mask.sum()


def test_crops_from_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataValidationError, match="no images"):
        crops_from_folder(empty)
    (empty / "readme.md").write_text("still no images")
    with pytest.raises(DataValidationError, match="no images"):
        crops_from_folder(empty)
    with pytest.raises(DataValidationError, match="not a folder"):
        crops_from_folder(tmp_path / "missing")

    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(_blob_image()[0]).save(broken / "good.png")
    (broken / "chrom_07.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataValidationError, match="chrom_07.png") as info:
        crops_from_folder(broken)
    assert "cannot be read as a PNG/TIFF image" in str(info.value)

    blank = tmp_path / "blank"
    blank.mkdir()
    Image.fromarray(np.full((20, 20), 40, np.uint8)).save(blank / "uniform_3.png")
    with pytest.raises(DataValidationError, match="uniform_3.png.*no object"):
        crops_from_folder(blank)


# ---------------------------------------------------------------------------------------------- metaphase


def _metaphase(library: list[ChromosomeCrop], seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """A 160 x 220 'metaphase': the crops on a grid with gaps, a speck, a cut-off object at the border."""
    rng = np.random.default_rng(seed)
    canvas = np.clip(10 + rng.normal(0, 2.5, (160, 220)), 0, 255).astype(np.uint8)
    truth = []
    for k, c in enumerate(library[:6]):
        y, x = 8 + (k // 3) * 75, 8 + (k % 3) * 70
        h, w = c.image.shape
        region = canvas[y : y + h, x : x + w]
        np.copyto(region, np.maximum(region, c.image))
        m = np.zeros(canvas.shape, bool)
        m[y : y + h, x : x + w] = c.mask
        truth.append(m)
    canvas[150:153, 100:103] = 120  # debris, 9 px < min_area
    canvas[60:70, 212:220] = 120  # object cut by the right border
    return canvas, truth


def test_crops_from_metaphase_finds_the_chromosomes(tmp_path, library):
    canvas, truth = _metaphase(library)
    crops = crops_from_metaphase(canvas)
    assert len(crops) == 6
    assert [c.name for c in crops] == [f"metaphase#{k}" for k in range(1, 7)]
    areas = sorted(c.area for c in crops)
    true_areas = sorted(int(m.sum()) for m in truth)
    assert all(
        abs(a - b) <= 0.2 * b for a, b in zip(areas, true_areas, strict=True)
    )  # a global threshold cuts dim ones a little
    for c in crops:
        assert c.image.dtype == np.uint8 and c.mask.any()
        _, n = ndimage.label(c.mask, EIGHT)
        assert n == 1

    # the same from a file, and from an inverted (bright-background) 16-bit file
    Image.fromarray(canvas).save(tmp_path / "meta.png")
    assert len(crops_from_metaphase(tmp_path / "meta.png")) == 6
    Image.fromarray((255 - canvas).astype(np.uint16) * 200).save(tmp_path / "meta_inv16.png")
    assert len(crops_from_metaphase(tmp_path / "meta_inv16.png")) == 6
    # size filters
    assert len(crops_from_metaphase(canvas, min_area=max(true_areas) + 1)) == 0
    assert len(crops_from_metaphase(canvas, max_area=areas[2])) == 3
    assert len(crops_from_metaphase(canvas, min_area=5)) == 7  # the debris, but still not the cut one


def test_crops_from_metaphase_errors(tmp_path):
    with pytest.raises(DataValidationError, match="not found"):
        crops_from_metaphase(tmp_path / "nope.tif")
    with pytest.raises(DataValidationError, match="uniform"):
        crops_from_metaphase(np.zeros((50, 50), np.uint8))


def test_otsu_threshold():
    img = np.array([10] * 50 + [200] * 50, np.uint8)
    t = otsu_threshold(img)
    assert 10 <= t < 200
    assert otsu_threshold(np.full(5, 3)) is None


# ---------------------------------------------------------------------------------------------- run_synth


def test_run_synth_writes_h5_json_and_preview(tmp_path):
    out = tmp_path / "sub" / "synthetic.h5"
    summary = run_synth(out, n_chromosomes=8, n_pairs=50, seed=3, progress=False)
    images, labels, report = read_pommier_h5(out)
    assert images.shape == labels.shape == (50, 94, 93)
    assert report.total_stray_pixels == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["synthesized"] is True
    assert meta["seed"] == 3 and meta["shape"] == [94, 93] and meta["n_images"] == meta["kept"] == 50
    assert meta["source"]["kind"] == "procedural" and meta["source"]["n_crops"] == 8
    assert meta["medseg_version"]
    assert meta["generated"] == sum(meta[k] for k in OUTCOMES)
    assert len(meta["pairs"]) == 50 and all(i < j < 8 for i, j in meta["pairs"])
    png = out.with_suffix(".png")
    with Image.open(png) as im:
        assert im.size[0] > 300 and im.size[1] > 200
    assert summary["output"] == str(out) and summary["kept"] == 50
    assert sorted(p.name for p in out.parent.iterdir()) == ["synthetic.h5", "synthetic.json", "synthetic.png"]
    # same seed, same data
    run_synth(tmp_path / "again.h5", n_chromosomes=8, n_pairs=50, seed=3, progress=False, preview=False)
    again, _, _ = read_pommier_h5(tmp_path / "again.h5")
    assert (again == images).all()


def test_run_synth_from_folder_and_metaphase(tmp_path, library):
    folder = tmp_path / "crops"
    folder.mkdir()
    for c in library[:5]:
        Image.fromarray(c.image).save(folder / f"{c.name}.png")
    s = run_synth(tmp_path / "f.h5", crops_dir=folder, progress=False, preview=False)
    assert s["source"]["kind"] == "folder" and s["source"]["n_crops"] == 5
    assert s["generated"] == 10  # one pass over the C(5, 2) pairs
    canvas, _ = _metaphase(library)
    Image.fromarray(canvas).save(tmp_path / "meta.png")
    s = run_synth(tmp_path / "m.h5", metaphase=tmp_path / "meta.png", n_pairs=20, progress=False, preview=False)
    assert s["source"]["kind"] == "metaphase" and s["source"]["n_crops"] == 6 and s["kept"] == 20
    with pytest.raises(ValueError, match="either"):
        run_synth(tmp_path / "x.h5", crops_dir=folder, metaphase=tmp_path / "meta.png", progress=False)


def test_run_synth_pommier_count(tmp_path, monkeypatch):
    # the count logic with a smaller target; the full 13,434 run is done by hand (see the report)
    assert synth.POMMIER_N_PAIRS == 13_434
    monkeypatch.setattr(synth, "POMMIER_N_PAIRS", 123)
    s = run_synth(tmp_path / "p.h5", pommier=True, n_chromosomes=12, progress=False, preview=False)
    images, _, _ = read_pommier_h5(tmp_path / "p.h5")
    assert images.shape == (123, 94, 93) and s["kept"] == 123 and s["pommier"] is True
    with pytest.raises(ValueError, match="pommier"):
        run_synth(tmp_path / "q.h5", pommier=True, shape=(88, 88), progress=False)
    with pytest.raises(ValueError, match="pommier"):
        run_synth(tmp_path / "q.h5", pommier=True, n_pairs=10, progress=False)


def test_run_synth_leaves_nothing_half_written(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth, "save_preview", boom)
    out = tmp_path / "fail.h5"
    with pytest.raises(RuntimeError, match="disk full"):
        run_synth(out, n_chromosomes=6, n_pairs=10, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_run_synth_rejects_colliding_output(tmp_path):
    with pytest.raises(ValueError, match="sidecar"):
        run_synth(tmp_path / "x.json", n_chromosomes=4, n_pairs=2, progress=False)
