"""Several processes (issue 15), on the CPU with gloo: DDP through torchrun equals one process on the same
global batch, validation counts are gathered, a dead rank fails cleanly and resumes, ``cv --parallel``
equals the serial cross-validation, and the thread shares of medseg.threads.

Tolerances: the 2-rank runs average two half-batch gradients where one process takes the mean over the whole
batch, so float sums are associated differently: measured differences are ~1e-8 (plain, adversarial) and
~2e-5 (QAM + OCM, whose softmax over the batch amplifies them) after 4 Adam steps at lr 1e-2 on an AMD EPYC,
on an Intel Xeon (other kernels, other rounding) 3.5e-5 plain, 1.8e-4 QAM + OCM and 2e-3 adversarial (in the
discriminator's state: the largest weights); the tests allow 1e-4 on weights (1e-3 with QAM + OCM, 5e-3 with
the discriminator) and 1e-5 on the history. The model has no BatchNorm (``norm: none``): per-rank batch
statistics differ from one process's, and PyTorch's SyncBatchNorm is CUDA-only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from medseg import threads
from medseg.errors import ConfigError
from medseg.metrics import SegmentationMetrics
from medseg.training import distributed

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402

ENV = {**os.environ, "MEDSEG_THREADS": "1", "OMP_NUM_THREADS": "1", "MEDSEG_PROGRESS_SECONDS": "600"}


# --- pieces ------------------------------------------------------------------------------------------------
def test_rank_shards_are_the_one_process_batches():
    order = list(range(10, 30))  # 20 samples, global batch 8 = 2 ranks × 4: two full batches and 4 left over
    shards = [list(distributed.RankShard(order, r, 2, 4)) for r in range(2)]
    assert [len(s) for s in shards] == [len(distributed.RankShard(order, r, 2, 4)) for r in range(2)] == [10, 10]
    for k in range(2):  # global batch k = rank 0's slice + rank 1's slice = one process's batch k
        assert shards[0][4 * k : 4 * k + 4] + shards[1][4 * k : 4 * k + 4] == order[8 * k : 8 * k + 8]
    assert shards[0][8:] + shards[1][8:] == order[16:20]  # the rest split evenly, nothing padded here
    odd = [list(distributed.RankShard(list(range(9)), r, 2, 4)) for r in range(2)]
    assert odd == [[0, 1, 2, 3, 8], [4, 5, 6, 7, 0]]  # the last batch padded from the start, equal counts


def test_the_global_batch_must_split_over_the_processes():
    assert distributed.per_rank_batch(8, 2) == 4 and distributed.per_rank_batch(8, 1) == 8
    with pytest.raises(ConfigError, match="train.batch_size 6 .* 4 processes"):
        distributed.per_rank_batch(6, 4)
    assert distributed.shard(list(range(7)), 0, 2) + distributed.shard(list(range(7)), 1, 2) == list(range(7))


def test_merged_validation_counts_equal_one_accumulator():
    rng = np.random.default_rng(0)
    pred, true = rng.integers(0, 4, (6, 16, 16)), rng.integers(0, 4, (6, 16, 16))
    task = {"class_names": ["bg", "a", "b", "ab"], "derived": {"a_whole": [1, 3]}}
    one = SegmentationMetrics.from_task(task, hausdorff=False)
    one.update(pred, true)
    parts = [SegmentationMetrics.from_task(task, hausdorff=False) for _ in range(3)]
    for i, m in enumerate(parts):
        if i < 2:  # the third rank had no image
            m.update(pred[3 * i : 3 * i + 3], true[3 * i : 3 * i + 3])
    merged = parts[0]
    for m in parts[1:]:
        merged.merge(m)
    assert merged.aggregate() == one.aggregate()  # pooled scores from summed counts, not means of means
    assert np.array_equal(merged.confusion(), one.confusion())
    with pytest.raises(ValueError, match="different classes"):
        merged.merge(SegmentationMetrics(["bg", "x"]))


def test_one_process_helpers_are_no_ops():
    assert distributed.info() == distributed.DistInfo() and distributed.is_main()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1} and distributed.all_gather_objects(3) == [3]
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.mean_over_ranks({"x": 2.0}) == {"x": 2.0}
    t = torch.ones(3, requires_grad=True)
    assert distributed.gather_with_grad(t) is t


# --- threads -----------------------------------------------------------------------------------------------
def test_thread_setting_from_the_environment(monkeypatch):
    for raw, want in [("", "auto"), ("auto", "auto"), ("off", "off"), ("0", "off"), ("3", 3)]:
        monkeypatch.setenv("MEDSEG_THREADS", raw)
        assert threads.thread_setting() == want
    monkeypatch.setenv("MEDSEG_THREADS", "many")
    with pytest.raises(ConfigError, match="MEDSEG_THREADS"):
        threads.thread_setting()
    assert 1 <= threads.available_cores() <= (os.cpu_count() or 1)


def test_the_share_divides_the_cores_among_live_medseg_processes(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "REGISTRY", tmp_path / "reg")
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "_state", {"auto": False, "last": 0.0, "threads": None, "registered": False})
    before = torch.get_num_threads()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        threads.register()
        assert threads.live_processes() == 1 and threads.thread_share() == 8
        (tmp_path / "reg" / str(other.pid)).write_text(threads._start_time(other.pid))  # a second medseg job
        (tmp_path / "reg" / "999999999").write_text("0")  # a killed one: not counted, removed
        assert threads.live_processes() == 2 and threads.thread_share() == 4
        assert not (tmp_path / "reg" / "999999999").exists()
        monkeypatch.setenv("MEDSEG_THREADS", "auto")
        assert threads.configure_threads() == 4 == torch.get_num_threads()
        other.kill()
        other.wait()
        monkeypatch.setattr(threads, "REFRESH_S", 0.0)
        assert threads.refresh_threads() == 8  # the other job ended: the whole machine again
        with threads.compute_share(reserve=1) as n:  # the server's worker: its share less a core for requests
            assert n == 7
    finally:
        other.kill()
        threads.unregister()
        torch.set_num_threads(before)
    assert not (tmp_path / "reg" / str(os.getpid())).exists()


# --- two gloo processes ------------------------------------------------------------------------------------
def _max_diff(a: Path, b: Path) -> float:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()  # rank 0 saved the unwrapped networks: the one-process keys
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def test_two_gloo_ranks_train_like_one_process_on_the_global_batch(tmp_path):
    """2 ranks × batch 4 = 1 process × batch 8, after 2 epochs of 2 steps: the plain trainer, QAM + OCM (its
    softmax over the gathered global batch) and the adversarial one (D in DDP too); validation sharded over
    the ranks and its counts gathered gives the one-process metrics."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(HERE / "ddp_worker.py"),
        str(tmp_path),
        "plain,noisy,adversarial",
    ]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for kind in ("plain", "noisy", "adversarial"):
        ddp_worker.make_trainer(kind, tmp_path, tmp_path / f"one_{kind}").fit(restart=True)
        tolerance = {"plain": 1e-4, "noisy": 1e-3, "adversarial": 5e-3}[kind]
        assert (
            _max_diff(tmp_path / f"one_{kind}/last.safetensors", tmp_path / f"ddp_{kind}/last.safetensors") < tolerance
        )
        assert (
            load_file(str(tmp_path / f"ddp_{kind}/model.safetensors")).keys()
            == load_file(str(tmp_path / f"one_{kind}/model.safetensors")).keys()
        )
        one, ddp = (json.loads((tmp_path / f"{w}_{kind}/history.json").read_text()) for w in ("one", "ddp"))
        assert len(one) == len(ddp) == 2
        for a, b in zip(one, ddp, strict=True):
            assert a["steps"] == b["steps"] == 2 * a["epoch"]
            for key, value in a.items():
                if not key.endswith("time_s") and isinstance(value, float):
                    assert b[key] == pytest.approx(value, abs=1e-5), (kind, key)
        assert any(k.startswith("val_iou/") for k in ddp[0])
        if kind == "noisy":  # the logged weights are the global batch's: 8 per step, summing to 1 per step
            assert ddp[0]["train_qam_w_mean"] == pytest.approx(1 / 8)


