"""The CTV thesis' 3D U-Net (§2.2, Table 2.1), its 3D training with the Trainer and sliding-window inference."""

from __future__ import annotations

import glob
import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medseg.artifact import model_kwargs
from medseg.config import load_config
from medseg.data.transforms import build_train_transform
from medseg.inference.predictor import Predictor
from medseg.losses import build_loss
from medseg.metrics import count_parameters
from medseg.models import build_model
from medseg.models.blocks import ConvNormAct, SqueezeExcitation
from medseg.models.ctv_unet3d import (
    THESIS_CHANNELS,
    CTVStage,
    CTVUNet3D,
    PerPassBatchNorm,
    step_weights,
)
from medseg.training.trainer import Trainer

TINY = [2, 2, 3, 3, 4]  # five stages, as the thesis, at toy widths
CONFIGS = sorted(glob.glob(str(Path(__file__).resolve().parents[2] / "configs" / "ctv" / "*.yaml")))


@pytest.mark.parametrize("residual,se,recurrent", list(itertools.product([False, True], repeat=3)))
def test_output_shape_odd_sizes(residual, se, recurrent):
    torch.manual_seed(0)
    model = CTVUNet3D(1, 2, channels=TINY, residual=residual, se=se, recurrent=recurrent).eval()
    x = torch.randn(1, 1, 5, 9, 7)  # padded to 32³ inside (5 poolings), cropped back
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 2, 5, 9, 7) and torch.isfinite(out).all()


def test_registered_and_thesis_mapping():
    model = build_model("ctv_unet3d")
    assert isinstance(model, CTVUNet3D) and model.divisor == 32  # 5 poolings: 2**5
    assert [s.body[0][0][0].out_channels for s in model.core.encoder] == list(THESIS_CHANNELS) == [16, 32, 64, 96, 128]
    assert model.core.bridge.body[0][0][0].out_channels == 128
    assert [s.body[1][0][0].out_channels for s in model.core.decoder] == [128, 96, 64, 32, 16]
    # the bridge works at 1/32 of the (padded) input
    seen = {}
    tiny = CTVUNet3D(1, 1, channels=TINY).eval()
    tiny.core.bridge.register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    with torch.no_grad():
        tiny(torch.randn(1, 1, 40, 64, 33))  # padded to 64, 64, 64 → bridge 2, 2, 2
    assert seen["shape"] == (1, 4, 2, 2, 2)


def test_conv_module_order():
    # thesis order: 3×3×3 conv, ELU, BN
    stage = CTVStage(1, 4, order="conv_act_norm")
    mod = stage.body[0]
    kinds = [type(m).__name__ for m in list(mod[0]) + [mod[1]] if not isinstance(m, nn.Identity)]
    assert kinds == ["Conv3d", "ELU", "BatchNorm3d"] and mod[0][0].bias is not None
    assert mod[0][0].kernel_size == (3, 3, 3)
    stage = CTVStage(1, 4, order="conv_norm_act")
    assert isinstance(stage.body[0], ConvNormAct)
    assert [type(m).__name__ for m in stage.body[0]] == ["Conv3d", "BatchNorm3d", "ELU"]


