"""The karyotype report's classical floor (medseg.evaluation.karyotype_baseline) and its comparison with the
learned model, chromosome by chromosome and per cell (medseg.evaluation.karyotype_cells)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medseg.data.karyotype_features import FEATURE_NAMES
from medseg.errors import DataValidationError
from medseg.evaluation.karyotype import karyotype_section
from medseg.evaluation.karyotype_baseline import BASELINE_FILE, KaryotypeBaseline
from medseg.evaluation.karyotype_cells import has_chromosome_records, karyotype_comparison, read_in_rearrangement


def _size_cue(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of two classes that differ only by size (area, length): class 1 large, class 2 small."""
    rng = np.random.default_rng(seed)
    classes = 1 + np.arange(n) % 2
    features = rng.normal(1.0, 0.1, (n, len(FEATURE_NAMES)))
    features[:, :2] *= np.where(classes == 1, 1.6, 0.6)[:, None]
    return features, classes


def _records_file(path, features, classes, in_rearrangement=None):
    """A karyotype set's chromosome records only (features, class, folder, cell: 8 chromosomes a cell)."""
    n = len(classes)
    with h5py.File(path, "w") as f:
        text = h5py.string_dtype("utf-8")
        f.create_dataset("features", data=features.astype(np.float32))
        f.create_dataset("class", data=classes.astype(np.uint8))
        f.create_dataset("folder", data=np.array(["slide"] * n, dtype=object), dtype=text)
        f.create_dataset("image", data=np.array([f"cell{i // 8}" for i in range(n)], dtype=object), dtype=text)
        if in_rearrangement is not None:
            f.create_dataset("in_rearrangement", data=in_rearrangement.astype(np.uint8))
    return path


def test_baseline_learns_a_size_cue_and_refits_the_same_from_its_file(tmp_path):
    features, classes = _size_cue(40, seed=0)
    baseline = KaryotypeBaseline(features, classes, n_trees=30)
    test_f, test_c = _size_cue(20, seed=1)
    proba = baseline.predict_proba(test_f)
    assert proba.shape == (20, 24) and (proba.argmax(1) + 1 == test_c).all()
    path = baseline.save(tmp_path / BASELINE_FILE)
    with np.load(path, allow_pickle=False) as z:  # plain arrays: loadable without pickle
        assert z["features"].shape == (40, len(FEATURE_NAMES))
    np.testing.assert_array_equal(KaryotypeBaseline.load(path).predict_proba(test_f), proba)


def test_a_file_that_is_not_a_baseline_is_refused_by_name(tmp_path):
    bad = tmp_path / "not_a_baseline.npz"
    np.savez(bad, features=np.zeros((2, 3)))
    with pytest.raises(DataValidationError, match="not_a_baseline.npz"):
        KaryotypeBaseline.load(bad)
    with pytest.raises(ValueError, match="classes must be 1..24"):
        KaryotypeBaseline(np.zeros((2, len(FEATURE_NAMES))), [0, 1])