def _toy_folder(root: Path, n: int = 24) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_toy_pairs

    data = make_toy_pairs(n=n, size=32, seed=0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray((np.clip(data.images[i], 0, 1) * 255).astype(np.uint8)).save(root / "images" / f"c{i:02d}.png")
        Image.fromarray(data.labels[i]).save(root / "masks" / f"c{i:02d}.png")
    return root


def _cli_config(tmp_path: Path, epochs: int, folds: int = 2) -> Path:
    folder = _toy_folder(tmp_path / "data")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"""name: tiny_ddp
data: {{path: {folder}, size: [32, 32]}}
model: {{name: unet, depth: 2, base_channels: 2, norm: none}}
loss: [{{name: ce}}]
train: {{epochs: {epochs}, batch_size: 4, lr: 0.01, seed: 0, distributed: {{timeout_minutes: 1.0}}}}
splits: {{n_folds: {folds}, test_fraction: 0.2}}
evaluate: {{batch_size: 4}}
output: {{root: {tmp_path / "runs"}}}
""")
    return cfg


def test_a_dead_rank_fails_the_run_cleanly_and_a_rerun_resumes(tmp_path):
    cfg = _cli_config(tmp_path, epochs=3)
    hook = tmp_path / "hook"
    hook.mkdir()
    # rank 1 dies (os._exit, no clean-up) when its third epoch starts: rank 0 has saved epoch 1, or is saving it
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from medseg.training.trainer import Trainer\n"
        "    _train_epoch = Trainer.train_epoch\n"
        "    def train_epoch(self, epoch):\n"
        "        if epoch == 2:\n"
        "            print('test hook: rank 1 dies', flush=True)\n"
        "            os._exit(3)\n"
        "        return _train_epoch(self, epoch)\n"
        "    Trainer.train_epoch = train_epoch\n"
    )
    cmd = [sys.executable, "-m", "medseg", "train", str(cfg), "--nproc", "2"]
    t0 = time.perf_counter()
    died = subprocess.run(cmd, env={**ENV, "PYTHONPATH": str(hook)}, capture_output=True, text=True, timeout=180)
    assert died.returncode == 2, died.stdout[-2000:] + died.stderr[-2000:]
    assert time.perf_counter() - t0 < 150  # a clean failure, not a hang until the collective's timeout
    assert "distributed training with 2 processes failed" in died.stderr and "resume" in died.stderr
    run = tmp_path / "runs" / "tiny_ddp" / "fold_0"
    saved = json.loads((run / "last_state.json").read_text())["epoch"]
    assert saved in (0, 1)  # 0-based: epoch 1 saved, or epoch 2's save cut short by the kill
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming after epoch {saved + 1}" in again.stdout + again.stderr
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["steps"] == 3 * history[0]["steps"]