def test_se_and_residual_only_when_enabled():
    def census(model):
        stages = [m for m in model.modules() if isinstance(m, CTVStage)]
        return (
            len(stages),
            sum(isinstance(m, SqueezeExcitation) for m in model.modules()),
            sum(s.shortcut is not None for s in stages),
        )

    # 5 encoder + 1 bridge + 5 decoder stages = 11
    assert census(CTVUNet3D(channels=TINY)) == (11, 0, 0)
    assert census(CTVUNet3D(channels=TINY, residual=True)) == (11, 0, 11)
    assert census(CTVUNet3D(channels=TINY, se=True)) == (11, 11, 0)
    assert census(CTVUNet3D(channels=TINY, residual=True, se=True)) == (11, 11, 11)
    # and they act: a residual stage differs from the plain one with the same body weights
    torch.manual_seed(0)
    plain = CTVStage(3, 3).eval()
    res = CTVStage(3, 3, residual=True).eval()
    res.body.load_state_dict(plain.body.state_dict())
    x = torch.randn(1, 3, 4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(res(x), plain(x) + x)  # identity shortcut when the width is kept


def _stage_params(cin, cout):
    # conv_act_norm module: 27·cin·cout weights + cout bias + 2·cout BN = 27·cin·cout + 3·cout
    return 27 * cin * cout + 3 * cout + 27 * cout * cout + 3 * cout


def test_parameter_count_full_width():
    enc = sum(_stage_params(a, b) for a, b in [(1, 16), (16, 32), (32, 64), (64, 96), (96, 128)])
    bridge = _stage_params(128, 128)
    # transposed 2×2×2 convs: 8·cin·cout + cout, from 128 (bridge) to 128, 96, 64, 32, 16
    ups = sum(8 * a * b + b for a, b in [(128, 128), (128, 96), (96, 64), (64, 32), (32, 16)])
    dec = sum(_stage_params(2 * c, c) for c in [128, 96, 64, 32, 16])
    head = 16 * 1 + 1
    base = enc + bridge + ups + dec + head
    assert base == 5_101_521
    assert count_parameters(build_model("ctv_unet3d")) == base
    # residual: 1×1×1 conv (no bias) + BN where the width changes: 1→16, 16→32, 32→64, 64→96, 96→128
    # in the encoder and 2c→c in the decoder (the bridge keeps 128: identity)
    proj = sum(a * b + 2 * b for a, b in [(1, 16), (16, 32), (32, 64), (64, 96), (96, 128)])
    proj += sum(2 * c * c + 2 * c for c in [128, 96, 64, 32, 16])
    assert count_parameters(build_model("ctv_unet3d", residual=True)) == base + proj == 5_185_825
    # SE (no bias, r = 16): 2·C·max(1, C // 16) per stage
    se = sum(2 * c * max(1, c // 16) for c in [16, 32, 64, 96, 128, 128, 128, 96, 64, 32, 16])
    assert count_parameters(build_model("ctv_unet3d", residual=True, se=True)) == base + proj + se == 5_195_617
    # recurrent: one more input channel (the fed-back prediction) into the first stage: 27·16 = 432 weights
    # in its first 3×3×3 conv and 16 in its 1×1×1 shortcut
    full = build_model("ctv_unet3d", residual=True, se=True, recurrent=True)
    assert count_parameters(full) == 5_195_617 + 432 + 16 == 5_196_065


def test_recurrent_steps_feed_back_the_prediction():
    torch.manual_seed(0)
    model = CTVUNet3D(1, 1, channels=TINY, recurrent=True, recurrent_steps=3).eval()
    inputs, outputs = [], []

    def record(module, args, output):  # a forward hook must return None (else it replaces the output)
        inputs.append(args[0].clone())
        outputs.append(output.clone())

    model.core.register_forward_hook(record)
    x = torch.randn(1, 1, 6, 8, 8)
    with torch.no_grad():
        out = model(x)
    assert len(inputs) == 3  # the network is called once per pass
    fed = [i[:, 1:] for i in inputs]
    assert torch.count_nonzero(fed[0]) == 0  # the first pass sees an all-zero prediction
    assert torch.allclose(fed[1], outputs[0].sigmoid()) and torch.allclose(fed[2], outputs[1].sigmoid())
    assert not torch.allclose(fed[1], fed[2])  # the fed-back prediction changes
    assert all(torch.equal(i[:, :1], inputs[0][:, :1]) for i in inputs)  # the image is the same every pass
    # padded input inside; the result is the last pass's logits, cropped
    with torch.no_grad():
        steps = model(x, return_steps=True)
    assert len(steps) == 3 and torch.equal(steps[-1], out) and not torch.allclose(steps[0], steps[2])
    inputs.clear()
    five = CTVUNet3D(1, 1, channels=TINY, recurrent=True, recurrent_steps=5).eval()
    five.core.register_forward_hook(lambda m, i, o: inputs.append(1))
    with torch.no_grad():
        five(x)
    assert len(inputs) == 5
    inputs.clear()
    plain = CTVUNet3D(1, 1, channels=TINY).eval()
    plain.core.register_forward_hook(lambda m, i, o: inputs.append(i[0].shape[1]))
    with torch.no_grad():
        plain(x)
    assert inputs == [1]  # no recurrence: one pass, image only


def test_step_weights_and_training_loss_hook():
    assert step_weights(3, "weighted") == pytest.approx([1 / 6, 2 / 6, 3 / 6])  # k / (1 + 2 + 3)
    assert step_weights(3, "all") == pytest.approx([1 / 3] * 3)
    assert step_weights(3, "last") == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="loss_steps"):
        CTVUNet3D(channels=TINY, recurrent=True, loss_steps="first")
    torch.manual_seed(0)
    # training-mode batch norm needs more than one value per channel at the bottom: 3 poolings on 16³ → 2³
    model = CTVUNet3D(1, 1, channels=[2, 3, 4], recurrent=True).train()
    loss_fn = build_loss([{"name": "bce"}, {"name": "dice"}], "multilabel")
    x = torch.randn(1, 1, 16, 16, 16)
    y = (torch.rand(1, 1, 16, 16, 16) > 0.5).long()
    torch.manual_seed(1)
    loss, last = model.training_loss(loss_fn, x, y)
    assert last.shape == (1, 1, 16, 16, 16)
    torch.manual_seed(1)
    with torch.no_grad():
        steps = model(x, return_steps=True)
    expected = sum(w * loss_fn(s, y) for w, s in zip([1 / 6, 2 / 6, 3 / 6], steps, strict=True))
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    loss.backward()
    assert model.core.head.weight.grad is not None
    # gradients flow through the fed-back prediction unless detach_feedback
    seen = []
    model.core.register_forward_hook(lambda m, i, o: seen.append(i[0].requires_grad))
    model(x, return_steps=True)
    assert seen == [False, True, True]
    seen.clear()
    model.detach_feedback = True
    model(x, return_steps=True)
    assert seen == [False, False, False]


@pytest.mark.parametrize("pass_norm", ["per_pass", "shared"])
def test_batch_norm_statistics_per_pass(pass_norm):
    torch.manual_seed(0)
    model = CTVUNet3D(1, 1, channels=[2, 3, 4], recurrent=True, pass_norm=pass_norm)
    norms = [m for m in model.modules() if isinstance(m, (PerPassBatchNorm, nn.modules.batchnorm._BatchNorm))]
    # 3 encoder + 1 bridge + 3 decoder stages, 2 norms each
    assert len(norms) == 14 and all(isinstance(m, PerPassBatchNorm) == (pass_norm == "per_pass") for m in norms)
    for m in norms:
        m.momentum = None  # cumulative average: after one batch the running statistics are that batch's
    x = torch.randn(2, 1, 16, 16, 16) + 0.5
    with torch.no_grad():
        train = model.train()(x, return_steps=True)
        evald = model.eval()(x, return_steps=True)
    diff = [float((a - b).abs().max()) for a, b in zip(train, evald, strict=True)]
    if pass_norm == "per_pass":
        # eval uses each pass's own statistics: the same output up to the unbiased-variance factor n/(n−1)
        # of the running variance (n = 2·2³ = 16 values per channel at the bottom). Measured max 0.006.
        assert max(diff) < 0.02
        assert norms[0].running_mean.shape == (3, norms[0].weight.numel())
        assert not torch.allclose(norms[0].running_mean[0], norms[0].running_mean[1])  # the passes differ
    else:
        assert max(diff) > 0.1  # one set of statistics averaged over unlike passes (measured 0.56)
    assert count_parameters(model) == count_parameters(CTVUNet3D(1, 1, channels=[2, 3, 4], recurrent=True))


def test_plain_forward_in_training_warns_about_the_last_pass():
    model = CTVUNet3D(1, 1, channels=[2, 3], recurrent=True, loss_steps="weighted").train()
    with pytest.warns(UserWarning, match="last"):
        model(torch.randn(2, 1, 4, 8, 8))
    quiet = CTVUNet3D(1, 1, channels=[2, 3], recurrent=True, loss_steps="last").train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet(torch.randn(2, 1, 4, 8, 8))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).stem)
