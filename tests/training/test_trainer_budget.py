"""Training on one's own data (issue 12): a budget in optimizer steps, training without a validation set,
and full-resolution 2D images trained on patches and predicted whole."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from medseg.config import DEFAULTS
from medseg.data.datasets import load_data
from medseg.errors import ConfigError
from medseg.inference.image import predict_image_file
from medseg.inference.predictor import Predictor
from medseg.training.trainer import Trainer

TRAIN, VAL = list(range(32)), list(range(32, 40))


def _cfg(tiny_cfg, **train):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["train"].update(train)
    return cfg


def _count_steps(monkeypatch) -> dict:
    calls = {"n": 0}
    real = Trainer.train_step

    def counting(self, batch):
        calls["n"] += 1
        return real(self, batch)

    monkeypatch.setattr(Trainer, "train_step", counting)
    return calls


@pytest.mark.parametrize("iterations,cap,per_epoch", [(10, None, [4, 4, 2]), (7, 3, [3, 3, 1]), (8, None, [4, 4])])
def test_iterations_budget_stops_at_exactly_n_steps(
    tiny_cfg, toy_data, tmp_path, monkeypatch, iterations, cap, per_epoch
):
    calls = _count_steps(monkeypatch)
    # epochs: 50 would be far more; the budget decides (32 training images / batch 8 = 4 steps an epoch)
    cfg = _cfg(tiny_cfg, epochs=50, iterations=iterations, max_batches_per_epoch=cap)
    trainer = Trainer(cfg, tmp_path / "fold_0", toy_data, TRAIN, VAL, progress=False)
    assert trainer.epochs == len(per_epoch)
    summary = trainer.fit()
    assert calls["n"] == iterations
    history = json.loads((tmp_path / "fold_0" / "history.json").read_text())
    assert [r["steps"] for r in history] == list(np.cumsum(per_epoch))
    assert summary["steps"] == iterations and summary["epochs_run"] == len(per_epoch)


def test_poly_schedule_spans_the_iterations_budget(tiny_cfg, toy_data, tmp_path):
    cfg = _cfg(tiny_cfg, iterations=12, scheduler={**DEFAULTS["train"]["scheduler"], "name": "poly"})
    Trainer(cfg, tmp_path / "fold_0", toy_data, TRAIN, VAL, progress=False).fit()
    lrs = [r["lr"] for r in json.loads((tmp_path / "fold_0" / "history.json").read_text())]
    assert lrs == pytest.approx([1e-2 * (1 - e / 3) ** 0.9 for e in range(3)])  # 12 steps = 3 epochs of 4


def test_training_without_validation_keeps_the_last_model(tiny_cfg, toy_data, tmp_path, capsys):
    cfg = _cfg(tiny_cfg, epochs=3)
    trainer = Trainer(cfg, tmp_path / "fold_0", toy_data, TRAIN, [], progress=False)
    summary = trainer.fit()
    out = capsys.readouterr().out
    assert out.count("no validation set") == 1 and "last one is the model kept" in out
    history = json.loads((tmp_path / "fold_0" / "history.json").read_text())
    assert len(history) == 3 and not any(k.startswith("val_") for r in history for k in r)
    meta = json.loads((tmp_path / "fold_0" / "model.json").read_text())
    assert meta["best_epoch"] == summary["best_epoch"] == 3 and "no validation set" in meta["selected"]
    saved = load_file(str(tmp_path / "fold_0" / "model.safetensors"))
    last = load_file(str(tmp_path / "fold_0" / "last.safetensors"))
    for key, value in saved.items():  # model.safetensors holds the last epoch's weights
        torch.testing.assert_close(value, last[f"model/{key}"])
    # early stopping (and a plateau schedule) followed the training loss in place of the missing val_loss
    assert trainer.early.best == pytest.approx(min(r["train_loss"] for r in history))


def test_without_validation_early_stopping_watches_the_training_loss(tiny_cfg, toy_data, tmp_path):
    # an lr far too large makes the training loss stop improving; patience 1 then stops on train_loss
    cfg = _cfg(tiny_cfg, epochs=20, lr=5.0, early_stopping={"patience": 1, "min_delta": 0.0, "monitor": "val_loss"})
    trainer = Trainer(cfg, tmp_path / "fold_0", toy_data, TRAIN, [], progress=False)
    summary = trainer.fit()
    assert trainer.monitor_key() == "train_loss"
    assert summary["epochs_run"] < 20 and summary["best_epoch"] == summary["epochs_run"]


# ------------------------------------------------------------------------------- full resolution, patches


def _folder(root, shapes, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), np.uint8)
        for _ in range(6):  # bright discs are class 1
            cy, cx, r = rng.integers(20, h - 20), rng.integers(20, w - 20), rng.integers(6, 14)
            yy, xx = np.ogrid[:h, :w]
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        image = (rng.random((h, w)) * 50 + mask * 160).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"img_{i}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"img_{i}.png")
    return root


def _full_res_cfg(tiny_cfg, path, **data):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["task"].update(class_names=["background", "disc"], derived=None, primary_metric="disc")
    cfg["data"].update(path=str(path), size=None, patch_size=[64, 64], patch_pos_fraction=0.5, **data)
    cfg["evaluate"]["sliding_window"].update(roi_size=[64, 64], overlap=0.25)
    cfg["train"].update(batch_size=2, iterations=6, lr=1e-2)
    return cfg


def test_512_folder_trains_on_patches_and_predicts_full_size(tiny_cfg, tmp_path):
    folder = _folder(tmp_path / "set", [(512, 512)] * 3)
    cfg = _full_res_cfg(tiny_cfg, folder, normalize="zscore")
    data = load_data(cfg["data"], 2)
    assert data.images.shape == (3, 512, 512) and not data.notes  # full resolution, nothing cropped
    trainer = Trainer(cfg, tmp_path / "run" / "fold_0", data, [0, 1], [2], progress=False)
    batches: list[tuple[int, ...]] = []
    real = trainer.train_step
    trainer.train_step = lambda batch: (batches.append(tuple(batch["image"].shape)), real(batch))[1]
    validated: list[tuple[int, ...]] = []
    hook = trainer.model.register_forward_pre_hook(
        lambda m, args: None if m.training else validated.append(tuple(args[0].shape[2:]))
    )
    summary = trainer.fit()
    hook.remove()
    assert batches == [(2, 1, 64, 64)] * 6  # 6 steps on 64×64 patches
    assert validated and set(validated) == {(64, 64)}  # whole 512² validation image, window by window
    assert summary["steps"] == 6
    meta = json.loads((tmp_path / "run" / "fold_0" / "model.json").read_text())
    assert meta["evaluate"]["sliding_window"]["roi_size"] == [64, 64]
    assert meta["preprocessing"]["normalize"] == "zscore" and meta["preprocessing"]["size"] is None

    predictor = Predictor.from_path(tmp_path / "run" / "fold_0", device="cpu")
    out = predict_image_file(predictor, folder / "images" / "img_2.png", tmp_path / "pred")
    labels = np.asarray(Image.open(tmp_path / "pred" / "img_2_labels.png"))
    assert labels.shape == (512, 512) and out["shape"] == [512, 512]
    assert sum(out["classes"].values()) == 512 * 512


def test_images_of_different_sizes_train_on_patches_and_validate_one_by_one(tiny_cfg, tmp_path):
    folder = _folder(tmp_path / "set", [(96, 80), (128, 160), (70, 100), (100, 100)])
    cfg = _full_res_cfg(tiny_cfg, folder)
    cfg["train"]["iterations"] = 4  # 3 training images in batches of 2: 2 steps an epoch, 2 epochs
    data = load_data(cfg["data"], 2)
    assert data.boxes is not None and data.images.shape == (4, 128, 160)
    trainer = Trainer(cfg, tmp_path / "fold_0", data, [0, 1, 2], [3], progress=False)
    validated: list[tuple[int, ...]] = []
    real = trainer.eval_logits
    trainer.eval_logits = lambda image: (validated.append(tuple(image.shape)), real(image))[1]
    assert trainer.fit()["epochs_run"] == 2
    assert validated == [(1, 1, 100, 100)] * 2  # the validation image alone, at its own size (not the canvas)
    unpatched = copy.deepcopy(cfg)
    unpatched["data"].update(patch_size=None, patch_pos_fraction=None)
    with pytest.raises(ConfigError, match=r"3 different sizes .* set data\.patch_size"):
        Trainer(unpatched, tmp_path / "fold_1", data, [0, 1, 2], [3], progress=False)


def test_evaluation_scores_each_image_within_its_own_size(tiny_cfg, tmp_path):
    from medseg.data.runs import splits_for
    from medseg.data.splits import fold_indices
    from medseg.evaluation.evaluate import evaluate_run
    from medseg.training.run import train_fold

    shapes = [(96, 80), (128, 160), (70, 100), (100, 100), (90, 120), (64, 150)]
    folder = _folder(tmp_path / "set", shapes)
    cfg = _full_res_cfg(tiny_cfg, folder)
    cfg["train"]["iterations"] = 2
    cfg["splits"].update(n_folds=2, test_fraction=0.34)
    cfg["evaluate"]["hausdorff"] = False
    train_fold(cfg, 0, progress=False)
    report = evaluate_run(tmp_path / "runs" / "tiny", progress=False)
    metrics = json.loads((report.parent / "metrics.json").read_text())
    data = load_data(cfg["data"], 2)
    _, _, test_idx = fold_indices(splits_for(cfg, data)[0], 0)
    own_pixels = sum(shapes[i][0] * shapes[i][1] for i in test_idx)
    # every pixel of the test images is counted once, and none of the 128 × 160 canvas' padding
    assert int(np.sum(metrics["metrics"]["confusion_matrix"])) == own_pixels < len(test_idx) * 128 * 160


def test_time_limit_stops_training(tmp_path, toy_data, tiny_cfg, monkeypatch):
    """train.time_limit_minutes: the first batch past the deadline ends training; the epoch is kept."""
    import medseg.training.trainer as trainer_mod
    from medseg.config import validate
    from medseg.training.trainer import Trainer

    cfg = validate({**tiny_cfg, "train": {**tiny_cfg["train"], "epochs": 50, "time_limit_minutes": 1.0}})
    clock = {"t": 0.0}

    def fake_clock():  # every call advances 10 s: the limit of 60 s falls inside the first epochs
        clock["t"] += 10.0
        return clock["t"]

    monkeypatch.setattr(trainer_mod.time, "perf_counter", fake_clock)
    trainer = Trainer(cfg, tmp_path / "fold_0", toy_data, list(range(0, 32)), list(range(32, 40)), progress=False)
    summary = trainer.fit()
    assert summary["stopped_by_time_limit"] and summary["epochs_run"] < 50
    assert (tmp_path / "fold_0" / "model.safetensors").is_file() and summary["best_epoch"] >= 1