def test_cv_parallel_names_a_failing_fold_then_gives_the_serial_folds(tmp_path):
    """A fold that fails fails the command, named; the rerun trains what is left and equals the serial cv."""
    cfg_path = _cli_config(tmp_path, epochs=2, folds=2)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\nif sys.argv[-2:] == ['--fold', '1']:\n    raise SystemExit('test hook: fold 1 breaks')\n"
    )
    cmd = [sys.executable, "-m", "medseg", "cv", str(cfg_path), "--parallel", "2"]
    broken = subprocess.run(cmd, env={**ENV, "PYTHONPATH": str(hook)}, capture_output=True, text=True, timeout=240)
    assert broken.returncode == 2
    assert "fold 1 failed (exit code 1)" in broken.stderr and "fold 1 breaks" in broken.stderr
    assert "fold 0 failed" not in broken.stderr
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    parallel_root = tmp_path / "runs" / "tiny_ddp"
    assert "fold 0: already finished" in (parallel_root / "fold_0" / "train.log").read_text()
    assert (parallel_root / "evaluation" / "report.md").is_file()  # the same held-out report as the serial cv
    from medseg.config import load_config
    from medseg.training.run import cross_validate

    cfg = load_config(cfg_path)
    cfg["output"]["root"] = str(tmp_path / "serial")
    cross_validate(cfg, progress=False)
    for fold in (0, 1):
        one = json.loads((tmp_path / "serial" / "tiny_ddp" / f"fold_{fold}" / "history.json").read_text())
        par = json.loads((parallel_root / f"fold_{fold}" / "history.json").read_text())
        assert [r["val_loss"] for r in par] == pytest.approx([r["val_loss"] for r in one], abs=1e-6)
        assert (
            _max_diff(
                parallel_root / f"fold_{fold}" / "model.safetensors",
                tmp_path / "serial" / "tiny_ddp" / f"fold_{fold}" / "model.safetensors",
            )
            < 1e-6
        )