def test_ctv_configs_load_and_build(path):
    cfg = load_config(path)
    assert cfg["task"]["spatial_dims"] == 3 and cfg["task"]["mode"] == "multilabel"
    model = build_model(cfg["model"]["name"], **model_kwargs(cfg))
    assert isinstance(model, CTVUNet3D) and model.out_channels == 1
    if "table2_1" in path:
        assert model.channels == [16, 32, 64, 96, 128] and cfg["train"]["batch_size"] == 1
        assert cfg["train"]["lr"] == pytest.approx(1e-4) and cfg["preprocess"]["clip_max"] == 1600


def test_table2_1_rows_add_one_module_each():
    rows = ["unet", "unet_res", "unet_res_se", "unet_res_se_recurrent", "unet_res_se_recurrent_dice"]
    cfgs = [load_config(next(p for p in CONFIGS if Path(p).stem == f"table2_1_{r}")) for r in rows]
    flags = [(c["model"]["residual"], c["model"]["se"], c["model"]["recurrent"], len(c["loss"])) for c in cfgs]
    assert flags == [
        (False, False, False, 1),
        (True, False, False, 1),
        (True, True, False, 1),
        (True, True, True, 1),
        (True, True, True, 2),
    ]
    assert [item["name"] for item in cfgs[-1]["loss"]] == ["bce", "dice"]


