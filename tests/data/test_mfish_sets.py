"""The M-FISH transfer experiment's training sets (medseg.data.mfish_sets): ``mfish:pairs``, ``mfish:synth``,
``mfish:both``, made from a small copy of real M-FISH folders in the test itself."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from medseg.config import load_config, set_dotted, validate
from medseg.data.datasets import load_data
from medseg.data.runs import splits_for
from medseg.data.splits import fold_indices
from medseg.errors import DataValidationError


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


def _cfg(tmp_path: Path, small_mfish: Path, path: str, *sets: str) -> dict:
    cfg = load_config("configs/chromosomes/unet.yaml")
    for item in (
        f"data.path={path}",
        f"data.mfish_source={small_mfish}",
        "data.mfish_synth_pairs=40",
        f"output.root={tmp_path}",
        *sets,
    ):
        key, value = item.split("=", 1)
        set_dotted(cfg, key, value)
    return validate(cfg)


def test_the_three_sets_test_the_same_held_out_slides(tmp_path, small_mfish, home, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(home))
    pairs_cfg = _cfg(tmp_path, small_mfish, "mfish:pairs")
    pairs = load_data(pairs_cfg["data"], 4)
    assert not pairs.synthesized and pairs.groups is not None
    ready = json.loads(Path(pairs.split_file).read_text())
    splits, _ = splits_for(pairs_cfg, pairs)
    _, _, test = fold_indices(splits, 0)
    # the file's own split decides (not one drawn from the config's seed): the same test pairs every time
    assert sorted(pairs.names[i] for i in test) == sorted(ready["test"]) and len(test) > 0
    test_slides = {pairs.groups[i] for i in test}
    train_slides = set(pairs.groups) - test_slides
    assert test_slides and train_slides

    synth = load_data(_cfg(tmp_path, small_mfish, "mfish:synth")["data"], 4)
    assert synth.synthesized and len(synth) == 40
    record = json.loads(Path(synth.source).with_name("synth.json").read_text())
    used = set(record.get("slides_used") or record.get("selection", {}).get("slides_used") or [])
    assert used and not used & test_slides, "no chromosome of a held-out slide is synthesized into a pair"

    both = load_data(_cfg(tmp_path, small_mfish, "mfish:both")["data"], 4)
    n_real_train = len(pairs) - len(test)
    assert len(both) == 40 + n_real_train
    assert set(both.groups[40:]) == train_slides, "the held-out slides' real pairs are left out"
    assert len(set(both.groups[:40])) == 40, "each synthesized pair is its own split group"
    # the real training pairs are copied unchanged, in order
    keep = [i for i in range(len(pairs)) if i not in set(test)]
    assert np.array_equal(both.labels[40:], pairs.labels[keep])
    assert (Path(both.source).parent / "both.README.TXT").is_file(), "the licence notice travels with the set"
    with h5py.File(both.source) as f:
        assert f["slide"].shape == (len(both),)


def test_pairs_shown_alone_are_the_real_pairs_with_their_surroundings_painted(tmp_path, small_mfish, home, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(home))
    pairs_cfg = _cfg(tmp_path, small_mfish, "mfish:pairs")
    pairs = load_data(pairs_cfg["data"], 4)
    alone_cfg = _cfg(tmp_path, small_mfish, "mfish:pairs", "data.mfish_pair_isolate_px=2")
    alone = load_data(alone_cfg["data"], 4)
    assert Path(alone.source).parent.name == "real_isolated_2px" and alone.source != pairs.source
    # the same pairs, labels, slides and split: only the images differ, and only away from the pair
    np.testing.assert_array_equal(alone.labels, pairs.labels)
    assert alone.names == pairs.names and list(alone.groups) == list(pairs.groups)
    assert splits_for(alone_cfg, alone)[0] == splits_for(pairs_cfg, pairs)[0]
    with h5py.File(pairs.source) as f, h5py.File(alone.source) as g:
        before, after = f["dataset_1"][...], g["dataset_1"][...]
    from scipy import ndimage

    changed = 0
    for b, a in zip(before, after, strict=True):
        near = ndimage.binary_dilation(b[..., 1] > 0, np.ones((3, 3), bool), iterations=2)
        np.testing.assert_array_equal(a[..., 0][near], b[..., 0][near])
        assert len(np.unique(a[..., 0][~near])) <= 1  # one background grey around the pair
        changed += int((a[..., 0] != b[..., 0]).any())
    assert changed > 0, "the real crops hold other chromosomes: some pixels must be painted"
    record = json.loads(Path(alone.source).with_name("pairs.json").read_text())
    assert record["isolated"]["px"] == 2 and (Path(alone.source).parent / "pairs.README.TXT").is_file()
    both = load_data(_cfg(tmp_path, small_mfish, "mfish:both", "data.mfish_pair_isolate_px=2")["data"], 4)
    assert Path(both.source).parent.name.endswith("_isolated_2px")
    keep = [i for i, g in enumerate(pairs.groups) if g in set(both.groups[40:])]
    np.testing.assert_array_equal(both.images[40:], alone.images[keep])  # its real pairs are shown alone too


def test_an_interrupted_build_leaves_nothing_half_written(tmp_path, small_mfish, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    import medseg.data.mfish_pairs as mfish_pairs

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mfish_pairs, "run_mfish_pairs", broken)
    with pytest.raises(KeyboardInterrupt):
        load_data(_cfg(tmp_path, small_mfish, "mfish:pairs")["data"], 4)
    left = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert left == [] and not list((tmp_path / "home" / "mfish").glob("*/real"))


def test_a_missing_folder_or_an_unknown_set_is_a_clear_error(tmp_path, small_mfish, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    with pytest.raises(DataValidationError, match="no M-FISH folder"):
        load_data(_cfg(tmp_path, small_mfish, "mfish:pairs", f"data.mfish_source={tmp_path / 'nowhere'}")["data"], 4)
    with pytest.raises(DataValidationError, match="unknown M-FISH set 'mfish:metaphases'"):
        load_data(_cfg(tmp_path, small_mfish, "mfish:metaphases")["data"], 4)


def test_a_set_built_by_two_processes_at_once_keeps_the_first_copy(tmp_path):
    """Two processes making the same set: the second one's rename finds the first one's folder (not empty, so
    the rename fails) and takes it instead of failing."""
    from medseg.data.mfish_sets import _build

    final = tmp_path / "sets" / "real"

    def make(tmp):
        (tmp / "pairs.h5").write_text("mine")
        if not final.exists():  # the other process finishes while this one is still writing
            final.mkdir(parents=True)
            (final / "pairs.h5").write_text("theirs")

    assert _build(final, make) == final
    assert (final / "pairs.h5").read_text() == "theirs"
    assert [p.name for p in final.parent.iterdir()] == ["real"]  # no temporary folder left
