"""Every paper-table spec resolves: its rows' configs load and build, and each names a published row."""

import json
from pathlib import Path

import pytest

from medseg.artifact import model_kwargs
from medseg.errors import ConfigError
from medseg.experiments.tables import (
    kendall_tau,
    load_spec,
    ours_in_paper_terms,
    published_row,
    reproduce_table,
    row_config,
)
from medseg.models import build_model

SPECS = sorted(Path("configs/tables").glob("*.yaml"))


def test_there_is_a_spec_per_paper_table():
    names = {p.stem for p in SPECS}
    assert {
        "rse_unet_table3",
        "rse_unet_table4",
        "rse_unet_table5",
        "arms_net_table3",
        "arms_net_table4",
        "arms_net_table5",
        "amfl_table2",
        "amfl_table4",
        "amfl_table5",
    } <= names


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda p: p.stem)
def test_spec_rows_build_and_have_published_rows(spec_path, tmp_path):
    spec = load_spec(spec_path)
    for row in spec["rows"]:
        ref = published_row(spec, row)
        if spec["paper"] is None:  # an experiment no paper ran (the M-FISH transfer table)
            assert ref is None, row["label"]
        elif row.get("no_reference"):  # a row the paper prints without numbers (GI Table 6's DICE: "/")
            assert ref is None, row["label"]
        else:
            assert ref is not None and ref["paper"] == spec["paper"], row["label"]
        cfg = row_config(spec, row, quick=spec["kind"] == "train", data=None, output_root=tmp_path)
        if spec["kind"] == "train":
            # quick mode must narrow every network enough to train on a CPU in CI
            model = build_model(cfg["model"]["name"], **model_kwargs(cfg))
            n = sum(p.numel() for p in model.parameters())
            assert n < 3_000_000, f"{row['label']}: {n} parameters in quick mode"


def test_ours_in_paper_terms_uses_each_papers_definitions():
    metrics = {
        "per_class": {
            "overlap": {"iou": 0.9},
            "chromosome_alpha": {"iou": 0.8},
            "chromosome_beta": {"iou": 0.7},
            "chromosome_alpha_whole": {"iou": 0.95},
            "chromosome_beta_whole": {"iou": 0.85},
        },
        "foreground_accuracy": 0.99,
        "derived_accuracy": 0.995,
        "pixel_accuracy": 0.98,
        "mean": {"iou": 0.8, "dice": 0.88, "recall": 0.9, "precision": 0.87, "fnr": 0.1, "fpr": 0.01, "hausdorff": 2.0},
    }
    rse = ours_in_paper_terms(metrics, {}, "rse_unet")
    arms = ours_in_paper_terms(metrics, {}, "arms_net")
    amfl = ours_in_paper_terms(metrics, {}, "amfl")
    assert rse["alpha_iou"] == pytest.approx(80.0) and rse["accuracy"] == pytest.approx(99.0)
    assert arms["alpha_iou"] == pytest.approx(95.0) and arms["accuracy"] == pytest.approx(99.5)
    assert (
        amfl["mean_iou"] == pytest.approx(80.0) and amfl["hausdorff"] == 2.0 and amfl["accuracy"] == pytest.approx(98.0)
    )


def test_order_free_scores_follow_the_papers_alpha_beta_definition():
    metrics = {
        "per_class": {
            "overlap": {"iou": 0.9},
            "chromosome_alpha": {"iou": 0.1},
            "chromosome_beta": {"iou": 0.2},
            "chromosome_alpha_whole": {"iou": 0.3},
            "chromosome_beta_whole": {"iou": 0.4},
        },
        "derived_accuracy": 0.9,
        "foreground_accuracy": 0.9,
        "pixel_accuracy": 0.9,
        "order_free": {
            "per_class": {
                "chromosome_alpha": {"iou": 0.6},
                "chromosome_beta": {"iou": 0.7},
                "chromosome_alpha_whole": {"iou": 0.8},
                "chromosome_beta_whole": {"iou": 0.85},
            },
            "swapped_fraction": 0.25,
        },
    }
    arms = ours_in_paper_terms(metrics, {}, "arms_net")  # complete chromosomes
    rse = ours_in_paper_terms(metrics, {}, "rse_unet")  # non-overlap regions
    assert arms["alpha_iou_order_free"] == pytest.approx(80.0) and arms["beta_iou_order_free"] == pytest.approx(85.0)
    assert rse["alpha_iou_order_free"] == pytest.approx(60.0) and rse["swapped"] == pytest.approx(25.0)
    assert "alpha_iou_order_free" not in ours_in_paper_terms({**metrics, "order_free": None}, {}, "arms_net")