# --- 3D training with the Trainer --------------------------------------------------------------------------


def tiny_cfg(**model):
    return load_config(
        None,
        {
            "name": "ctv_toy",
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "derived": {},
                "primary_metric": "ctv",
                "spatial_dims": 3,
            },
            "data": {"size": None, "patch_size": [8, 8, 8], "patch_pos_fraction": 0.5},
            # two poolings: an 8³ patch keeps 2³ voxels at the bottom (training batch norm needs > 1 value)
            "model": {"name": "ctv_unet3d", "channels": [2, 4], "residual": True, "se": True, **model},
            "loss": [{"name": "bce"}, {"name": "dice"}],
            "augment": {"volume": {"shift_voxels": 2.0}},  # the toy target stays inside the 8-slice volumes
            "train": {"epochs": 2, "batch_size": 2, "lr": 1e-3},
            "evaluate": {"batch_size": 2},
        },
    )


class RefinementTrainer(Trainer):
    """A custom trainer step that asks the model for its own training loss (the hook every trainer uses)."""

    def train_step(self, batch):
        image, label = self.to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.model.training_loss(self.loss_fn, image, label)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}


def test_trainer_runs_two_epochs_on_3d(tmp_path, toy_volumes):
    cfg = tiny_cfg()
    data = toy_volumes
    trainer = Trainer(cfg, tmp_path / "fold_0", data, [0, 1, 2], [3], progress=False)
    # Patches need the whole config (data.patch_size) in the transform: the Trainer builds it with
    # build_train_transform(cfg), the config given once.
    assert trainer.train_set.transform is not None
    trainer.train_set.transform = build_train_transform(cfg)
    # patches of the training volumes, whole validation volumes
    sample = trainer.train_set[0]
    assert sample["image"].shape == (1, 8, 8, 8) and sample["label"].shape == (1, 8, 8, 8)
    assert trainer.val_set[0]["image"].shape == (1, 8, 16, 16)
    summary = trainer.fit()
    assert summary["epochs_run"] == 2
    hist = json.loads((tmp_path / "fold_0" / "history.json").read_text())
    assert all(
        np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) and 0 <= r["val_dice/ctv"] <= 1 for r in hist
    )
    meta = json.loads((tmp_path / "fold_0" / "model.json").read_text())
    assert meta["model"]["name"] == "ctv_unet3d" and meta["task"]["spatial_dims"] == 3
    pred = Predictor.from_path(tmp_path / "fold_0", device="cpu", sliding_window={"roi_size": [8, 8, 8]})
    proba = pred.predict_proba(data.images[3:])
    assert proba.shape == (1, 1, 8, 16, 16) and 0 <= proba.min() and proba.max() <= 1


def test_recurrent_loss_trainer_step(tmp_path, toy_volumes):
    cfg = tiny_cfg(recurrent=True, recurrent_steps=2)
    trainer = RefinementTrainer(cfg, tmp_path / "fold_0", toy_volumes, [0, 1, 2], [3], progress=False)
    trainer.train_set.transform = build_train_transform(cfg)
    summary = trainer.fit()
    assert summary["epochs_run"] == 2 and np.isfinite(summary["best_val"]["val_loss"])
    # the per-pass batch-norm statistics go through the checkpoint
    pred = Predictor.from_path(tmp_path / "fold_0", device="cpu")
    saved = pred.models[0].core.encoder[0].body[0][1]
    assert isinstance(saved, PerPassBatchNorm) and saved.num_batches_tracked.tolist() != [0, 0]
    assert pred.predict_proba(toy_volumes.images[:1]).shape == (1, 1, 8, 16, 16)


