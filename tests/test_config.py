"""Tests of the experiment configuration (medseg.config) and of every shipped YAML under configs/."""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from medseg.config import DEFAULTS, load_config, save_config, set_dotted
from medseg.errors import ConfigError
from medseg.models import UNet, build_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# Experiment configs; configs/tables/ holds table specs (tested in tests/evaluation/test_tables.py).
ALL_YAML = [p for p in sorted(CONFIGS.rglob("*.yaml")) + sorted(CONFIGS.rglob("*.yml")) if "tables" not in p.parts]


def _yaml(path: Path, data: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# -------------------------------------------------------------------------------------------- defaults


def test_defaults_load():
    cfg = load_config()
    assert cfg == DEFAULTS
    assert cfg["model"] == {"name": "unet", "depth": 4, "base_channels": 64, "norm": "batch"}
    assert cfg["task"]["class_names"] == ["background", "chromosome_alpha", "chromosome_beta", "overlap"]
    assert cfg["train"]["batch_size"] == 8 and cfg["train"]["lr"] == 1.0e-3
    # The result is a copy: editing it must not change the defaults of the next load.
    cfg["train"]["batch_size"] = 99
    cfg["task"]["class_names"].append("x")
    assert load_config()["train"]["batch_size"] == 8
    assert len(DEFAULTS["task"]["class_names"]) == 4


def test_yaml_override_merges(tmp_path):
    path = _yaml(tmp_path / "c.yaml", {"train": {"batch_size": 4}, "data": {"size": [96, 96]}})
    cfg = load_config(path)
    assert cfg["train"]["batch_size"] == 4
    assert cfg["data"]["size"] == [96, 96]
    assert cfg["train"]["epochs"] == 300  # siblings of the overridden key survive
    assert cfg["train"]["scheduler"] == {
        "name": "plateau",
        "factor": 0.5,
        "patience": 3,
        "min_lr": 1.0e-7,
        "warmup_epochs": 0,
    }
    assert cfg["data"]["h5_key"] == "dataset_1"


def test_overrides_argument_wins_over_file(tmp_path):
    path = _yaml(tmp_path / "c.yaml", {"train": {"batch_size": 4, "epochs": 10}})
    cfg = load_config(path, overrides={"train": {"batch_size": 2}})
    assert cfg["train"]["batch_size"] == 2 and cfg["train"]["epochs"] == 10


def test_nested_dict_override_keeps_other_nested_keys(tmp_path):
    path = _yaml(tmp_path / "c.yaml", {"train": {"scheduler": {"patience": 7}}})
    assert load_config(path)["train"]["scheduler"] == {
        "name": "plateau",
        "factor": 0.5,
        "patience": 7,
        "min_lr": 1.0e-7,
        "warmup_epochs": 0,
    }


@pytest.mark.parametrize(
    "override,key_path",
    [
        ({"train": {"batchsize": 4}}, "train.batchsize"),
        ({"trian": {"epochs": 1}}, "trian"),
        ({"train": {"scheduler": {"patiense": 2}}}, "train.scheduler.patiense"),
    ],
)
def test_unknown_key_names_the_key_path(tmp_path, override, key_path):
    path = _yaml(tmp_path / "bad.yaml", override)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"'{key_path}'" in str(info.value)
    with pytest.raises(ConfigError, match=key_path.replace(".", r"\.")):
        load_config(overrides=override)


def test_model_and_derived_are_free_form():
    cfg = load_config(
        overrides={"model": {"dropout": 0.1, "upsample": "bilinear"}, "task": {"derived": {"both": [1, 2]}}}
    )
    assert cfg["model"]["dropout"] == 0.1 and cfg["model"]["upsample"] == "bilinear"
    assert cfg["task"]["derived"]["both"] == [1, 2]


@pytest.mark.parametrize(
    "override,match",
    [
        ({"task": {"mode": "binary"}}, "task.mode"),
        ({"train": {"batch_size": 0}}, "batch_size"),
        ({"train": {"lr": 0}}, "lr"),
        ({"data": {"stray_labels": "drop"}}, "stray_labels"),
        ({"task": {"derived": {"x": [4]}}}, r"task\.derived\.x"),
        ({"task": {"primary_metric": "iou"}}, "primary_metric"),
    ],
)
def test_invalid_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=override)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(_yaml(tmp_path / "broken.yaml", "train: {batch_size: [1,\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_yaml(tmp_path / "list.yaml", "- a\n- b\n"))
    assert load_config(_yaml(tmp_path / "empty.yaml", "")) == DEFAULTS


# ----------------------------------------------------------------------------------------- _base_ chains


def test_base_chain_unet_3l():
    cfg = load_config(CONFIGS / "chromosomes" / "unet_3l.yaml")
    unet = yaml.safe_load((CONFIGS / "chromosomes" / "unet.yaml").read_text())
    assert cfg["name"] == "unet3l_pommier"
    assert cfg["model"]["depth"] == 3  # from unet_3l.yaml
    assert cfg["model"]["norm"] == "batch"  # from unet.yaml, not repeated in unet_3l.yaml
    assert cfg["train"]["batch_size"] == unet["train"]["batch_size"] == 8
    # Keys where unet.yaml differs from the defaults prove the base was read, not just the defaults:
    assert cfg["loss"] == [{"name": "bce"}] != DEFAULTS["loss"]
    assert cfg["data"]["path"] == "synth:pommier" != DEFAULTS["data"]["path"]


def test_three_level_chain_keeps_each_levels_settings(tmp_path):
    _yaml(
        tmp_path / "base" / "grand.yaml",
        {
            "name": "grand",
            "train": {"batch_size": 3, "epochs": 11},
            "model": {"name": "unet", "depth": 5, "base_channels": 8},
        },
    )
    _yaml(tmp_path / "base" / "parent.yaml", {"_base_": "grand.yaml", "name": "parent", "train": {"epochs": 22}})
    child = _yaml(tmp_path / "child.yaml", {"_base_": "base/parent.yaml", "model": {"depth": 2}})
    cfg = load_config(child)
    assert cfg["name"] == "parent"
    assert cfg["train"]["batch_size"] == 3  # grandparent
    assert cfg["train"]["epochs"] == 22  # parent over grandparent
    assert cfg["model"] == {"name": "unet", "depth": 2, "base_channels": 8, "norm": "batch"}
    assert cfg["train"]["lr"] == 1.0e-3  # defaults under everything


def test_base_chain_loop_and_missing_base(tmp_path):
    _yaml(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _yaml(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(_yaml(tmp_path / "c.yaml", {"_base_": "nowhere.yaml"}))


def test_unknown_key_in_a_child_of_a_chain(tmp_path):
    _yaml(tmp_path / "p.yaml", {"train": {"epochs": 2}})
    child = _yaml(tmp_path / "c.yaml", {"_base_": "p.yaml", "train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"train\.epoch'"):
        load_config(child)


# ----------------------------------------------------------------------------------------- set_dotted


@pytest.mark.parametrize(
    "dotted,text,expected",
    [
        ("train.epochs", "3", 3),
        ("train.lr", "1.0e-4", 1.0e-4),
        ("train.amp", "false", False),
        ("data.limit", "null", None),
        ("data.size", "[64, 64]", [64, 64]),
        ("data.path", "pairs.h5", "pairs.h5"),
        ("loss", "[{name: bce}, {name: dice, weight: 0.5}]", [{"name": "bce"}, {"name": "dice", "weight": 0.5}]),
        ("train.scheduler.patience", "5", 5),
        ("model.dropout", "0.2", 0.2),  # a new key under the free-form model mapping
    ],
)
def test_set_dotted_parses_yaml_values(dotted, text, expected):
    cfg = load_config()
    set_dotted(cfg, dotted, text)
    node = cfg
    for key in dotted.split("."):
        node = node[key]
    assert node == expected
    assert type(node) is type(expected)


def test_set_dotted_non_string_is_kept():
    cfg = load_config()
    set_dotted(cfg, "train.batch_size", 32)
    assert cfg["train"]["batch_size"] == 32


@pytest.mark.parametrize("dotted", ["train.batchsize", "trian.epochs", "train.epochs.x", "nope"])
def test_set_dotted_unknown_key(dotted):
    cfg = load_config()
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")):
        set_dotted(cfg, dotted, "1")


def test_save_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "chromosomes" / "demo.yaml")
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["config.yaml"]


# ------------------------------------------------------------------------------------- shipped configs


def test_configs_are_found():
    names = {p.name for p in ALL_YAML}
    assert {"demo.yaml", "unet.yaml", "unet_3l.yaml", "unet_5l.yaml", "sim_unet.yaml"} <= names


def _build(cfg: dict) -> torch.nn.Module:
    """The model with in/out channels as training gives them (2.5D: the slice and its neighbours)."""
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    in_channels = 1 + 2 * int(cfg["data"].get("context_slices") or 0)
    return build_model(
        cfg["model"]["name"],
        trust_code=True,
        in_channels=in_channels,
        out_channels=len(cfg["task"]["class_names"]),
        **kwargs,
    )


@pytest.mark.parametrize("path", ALL_YAML, ids=[str(p.relative_to(CONFIGS)) for p in ALL_YAML])
def test_every_config_loads_and_builds_its_model(path):
    cfg = load_config(path)
    model = _build(cfg)
    n_classes = len(cfg["task"]["class_names"])
    in_channels = 1 + 2 * int(cfg["data"].get("context_slices") or 0)  # 2.5D: the slice and its neighbours
    if isinstance(model, UNet):
        assert model.head.out_channels == n_classes
        assert model.encoder.stages[0][0][0].in_channels == in_channels
        assert len(model.encoder.stages) == cfg["model"]["depth"] + 1
        assert model.channels == (cfg["model"].get("channels") or model.channels)
        assert model.channels[0] == cfg["model"]["base_channels"]
    if cfg["model"].get("base_channels", 64) <= 16:  # only narrow models run a forward pass here
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, in_channels, 32, 32))
        assert out.shape == (1, n_classes, 32, 32)
    del model


def test_expected_depths_of_the_shipped_configs():
    depth = {p.name: load_config(p)["model"].get("depth") for p in ALL_YAML}
    assert depth["sim_unet.yaml"] == 2
    assert depth["unet_3l.yaml"] == 3
    assert depth["unet.yaml"] == 4
    assert depth["unet_5l.yaml"] == 5
    assert (
        load_config(CONFIGS / "chromosomes" / "demo.yaml")["model"]["base_channels"] == 12
    )  # 8 left one seed in three on a one-foreground plateau


# ----------------------------------------------------------------------------- custom model via config


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    name = "medseg_test_config_tiny_mod"
    _yaml(
        tmp_path / f"{name}.py",
        textwrap.dedent(
            """
        from torch import nn

        class TinyNet(nn.Module):
            def __init__(self, in_channels=1, out_channels=2, width=3):
                super().__init__()
                self.net = nn.Conv2d(in_channels, out_channels, 1)
        """
        ),
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_config_naming_a_custom_model_gets_only_its_own_settings(tmp_path, tiny_module):
    path = _yaml(tmp_path / "custom.yaml", {"model": {"name": f"{tiny_module}:TinyNet", "width": 8}})
    cfg = load_config(path)
    assert cfg["model"] == {"name": f"{tiny_module}:TinyNet", "width": 8}
    model = _build(copy.deepcopy(cfg))
    assert type(model).__name__ == "TinyNet"


def test_empty_derived_mapping_clears_the_default_structures():
    cfg = load_config(
        overrides={"task": {"class_names": ["background", "lesion"], "derived": {}, "primary_metric": "lesion"}}
    )
    assert cfg["task"]["derived"] == {}


def test_null_derived_works_for_a_two_class_task():
    cfg = load_config(
        overrides={"task": {"class_names": ["background", "lesion"], "derived": None, "primary_metric": "lesion"}}
    )
    assert cfg["task"]["derived"] is None
