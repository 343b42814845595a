"""`medseg plan` (issue 12): the data fingerprint, the planner's decisions on synthetic fingerprints (no data
needed), the commented YAML it writes, the z-score preprocessing it asks for, and the CLI (`medseg plan`,
`medseg train DATA`) on small folders made here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import load_config, section_settings
from medseg.data.pommier import write_pommier_h5
from medseg.data.transforms3d import clip_and_normalize
from medseg.errors import ConfigError, DataValidationError
from medseg.formats.nifti import write_nifti
from medseg.formats.volume import Volume
from medseg.planning import apply_sets, estimate_memory, fingerprint, plan, write_plan
from medseg.planning.planner import choose_patch, depth_for

runner = CliRunner()


# --- synthetic fingerprints -------------------------------------------------------------------------------


def _stats(mean, std, lo, hi, vmin=None, vmax=None):
    return {
        "mean": mean,
        "std": std,
        "min": lo if vmin is None else vmin,
        "max": hi if vmax is None else vmax,
        "median": mean,
        "p00_5": lo,
        "p99_5": hi,
        "n_voxels": 10_000,
    }


def fp_2d(n=30, shape=(64, 64), values=(0, 1), freq=None, dtype="uint8", max_value=255.0, same_shape=True):
    freq = freq or {str(v): (0.9 if i == 0 else 0.1 / (len(values) - 1)) for i, v in enumerate(values)}
    bits = 16 if dtype == "uint16" else 8
    return {
        "kind": "folder2d",
        "spatial_dims": 2,
        "n_cases": n,
        "n_sampled": n,
        "path": "/data/cells",
        "shape": {"min": list(shape), "median": list(shape), "max": list(shape)},
        "spacing": None,
        "dtype": dtype,
        "bits": bits,
        "max_value": max_value,
        "modality": None,
        "same_shape": same_shape,
        "label_values": list(values),
        "label_frequency": freq,
        "label_voxels": {},
        "label_cases": {},
        "label_names": {},
        "intensity": [{"channel": 0, "global": _stats(40, 20, 0, 120), "foreground": _stats(90, 15, 50, 130)}],
    }


def fp_ct(n=40, shape=(40, 512, 512), spacing=(3.0, 0.8, 0.8), modality="CT"):
    extent = [s * p for s, p in zip(shape, spacing, strict=True)]
    return {
        "kind": "volumes3d",
        "spatial_dims": 3,
        "n_cases": n,
        "n_sampled": n,
        "path": "/data/pelvis_ct",
        "shape": {"min": list(shape), "median": list(shape), "max": list(shape)},
        "spacing": {
            "median": list(spacing),
            "min": list(spacing),
            "max": list(spacing),
            "anisotropy": max(spacing) / min(spacing),
            "extent_mm": {"min": extent, "median": extent, "max": extent},
        },
        "dtype": "int16",
        "bits": 16,
        "max_value": 3000.0,
        "modality": modality,
        "label_values": [0, 1, 2],
        "label_frequency": {"0": 0.97, "1": 0.025, "2": 0.005},
        "label_voxels": {},
        "label_cases": {},
        "label_names": {},
        "intensity": [
            {
                "channel": 0,
                "global": _stats(-500, 500, -1024, 1500, -1024, 3000),
                "foreground": _stats(48.0, 37.5, -61.0, 182.0),
            }
        ],
    }


def decided(decisions) -> dict:
    return {d.key: d for d in decisions}


# --- planner decisions ------------------------------------------------------------------------------------


def test_anisotropic_ct_keeps_thick_slices_and_zscores_with_foreground_statistics():
    cfg, decisions = plan(fp_ct(), device="cuda")
    pre, patch = cfg["preprocess"], cfg["data"]["patch_size"]
    # resampled to the median spacing: 40 slices of 3 mm stay 40 (not 150 isotropic ones), 512² stays 512²
    assert pre["depth"] == 40 and pre["size_xy"] == [512, 512]
    # the patch keeps a similar physical extent on every axis: few thick slices, many thin pixels
    assert patch[0] < patch[1] == patch[2]
    extent_z, extent_xy = patch[0] * 3.0, patch[1] * 0.8
    assert 0.5 <= extent_z / extent_xy <= 2.0
    depth = cfg["model"]["depth"]
    assert all(p % 2**depth == 0 for p in patch)
    assert 4 <= patch[0] // 2**depth <= 8  # the thinnest axis sets the poolings: 4-8 px at the bottleneck
    # nnU-Net's CT normalisation from the foreground statistics
    assert (pre["clip_min"], pre["clip_max"]) == (-61.0, 182.0)
    assert pre["normalize"] == "zscore" and (pre["mean"], pre["std"]) == (48.0, 37.5)
    assert "percentile" in decided(decisions)["preprocess.clip_min"].reason
    assert cfg["augment"]["volume"]["rotate_axes"] == "axial"
    assert cfg["evaluate"]["sliding_window"]["roi_size"] == patch
    assert cfg["task"]["primary_metric"] == "class_2"  # the rarest foreground class (0.5 %)
    assert cfg["task"]["spatial_dims"] == 3 and cfg["task"]["background"] == 0 and cfg["task"]["derived"] == {}
    assert cfg["train"]["scheduler"]["name"] == "poly" and cfg["train"]["iterations"] == 50_000


def test_mr_volumes_are_zscored_each_by_itself():
    cfg, decisions = plan(fp_ct(modality="MR", spacing=(1.0, 1.0, 1.0), shape=(96, 96, 96)), device="cpu")
    pre = cfg["preprocess"]
    assert pre["normalize"] == "zscore" and pre["mean"] is None and pre["std"] is None
    assert pre["clip_min"] is None and pre["clip_max"] is None
    assert cfg["augment"]["volume"]["rotate_axes"] == "all"  # isotropic: rotations about every axis
    assert "modality MR" in decided(decisions)["preprocess.clip_min"].reason


def test_ct_is_recognised_from_hounsfield_values_without_a_modality():
    fp = fp_ct(modality=None)
    cfg, decisions = plan(fp, device="cpu")
    assert cfg["preprocess"]["mean"] == 48.0
    assert "Hounsfield" in decided(decisions)["preprocess.clip_min"].reason


def test_resampling_is_capped_by_the_voxel_budget_in_plane_first(monkeypatch):
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", str(40 * 256 * 256))
    cfg, decisions = plan(fp_ct(), device="cpu")
    pre = cfg["preprocess"]
    assert pre["depth"] * pre["size_xy"][0] * pre["size_xy"][1] <= 40 * 256 * 256
    assert pre["depth"] == 40  # the thick slices were kept; the fine in-plane pixels were coarsened
    assert pre["size_xy"][0] < 512
    assert "coarsened" in decided(decisions)["preprocess.size_xy"].reason


def test_tiny_2d_set_gets_a_patch_within_the_image_and_few_poolings():
    cfg, decisions = plan(fp_2d(n=30, shape=(64, 64)), device="cpu")
    patch, depth = cfg["data"]["patch_size"], cfg["model"]["depth"]
    assert patch == [64, 64]  # never larger than the image
    assert depth == 4 and 64 // 2**depth == 4  # bottleneck 4 px
    assert cfg["data"]["size"] is None and cfg["data"]["patch_pos_fraction"] == 0.33
    assert cfg["train"]["batch_size"] == 2  # 5 % of 30 images: the minimum of 2
    assert "5 %" in decided(decisions)["train.batch_size"].reason
    assert cfg["augment"]["flip_prob"] == 0.5 and cfg["augment"]["rot90_prob"] == 0.5
    # 2D on a CPU: MONAI's residual UNet at 16…256 (more capacity per CPU second); a GPU plan: medseg's U-Net at 32
    assert cfg["model"]["name"] == "monai_unet" and cfg["model"]["base_channels"] == 16
    assert cfg["model"]["max_channels"] == 256 and "first layer" in decided(decisions)["model.name"].reason
    gpu, _ = plan(fp_2d(n=30, shape=(64, 64)), device="cuda")
    assert gpu["model"]["name"] == "unet" and gpu["model"]["base_channels"] == 32
    assert cfg["task"]["class_names"] == ["background", "foreground"]
    assert cfg["data"]["mask_values"] is None


def test_odd_sized_images_get_a_patch_that_is_a_multiple_of_the_poolings():
    cfg, _ = plan(fp_2d(shape=(94, 93)), device="cpu")
    patch, depth = cfg["data"]["patch_size"], cfg["model"]["depth"]
    assert all(p % 2**depth == 0 and p <= s for p, s in zip(patch, (94, 93), strict=True))
    assert 4 <= min(patch) // 2**depth < 8


def test_16_bit_microscopy_is_zscored():
    cfg, decisions = plan(fp_2d(dtype="uint16", max_value=4095.0), device="cpu")
    assert cfg["data"]["normalize"] == "zscore"
    assert "16-bit" in decided(decisions)["data.normalize"].reason


def test_0_255_masks_get_mask_values():
    cfg, decisions = plan(fp_2d(values=(0, 255)), device="cpu")
    assert cfg["data"]["mask_values"] == [0, 255]
    assert cfg["task"]["class_names"] == ["background", "foreground"]
    assert "255" in decided(decisions)["data.mask_values"].reason


def test_class_names_from_the_command_line_and_their_count_checked():
    cfg, _ = plan(fp_2d(values=(0, 85, 170)), device="cpu", class_names=["bg", "nucleus", "membrane"])
    assert cfg["task"]["class_names"] == ["bg", "nucleus", "membrane"]
    assert cfg["data"]["mask_values"] == [0, 85, 170]
    with pytest.raises(ConfigError, match="names 2 classes .* hold 3"):
        plan(fp_2d(values=(0, 85, 170)), device="cpu", class_names=["bg", "nucleus"])


def test_masks_with_one_value_are_refused():
    with pytest.raises(DataValidationError, match="nothing to segment"):
        plan(fp_2d(values=(0,), freq={"0": 1.0}), device="cpu")


def test_a_smaller_memory_budget_shrinks_patch_and_batch():
    fp = fp_2d(n=2000, shape=(1024, 1024))
    big, _ = plan(fp, device="cuda", memory_budget_gb=16)
    small, decisions = plan(fp, device="cuda", memory_budget_gb=1)
    big_voxels = math.prod(big["data"]["patch_size"]) * big["train"]["batch_size"]
    small_voxels = math.prod(small["data"]["patch_size"]) * small["train"]["batch_size"]
    assert math.prod(small["data"]["patch_size"]) < math.prod(big["data"]["patch_size"])
    assert small_voxels < big_voxels
    assert small["train"]["batch_size"] >= 2
    need = estimate_memory(
        small["data"]["patch_size"],
        depth=small["model"]["depth"],
        base_channels=32,
        max_channels=512,
        batch=small["train"]["batch_size"],
        amp=True,
    )
    assert need <= 1 * 2**30
    assert "fit 1 GB" in decided(decisions)["data.patch_size"].reason
    with pytest.raises(ConfigError, match="budget"):
        plan(fp, device="cuda", memory_budget_gb=0.001)


def test_choose_patch_shrinks_the_axis_of_the_largest_physical_extent():
    # 40 slices of 3 mm (120 mm) and 512 px of 0.8 mm (410 mm): in-plane is cut first
    patch, depth, need, shrunk = choose_patch(
        [40, 512, 512], [3.0, 0.8, 0.8], base_channels=16, max_channels=320, budget_bytes=2**30, amp=False
    )
    assert shrunk > 0 and need <= 2**30
    assert patch[0] >= 24 and patch[1] < 512
    assert depth == depth_for(patch, 3)


def test_estimate_memory_grows_with_batch_and_patch():
    kw = {"depth": 4, "base_channels": 16, "max_channels": 512, "amp": False}
    one, two = estimate_memory([128, 128], batch=1, **kw), estimate_memory([128, 128], batch=2, **kw)
    assert two > one > estimate_memory([64, 64], batch=1, **kw)
    assert estimate_memory([128, 128], batch=1, depth=4, base_channels=16, max_channels=512, amp=True) < one


def test_set_overrides_a_decision_and_is_recorded():
    cfg, decisions = plan(fp_2d(), device="cpu")
    cfg, decisions = apply_sets(cfg, decisions, [("model.base_channels", "12"), ("train.iterations", "100")])
    assert cfg["model"]["base_channels"] == 12 and cfg["train"]["iterations"] == 100
    assert decided(decisions)["model.base_channels"].reason.startswith("set on the command line")
    with pytest.raises(ConfigError, match="did you mean"):
        apply_sets(cfg, decisions, [("train.iteration", "5")])


# --- the user's overrides are inputs of the decisions -----------------------------------------------------


def _membrane_fp():
    """Cells (255) cover 78 % of the pixels, the membranes between them (0) 22 %."""
    return fp_2d(values=(0, 255), freq={"0": 0.22, "255": 0.78})


def test_background_null_makes_the_rarest_of_all_classes_primary_and_says_why():
    names = ["membrane", "cell"]
    _, default = plan(_membrane_fp(), device="cpu", class_names=names)
    assert decided(default)["task.primary_metric"].value == "cell"  # the only foreground class
    cfg, decisions = plan(_membrane_fp(), device="cpu", class_names=names, sets=[("task.background", "null")])
    assert cfg["task"]["background"] is None and cfg["task"]["primary_metric"] == "membrane"
    why = decided(decisions)["task.primary_metric"].reason
    assert why.startswith("task.background = null (your --set): every class scored; rarest scored class: 22 %")
    assert "cell 78 %" in why
    assert "your --set" in decided(decisions)["task.background"].reason
    # every class is a structure, so the Dice loss covers the first one too
    assert cfg["loss"][1]["include_background"] is True and "every class" in decided(decisions)["loss"].reason


def test_an_explicit_primary_metric_wins_and_is_named_as_the_users():
    cfg, decisions = plan(
        _membrane_fp(),
        device="cpu",
        class_names=["membrane", "cell"],
        sets=[("task.background", "null"), ("task.primary_metric", "cell"), ("train.iterations", "7")],
    )
    assert cfg["task"]["primary_metric"] == "cell" and cfg["train"]["iterations"] == 7
    why = decided(decisions)["task.primary_metric"].reason
    assert why == "your --set; the plan's pick: membrane, the rarest scored class (22 % of the voxels)"
    with pytest.raises(ConfigError, match="'membrane' is not a class .* scored"):
        plan(_membrane_fp(), device="cpu", class_names=["membrane", "cell"], sets=[("task.primary_metric", "membrane")])


def test_another_background_class_is_left_out_of_the_metric_and_the_derived_unions():
    fp = fp_2d(values=(0, 1, 2, 3), freq={"0": 0.1, "1": 0.5, "2": 0.3, "3": 0.1})
    fp["kind"] = "pommier"
    cfg, decisions = plan(fp, device="cpu", sets=[("task.background", "1")])
    assert cfg["task"]["background"] == 1 and cfg["task"]["primary_metric"] == "background"  # 0 is scored now
    assert (
        "task.background = 1 (your --set): chromosome_alpha not scored"
        in decided(decisions)["task.primary_metric"].reason
    )
    assert cfg["task"]["derived"] == {"chromosome_beta_whole": [2, 3]}
    assert "task.background" in decided(decisions)["task.derived"].reason
    assert cfg["loss"][1]["include_background"] is True
    with pytest.raises(ConfigError, match=r"task.background=7: give the index of the background class \(0 background"):
        plan(fp, device="cpu", sets=[("task.background", "7")])
    with pytest.raises(ConfigError, match="--classes and --set task.class_names"):
        plan(_membrane_fp(), device="cpu", class_names=["a", "b"], sets=[("task.class_names", "[c, d]")])


# --- the written plan -------------------------------------------------------------------------------------


def test_written_yaml_loads_and_names_the_reasons(tmp_path):
    fp = fp_ct()
    cfg, decisions = plan(fp, device="cuda")
    yaml_path, json_path = write_plan(
        cfg, decisions, tmp_path / "config.yaml", fingerprint=fp, settings={"device": "cuda"}
    )
    loaded = load_config(yaml_path)
    assert loaded == cfg
    text = yaml_path.read_text()
    patch_line = next(line for line in text.splitlines() if line.strip().startswith("patch_size:"))
    assert f"patch_size: {cfg['data']['patch_size']}".replace("'", "") in patch_line.replace(", ", ", ")
    assert "# median preprocessed volume 40×512×512" in patch_line and "poolings" in patch_line
    assert "percentile" in next(line for line in text.splitlines() if "clip_min:" in line)
    # every decided key is in the file with a comment
    data = yaml.safe_load(text)
    assert data["model"]["depth"] == cfg["model"]["depth"] and data["train"]["scheduler"]["name"] == "poly"
    assert all(
        "  # " in line
        for line in text.splitlines()
        if line and not line.startswith("#") and not line.rstrip().endswith(":")
    )
    record = json.loads(json_path.read_text())
    assert json_path.name == "config.plan.json"
    assert record["fingerprint"]["n_cases"] == 40 and record["config"] == cfg
    assert {d["key"] for d in record["decisions"]} >= {"data.patch_size", "model.depth", "preprocess.mean"}


# --- z-score preprocessing (preprocess.normalize: zscore) ----------------------------------------------------


def test_zscore_with_fixed_statistics_after_clipping():
    settings = section_settings(
        "preprocess", {"clip_min": -100.0, "clip_max": 200.0, "normalize": "zscore", "mean": 50.0, "std": 25.0}
    )
    out = clip_and_normalize(np.array([[[-1000.0, 50.0, 100.0, 3000.0]]]), settings)
    np.testing.assert_allclose(out.ravel(), [-6.0, 0.0, 2.0, 6.0])
    assert out.dtype == np.float32


def test_zscore_without_statistics_uses_each_volume_and_a_constant_volume_is_zero():
    settings = section_settings("preprocess", {"clip_min": None, "clip_max": None, "normalize": "zscore"})
    rng = np.random.default_rng(0)
    out = clip_and_normalize(rng.normal(300.0, 40.0, (4, 8, 8)), settings)
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1.0) < 1e-4
    assert not clip_and_normalize(np.full((2, 3, 3), 7.0), settings).any()


@pytest.mark.parametrize(
    "section,message",
    [
        ({"normalize": "zscore", "mean": 1.0}, "go together"),
        ({"normalize": "range", "mean": 1.0, "std": 2.0}, "zscore only"),
        ({"normalize": "zscore", "mean": 1.0, "std": 0.0}, "must be > 0"),
    ],
)
def test_preprocess_zscore_settings_are_checked(section, message):
    with pytest.raises(ConfigError, match=message):
        section_settings("preprocess", section)


def test_existing_preprocess_defaults_are_unchanged():
    s = section_settings("preprocess", None)
    assert (s["normalize"], s["mean"], s["std"], s["clip_min"], s["clip_max"]) == ("range", None, None, 0.0, 1600.0)


# --- fingerprints of real folders ---------------------------------------------------------------------------


def _folder_2d(root, n=6, size=(40, 48), bits=8):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    top = 255 if bits == 8 else 4095
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[10:20, 12 + i : 30 + i] = 255
        image = rng.integers(0, top // 4, size)
        image[mask > 0] = top - 5
        dtype = np.uint8 if bits == 8 else np.uint16
        Image.fromarray(image.astype(dtype)).save(root / "images" / f"img_{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"img_{i:02d}.png")
    return root


def test_fingerprint_of_a_2d_folder_with_0_255_masks(tmp_path):
    root = _folder_2d(tmp_path / "cells")
    fp = fingerprint(root, progress=False)
    assert fp["kind"] == "folder2d" and fp["spatial_dims"] == 2 and fp["n_cases"] == 6 and fp["n_sampled"] == 6
    assert fp["shape"]["median"] == [40, 48] and fp["same_shape"] is True
    assert fp["label_values"] == [0, 255] and fp["label_cases"] == {"0": 6, "255": 6}
    assert abs(fp["label_frequency"]["255"] - 180 / (40 * 48)) < 1e-9
    assert fp["dtype"] == "uint8" and fp["bits"] == 8
    stats = fp["intensity"][0]
    assert stats["foreground"]["mean"] == 250.0 and stats["global"]["mean"] < 100
    json.dumps(fp)  # plain JSON data
    cfg, _ = plan(fp, device="cpu")
    assert cfg["data"]["mask_values"] == [0, 255] and cfg["data"]["path"] == str(root)


def test_dataset_json_names_the_classes_and_the_modality(tmp_path):
    root = _folder_2d(tmp_path / "cells")
    (root / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "nucleus": 255}, "channel_names": {"0": "microscopy"}})
    )
    fp = fingerprint(root, progress=False)
    assert fp["label_names"] == {"0": "background", "255": "nucleus"} and fp["modality"] == "MICROSCOPY"
    cfg, decisions = plan(fp, device="cpu")
    assert cfg["task"]["class_names"] == ["background", "nucleus"] and cfg["task"]["primary_metric"] == "nucleus"
    assert "dataset.json" in decided(decisions)["task.class_names"].reason


def test_fingerprint_samples_at_most_max_cases(tmp_path):
    root = _folder_2d(tmp_path / "cells", n=6)
    fp = fingerprint(root, max_cases=2, voxels_per_case=50, progress=False)
    assert fp["n_cases"] == 6 and fp["n_sampled"] == 2
    assert fp["intensity"][0]["global"]["n_voxels"] == 100
    assert fp["label_cases"]["255"] == 6  # every mask is read: no class is missed


def test_fingerprint_of_16_bit_images(tmp_path):
    fp = fingerprint(_folder_2d(tmp_path / "micro", bits=16), progress=False)
    assert fp["dtype"] == "uint16" and fp["bits"] == 16 and fp["max_value"] == 4090.0


def test_fingerprint_of_a_3d_nifti_folder(tmp_path):
    root = tmp_path / "ct"
    rng = np.random.default_rng(1)
    for i, depth in enumerate((10, 12, 14)):
        image = rng.integers(-1024, -900, (depth, 24, 20)).astype(np.int16)
        label = np.zeros(image.shape, np.uint8)
        label[3:6, 8:14, 6:12] = 1
        image[label > 0] = 40
        write_nifti(Volume(image, (3.0, 0.8, 0.8), modality="CT"), root / f"case_{i}_image.nii.gz")
        write_nifti(Volume(label, (3.0, 0.8, 0.8)), root / f"case_{i}_label.nii.gz", label=True)
    fp = fingerprint(root, progress=False)
    assert fp["kind"] == "volumes3d" and fp["spatial_dims"] == 3 and fp["n_cases"] == 3
    assert fp["shape"]["median"] == [12, 24, 20] and fp["shape"]["min"] == [10, 24, 20]
    np.testing.assert_allclose(fp["spacing"]["median"], [3.0, 0.8, 0.8], rtol=1e-5)
    assert abs(fp["spacing"]["anisotropy"] - 3.75) < 1e-4
    np.testing.assert_allclose(fp["spacing"]["extent_mm"]["median"], [36.0, 19.2, 16.0], rtol=1e-5)
    assert fp["modality"] == "CT" and fp["dtype"] == "int16"
    assert fp["label_values"] == [0, 1]
    assert fp["intensity"][0]["foreground"]["mean"] == 40.0 and fp["intensity"][0]["global"]["min"] >= -1024
    cfg, decisions = plan(fp, device="cpu")
    assert cfg["preprocess"]["depth"] == 12 and cfg["preprocess"]["size_xy"] == [24, 20]
    assert cfg["preprocess"]["mean"] == 40.0 and cfg["task"]["class_names"] == ["background", "foreground"]
    assert cfg["preprocess"]["clip_min"] < cfg["preprocess"]["clip_max"]  # one foreground value: the global window
    assert "one value" in decided(decisions)["preprocess.clip_min"].reason


def test_fingerprint_of_a_pommier_file_names_its_classes_and_stray_labels(tmp_path):
    images = np.full((5, 16, 15), 30, np.uint8)
    labels = np.zeros((5, 16, 15), np.uint8)
    labels[:, 4:8, 2:12] = 1
    labels[:, 2:14, 6:9] = 2
    labels[:, 4:8, 6:9] = 3
    labels[0, 0, 0] = 4  # a stray label, as in the published file
    path = write_pommier_h5(tmp_path / "pairs.h5", images, labels)
    fp = fingerprint(path, progress=False)
    assert fp["kind"] == "pommier" and fp["n_cases"] == 5 and fp["shape"]["median"] == [16, 15]
    assert fp["label_values"] == [0, 1, 2, 3, 4] and fp["label_cases"]["4"] == 1
    cfg, decisions = plan(fp, device="cpu")
    assert cfg["task"]["class_names"] == ["background", "chromosome_alpha", "chromosome_beta", "overlap"]
    assert "stray" in decided(decisions)["task.class_names"].reason
    assert cfg["name"] == "plan_pairs"


def test_fingerprint_refuses_what_is_no_data_set(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataValidationError, match="not a data set"):
        fingerprint(tmp_path / "notes.txt", progress=False)
    with pytest.raises(DataValidationError, match="no volumes found"):
        fingerprint(tmp_path, progress=False)


# --- the command line -------------------------------------------------------------------------------------


def test_plan_cli_prints_the_decisions_and_writes_a_loadable_config(tmp_path):
    root = _folder_2d(tmp_path / "cells")
    out = tmp_path / "plans" / "cells.yaml"
    result = runner.invoke(
        app,
        [
            "plan",
            str(root),
            "-o",
            str(out),
            "--classes",
            "background,cell",
            "--device",
            "cpu",
            "--set",
            "train.iterations=10",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "patch_size" in result.output and "rarest foreground class" in result.output
    cfg = load_config(out)
    assert cfg["task"]["class_names"] == ["background", "cell"] and cfg["train"]["iterations"] == 10
    assert cfg["data"]["mask_values"] == [0, 255]
    assert json.loads((tmp_path / "plans" / "cells.plan.json").read_text())["fingerprint"]["n_cases"] == 6
    bad = runner.invoke(app, ["plan", str(root), "-o", str(out), "--classes", "a,b,c"])
    assert bad.exit_code == 2 and "--classes names 3 classes" in bad.output


def test_plan_cli_decides_after_the_users_background(tmp_path):
    root = _folder_2d(tmp_path / "cells")
    for mask in (root / "masks").iterdir():  # cells everywhere but a band of membrane
        Image.fromarray(255 - np.array(Image.open(mask))).save(mask)
    out = tmp_path / "cells.yaml"
    result = runner.invoke(
        app,
        [
            "plan",
            str(root),
            "-o",
            str(out),
            "--classes",
            "membrane,cell",
            "--device",
            "cpu",
            "--set",
            "task.background=null",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    cfg = load_config(out)
    assert cfg["task"]["background"] is None and cfg["task"]["primary_metric"] == "membrane"
    line = next(line for line in out.read_text().splitlines() if "primary_metric:" in line)
    assert "task.background = null (your --set): every class scored; rarest scored class: 9.38 %" in line


def test_train_on_a_data_folder_plans_on_the_fly(tmp_path):
    root = _folder_2d(tmp_path / "cells", n=10, size=(32, 32))
    runs = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "train",
            str(root),
            "--device",
            "cpu",
            "--set",
            f"output.root={runs}",
            "--set",
            "train.iterations=2",
            "--set",
            "model.base_channels=4",
            "--set",
            "train.max_batches_per_epoch=1",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    run = runs / "plan_cells"
    assert (run / "plan.yaml").is_file() and (run / "fold_0" / "model.safetensors").is_file()
    saved = yaml.safe_load((run / "fold_0" / "config.yaml").read_text())
    assert saved["data"]["patch_size"] == [32, 32] and saved["train"]["iterations"] == 2
    assert load_config(run / "plan.yaml")["model"]["base_channels"] == 4
    assert json.loads((run / "plan.json").read_text())["fingerprint"]["kind"] == "folder2d"
    refused = runner.invoke(app, ["train", str(root), "--data", str(root)])
    assert refused.exit_code == 2 and "--data is for a YAML config" in refused.output


def test_cpu_plans_cap_the_patch_gpu_plans_take_the_median_image():
    fp = fp_2d(n=133, shape=(517, 645), values=(0, 1, 2))  # the M-FISH metaphases' size
    cpu, cpu_decisions = plan(fp, device="cpu")
    gpu, _ = plan(fp, device="cuda")
    cpu_patch, gpu_patch = cpu["data"]["patch_size"], gpu["data"]["patch_size"]
    assert cpu_patch[0] * cpu_patch[1] <= 256 * 256 and all(p % 2 ** cpu["model"]["depth"] == 0 for p in cpu_patch)
    assert gpu_patch[0] * gpu_patch[1] > 4 * 256 * 256  # the median image, as nnU-Net
    why = next(d.reason for d in cpu_decisions if d.key == "data.patch_size")
    assert "capped" in why and "CPU" in why
    assert cpu["train"]["batch_size"] <= 4 < gpu["train"]["batch_size"]


def test_cv_on_a_data_folder_plans_on_the_fly(tmp_path):
    root = _folder_2d(tmp_path / "cells", n=12, size=(32, 32))
    runs = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "cv",
            str(root),
            "--device",
            "cpu",
            "--set",
            f"output.root={runs}",
            "--set",
            "splits.n_folds=2",
            "--set",
            "train.iterations=1",
            "--set",
            "model.base_channels=4",
            "--set",
            "train.max_batches_per_epoch=1",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    run = runs / "plan_cells"
    assert (run / "plan.yaml").is_file() and (run / "fold_1" / "model.safetensors").is_file()
    assert sorted(p.name for p in run.glob("fold_*")) == ["fold_0", "fold_1"]
    report = (run / "evaluation" / "report.md").read_text()
    assert "foreground" in report and "chromosome" not in report.lower()  # the task's own words