_PLAN_RANK = """
import json, sys
from pathlib import Path
from medseg.cli.train import _config_or_plan
from medseg.training import distributed
cfg = _config_or_plan(Path(sys.argv[1]), None, None, 1, sys.argv[3:], "cpu", None, None)
Path(sys.argv[2], f"rank{distributed.info().rank}.json").write_text(json.dumps(cfg, sort_keys=True))
distributed.cleanup()
"""


def test_train_data_under_torchrun_plans_on_rank_0_only(tmp_path):
    """``torchrun -m medseg train DATA``: rank 0 plans (prints the decisions, writes plan.yaml) and rank 1 takes
    its config — a planner that would fail on rank 1 is never called there. The two processes get torchrun's
    variables (RANK, WORLD_SIZE, MASTER_ADDR/PORT) directly, and stop after the config (the training of a
    config under torchrun is tested above): a torchrun launcher and a training would double this test's time."""
    import socket

    folder = _toy_folder(tmp_path / "data")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import medseg.planning as planning\n"
        "    def refuse(*args, **kwargs):\n"
        "        raise SystemExit('test hook: rank 1 planned')\n"
        "    planning.fingerprint = planning.plan = refuse\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sets = ["train.batch_size=4", f"output.root={tmp_path / 'runs'}"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PLAN_RANK, str(folder), str(tmp_path), *sets],
            env={
                **ENV,
                "PYTHONPATH": str(hook),
                "RANK": str(r),
                "LOCAL_RANK": str(r),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    assert "plan for " in outs[0] and "plan for " not in outs[1] and "rank 1 planned" not in outs[1]
    assert (tmp_path / "runs" / "plan_data" / "plan.yaml").is_file()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1] and ranks[0]["train"]["batch_size"] == 4 and ranks[0]["name"] == "plan_data"


def test_a_failure_on_rank_0_fails_every_rank_with_its_message(monkeypatch):
    monkeypatch.setattr(distributed, "env_info", lambda: distributed.DistInfo(1, 2, 1))  # rank 1 of 2
    monkeypatch.setattr(distributed, "init", lambda device, timeout=None: distributed.DistInfo(1, 2, 1))
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj: (None, "ConfigError: no images in DATA"))
    called = []
    with pytest.raises(distributed.MainRankFailed, match="planning failed on rank 0: ConfigError: no images in DATA"):
        distributed.on_main_rank(lambda: called.append(1), torch.device("cpu"), what="planning")
    assert not called  # rank 1 never ran it
    monkeypatch.setattr(distributed, "env_info", lambda: distributed.DistInfo())
    assert distributed.on_main_rank(lambda: 7, torch.device("cpu")) == 7  # one process: just the call
