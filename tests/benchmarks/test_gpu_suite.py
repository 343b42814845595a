"""The GPU suite (benchmarks/gpu_all.sh → benchmarks/gpu_suite.py) while no GPU is lent: its --tiny mode runs the
steps' commands and result-writing code on the CPU, and its full mode's configs resolve and build at full size, so
the suite still runs the day a device is.

The whole tiny suite takes ~200 s of CPU (about 20 medseg processes, each importing torch and MONAI), too much for
the test command's budget: by default the tiny run covers the two cheapest steps (the shell script, the driver, the
result writing, a training and ``record_run``) and ``--check`` covers every full-mode config;
``MEDSEG_TEST_GPU_SUITE=all`` runs every step (or a comma-separated list of steps).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_MFISH = ROOT.parent / "shared" / "data" / "mfish"
STEPS = os.environ.get("MEDSEG_TEST_GPU_SUITE", "bench_unet,ctv_unet3d_96")


def _suite():
    if "gpu_suite" not in sys.modules:  # a script, not a package module: loaded by path (dataclasses need it named)
        spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "benchmarks" / "gpu_suite.py")
        sys.modules["gpu_suite"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["gpu_suite"])
    return sys.modules["gpu_suite"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``bash benchmarks/gpu_all.sh --tiny`` once (the shell script's own checks included): its output, folder and
    start time."""
    work = tmp_path_factory.mktemp("gpu_suite") / "work"
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "MEDSEG_HOME")}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1", MEDSEG_THREADS="1")
    started = time.time()
    only = [] if STEPS == "all" else ["--only", STEPS]
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_all.sh", "--tiny", "--work", str(work), *only],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return proc, work, started


def test_tiny_suite_runs_every_step_and_records_device_date_and_command(tiny_run):
    suite = _suite()
    proc, work, started = tiny_run
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = json.loads((work / "results" / "gpu_suite_gpu.json").read_text())
    assert summary["mode"] == "tiny" and summary["device"].startswith("CPU")
    rows = {r["step"]: r for r in summary["steps"]}
    chosen = [s for s in suite.STEPS if STEPS == "all" or s.name in STEPS.split(",")]
    assert list(rows) == [s.name for s in chosen]
    for step in chosen:
        row = rows[step.name]
        if step.needs_mfish and not SHARED_MFISH.is_dir():
            assert row["status"] == "skipped" and "M-FISH set is not here" in row["reason"]
            continue
        assert row["status"] == "ok", row
        assert f"[{step.name}] ok in {row['wall_s']} s (CPU " in proc.stdout  # the per-step wall time is printed
        if not step.writes_result:
            continue
        result = json.loads(Path(row["result"]).read_text())
        assert Path(row["result"]) == work / "results" / f"{step.name}_gpu.json"
        for key in ("device", "date", "command", *step.keys):
            assert result.get(key) not in (None, "", [], {}), (step.name, key)
        assert result["device"].startswith("CPU"), (step.name, result["device"])
        assert result["suite"]["mode"] == "tiny" and result["suite"]["commands"] == row["commands"]
        assert result["suite"]["wall_s"] == row["wall_s"] and result["suite"]["budget_s"] == step.budget_s
    # what each step measured, in its own terms
    results = {n: json.loads(Path(r["result"]).read_text()) for n, r in rows.items() if r.get("result")}
    if "bench_unet" in results:
        assert {r["model"] for r in results["bench_unet"]["results"]} >= {"medseg.UNet", "monai.UNet"}
    if "papers_table" in results:
        assert len(results["papers_table"]["results"]) == 3
        assert all("overlap_iou" in r for r in results["papers_table"]["results"])
    if "ctv_unet3d_96" in results:
        assert results["ctv_unet3d_96"]["efficiency"]["input"] == [32, 32, 64]
    if SHARED_MFISH.is_dir() and STEPS == "all":
        assert len(results["mfish_transfer"]["results"]) == 12
        assert all(r["test_data"] == "mfish:pairs" for r in results["mfish_transfer"]["results"])
        assert 0.0 <= results["mfish_karyotype_classifier"]["soft_vote"]["accuracy"] <= 1.0
        assert {"with_pair_model", "without_pair_model"} <= set(results["mfish_instances"]["results"])
    # tiny numbers are no measurements: none of the suite's files lands among the real results
    assert not [p.name for p in (ROOT / "benchmarks" / "results").glob("*_gpu.json") if p.stat().st_mtime >= started]


def test_tiny_mode_refuses_to_write_into_benchmarks_results(capsys):
    with pytest.raises(SystemExit):
        _suite().main(["--tiny", "--results", str(ROOT / "benchmarks" / "results")])
    assert "--tiny never writes into benchmarks/results" in capsys.readouterr().err


def test_full_mode_configs_resolve_and_build_at_full_size():
    """What --tiny cannot check: the full mode's own values (the papers' widths, 128², 96³) on the meta device."""
    suite = _suite()
    mfish = SHARED_MFISH if SHARED_MFISH.is_dir() else None
    ctx = suite.Ctx("full", suite.RESULTS, ROOT / "runs" / "gpu_suite", mfish)
    configs = dict(suite.full_configs(ctx))
    from medseg.config import load_config

    table = [cfg for what, cfg in configs.items() if what.startswith("papers_table:")]
    assert len(table) == 3 and all(cfg["data"]["path"] == "synth:pommier" for cfg in table)
    if mfish is not None:
        transfer = {what: cfg for what, cfg in configs.items() if what.startswith("mfish_transfer:")}
        assert len(transfer) == 12
        spec = yaml_rows(ROOT / suite.TRANSFER)
        for what, cfg in transfer.items():  # --unset model.base_channels: each row at its own config's width
            row = spec[what.split(": ", 1)[1]]
            own = load_config(ROOT / "configs" / "tables" / row["config"])["model"]["base_channels"]
            assert cfg["model"]["base_channels"] == own != 8 and cfg["data"]["size"] == [128, 128]
    lines = suite.check(ctx)
    assert len(lines) == len(configs)
    assert any("ctv_unet3d" in line and "[96, 96, 96] -> [2, 1, 96, 96, 96]" in line for line in lines)


def yaml_rows(path: Path) -> dict:
    import yaml

    return {r["label"]: r for r in yaml.safe_load(path.read_text())["rows"]}