def test_comparison_reports_baseline_and_learned_model_per_chromosome_and_per_cell(tmp_path):
    features, classes = _size_cue(48, seed=2)
    path = _records_file(tmp_path / "karyotype.h5", features, classes, in_rearrangement=np.arange(48) % 8 == 0)
    assert has_chromosome_records(path) and not has_chromosome_records(tmp_path / "missing.h5")
    test_idx = np.arange(32, 48)
    learned = np.full((16, 24), 0.01)
    learned[np.arange(16), classes[test_idx] - 1] = 0.5  # a learned model that is always right
    learned[0] = np.roll(learned[0], 1)  # ... but on the first, a chromosome in a rearrangement (index 32)
    result = karyotype_comparison(path, np.arange(32), test_idx, learned, tmp_path / "evaluation")
    assert (tmp_path / "evaluation" / BASELINE_FILE).is_file()
    assert result["learned"]["accuracy_without"] == 15 / 16 and result["baseline"]["accuracy_without"] == 1.0
    apart = result["learned"]["apart"]
    assert apart["in_rearrangement"]["n"] == 2 and apart["in_rearrangement"]["accuracy_without"] == 0.5
    assert apart["rest"]["n"] == 14 and apart["rest"]["accuracy_without"] == 1.0
    # 8 chromosomes a cell, four of them class 1: two slots for class 1, so the per-cell decision must flag or move
    learned_cells = result["learned"]["cells"]
    assert [c["n"] for c in learned_cells] == [8, 8] and all(c["flagged"] for c in learned_cells)
    assert result["learned"]["accuracy_with"] == 15 / 16  # the model is sure: nothing forced from its own class
    lines = "\n".join(
        karyotype_section({"per_class": {}, "confusion_matrix": [[3, 1], [0, 4]], "class_names": ["1", "2"], **result})
    )
    assert "Beside the classical floor" in lines and "1↔2 1" in lines and "flagged" in lines
    assert "on the other 14: **100.0 % one by one" in lines
    with h5py.File(path, "a") as f:  # a set built before the record: no accuracy apart, no line about it
        del f["in_rearrangement"]
    assert read_in_rearrangement(path) is None
    result = karyotype_comparison(path, np.arange(32), test_idx, learned, tmp_path / "evaluation")
    assert "apart" not in result["learned"] and "apart" not in result["baseline"]


def test_combine_is_a_weighted_geometric_mean_and_its_weight_is_chosen_on_validation():
    from medseg.evaluation.karyotype_cells import choose_weight, combine

    learned = np.full((4, 24), 0.01)
    learned[:, 0] = 0.6  # the learned model says class 1 everywhere
    baseline = np.full((4, 24), 0.01)
    baseline[np.arange(4), [0, 1, 1, 1]] = 0.9  # the baseline says 1, 2, 2, 2
    np.testing.assert_allclose(combine(learned, baseline, 0.0), learned / learned.sum(1, keepdims=True), atol=1e-4)
    assert np.allclose(combine(learned, baseline, 0.3).sum(1), 1.0)
    true = np.array([1, 2, 2, 2])
    weight, scores = choose_weight(learned, baseline, true)
    assert scores[0.0] == 0.25 and scores[weight] == 1.0 and weight > 0
    same = np.array([1, 1, 1, 1])  # the learned model is right: no weight needed, the smallest wins the tie
    assert choose_weight(learned, baseline, same)[0] == 0.0


def test_the_comparison_combines_the_two_with_a_weight_from_the_validation_chromosomes(tmp_path):
    features, classes = _size_cue(48, seed=3)
    path = _records_file(tmp_path / "karyotype.h5", features, classes)
    val_idx, test_idx = np.arange(24, 32), np.arange(32, 48)

    def wrong_on_half(idx):  # a learned model right on the first half of its chromosomes only
        p = np.full((len(idx), 24), 0.01)
        truth = classes[idx] - 1
        p[np.arange(len(idx)), np.where(np.arange(len(idx)) < len(idx) // 2, truth, 2)] = 0.4
        return p

    result = karyotype_comparison(
        path,
        np.arange(24),
        test_idx,
        wrong_on_half(test_idx),
        tmp_path / "e",
        validation=(val_idx, wrong_on_half(val_idx)),
    )
    combined = result["combined"]
    assert combined["n_validation"] == 8 and combined["weight"] > 0
    assert combined["accuracy_without"] > result["learned"]["accuracy_without"] == 0.5
    lines = "\n".join(karyotype_section({"per_class": {}, "confusion_matrix": [[1]], "class_names": ["1"], **result}))
    assert f"learned × baseline: geometric mean, the baseline's weight {combined['weight']:g}" in lines
    assert "combined" not in karyotype_comparison(
        path, np.arange(24), test_idx, wrong_on_half(test_idx), tmp_path / "f"
    )
