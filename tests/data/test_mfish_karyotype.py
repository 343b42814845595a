"""The karyotyping set ``mfish:karyotype`` (medseg.data.mfish_karyotype), built from a small copy of real M-FISH
folders in the test itself, and its cut-out rule."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from medseg.config import load_config, set_dotted, validate
from medseg.data.datasets import load_data
from medseg.data.mfish_karyotype import CANVAS, KARYOTYPE_CLASSES, chromosome_cutout
from medseg.data.runs import splits_for
from medseg.data.splits import fold_indices


def test_cutout_centres_the_box_zeroes_the_background_and_never_rescales():
    grey = np.arange(1, 7 * 9 + 1, dtype=np.uint8).reshape(7, 9)
    mask = np.zeros((7, 9), bool)
    mask[2:5, 3:8] = True
    mask[2, 3] = False
    image, on_canvas = chromosome_cutout(grey, mask, size=16, margin=2)
    assert image.shape == on_canvas.shape == (16, 16) and on_canvas.sum() == mask.sum()
    rows, cols = np.flatnonzero(on_canvas.any(1)), np.flatnonzero(on_canvas.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (6, 8, 5, 9)  # a 3 x 5 box: (16-3)//2, (16-5)//2
    np.testing.assert_array_equal(image[6:9, 5:10], np.where(mask[2:5, 3:8], grey[2:5, 3:8], 0))
    assert not image[~on_canvas].any()
    long = np.zeros((20, 3), bool)
    long[:13] = True
    assert chromosome_cutout(np.ones((20, 3), np.uint8), long, size=16, margin=2) is None  # 13 > 16 - 4: left out
    long[12] = False
    assert chromosome_cutout(np.ones((20, 3), np.uint8), long, size=16, margin=2) is not None  # 12 fits exactly


def test_set_labels_canvas_and_held_out_slides_are_mfish_pairs(tmp_path, small_mfish, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    cfg = load_config("configs/mfish/karyotype_unet.yaml")
    for item in (f"data.mfish_source={small_mfish}", f"output.root={tmp_path / 'runs'}"):
        set_dotted(cfg, *item.split("=", 1))
    cfg["splits"].update(val_fraction=None, n_folds=2)  # four training slides here
    cfg = validate(cfg)
    data = load_data(cfg["data"], len(KARYOTYPE_CLASSES))
    assert not data.synthesized and data.images.shape[1:] == (CANVAS, CANVAS) and len(data) > 100
    with h5py.File(data.source) as f:
        classes = f["class"][:]
        assert f["slide"].shape == (len(data),)
    labels = data.labels
    for k in range(len(data)):  # each image: one chromosome, labelled with its own class, nothing else
        assert set(np.unique(labels[k]).tolist()) == {0, int(classes[k])}
        assert not data.images[k][labels[k] == 0].any(), "the background of a cut-out is zeroed"
    assert set(classes.tolist()) <= set(range(1, 25)) and len(set(classes.tolist())) == 24

    from medseg.data.mfish_pairs import run_mfish_pairs
    from medseg.data.mfish_synth import test_slides_of

    run_mfish_pairs(small_mfish, tmp_path / "pairs.h5", preview=False, progress=False)
    pair_test = test_slides_of(tmp_path / "pairs.h5")  # what `medseg data mfish-pairs` held out
    splits, _ = splits_for(cfg, data)
    _, _, test = fold_indices(splits, 0)
    assert {data.groups[i] for i in test} == set(pair_test) and pair_test
    assert sorted(json.loads(Path(data.split_file).read_text())["test"]) == pair_test
    summary = json.loads(Path(data.source).with_suffix(".json").read_text())
    assert summary["held_out_slides"] == pair_test and summary["real"] is True
    per_class = summary["per_class"]
    assert list(per_class) == list(KARYOTYPE_CLASSES[1:])
    assert sum(v["test"] for v in per_class.values()) == len(test) == summary["n_test"]
    assert Path(data.source).with_name("karyotype.README.TXT").is_file(), "the licence notice travels with the set"
    # A21__46 is 46,XY,t(9;22): its 9s and 22s are the only chromosomes in a structural rearrangement here
    assert summary["karyotypes"]["A21__46"] == "46,XY,t(9;22)" and summary["karyotypes"]["A01__XY"] == "46,XY"
    with h5py.File(data.source) as f:
        folders, inside = f["folder"].asstr()[:], f["in_rearrangement"][:].astype(bool)
    expected = (folders == "A21__46") & np.isin(classes, [9, 22])
    np.testing.assert_array_equal(inside, expected)
    counted = summary["in_rearrangement"]
    assert expected.any() and counted["train"] + counted["test"] == expected.sum()


def test_held_out_slides_one_rule():
    from medseg.data.mfish_pairs import group_splits, held_out_slides

    slides = ["A01"] * 3 + ["A02"] * 2 + ["B07"] * 4 + ["C03"] + ["D04"] * 2
    split = group_splits(slides, "x", seed=0)
    expected = sorted({slides[int(n[2:-1])] for n in split["test"]})
    assert held_out_slides(slides) == expected and expected
    assert held_out_slides(["A01", "A02"]) == []  # too few slides for a test set


def test_upright_set_holds_the_same_chromosomes_upright_with_their_features(tmp_path, small_mfish):
    from medseg.data.karyotype_features import FEATURE_NAMES, UPRIGHT_SHAPE
    from medseg.data.mfish_karyotype import run_mfish_karyotype

    canvas = run_mfish_karyotype(small_mfish, tmp_path / "c" / "k.h5", limit=3, progress=False)
    upright = run_mfish_karyotype(small_mfish, tmp_path / "u" / "k.h5", limit=3, layout="upright", progress=False)
    assert upright["n_images"] == canvas["n_images"] and upright["canvas"] == list(UPRIGHT_SHAPE)
    with h5py.File(tmp_path / "c" / "k.h5") as fc, h5py.File(tmp_path / "u" / "k.h5") as fu:
        np.testing.assert_array_equal(fc["class"][:], fu["class"][:])
        np.testing.assert_array_equal(fc["features"][:], fu["features"][:])  # measured before any rescaling
        assert fu["features"].shape == (upright["n_images"], len(FEATURE_NAMES))
        pairs = fu["dataset_1"][:]
    images, labels = pairs[..., 0], pairs[..., 1]
    assert images.shape[1:] == UPRIGHT_SHAPE and not images[labels == 0].any() and (images[labels > 0] > 0).all()
    rows = (labels > 0).any(axis=2).sum(axis=1)
    cols = (labels > 0).any(axis=1).sum(axis=1)
    assert np.median(rows) > 1.5 * np.median(cols)  # stood up along the long axis


def test_rearranged_chromosomes_left_out_of_the_training_slides_only(tmp_path, small_mfish):
    from medseg.data.mfish_karyotype import run_mfish_karyotype

    every = run_mfish_karyotype(small_mfish, tmp_path / "a" / "k.h5", progress=False)
    normal = run_mfish_karyotype(small_mfish, tmp_path / "n" / "k.h5", leave_out_rearranged=True, progress=False)
    with h5py.File(tmp_path / "a" / "k.h5") as f:
        slides, inside = f["slide"].asstr()[:], f["in_rearrangement"][:].astype(bool)
    test = np.isin(slides, every["held_out_slides"])
    dropped = int((inside & ~test).sum())
    assert dropped > 0 and normal["left_out"]["in_rearrangement_on_training_slides"] == dropped
    assert normal["n_images"] == every["n_images"] - dropped and normal["n_test"] == every["n_test"]
    with h5py.File(tmp_path / "n" / "k.h5") as f:
        kept_slides, kept_inside = f["slide"].asstr()[:], f["in_rearrangement"][:].astype(bool)
        assert len(f["features"]) == len(f["dataset_1"]) == normal["n_images"]
    assert not (kept_inside & ~np.isin(kept_slides, every["held_out_slides"])).any()


def test_crossed_chromosomes_take_their_overlap_and_only_crossings_of_two():
    from medseg.data.mfish import OVERLAP_VALUE
    from medseg.data.mfish_pair_crops import crossed_chromosomes

    karyo = np.zeros((60, 80), np.uint8)
    karyo[20:26, 5:45] = 1  # 1 crossed by 2 (vertical): the overlap cuts 1 in two, still one chromosome
    karyo[8:40, 22:28] = 2
    karyo[20:26, 22:28] = OVERLAP_VALUE
    karyo[45:50, 5:30] = 3  # isolated: not a crossed chromosome
    karyo[5:11, 50:75] = 4  # 4, 5 and 6 around one overlap: whose pixels are whose is unclear
    karyo[2:20, 58:63] = 5
    karyo[11:14, 58:63] = 6
    karyo[5:11, 58:63] = OVERLAP_VALUE
    dapi = np.where(karyo > 0, 100, 10).astype(np.uint8)
    found = {ch.cls: ch for ch in crossed_chromosomes(dapi, karyo, min_px=10)}
    assert sorted(found) == [1, 2]
    one = found[1]
    assert one.box == (20, 5, 6, 40) and one.area == 6 * 40  # both halves and the overlap
    assert found[2].area == 32 * 6 and found[2].touches_other and not one.at_border


def test_crossed_chromosomes_join_the_training_slides_only(tmp_path, small_mfish):
    from medseg.data.mfish_karyotype import run_mfish_karyotype

    every = run_mfish_karyotype(small_mfish, tmp_path / "a" / "k.h5", layout="upright", progress=False)
    more = run_mfish_karyotype(small_mfish, tmp_path / "x" / "k.h5", layout="upright", crossed=True, progress=False)
    added = more["crossed"]["train"]
    assert added > 0 and more["n_images"] == every["n_images"] + added
    assert more["n_test"] == every["n_test"] and more["left_out"]["crossed_on_held_out_slides"] > 0
    with h5py.File(tmp_path / "a" / "k.h5") as fa, h5py.File(tmp_path / "x" / "k.h5") as fx:
        test_a = np.isin(fa["slide"].asstr()[:], every["held_out_slides"])
        test_x = np.isin(fx["slide"].asstr()[:], every["held_out_slides"])
        # the test chromosomes are the same cut-outs: the crossed ones do not move their metaphase's medians
        np.testing.assert_array_equal(fa["dataset_1"][:][test_a], fx["dataset_1"][:][test_x])