# --- sliding-window inference ---------------------------------------------------------------------------


META = {"task": {"mode": "multilabel", "class_names": ["ctv"], "spatial_dims": 3}}


def _conv_model(kernel: int) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv3d(1, 1, kernel, padding=kernel // 2)
    with torch.no_grad():
        conv.weight.normal_(0, 0.5)
    return conv


def test_sliding_window_equals_whole_volume():
    vol = np.random.default_rng(0).random((2, 13, 22, 19)).astype(np.float32)  # larger than the roi
    roi = {"roi_size": [8, 8, 8]}
    # pointwise model: every window gives the same value at a voxel, so blending changes nothing
    whole = Predictor([_conv_model(1)], META, device="cpu").predict_proba(vol)
    sw = Predictor([_conv_model(1)], META, device="cpu", sliding_window=roi).predict_proba(vol)
    assert sw.shape == whole.shape == (2, 1, 13, 22, 19)
    np.testing.assert_allclose(sw, whole, atol=1e-6)
    # 3×3×3: a voxel on a window's border sees that window's zero padding instead of its neighbours, and
    # with an 8-voxel roi the Gaussian (σ = 0.125 · 8 = 1 voxel) still gives such windows some weight.
    # Measured here: mean |Δp| 0.0104, 99th percentile 0.099, max 0.167; 98.9 % of the voxels on the same
    # side of 0.5.
    whole = Predictor([_conv_model(3)], META, device="cpu").predict_proba(vol)
    sw = Predictor([_conv_model(3)], META, device="cpu", sliding_window=roi).predict_proba(vol)
    err = np.abs(sw - whole)
    assert err.mean() < 0.015 and np.percentile(err, 99) < 0.12 and err.max() < 0.25
    assert ((sw > 0.5) == (whole > 0.5)).mean() > 0.98
    # the constant (unweighted) blend is worse: the Gaussian weighting is what keeps the error down
    const = Predictor([_conv_model(3)], META, device="cpu", sliding_window={**roi, "mode": "constant"}).predict_proba(
        vol
    )
    assert np.abs(const - whole).mean() > 2 * err.mean()


def test_sliding_window_from_model_json_in_3d_and_2d():
    meta = {**META, "evaluate": {"sliding_window": {"roi_size": [8, 8, 8], "overlap": 0.25}}}
    p = Predictor([_conv_model(1)], meta, device="cpu")
    assert p.sliding_window == {"roi_size": [8, 8, 8], "overlap": 0.25, "sw_batch_size": 1, "mode": "gaussian"}
    assert Predictor([_conv_model(1)], META, device="cpu").sliding_window is None
    meta2d = {
        "task": {"mode": "multilabel", "class_names": ["a"], "spatial_dims": 2},
        "evaluate": {"sliding_window": {"roi_size": [8, 8]}},
    }
    # issue 12: a 2D model's recorded window is used as well (tests/inference/test_sliding_window_2d.py)
    assert Predictor([nn.Conv2d(1, 1, 1)], meta2d, device="cpu").sliding_window["roi_size"] == [8, 8]


def test_validation_uses_the_sliding_window_when_a_roi_is_set(tmp_path, toy_volumes):
    cfg = tiny_cfg()
    cfg["evaluate"]["sliding_window"] = {"roi_size": [8, 8, 8], "overlap": 0.0, "sw_batch_size": 1, "mode": "constant"}
    data = toy_volumes
    trainer = Trainer(cfg, tmp_path / "fold_0", data, [0, 1, 2], [3], progress=False)
    calls = []
    trainer.model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    row = trainer.validate()
    # (8, 16, 16) in 8³ windows without overlap: four windows, never the whole volume
    assert calls == [(1, 1, 8, 8, 8)] * 4 and np.isfinite(row["val_loss"])
    cfg["evaluate"]["sliding_window"]["roi_size"] = None
    whole = Trainer(cfg, tmp_path / "fold_1", data, [0, 1, 2], [3], progress=False)
    assert whole.sliding_window is None
