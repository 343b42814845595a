"""A run folder is one training on one data set: training into it with other data, another config or another
split is refused before anything in it is written; ``--restart`` replaces it; what may change on a resume
(a longer budget, the device) does."""

import copy
import json

import pytest
from tests.conftest import make_toy_pairs

from medseg.data.runs import RunMismatch, run_dir_for
from medseg.training.run import train_fold


def _train(cfg, data, fold=0, **kw):
    return train_fold(cfg, fold, data=data, progress=False, **kw)


def _with(cfg, section, **values):
    """A copy of ``cfg`` with ``values`` set in ``section``."""
    out = copy.deepcopy(cfg)
    out[section].update(values)
    return out


def _snapshot(run):
    return {p.relative_to(run): (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}


@pytest.fixture
def one_epoch(tiny_cfg):
    return _with(tiny_cfg, "train", epochs=1)


def test_other_data_is_refused_before_anything_is_written(one_epoch):
    _train(one_epoch, make_toy_pairs(n=20, seed=0))
    run = run_dir_for(one_epoch)
    before = _snapshot(run)
    with pytest.raises(
        RunMismatch,
        match=r"holds another training — data: trained on toy \(content hash \w+\), this "
        r"command gives toy \(\w+\).*--name NEW.*--restart",
    ):
        _train(one_epoch, make_toy_pairs(n=20, seed=1))
    assert _snapshot(run) == before


def test_another_model_is_refused_but_a_longer_budget_on_another_device_resumes(one_epoch):
    data = make_toy_pairs(n=20)
    _train(one_epoch, data)
    with pytest.raises(RunMismatch, match=r"config \(.*fold_0/config.yaml\): model.base_channels 4 → 8"):
        _train(_with(one_epoch, "model", base_channels=8), data)
    assert _train(_with(one_epoch, "train", epochs=2, device="cpu", num_workers=0), data)["epochs_run"] == 2


def test_another_split_is_refused(one_epoch):
    data = make_toy_pairs(n=20)
    _train(one_epoch, data)
    with pytest.raises(RunMismatch, match=r"split: trained on .*_s0.json, this command gives .*_s1.json"):
        _train(_with(one_epoch, "splits", seed=1), data)


def test_a_finished_run_trained_again_rewrites_no_record(one_epoch):
    data = make_toy_pairs(n=20)
    _train(one_epoch, data)
    record = run_dir_for(one_epoch) / "data.json"
    stamp = record.stat().st_mtime_ns
    _train(one_epoch, data)  # "already finished"
    assert record.stat().st_mtime_ns == stamp


def test_restart_replaces_the_whole_run(one_epoch, capsys):
    _train(one_epoch, make_toy_pairs(n=20, seed=0), fold=0)
    _train(one_epoch, make_toy_pairs(n=20, seed=0), fold=1)
    new = make_toy_pairs(n=20, seed=1)
    _train(one_epoch, new, fold=0, restart=True)
    run = run_dir_for(one_epoch)
    assert "--restart replaces the run" in capsys.readouterr().out
    assert sorted(p.name for p in run.glob("fold_*")) == ["fold_0"]  # no fold of the old training beside it
    assert json.loads((run / "data.json").read_text())["fingerprint"] == new.fingerprint
