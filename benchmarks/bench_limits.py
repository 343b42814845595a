#!/usr/bin/env python
"""Peak memory and CPU time of the web system on the largest accepted and the worst refused inputs.

Each case runs in a fresh Python process (so ``ru_maxrss`` is the case's own peak): the server app over a
temporary home, one user, tiny untrained models (a 2D U-Net of depth 2 and width 4, and the thesis' 3D
U-Net with 2 channels per stage, preprocessing to 8×32×32) — the models are small on purpose, the memory
of a job is the full-size arrays around the model (the decoded input, its float copy, the probabilities
on the input's grid, labels, overlays and slice PNGs), which do not depend on the width of the network.
The upload goes through ``POST /api/studies`` (FastAPI's TestClient, in process) and an accepted upload's
job is run to the end by the worker.

Cases (``--cases``, default all):

* ``png_at_budget``: an 8-bit PNG with as many pixels as the voxel budget allows (2D model, tiled inference);
* ``png_8000``: a 62 KB PNG that declares 8000×8000 pixels (accepted: under the budget);
* ``nifti_at_budget``: an int16 NIfTI volume with as many voxels as the budget allows (3D model);
* ``png_header_bomb``: a 60 KB PNG whose header claims 60000×60000 (refused from the header);
* ``dicom_header_bomb``: a DICOM file whose header claims 60000×60000 pixels (refused from the header);
* ``zeros_dcm``: 16 MiB of zero bytes named ``.dcm`` (refused as not DICOM);
* ``zip_bomb``: a 200 MiB member compressed to ~200 KB in a zip (refused by the zip policy).

    python benchmarks/bench_limits.py --out benchmarks/results/limits_cpu.json
    MEDSEG_MAX_VOXELS=67108864 python benchmarks/bench_limits.py --cases png_at_budget   # another budget
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import math
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from bench_unet import host_info, write_json_atomic  # noqa: E402  (benchmarks/ is the script's folder)

CASES = (
    "png_at_budget",
    "png_8000",
    "nifti_at_budget",
    "png_header_bomb",
    "dicom_header_bomb",
    "zeros_dcm",
    "zip_bomb",
)
PASSWORD = "bench-password-123"


def png_bytes(width: int, height: int, *, fill=0) -> bytes:
    """An 8-bit grey PNG made by hand, row by row (a huge image without a huge array here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\x00" + bytes([fill]) * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def png_header_bomb() -> bytes:
    """A valid IHDR claiming 60000×60000 followed by a small IDAT: the header alone must refuse it."""
    data = png_bytes(600, 100)
    ihdr = (60000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    crc = zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big")
    return data[:16] + ihdr + crc + data[33:]


def dicom_header_bomb(folder: Path) -> Path:
    """A one-slice series written by medseg, its header then edited to claim 60000 × 60000 pixels."""
    import numpy as np
    import pydicom

    from medseg.formats.volume import Volume
    from medseg.formats.volume_files import write_dicom_series

    series = write_dicom_series(
        Volume(np.zeros((1, 8, 8), np.int16), (1.0, 1.0, 1.0), modality="CT"), folder / "bomb_series"
    )
    path = next(series.iterdir())
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 60000
    ds.save_as(path)
    return path


def zip_bomb(folder: Path) -> Path:
    path = folder / "series.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("series/slice_000.dcm", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(200):
                member.write(block)
    return path


def nifti_at_budget(folder: Path, voxels: int) -> Path:
    """A 512×512×D int16 volume with D as large as the budget allows: background −1000 HU, a body of 40 HU."""
    import nibabel as nib
    import numpy as np

    depth = max(1, voxels // (512 * 512))
    yy, xx = np.mgrid[:512, :512]
    body = (yy - 256) ** 2 + (xx - 256) ** 2 < 200**2
    slab = np.where(body, 40, -1000).astype(np.int16).T  # (x, y)
    data = np.broadcast_to(slab[..., None], (512, 512, depth))
    path = folder / "at_budget.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), np.diag([-1.0, -1.0, 1.0, 1.0])), str(path))
    return path


def make_models(root: Path) -> dict[str, Path]:
    import torch

    from medseg.artifact import model_kwargs, model_meta, save_model
    from medseg.config import load_config
    from medseg.models import build_model

    overrides = {
        "chromo2d": {"data": {"size": [32, 32]}, "model": {"name": "unet", "depth": 2, "base_channels": 4}},
        "ct3d": {
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "spatial_dims": 3,
                "derived": {},
                "primary_metric": "ctv",
            },
            "model": {"name": "ctv_unet3d", "channels": [2, 2, 2, 2, 2]},
            "preprocess": {"depth": 8, "size_xy": [32, 32]},
        },
    }
    out = {}
    for name, over in overrides.items():
        cfg = load_config(overrides={"name": name, **over})
        torch.manual_seed(0)
        out[name] = save_model(root / name, build_model(cfg["model"]["name"], **model_kwargs(cfg)), model_meta(cfg))
    return out


def run_case(case: str) -> dict:
    """One case in this process; returns its figures (peak RSS of this process, CPU seconds)."""
    import torch
    from fastapi.testclient import TestClient

    from medseg.formats.limits import voxel_budget
    from medseg.server import auth
    from medseg.server.app import create_app
    from medseg.server.settings import ServerSettings

    torch.set_num_threads(1)
    budget = voxel_budget()
    with tempfile.TemporaryDirectory(prefix="medseg-limits-") as tmp:
        tmp = Path(tmp)
        models = make_models(tmp / "models")
        side = math.isqrt(budget)
        inputs = {
            "png_at_budget": lambda: ("at_budget.png", png_bytes(side, budget // side, fill=128), "chromo2d"),
            "png_8000": lambda: ("issue9_8000.png", png_bytes(8000, 8000), "chromo2d"),
            "nifti_at_budget": lambda: ("at_budget.nii.gz", nifti_at_budget(tmp, budget).read_bytes(), "ct3d"),
            "png_header_bomb": lambda: ("bomb.png", png_header_bomb(), "chromo2d"),
            "dicom_header_bomb": lambda: ("bomb.dcm", dicom_header_bomb(tmp).read_bytes(), "ct3d"),
            "zeros_dcm": lambda: ("zeros.dcm", bytes(16 * 2**20), "ct3d"),
            "zip_bomb": lambda: ("series.zip", zip_bomb(tmp).read_bytes(), "ct3d"),
        }
        name, content, model = inputs[case]()
        settings = ServerSettings(home=tmp / "home", models=list(models.values()), torch_threads=1, device="cpu")
        app = create_app(settings, start_worker=False)
        auth.create_user(app.state.db, "bench", PASSWORD)
        client = TestClient(app)
        token = client.post("/api/login", json={"username": "bench", "password": PASSWORD}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu0, t0 = time.process_time(), time.perf_counter()
        response = client.post(
            "/api/studies", headers=headers, files=[("files", (name, io.BytesIO(content)))], data={"model": model}
        )
        del content
        result = {
            "case": case,
            "input": name,
            "status": response.status_code,
            "problem": response.json().get("problem") if response.status_code >= 400 else None,
        }
        if response.status_code < 300:
            app.state.worker.run_pending()
            study = client.get(f"/api/studies/{response.json()['id']}", headers=headers).json()
            result["job"] = {k: study["results"][0].get(k) for k in ("status", "error")}
        result.update(
            {
                "accepted": response.status_code < 300,
                "wall_s": round(time.perf_counter() - t0, 2),
                "cpu_s": round(time.process_time() - cpu0, 2),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "rss_before_upload_mib": round(rss_before / 1024, 1),
                "max_voxels": budget,
            }
        )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--out", type=Path, default=None, help="JSON result file")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one)))
        return 0
    results = []
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        proc = subprocess.run([sys.executable, __file__, "--one", case], capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"case": case, "crashed": proc.stderr[-2000:]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{case:18s} "
            + (
                f"{r['status']}  peak {r['peak_rss_mib']:8.1f} MiB  cpu {r['cpu_s']:7.2f} s  "
                f"{r.get('job') or r.get('problem')}"
                if "status" in r
                else "CRASHED"
            ),
            flush=True,
        )
    payload = {
        "benchmark": "bench_limits",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "host": host_info([]),
        "device": "cpu (1 torch thread)",
        "results": results,
    }
    if args.out:
        write_json_atomic(payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
