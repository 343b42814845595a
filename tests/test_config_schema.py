"""The typed config schema (medseg.config_schema) behind load_config: did-you-mean for unknown keys (--set and
YAML), type errors naming the key and the file, every section check refused at load time, defaults in one
place, ``medseg config show`` with each value's source, and the transforms reading the validated config."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import medseg.config as config_module
from medseg.cli import app
from medseg.config import (
    DEFAULTS,
    format_config,
    load_config,
    resolve_config,
    section_settings,
    set_dotted,
    validate,
)
from medseg.config_schema import Config, PreprocessConfig, VolumeAugmentConfig
from medseg.data import transforms3d
from medseg.data.transforms import build_train_transform
from medseg.data.transforms3d import (
    augment_settings,
    patch_settings,
    preprocess_settings,
)
from medseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
ALL_YAML = [p for p in sorted(CONFIGS.rglob("*.yaml")) if "tables" not in p.parts]
runner = CliRunner()


def _yaml(path: Path, data: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------ did you mean


@pytest.mark.parametrize(
    "dotted,suggestion",
    [
        ("train.epoch", "train.epochs"),
        ("train.batchsize", "train.batch_size"),
        ("trian.epochs", "train.epochs"),
        ("epochs", "train.epochs"),
        ("data.patchsize", "data.patch_size"),
        ("noisy_labels.ocm.lamda", "noisy_labels.ocm.lambda"),
    ],
)
def test_set_dotted_suggests_the_nearest_key(dotted, suggestion):
    with pytest.raises(ConfigError) as info:
        set_dotted(load_config(), dotted, "3")
    assert str(info.value) == f"unknown config key '{dotted}' — did you mean {suggestion}?"


def test_cli_set_suggests_the_nearest_key():
    result = runner.invoke(
        app, ["config", "show", str(CONFIGS / "chromosomes" / "demo.yaml"), "--set", "train.epoch=3"]
    )
    assert result.exit_code == 2
    assert "unknown config key 'train.epoch' — did you mean train.epochs?" in result.output


def test_yaml_unknown_key_names_the_file_and_suggests(tmp_path):
    path = _yaml(tmp_path / "c.yaml", {"train": {"epoch": 3}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: unknown config key 'train.epoch' — did you mean train.epochs?"


def test_unknown_key_in_a_base_file_names_that_file(tmp_path):
    base = _yaml(tmp_path / "base.yaml", {"data": {"patch_szie": [8, 8, 8]}})
    child = _yaml(tmp_path / "child.yaml", {"_base_": "base.yaml", "train": {"epochs": 2}})
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert str(info.value) == f"{base}: unknown config key 'data.patch_szie' — did you mean data.patch_size?"


def test_unknown_key_in_overrides_and_in_validate():
    with pytest.raises(
        ConfigError,
        match=r"^unknown config key 'augment\.volume\.flip_probb' — did you mean "
        r"augment\.volume\.flip_prob\?$",
    ):
        load_config(overrides={"augment": {"volume": {"flip_probb": 0.1}}})
    cfg = load_config()
    cfg["evaluate"]["hausdorf"] = True  # code that edits the dict, then validates it
    with pytest.raises(ConfigError, match="did you mean evaluate.hausdorff"):
        validate(cfg)


def test_no_suggestion_lists_the_known_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'zzzz' \(known: adversarial, augment, data"):
        load_config(overrides={"zzzz": 1})


# ------------------------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    "text,key,message",
    [
        ("train: {epochs: abc}", "train.epochs", "must be an integer, got 'abc'"),
        ("train: {epochs: 3.0}", "train.epochs", "must be an integer, got 3.0"),
        ("train: {amp: 1}", "train.amp", "must be a boolean (true/false), got 1"),
        ("train: {lr: .nan}", "train.lr", "must be a finite number"),
        ("train: {seed: null}", "train.seed", "must be set (an integer), got null"),
        ("train: {scheduler: 3}", "train.scheduler", "must be a mapping, got 3"),
        ("data: {size: [1.5, 2]}", "data.size[0]", "must be an integer, got 1.5"),
        ("data: {path: [a]}", "data.path", "must be a string, got ['a']"),
        ("task: {mode: binary}", "task.mode", "must be 'multiclass' or 'multilabel', got 'binary'"),
        ("task: {spatial_dims: 4}", "task.spatial_dims", "must be 2 or 3, got 4"),
    ],
)
def test_wrong_type_names_the_key_path_and_the_file(tmp_path, text, key, message):
    path = _yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: config key '{key}' {message}")
    assert "\n" not in str(info.value)


def test_wrong_type_from_set_names_the_key():
    with pytest.raises(ConfigError, match=r"^config key 'train\.epochs' must be an integer, got 'abc'$"):
        resolve_config(CONFIGS / "chromosomes" / "demo.yaml", sets=[("train.epochs", "abc")])


def test_numbers_become_floats_and_types_stay():
    cfg = load_config(overrides={"train": {"lr": 1, "epochs": 3}, "noisy_labels": {"ocm": {"lambda": 3}}})
    assert cfg["train"]["lr"] == 1.0 and type(cfg["train"]["lr"]) is float
    assert type(cfg["train"]["epochs"]) is int
    assert cfg["noisy_labels"]["ocm"] == {"enabled": False, "lambda": 3.0}  # the YAML key, not Python's lambda_
    assert cfg["data"]["image_pad_value"] == "border"
    assert load_config(overrides={"data": {"image_pad_value": 0}})["data"]["image_pad_value"] == 0


def test_the_config_is_a_plain_dict():
    cfg = load_config(CONFIGS / "chromosomes" / "demo.yaml")

    def plain(value):
        if isinstance(value, dict):
            return type(value) is dict and all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return type(value) is list and all(plain(v) for v in value)
        return value is None or type(value) in (bool, int, float, str)

    assert plain(cfg)
    assert list(cfg) == list(DEFAULTS) == list(Config.model_fields)


# ------------------------------------------------------------------------- every check, refused at load


@pytest.mark.parametrize(
    "override,message",
    [
        # config.validate's
        ({"task": {"class_names": ["background"]}}, "a multiclass task needs at least 2 classes"),
        ({"task": {"derived": {"x": [4]}}}, r"task\.derived\.x names classes \[4\] outside 0\.\.3"),
        ({"task": {"primary_metric": "iou"}}, r"task\.primary_metric 'iou' is not a class or derived structure"),
        ({"train": {"batch_size": 0}}, r"train\.batch_size must be >= 1"),
        ({"train": {"epochs": 0}}, r"train\.epochs must be >= 1"),
        ({"train": {"lr": 0}}, r"train\.lr must be > 0"),
        ({"data": {"stray_labels": "drop"}}, r"data\.stray_labels"),
        # transforms3d's preprocess / augment.volume / patch checks
        ({"preprocess": {"clip_min": 2000}}, r"preprocess\.clip_min \(2000\.0\) must be below preprocess\.clip_max"),
        ({"preprocess": {"normalize": "percentile"}}, r"preprocess\.normalize"),  # zscore is one since issue 12
        ({"preprocess": {"clip_max": None}}, "range needs both clip_min and clip_max"),
        ({"preprocess": {"depth": 0}}, r"preprocess\.depth must be a number of slices >= 1"),
        ({"preprocess": {"size_xy": [256]}}, r"preprocess\.size_xy must be \[H, W\]"),
        ({"preprocess": {"depth_mode": "cubic"}}, r"preprocess\.depth_mode"),
        ({"augment": {"volume": {"flip_prob": 2}}}, r"augment\.volume\.flip_prob must be a probability in \[0, 1\]"),
        ({"augment": {"volume": {"noise_var": -1}}}, r"augment\.volume\.noise_var must be >= 0"),
        ({"augment": {"volume": {"rotate_axes": "z"}}}, r"augment\.volume\.rotate_axes"),
        ({"augment": {"volume": {"flip_axes": [3]}}}, r"augment\.volume\.flip_axes are array axes"),
        ({"augment": {"volume": {"padding_mode": "wrap"}}}, r"augment\.volume\.padding_mode"),
        (
            {"data": {"patch_size": [8, 8]}, "task": {"spatial_dims": 3}},
            r"data\.patch_size must be \[D, H, W\] voxels for task\.spatial_dims 3, got \[8, 8\]",
        ),
        ({"data": {"patch_size": [8, 8, 8]}}, r"data\.patch_size must be \[H, W\] pixels for task\.spatial_dims 2"),
        ({"data": {"patch_size": [8, 8, 8, 8]}}, r"data\.patch_size must be \[H, W\] pixels \(2D\) or \[D, H, W\]"),
        (
            {"evaluate": {"sliding_window": {"roi_size": [8, 8, 8]}}},
            r"evaluate\.sliding_window\.roi_size must be \[H, W\] pixels for task\.spatial_dims 2",
        ),
        (
            {"task": {"spatial_dims": 3}, "evaluate": {"sliding_window": {"roi_size": [8, 8]}}},
            r"evaluate\.sliding_window\.roi_size must be \[D, H, W\] voxels for task\.spatial_dims 3",
        ),
        ({"data": {"size": [128]}}, r"data\.size must be \[H, W\] pixels or null"),
        ({"data": {"normalize": "percentile"}}, r"data\.normalize"),
        ({"train": {"iterations": 0}}, r"train\.iterations must be >= 1 optimizer steps or null"),
        (
            {"data": {"patch_size": [8, 8, 8], "patch_pos_fraction": 1.5}},
            r"data\.patch_pos_fraction must be in \[0, 1\]",
        ),
        ({"data": {"patch_pos_fraction": 0.5}}, r"data\.patch_pos_fraction needs data\.patch_size"),
        ({"task": {"spatial_dims": 3}, "augment": {"flip_prob": 0.5}}, r"augment\.flip_prob is a 2D setting"),
        # noisy_labels' (check_noise_config)
        ({"noisy_labels": {"fraction": 1.5}}, r"noisy_labels\.fraction must be a number in \[0, 1\]"),
        ({"noisy_labels": {"dilate_range": [3]}}, r"noisy_labels\.dilate_range"),
        ({"noisy_labels": {"dilate_range": [8, 1]}}, r"noisy_labels\.dilate_range: .*lo <= hi"),
        ({"noisy_labels": {"mode": "shrink"}}, r"noisy_labels\.mode"),
        ({"noisy_labels": {"structures": "organs"}}, r"noisy_labels\.structures"),
        ({"noisy_labels": {"qam": {"channels": [8, 16]}}}, r"noisy_labels\.qam\.channels and \.convs need one value"),
        ({"noisy_labels": {"qam": {"channels": [], "convs": []}}}, r"noisy_labels\.qam\.channels and \.convs need"),
        (
            {"noisy_labels": {"qam": {"convs": [2, 2, 0, 3, 3]}}},
            r"noisy_labels\.qam\.channels and \.convs must be >= 1",
        ),
        ({"noisy_labels": {"qam": {"lr": 0}}}, r"noisy_labels\.qam\.lr must be > 0"),
        ({"noisy_labels": {"ocm": {"lambda": 0}}}, r"noisy_labels\.ocm\.lambda must be > 0"),
        (
            {"noisy_labels": {"enabled": True, "structures": "derived"}, "task": {"derived": {"a": [1, 3]}}},
            r"noisy_labels\.structures: derived needs the 1 task\.derived unions",
        ),
        (
            {"noisy_labels": {"qam": {"enabled": True}, "structures": "derived"}, "task": {"derived": {}}},
            "needs task.derived to name at least one structure",
        ),
        (
            {
                "noisy_labels": {"enabled": True, "structures": "derived"},
                "task": {"derived": {"a": [1, 2, 3], "b": [1, 2, 3]}},
            },
            "classes 1 and 2 lie in the same task.derived unions",
        ),
        (
            {"noisy_labels": {"enabled": True, "structures": "derived"}, "task": {"mode": "multilabel"}},
            "derived needs a multiclass task",
        ),
        # run.trainer_class's
        (
            {"adversarial": {"enabled": True}, "noisy_labels": {"qam": {"enabled": True}}},
            "adversarial and noisy_labels.qam cannot be combined",
        ),
        # NoisyLabelTrainer's
        (
            {"noisy_labels": {"qam": {"enabled": True}}, "train": {"batch_size": 1}},
            r"noisy_labels\.qam weighs the samples of a batch against each other: train\.batch_size must be >= 2",
        ),
        # and the others of the schema
        ({"train": {"scheduler": {"name": "step"}}}, r"train\.scheduler\.name"),
        ({"evaluate": {"sliding_window": {"overlap": 1.0}}}, r"evaluate\.sliding_window\.overlap must be in \[0, 1\)"),
        ({"loss": 3}, "loss must be a loss name"),
        ({"model": {"depth": 3, "name": None}}, r"model\.name"),
    ],
)
def test_every_check_refuses_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(overrides=override)
    assert "\n" not in str(info.value)


def test_derived_structures_are_checked_only_when_noise_or_qam_is_on():
    # The shipped noisy configs name structures: derived with the 4 chromosome classes: fine.
    assert load_config(CONFIGS / "noisy" / "p25_n1to8_qam_ocm.yaml")["noisy_labels"]["structures"] == "derived"
    # Switched off, a task whose unions could not code the classes is not refused for it.
    cfg = load_config(overrides={"noisy_labels": {"structures": "derived"}, "task": {"derived": {"a": [1, 3]}}})
    assert cfg["noisy_labels"]["enabled"] is False


# --------------------------------------------------------------------------------- defaults in one place


def test_defaults_are_the_schema_defaults():
    assert DEFAULTS == Config().model_dump(by_alias=True)
    assert load_config() == DEFAULTS
    assert preprocess_settings(None) == DEFAULTS["preprocess"] == PreprocessConfig().model_dump()
    assert augment_settings(None) == DEFAULTS["augment"]["volume"] == VolumeAugmentConfig().model_dump()
    assert patch_settings(None) == (None, None)


def test_no_copy_of_the_defaults_left_outside_the_schema():
    source = inspect.getsource(transforms3d)
    assert "DEFAULTS" not in source.split("# --- preprocessing")[0]
    for name in ("_section", "preprocess_settings", "augment_settings", "patch_settings"):
        text = inspect.getsource(getattr(transforms3d, name))
        assert "raise ConfigError" not in text and "1600" not in text, name  # no checks, no numbers of their own
    config_source = inspect.getsource(config_module)
    for literal in ("1600", '"patchgan"', '"clip_max"', "synth_pairs"):
        assert literal not in config_source, literal  # config.py holds no defaults: the schema does


def test_settings_read_a_validated_config_unchanged():
    cfg = load_config(CONFIGS / "ctv" / "phantom_demo.yaml")
    assert preprocess_settings(cfg) == cfg["preprocess"]
    assert augment_settings(cfg) == cfg["augment"]["volume"]
    size, _ = patch_settings(cfg)
    assert size == (None if cfg["data"]["patch_size"] is None else tuple(cfg["data"]["patch_size"]))


def test_a_section_alone_is_completed_and_checked_by_the_schema():
    # e.g. the preprocessing recorded in a model.json, or a hand-written dict
    s = preprocess_settings({"preprocess": {"depth": 12, "size_xy": None}})
    assert s == {**DEFAULTS["preprocess"], "depth": 12, "size_xy": None}
    assert section_settings("augment.volume", {"flip_prob": 1}) == {**DEFAULTS["augment"]["volume"], "flip_prob": 1.0}
    with pytest.raises(
        ConfigError, match=r"^unknown config key 'preprocess\.clipmax' — did you mean preprocess\.clip_max\?$"
    ):
        preprocess_settings({"preprocess": {"clipmax": 1}})
    with pytest.raises(ConfigError, match=r"^config key 'augment\.volume\.flip_prob' must be a number, got 'x'$"):
        augment_settings({"augment": {"volume": {"flip_prob": "x"}}})
    assert patch_settings({"data": {"patch_size": [4, 8, 8], "patch_pos_fraction": 1}}) == ((4, 8, 8), 1.0)


def test_build_train_transform_takes_the_config_once():
    assert list(inspect.signature(build_train_transform).parameters) == ["cfg"]
    assert build_train_transform(load_config()) is None  # 2D, no flips or rotations by default
    assert build_train_transform(load_config(overrides={"augment": {"flip_prob": 0.5}})) is not None
    cfg3d = load_config(
        overrides={
            "task": {"spatial_dims": 3},
            "data": {"patch_size": [4, 8, 8]},
            "augment": {"volume": {"enabled": False}},
        }
    )
    assert build_train_transform(cfg3d) is not None  # the patches come from the same config


# ------------------------------------------------------------------------------------------ config show


def _comment(output: str, dotted: str) -> str:
    """The end-of-line comment of the key ``dotted`` (``model.depth``) in ``config show``'s output."""
    path: list[str] = []
    for line in output.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        key = line.strip().split(":", 1)[0]
        path = [*path[:depth], key]
        if ".".join(path) == dotted:
            return line.split("  # ", 1)[1]
    raise KeyError(dotted)