def test_a_table_without_a_paper_must_name_its_columns_and_definitions(tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text("title: t\npaper: null\ntable: x\nrows: []\n")
    with pytest.raises(ConfigError, match="needs 'columns' and 'definitions'"):
        load_spec(spec)
    spec.write_text("title: t\npaper: null\ntable: x\ndefinitions: arms_net\ncolumns: [overlap_iou, bogus]\nrows: []\n")
    with pytest.raises(ConfigError, match="unknown columns \\['bogus'\\]"):
        load_spec(spec)
    spec.write_text(
        "title: t\npaper: null\ntable: x\ndefinitions: arms_net\ncolumns: [overlap_iou]\n"
        "rows: [{label: a, config: c.yaml, reference: UNet}]\n"
    )
    with pytest.raises(ConfigError, match="cannot name a published 'reference'"):
        load_spec(spec)


def test_transfer_table_quick_trains_on_synthesized_pairs_and_tests_on_held_out_real_pairs(
    tmp_path, monkeypatch, small_mfish
):
    """The M-FISH transfer chain (issue 14 part 4) on five real slides: a row trained on pairs synthesized from
    the training slides' chromosomes and a row trained on the real training pairs are both scored on the REAL
    pairs of the held-out slide (mfish-pairs' own split), with the order-free α/β beside the rule's."""
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    root = Path.cwd() / "configs" / "chromosomes"
    spec = tmp_path / "transfer.yaml"
    spec.write_text(f"""
title: mini transfer
paper: null
definitions: arms_net
table: transfer
columns: [overlap_iou, alpha_iou, alpha_iou_order_free, swapped]
test_data: mfish:pairs
set: [data.mfish_source={small_mfish}, data.mfish_synth_pairs=24, "data.size=[96, 96]", model.base_channels=4,
      model.depth=2, train.iterations=1, train.batch_size=4, train.val_max_batches=1, evaluate.hausdorff=false]
rows:
  - {{label: synth, group: U-Net, series: synthesized, config: {root}/unet.yaml,
     set: [data.path=mfish:synth, splits.test_fraction=0]}}
  - {{label: real, group: U-Net, series: real, config: {root}/unet.yaml, set: [data.path=mfish:pairs]}}
""")
    report = reproduce_table(spec, folds=[0], output_root=tmp_path / "tables", progress=False)
    text = report.read_text()
    assert "No paper ran this experiment" in text and "paper |" not in text
    table = json.loads((report.parent / "table.json").read_text())
    test_names = json.loads(next((tmp_path / "home").rglob("pairs.splits.json")).read_text())["test"]
    for r in table["results"]:
        assert r["test_data"] == "mfish:pairs" and r["published"] is None
        assert 0.0 <= r["ours"]["alpha_iou_order_free"] <= 100.0
        ours = r["ours"]  # per image the better naming never scores lower on α + β (complete chromosomes)
        assert ours["alpha_iou_order_free"] + ours["beta_iou_order_free"] >= ours["alpha_iou"] + ours["beta_iou"] - 1e-9
        extra = json.loads((Path(r["report"]).parent / "metrics.json").read_text())["extra"]
        assert extra["n_test"] == len(test_names) > 0, "every row is tested on the real held-out pairs"
        assert extra["data"].endswith("pairs.h5")
    assert (report.parent / "overlap_iou.png").stat().st_size > 1000


def test_kendall_tau():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([3, 2, 1], [10, 20, 30]) == -1.0
    # pairs: (1,2) concordant, (1,3) concordant, (2,3) discordant → (2 - 1) / 3
    assert kendall_tau([1, 3, 2], [10, 20, 30]) == pytest.approx(1 / 3)
    # Ties: Kendall's tau-b (2 concordant pairs, 1 tied in a: 2 / sqrt(2 * 3)); the old count (Goodman-Kruskal
    # gamma) said 1.0, a perfect agreement the data does not show.
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / 6**0.5)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None


def test_quick_reproduction_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    spec = tmp_path / "mini.yaml"
    root = Path.cwd() / "configs" / "chromosomes"
    spec.write_text(f"""
title: "mini RSE Table 4"
paper: rse_unet
table: "4"
quick:
  set: [data.path=synth:demo, data.synth_pairs=40, train.epochs=1, train.max_batches_per_epoch=2,
        train.val_max_batches=1, "data.size=[64,64]"]
rows:
  - {{label: U-Net, config: {root}/unet.yaml, reference: "U-Net [13]",
     quick_set: [model.base_channels=4, model.depth=2]}}
  - {{label: Saleh TTA, config: {root}/unet_3l.yaml, reference: "Saleh et al. [15]", tta: true,
     quick_set: [model.base_channels=4]}}
""")
    report = reproduce_table(spec, quick=True, output_root=tmp_path / "tables", progress=False)
    text = report.read_text()
    assert "Quick mode" in text and "95.52" in text and "95.12" in text
    table = json.loads((report.parent / "table.json").read_text())
    assert [r["label"] for r in table["results"]] == ["U-Net", "Saleh TTA"]
    for r in table["results"]:
        assert 0.0 <= r["overlap_iou"] <= 100.0
    assert table["quick"] is True and table["device"]
    assert (report.parent / "overlap_iou.png").stat().st_size > 1000


