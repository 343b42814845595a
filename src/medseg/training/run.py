"""From a config to trained folds: data, saved split, one Trainer per fold (`medseg train`, `medseg cv`).

Under ``torchrun`` (several processes, :mod:`medseg.training.distributed`) :func:`train_fold` opens the
process group first; rank 0 loads (and, for ``synth:`` sets, makes) the data and the split before the other
ranks read them, and alone writes ``data.json`` and prints; given data instead of a config, rank 0 alone
plans it (:func:`plan_on_main_rank`). :func:`cross_validate_parallel` (``medseg cv
--parallel K``) trains K folds at once, each in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

from medseg.artifact.files import dump_json
from medseg.data.datasets import CROP_MARK, SegmentationData
from medseg.data.registry import load_any_data
from medseg.data.runs import check_same_training, run_dir_for, splits_for
from medseg.data.splits import fold_indices
from medseg.errors import MedsegError


def trainer_class(cfg: dict):
    """The trainer a config asks for (later variants register here)."""
    from medseg.training.trainer import Trainer

    qam = ((cfg.get("noisy_labels") or {}).get("qam") or {}).get("enabled")
    # adversarial + qam together is refused when the config is loaded (medseg.config_schema)
    if (cfg.get("adversarial") or {}).get("enabled"):
        from medseg.training.adversarial import AdversarialTrainer

        return AdversarialTrainer
    if qam:
        from medseg.training.noisy_labels import NoisyLabelTrainer

        return NoisyLabelTrainer
    return Trainer


def plan_on_main_rank(plan, device: str | None, sets: list[tuple[str, str]]) -> dict:
    """``medseg train DATA`` (and ``cv DATA``) under torchrun: rank 0 alone calls ``plan`` (fingerprint, plan,
    print, write ``plan.yaml``), every other rank waits for and takes its config, so all ranks train the same
    one. The process group is opened for the device the run will train on: ``--device``, else a ``--set
    train.device``, else auto (the planner leaves ``train.device`` as it is); the ranks wait for the plan up to
    ``--set train.distributed.timeout_minutes`` (default 10). One process: ``plan()``."""
    import yaml

    from medseg.artifact import resolve_device
    from medseg.training import distributed

    if not distributed.env_info().active:
        return plan()
    given = dict(sets)

    def value(key: str, default):
        try:
            return yaml.safe_load(given[key]) if key in given else default
        except yaml.YAMLError:
            return default  # the planner's own --set check names it

    timeout = value("train.distributed.timeout_minutes", None)
    device_name = device or value("train.device", "auto") or "auto"
    return distributed.on_main_rank(
        plan,
        resolve_device(str(device_name)),
        float(timeout) if isinstance(timeout, (int, float)) else None,
        what="planning the config",
    )


def train_fold(
    cfg: dict, fold: int, *, data: SegmentationData | None = None, restart: bool = False, progress: bool = True
) -> dict:
    from medseg.artifact import resolve_device
    from medseg.training import distributed

    me = distributed.init(resolve_device(cfg["train"]["device"]), cfg["train"]["distributed"]["timeout_minutes"])
    progress = progress and me.is_main
    with distributed.main_first():  # rank 0 makes what is shared (a synthesized set, the split) first
        data = data if data is not None else load_any_data(cfg, progress)
        splits, split_path = splits_for(cfg, data)
    for note in data.notes if me.is_main else ():
        if CROP_MARK not in note:  # the loader has shown that one as a warning already
            tqdm.write(f"note: {note}")
    train_idx, val_idx, test_idx = fold_indices(splits, fold)
    run_root = run_dir_for(cfg)
    # every rank reads the record (the same files), so all refuse alike; rank 0 alone removes a replaced run
    _replace_or_refuse(run_root, cfg, data, split_path, restart=restart, remove=me.is_main)
    if me.is_main:
        run_root.mkdir(parents=True, exist_ok=True)
    info = {
        "splits_file": str(split_path.resolve()),
        "data": data.source,
        "fingerprint": data.fingerprint,
        "synthesized": data.synthesized,
        "n_images": len(data),
        "notes": data.notes,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
    }
    noise = None
    if (cfg.get("noisy_labels") or {}).get("enabled"):
        # Simulated annotation noise on this fold's TRAINING samples only; val/test labels stay clean.
        from medseg.data.label_noise import apply_label_noise, merge_noise_report

        data, noise = apply_label_noise(cfg, data, train_idx, fold, progress=progress)
        if me.is_main:
            tqdm.write(f"note: {data.notes[-1]}")
            info["label_noise"] = merge_noise_report(run_root / "data.json", noise)
    if me.is_main and _changed(run_root / "data.json", info):
        dump_json(info, run_root / "data.json")
    trainer = trainer_class(cfg)(cfg, run_root / f"fold_{fold}", data, train_idx, val_idx, fold=fold, progress=progress)
    if noise is not None:
        trainer.label_noise = noise
    if me.is_main:
        ranks = (
            (f" × {me.world_size} processes (batch {trainer.per_rank_batch} each, global {cfg['train']['batch_size']})")
            if me.active
            else ""
        )
        tqdm.write(
            f"fold {fold}: {len(train_idx)} train / {len(val_idx)} val / {len(test_idx)} held-out test images "
            f"on {trainer.device}{ranks}; split {split_path}"
        )
    return trainer.fit(restart=restart)


def _replace_or_refuse(
    run_root: Path, cfg: dict, data: SegmentationData, split_path: Path, *, restart: bool, remove: bool = True
) -> None:
    """:func:`medseg.data.runs.check_same_training`, saying what a ``--restart`` removed."""
    if restart and not remove:
        return  # rank 0 replaces the run
    removed = check_same_training(run_root, cfg, data, split_path, restart=restart)
    if removed:
        tqdm.write(
            f"note: --restart replaces the run {run_root} (it held another training): removed "
            f"{', '.join(p.name for p in removed)}"
        )


def _changed(path: Path, record: dict) -> bool:
    """Whether ``record`` differs from the JSON at ``path``: an unchanged record is not rewritten."""
    try:
        return json.loads(path.read_text()) != json.loads(json.dumps(record))
    except (OSError, ValueError):
        return True


def cross_validate(
    cfg: dict, *, folds: list[int] | None = None, restart: bool = False, progress: bool = True
) -> list[dict]:
    data = load_any_data(cfg, progress)
    if folds is None:  # every fold of the split (a splits.file of names may list another number than n_folds)
        folds = list(range(len(splits_for(cfg, data)[0]["folds"])))
    return [train_fold(cfg, k, data=data, restart=restart, progress=progress) for k in folds]


def cross_validate_parallel(
    cfg: dict, *, folds: list[int] | None = None, parallel: int = 2, restart: bool = False, progress: bool = True
) -> list[dict]:
    """``medseg cv --parallel K``: the folds of :func:`cross_validate`, K at a time, each a ``medseg train``
    process of its own; returns the folds' summaries in fold order, as the serial run does.

    The data and the split are made here first (the children only read them). The config is handed over as
    the resolved YAML the run keeps (``config.yaml``), so each child trains exactly this config. Each child's
    output goes to ``<fold>/train.log``. Threads: each child starts with ``OMP_NUM_THREADS`` = cores // K and
    then takes its share of the cores as a medseg compute process (:mod:`medseg.threads`). GPUs: with CUDA
    GPUs (and a config not on the CPU) child i sees one GPU, ``CUDA_VISIBLE_DEVICES`` = GPU i mod the GPUs
    visible here. A fold that fails makes this fail after the others have finished, naming the fold and the
    end of its log; a rerun resumes every unfinished fold."""
    from medseg.config import save_config
    from medseg.threads import available_cores

    data = load_any_data(cfg, progress)
    splits, split_path = splits_for(cfg, data)
    folds = list(range(len(splits["folds"]))) if folds is None else list(folds)
    parallel = max(1, min(int(parallel), len(folds)))
    run_root = run_dir_for(cfg)
    _replace_or_refuse(run_root, cfg, data, split_path, restart=restart)  # before the folds' logs are opened
    run_root.mkdir(parents=True, exist_ok=True)
    gpus = _visible_gpus() if str(cfg["train"]["device"]) != "cpu" else []
    with tempfile.TemporaryDirectory(prefix="medseg-cv-") as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        save_config(cfg, cfg_path)
        waiting, running, failed = list(folds), {}, []
        slots = list(range(parallel))
        while waiting or running:
            while waiting and slots:
                fold, slot = waiting.pop(0), slots.pop(0)
                env = dict(os.environ)
                env.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // parallel)))
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                fold_dir = run_root / f"fold_{fold}"
                fold_dir.mkdir(parents=True, exist_ok=True)
                log = (fold_dir / "train.log").open("w")
                cmd = [sys.executable, "-m", "medseg", "train", str(cfg_path), "--fold", str(fold)] + (
                    ["--restart"] if restart else []
                )
                running[fold] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log, slot)
                if progress:
                    tqdm.write(
                        f"fold {fold}: started (process {running[fold][0].pid}"
                        f"{', GPU ' + env['CUDA_VISIBLE_DEVICES'] if gpus else ''}), log {fold_dir / 'train.log'}"
                    )
            for fold, (proc, log, slot) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[fold]
                slots.append(slot)
                if proc.returncode:
                    failed.append((fold, proc.returncode))
                if progress:
                    tqdm.write(
                        f"fold {fold}: {'finished' if not proc.returncode else f'FAILED (exit code {proc.returncode})'}"
                    )
            time.sleep(0.2)
    if failed:
        lines = []
        for fold, code in failed:
            tail = (run_root / f"fold_{fold}" / "train.log").read_text(errors="replace").strip().splitlines()[-3:]
            lines.append(f"fold {fold} failed (exit code {code}): {' | '.join(tail) or 'no output'}")
        raise FoldFailed(
            "; ".join(lines) + f" — logs in {run_root}/fold_K/train.log; run the same command again "
            "to resume the unfinished folds"
        )
    return [json.loads((run_root / f"fold_{k}" / "summary.json").read_text()) for k in folds]


class FoldFailed(MedsegError):
    """A fold of ``cv --parallel`` failed (its number and the end of its log are in the message)."""


def _visible_gpus() -> list[str]:
    """The CUDA GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (none without CUDA)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not n:
        return []
    named = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return named[:n] if named else [str(i) for i in range(n)]