def test_config_show_prints_each_values_source(tmp_path):
    demo = CONFIGS / "chromosomes" / "demo.yaml"
    result = runner.invoke(app, ["config", "show", str(demo), "--set", "train.epochs=3", "--set", "model.depth=3"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert _comment(out, "train.epochs") == "--set"
    assert _comment(out, "model.depth") == "--set"
    assert _comment(out, "model.base_channels") == str(demo)  # demo.yaml
    assert _comment(out, "model.norm") == str(CONFIGS / "chromosomes" / "unet.yaml")  # its _base_
    assert _comment(out, "data.h5_key") == "default"
    assert _comment(out, "task.derived") == "default"
    # The output is the resolved config as YAML: it reads back to what train would use.
    expected = load_config(demo)
    expected["train"]["epochs"] = 3
    expected["model"]["depth"] = 3
    assert yaml.safe_load(out) == expected
    assert out.splitlines()[0].startswith(f"# resolved config: default <- {CONFIGS / 'chromosomes' / 'unet.yaml'}")


def test_config_show_of_a_three_level_chain(tmp_path):
    _yaml(tmp_path / "base" / "grand.yaml", {"train": {"batch_size": 3, "epochs": 11}, "task": {"derived": {"a": [1]}}})
    _yaml(tmp_path / "base" / "parent.yaml", {"_base_": "grand.yaml", "train": {"epochs": 22}})
    child = _yaml(tmp_path / "child.yaml", {"_base_": "base/parent.yaml", "model": {"name": "segnet", "width": 4}})
    resolved = resolve_config(child, sets=[("train.lr", "1e-4")])
    assert resolved.source("train.batch_size") == str(tmp_path / "base" / "grand.yaml")
    assert resolved.source("train.epochs") == str(tmp_path / "base" / "parent.yaml")
    assert resolved.source("task.derived") == str(tmp_path / "base" / "grand.yaml")
    assert resolved.source("model.width") == resolved.source("model.name") == str(child)
    assert resolved.source("train.lr") == "--set" and resolved.cfg["train"]["lr"] == 1e-4
    assert resolved.source("train.seed") == "default"
    assert resolved.cfg["model"] == {"name": "segnet", "width": 4}  # another architecture replaces the U-Net's
    assert yaml.safe_load(format_config(resolved)) == resolved.cfg


def test_config_show_names_the_file_of_a_wrong_value(tmp_path):
    path = _yaml(tmp_path / "c.yaml", "train: {epochs: abc}\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}: config key 'train.epochs' must be an integer, got 'abc'" in " ".join(result.output.split())


@pytest.mark.parametrize("path", ALL_YAML, ids=[str(p.relative_to(CONFIGS)) for p in ALL_YAML])
def test_every_shipped_config_shows_and_reads_back(path):
    resolved = resolve_config(path)
    assert yaml.safe_load(format_config(resolved)) == resolved.cfg == load_config(path)
