"""From a config to trained folds: data, saved split, one Trainer per fold (`medseg train`, `medseg cv`)."""

from __future__ import annotations


from tqdm.auto import tqdm

from medseg.artifact.files import dump_json
from medseg.data.datasets import CROP_MARK, SegmentationData
from medseg.data.runs import run_dir_for, splits_for
from medseg.data.splits import fold_indices
from medseg.data.volumes import load_any_data


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


def train_fold(cfg: dict, fold: int, *, data: SegmentationData | None = None, restart: bool = False,
               progress: bool = True) -> dict:
    data = data if data is not None else load_any_data(cfg, progress)
    for note in data.notes:
        if CROP_MARK not in note:  # the loader has shown that one as a warning already
            tqdm.write(f"note: {note}")
    splits, split_path = splits_for(cfg, data)
    train_idx, val_idx, test_idx = fold_indices(splits, fold)
    run_root = run_dir_for(cfg)
    run_root.mkdir(parents=True, exist_ok=True)
    info = {"splits_file": str(split_path.resolve()), "data": data.source, "fingerprint": data.fingerprint,
            "synthesized": data.synthesized, "n_images": len(data), "notes": data.notes,
            "n_train": len(train_idx), "n_val": len(val_idx), "n_test": len(test_idx)}
    noise = None
    if (cfg.get("noisy_labels") or {}).get("enabled"):
        # Simulated annotation noise on this fold's TRAINING samples only; val/test labels stay clean.
        from medseg.data.label_noise import apply_label_noise, merge_noise_report

        data, noise = apply_label_noise(cfg, data, train_idx, fold, progress=progress)
        tqdm.write(f"note: {data.notes[-1]}")
        info["label_noise"] = merge_noise_report(run_root / "data.json", noise)
    dump_json(info, run_root / "data.json")
    trainer = trainer_class(cfg)(cfg, run_root / f"fold_{fold}", data, train_idx, val_idx, fold=fold, progress=progress)
    if noise is not None:
        trainer.label_noise = noise
    tqdm.write(f"fold {fold}: {len(train_idx)} train / {len(val_idx)} val / {len(test_idx)} held-out test images "
               f"on {trainer.device}; split {split_path}")
    return trainer.fit(restart=restart)


def cross_validate(cfg: dict, *, folds: list[int] | None = None, restart: bool = False, progress: bool = True) -> list[dict]:
    data = load_any_data(cfg, progress)
    if folds is None:  # every fold of the split (a splits.file of names may list another number than n_folds)
        folds = list(range(len(splits_for(cfg, data)[0]["folds"])))
    return [train_fold(cfg, k, data=data, restart=restart, progress=progress) for k in folds]
