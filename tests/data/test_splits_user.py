"""Issue 12: splits a user controls — a YAML/JSON file of plain case names (``splits.file``), natural name order
for ``protocol: ordered``, and ``splits.val_fraction`` (one random validation share per fold, or none)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from medseg.config import load_config
from medseg.data.datasets import load_data
from medseg.data.folder import pair_files
from medseg.data.runs import _labels_fingerprint, _tag, splits_for
from medseg.data.splits import (
    fold_indices,
    load_or_create_splits,
    load_splits,
    make_splits,
    natural_key,
    save_splits,
    splits_from_names,
)
from medseg.errors import ConfigError, DataValidationError

NUMBERS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # "10" and "11" sort before "2" as plain strings


def _folder(root, numbers=NUMBERS, fmt="img{}"):
    """A folder data set: one 6x6 image and 0/255 mask per number, mask k holding k+1 foreground pixels so
    that each case is told apart by its label content too."""
    for k in numbers:
        name = fmt.format(k)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6), 10 * k % 256, np.uint8)).save(root / "images" / f"{name}.png")
        mask = np.zeros(36, np.uint8)
        mask[: k + 1] = 255
        Image.fromarray(mask.reshape(6, 6)).save(root / "masks" / f"{name}.png")
    return root


def _cfg(tmp_path, data_root, **splits):
    return load_config(
        overrides={
            "task": {"class_names": ["background", "cell"], "derived": {}, "primary_metric": "cell"},
            "data": {"path": str(data_root), "size": None},
            "splits": splits,
            "output": {"root": str(tmp_path / "runs")},
        }
    )


def _names(data, idx):
    return sorted(data.names[i] for i in idx)


# ------------------------------------------------------------------------------------------ natural order


def test_natural_key_counts_like_people():
    names = ["img10", "img2", "img1", "img0", "img11", "img9"]
    assert sorted(names, key=natural_key) == ["img0", "img1", "img2", "img9", "img10", "img11"]
    assert sorted(["b2", "a10", "a9"], key=natural_key) == ["a9", "a10", "b2"]
    assert sorted(["case_01", "case_1", "case_0"], key=natural_key) == ["case_0", "case_01", "case_1"]


def test_folder_pairs_are_in_natural_order(tmp_path):
    root = _folder(tmp_path / "d")
    assert pair_files(root / "images", root / "masks").names == [f"img{k}" for k in NUMBERS]


def test_ordered_protocol_tests_on_the_last_cases_in_natural_order(tmp_path):
    root = _folder(tmp_path / "d")
    cfg = _cfg(tmp_path, root, protocol="ordered", test_fraction=0.25, n_folds=3)
    data = load_data(cfg["data"], 2)
    splits, _ = splits_for(cfg, data)
    assert _names(data, splits["test"]) == ["img10", "img11", "img9"]  # not img7, img8, img9


# ------------------------------------------------------------------------------------------ val_fraction


def test_val_fraction_0_means_no_validation_set(tmp_path):
    s = make_splits(50, test_fraction=0.2, n_folds=1, seed=3, val_fraction=0)
    train, val, test = fold_indices(s, 0)
    assert val == [] and len(test) == 10 and sorted(train + test) == list(range(50))
    path = tmp_path / "s.json"
    save_splits(s, path)
    assert load_splits(path) == s and s["val_fraction"] == 0.0


def test_val_fraction_draws_its_own_share_per_fold():
    s = make_splits(100, test_fraction=0.2, n_folds=3, seed=1, val_fraction=0.2)
    vals = [fold_indices(s, k)[1] for k in range(3)]
    assert [len(v) for v in vals] == [16, 16, 16]  # floor(0.2 * 80)
    assert len({tuple(v) for v in vals}) == 3  # each fold its own random draw, not a partition
    for k, val in enumerate(vals):
        train, _, test = fold_indices(s, k)
        assert not set(val) & set(test) and sorted(train + val) == sorted(set(range(100)) - set(test))
    # k-fold stays what it was when val_fraction is not given
    assert "val_fraction" not in make_splits(100) and make_splits(100) == make_splits(100, val_fraction=None)


def test_val_fraction_too_small_or_out_of_range():
    with pytest.raises(ConfigError, match="too few for a validation set of 10%"):
        make_splits(5, test_fraction=0.2, val_fraction=0.1)
    with pytest.raises(ConfigError, match=r"val_fraction must be in \[0, 1\)"):
        make_splits(50, val_fraction=1.0)
    with pytest.raises(ConfigError, match=r"splits\.val_fraction must be in \[0, 1\)"):
        load_config(overrides={"splits": {"val_fraction": 1.5}})


def test_a_saved_split_keeps_its_val_fraction(tmp_path):
    path = tmp_path / "s.json"
    load_or_create_splits(path, 60, val_fraction=0.25)
    with pytest.raises(DataValidationError, match="val_fraction=0.25 in the file, None asked for"):
        load_or_create_splits(path, 60, val_fraction=None)


def test_an_empty_val_set_is_refused_unless_the_split_says_so(tmp_path):
    s = make_splits(20, n_folds=2)
    s["folds"][0]["train"] += s["folds"][0]["val"]
    s["folds"][0]["val"] = []
    with pytest.raises(DataValidationError, match="empty val set"):
        save_splits(s, tmp_path / "s.json")


def test_splits_for_with_val_fraction(tmp_path):
    root = _folder(tmp_path / "d")
    cfg = _cfg(tmp_path, root, test_fraction=0.25, n_folds=2, val_fraction=0.0)
    data = load_data(cfg["data"], 2)
    splits, path = splits_for(cfg, data)
    assert "_v0.0_" in path.name
    assert [fold_indices(splits, k)[1] for k in range(2)] == [[], []]
    assert len(fold_indices(splits, 0)[0]) == 9


# ------------------------------------------------------------------------------- a file of case names


def test_user_lists_are_honoured_exactly(tmp_path):
    root = _folder(tmp_path / "d")
    split_file = tmp_path / "my_split.yaml"
    split_file.write_text(
        "test: [img3.png, img11]\n"
        "folds:\n"
        "  - {val: [img0, img1.png]}\n"
        "  - val: [img2]\n"
        "    train: [img0, img1, img4, img5, img6, img7, img8, img9, img10]\n"
    )
    cfg = _cfg(tmp_path, root, file=str(split_file), n_folds=5, test_fraction=0.5, seed=9)
    data = load_data(cfg["data"], 2)
    splits, path = splits_for(cfg, data)
    assert _names(data, splits["test"]) == ["img11", "img3"]
    assert len(splits["folds"]) == 2  # the file's folds, whatever splits.n_folds says
    train0, val0, _ = fold_indices(splits, 0)
    assert _names(data, val0) == ["img0", "img1"]
    assert _names(data, train0) == sorted(f"img{k}" for k in NUMBERS if k not in (0, 1, 3, 11))
    assert _names(data, fold_indices(splits, 1)[1]) == ["img2"]
    # the indices are saved beside the other splits, with the file they came from
    saved = json.loads(path.read_text())
    assert path.parent == tmp_path / "runs" / "splits" and saved["source"] == str(split_file.resolve())
    assert saved["protocol"] == "file" and saved["names"] == data.names
    assert splits_for(cfg, data)[0] == splits  # and reused


def test_only_a_test_list_draws_the_folds_from_the_rest(tmp_path):
    root = _folder(tmp_path / "d")
    split_file = tmp_path / "test_only.json"
    split_file.write_text(json.dumps({"test": ["img5", "img6", "img7"]}))
    cfg = _cfg(tmp_path, root, file=str(split_file), n_folds=3, test_fraction=0.5)
    data = load_data(cfg["data"], 2)
    splits, _ = splits_for(cfg, data)
    assert _names(data, splits["test"]) == ["img5", "img6", "img7"]  # not 50 %: the list decides
    vals = [fold_indices(splits, k)[1] for k in range(3)]
    assert sorted(i for v in vals for i in v) == sorted(set(range(12)) - set(splits["test"]))  # k-fold of the rest
    assert [len(v) for v in vals] == [3, 3, 3]


def test_only_a_test_list_with_val_fraction(tmp_path):
    root = _folder(tmp_path / "d")
    split_file = tmp_path / "t.yaml"
    split_file.write_text("test: [img0, img1]\n")
    data = load_data(_cfg(tmp_path, root)["data"], 2)
    none = splits_for(_cfg(tmp_path, root, file=str(split_file), n_folds=1, val_fraction=0.0), data)[0]
    assert fold_indices(none, 0)[1] == [] and len(fold_indices(none, 0)[0]) == 10
    fifth = splits_for(_cfg(tmp_path, root, file=str(split_file), n_folds=2, val_fraction=0.2), data)[0]
    assert [len(fold_indices(fifth, k)[1]) for k in range(2)] == [2, 2]


def _refused(tmp_path, text, names=None, **kwargs):
    path = tmp_path / "bad_split.yaml"
    path.write_text(text)
    from medseg.data.splits import read_split_file

    with pytest.raises(DataValidationError) as info:
        splits_from_names(read_split_file(path), path, names or [f"img{k}" for k in NUMBERS], **kwargs)
    msg = str(info.value)
    assert "bad_split.yaml" in msg and info.value.path == path  # the file is named
    return msg


def test_unknown_names_are_refused_naming_the_file_and_the_names(tmp_path):
    msg = _refused(tmp_path, "test: [img1, img99, scan_4.png]\n")
    assert "2 name(s) in 'test' are not in the data: 'img99', 'scan_4.png'" in msg
    assert "named like img0, img1, img2" in msg
    msg = _refused(tmp_path, "test: [img1]\nfolds: [{val: [img2, imgX]}]\n")
    assert "'folds[0].val'" in msg and "'imgX'" in msg


@pytest.mark.parametrize(
    "text,message",
    [
        ("test: [img1, img2, img1]\n", "'test' names a case more than once: 'img1'"),
        ("test: [img1, img1.png]\n", "'img1.png' and 'img1' (the same case)"),
        ("test: [img1]\nfolds: [{val: [img1, img2]}]\n", "case 'img1' is in both 'test' and 'folds[0].val'"),
        (
            "test: [img1]\nfolds: [{val: [img2], train: [img2, img3]}]\n",
            "case 'img2' is in both 'folds[0].val' and 'folds[0].train'",
        ),
        ("test: [img1]\nfolds: [{val: [img2], train: [img3]}]\n", "9 case(s) are in neither 'test' nor this fold's"),
        ("test: [img1]\nvalidation: [img2]\n", "unknown key(s) 'validation'"),
        ("folds: [{val: [img2]}]\n", "no 'test' list"),
        ("test: [1, 2]\n", "'test' must be a list of case names (strings), got int"),
        ("test: [img1]\nfolds: [{val: []}, {val: [img2]}]\n", "folds [0] have an empty 'val' list and the others not"),
        ("- img1\n", "a split file must be a mapping"),
        ("test: [img1\n", "not valid YAML"),
    ],
)
def test_bad_split_files_are_refused(tmp_path, text, message):
    assert message in _refused(tmp_path, text)


def test_patients_stay_on_one_side(tmp_path):
    names = ["p1_a", "p1_b", "p2_a", "p10_a", "p3_a"]
    groups = ["p1", "p1", "p2", "p10", "p3"]
    path = tmp_path / "s.yaml"
    path.write_text("test: [p10]\nfolds: [{val: [p1_a]}]\n")
    from medseg.data.splits import read_split_file

    s = splits_from_names(read_split_file(path), path, names, groups=groups)
    assert s["names"] == ["p1", "p2", "p3", "p10"]  # patients, in natural order
    assert s["test"] == [3] and s["folds"][0]["val"] == [0] and s["folds"][0]["train"] == [1, 2]
    msg = _refused(tmp_path, "test: [p1_a]\nfolds: [{val: [p1_b]}]\n", names, groups=groups)
    assert "patient 'p1' (case 'p1_b'" in msg and "in both 'test' and 'folds[0].val'" in msg


def test_a_limited_data_set_says_so_when_names_are_missing(tmp_path):
    root = _folder(tmp_path / "d")
    split_file = tmp_path / "s.yaml"
    split_file.write_text("test: [img11]\n")
    cfg = _cfg(tmp_path, root, file=str(split_file))
    cfg["data"]["limit"] = 6
    with pytest.raises(DataValidationError, match=r"data\.limit is 6"):
        splits_for(cfg, load_data(cfg["data"], 2))


def test_a_split_json_medseg_wrote_is_used_whatever_splits_say(tmp_path):
    root = _folder(tmp_path / "d")
    written = tmp_path / "old_split.json"
    save_splits(make_splits(12, test_fraction=0.25, n_folds=3, seed=4), written)
    cfg = _cfg(tmp_path, root, file=str(written), n_folds=5, seed=0, test_fraction=0.1)  # all different
    splits, path = splits_for(cfg, load_data(cfg["data"], 2))
    assert path == written and splits == load_splits(written) and len(splits["folds"]) == 3


def test_cross_validation_trains_every_fold_of_the_file(tmp_path, monkeypatch):
    import medseg.training.run as run_mod

    root = _folder(tmp_path / "d")
    split_file = tmp_path / "s.yaml"
    split_file.write_text("test: [img0]\nfolds: [{val: [img1]}, {val: [img2]}]\n")
    cfg = _cfg(tmp_path, root, file=str(split_file), n_folds=5)
    trained = []
    monkeypatch.setattr(run_mod, "train_fold", lambda cfg, k, **kw: trained.append(k))
    run_mod.cross_validate(cfg, progress=False)
    assert trained == [0, 1]


# ------------------------------------------------------------------ splits saved before natural order


def _legacy_split(tmp_path, cfg, data, **params):
    """Save a split the way medseg did before issue 12: over the cases in plain string order."""
    order = sorted(range(len(data)), key=lambda i: data.names[i])
    legacy = (
        tmp_path
        / "runs"
        / "splits"
        / f"{_tag(cfg['splits'], _labels_fingerprint(data.labels[order]), 'n', len(data))}.json"
    )
    save_splits(make_splits(len(data), **params), legacy)
    return [data.names[i] for i in order], legacy


def test_a_random_split_saved_in_string_order_keeps_its_cases(tmp_path):
    root = _folder(tmp_path / "d")
    cfg = _cfg(tmp_path, root, test_fraction=0.25, n_folds=3)
    data = load_data(cfg["data"], 2)
    string_order, legacy = _legacy_split(tmp_path, cfg, data, test_fraction=0.25, n_folds=3)
    old = load_splits(legacy)
    splits, path = splits_for(cfg, data)
    assert path != legacy and json.loads(path.read_text())["carried_over_from"] == str(legacy)
    assert _names(data, splits["test"]) == sorted(string_order[i] for i in old["test"])
    assert _names(data, fold_indices(splits, 2)[1]) == sorted(string_order[i] for i in old["folds"][2]["val"])


def test_an_ordered_split_saved_in_string_order_is_drawn_again_with_a_warning(tmp_path):
    root = _folder(tmp_path / "d")
    cfg = _cfg(tmp_path, root, test_fraction=0.25, n_folds=3, protocol="ordered")
    data = load_data(cfg["data"], 2)
    _legacy_split(tmp_path, cfg, data, test_fraction=0.25, n_folds=3, protocol="ordered")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits, _ = splits_for(cfg, data)
    assert any("must be trained again" in str(w.message) for w in caught)
    assert _names(data, splits["test"]) == ["img10", "img11", "img9"]


def test_a_patient_split_records_its_patients_and_refuses_another_order(tmp_path):
    from medseg.data.datasets import SegmentationData

    def volumes(groups):
        labels = np.zeros((len(groups), 2, 2), np.uint8)
        labels[:, 0, 0] = np.arange(len(groups))
        return SegmentationData(
            np.zeros((len(groups), 2, 2), np.float32),
            labels,
            [f"{g}_a" for g in groups],
            str(tmp_path),
            groups=list(groups),
        )

    cfg = load_config(
        overrides={"splits": {"test_fraction": 0.0, "n_folds": 2}, "output": {"root": str(tmp_path / "runs")}}
    )
    groups = ["p1", "p2", "p10", "p3"]
    splits, path = splits_for(cfg, volumes(groups))
    assert "_pn4_" in path.name  # patients in natural order, which differs from their string order here
    assert json.loads(path.read_text())["names"] == ["p1", "p2", "p3", "p10"]
    assert splits["patients"] == ["p1", "p2", "p3", "p10"] and "names" not in splits
    # the same split file given for data whose patients are others is refused, naming the file
    cfg["splits"]["file"] = str(path)
    with pytest.raises(DataValidationError, match=r"_pn4_.*was made for other cases.*'p10'"):
        splits_for(cfg, volumes(["p1", "p2", "p4", "p3"]))


def test_a_random_patient_split_saved_in_string_order_keeps_its_patients(tmp_path):
    from medseg.data.datasets import SegmentationData

    groups = ["p1", "p2", "p10", "p3"]
    labels = np.zeros((4, 2, 2), np.uint8)
    data = SegmentationData(
        np.zeros((4, 2, 2), np.float32), labels, [f"{g}_a" for g in groups], str(tmp_path), groups=groups
    )
    cfg = load_config(
        overrides={"splits": {"test_fraction": 0.25, "n_folds": 3}, "output": {"root": str(tmp_path / "runs")}}
    )
    legacy = tmp_path / "runs" / "splits" / f"{_tag(cfg['splits'], data.fingerprint, 'p', 4)}.json"
    old = make_splits(4, test_fraction=0.25, n_folds=3)
    save_splits(old, legacy)  # indices into the patients in string order: p1, p10, p2, p3
    string_order = sorted(groups)
    splits, path = splits_for(cfg, data)
    assert path != legacy
    assert {data.groups[i] for i in splits["test"]} == {string_order[i] for i in old["test"]}