def test_ctv_table_2_1_quick_on_the_phantom_by_patient_folds(tmp_path, monkeypatch):
    """Table 2.1's chain in 3D: phantom volumes → 3-fold CV by patient (no test set, as the thesis) →
    each fold scored on its validation cases → Dice beside the thesis' Dice ratio."""
    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    full = load_spec(Path("configs/tables/ctv_table2_1.yaml"))
    spec = tmp_path / "mini.yaml"
    root = Path.cwd() / "configs" / "ctv"
    quick = "\n".join(f"    - {s}" for s in full["set"] + full["quick"]["set"])
    spec.write_text(f"""
title: "mini CTV Table 2.1"
paper: ctv_thesis
table: "2.1"
quick:
  set:
{quick}
rows:
  - {{label: UNet, config: {root}/table2_1_unet.yaml, reference: UNet}}
  - {{label: full, config: {root}/table2_1_unet_res_se_recurrent_dice.yaml,
     reference: UNet + residual + SE + recurrent loss + Dice loss, set: [model.se_reduction=2]}}
""")
    report = reproduce_table(spec, quick=True, output_root=tmp_path / "tables", progress=False)
    text = report.read_text()
    assert "74.70" in text and "76.30" in text and "DEMO DATA" in text
    table = json.loads((report.parent / "table.json").read_text())
    for r in table["results"]:
        assert 0.0 <= r["ours"]["dice"] <= 100.0
    metrics = json.loads((report.parent / "unet" / "evaluation" / "metrics.json").read_text())
    assert "each fold's model on its own validation fold" in metrics["extra"]["evaluated_on"]
    assert metrics["metrics"]["n_images"] == 2  # 6 phantom patients, 3 folds: 2 validation cases in fold 0
    assert (report.parent / "unet" / "evaluation" / "figures" / "overlays.png").stat().st_size > 1000


def test_an_unquoted_comma_in_a_row_label_is_an_error_naming_the_fix(tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text(
        "title: t\npaper: amfl\ntable: IV\nkind: efficiency\n"
        "rows:\n  - {label: UNet (upconv, as the public code), config: c.yaml, reference: UNet}\n"
    )
    with pytest.raises(ConfigError, match=r"t.yaml: row 1 has unknown key.*'UNet \(upconv'.*put the value in quotes"):
        load_spec(spec)


def test_amfl_table_iv_unet_row_keeps_its_whole_label_and_counts_34_52_m(tmp_path):
    import torch

    from medseg.metrics.efficiency import count_parameters

    spec = load_spec(Path("configs/tables/amfl_table4.yaml"))
    row = next(r for r in spec["rows"] if r["label"].startswith("UNet"))
    assert row["label"] == "UNet (upconv, as the public code)"
    cfg = row_config(spec, row, quick=False, data=None, output_root=tmp_path)
    with torch.device("meta"):  # the count only: no weights allocated
        n = count_parameters(build_model(cfg["model"]["name"], **model_kwargs(cfg)))
    # 1 input channel and 4 classes; the public code's 3 → 1 channels and conv biases make Table IV's 34.53 M
    assert n == 34_519_236 and round(n / 1e6, 2) == 34.52


def test_unset_drops_the_tables_own_setting_so_each_row_keeps_its_configs(tmp_path):
    from medseg.config import load_config
    from medseg.experiments.tables import check_unset

    spec = load_spec(Path("configs/tables/mfish_transfer.yaml"))
    widths = {}
    for row in spec["rows"]:
        cpu = row_config(spec, row, quick=False, data=None, output_root=tmp_path)
        gpu = row_config(
            spec,
            row,
            quick=False,
            data=None,
            output_root=tmp_path,
            unset=["model.base_channels"],
            overrides=["train.iterations=5"],
        )
        own = load_config(spec["_dir"] / row["config"])["model"]["base_channels"]
        assert cpu["model"]["base_channels"] == 8 and gpu["model"]["base_channels"] == own
        assert gpu["data"]["size"] == [96, 96] and gpu["train"]["iterations"] == 5  # the other settings stay
        widths[row["group"]] = own
    assert widths == {"U-Net": 32, "ARMS Net": 32, "RSE-UNet": 64, "AMFL": 64}
    with pytest.raises(ConfigError, match=r"--unset model\.base_channel: the spec sets no such key"):
        check_unset(spec, ["model.base_channel"])  # a typo would otherwise leave the width at 8 silently
