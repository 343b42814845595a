"""Fixtures for the web server: tiny untrained models, phantom studies in every input format, and an app over
a temporary MEDSEG_HOME whose worker is run by hand (``run_pending``), so every test is deterministic."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from medseg.artifact import model_kwargs, model_meta, save_model
from medseg.config import load_config
from medseg.data.phantom import make_phantom
from medseg.formats.volume_files import write_dicom_series, write_hdf5_volume, write_nifti
from medseg.models import build_model
from medseg.server import auth
from medseg.server.app import create_app
from medseg.server.settings import ServerSettings

PASSWORD = "correct horse battery"
SHAPE = (8, 32, 32)


def _save_3d(directory: Path, head_bias: float, seed: int) -> Path:
    cfg = load_config(
        overrides={
            "name": directory.name,
            "task": {
                "mode": "multilabel",
                "class_names": ["ctv"],
                "spatial_dims": 3,
                "derived": {},
                "primary_metric": "ctv",
            },
            "model": {"name": "ctv_unet3d", "channels": [2, 2, 2, 2, 2]},
            "preprocess": {"depth": 8, "size_xy": [32, 32]},
        }
    )
    torch.manual_seed(seed)
    model = build_model(cfg["model"]["name"], **model_kwargs(cfg))
    with torch.no_grad():  # untrained; the bias decides: everything (> 0) or nothing (< 0) is the target
        model.core.head.weight.zero_()
        model.core.head.bias.fill_(head_bias)
    return save_model(directory, model, model_meta(cfg))


def _save_2d(directory: Path) -> Path:
    cfg = load_config(
        overrides={
            "name": directory.name,
            "data": {"size": [32, 32]},
            "model": {"name": "unet", "depth": 2, "base_channels": 4},
        }
    )
    torch.manual_seed(0)
    model = build_model(cfg["model"]["name"], **model_kwargs(cfg))
    return save_model(directory, model, model_meta(cfg))


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "ct_full": _save_3d(root / "ct_full", 5.0, 0),
        "ct_empty": _save_3d(root / "phantom_ct_empty", -5.0, 1),  # "phantom" in the name: a demo model
        "chromo": _save_2d(root / "chromo2d"),
    }


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> dict:
    """One phantom case in every input format, with its label as a NIfTI reference."""
    root = tmp_path_factory.mktemp("phantom")
    img, lab = make_phantom(SHAPE, seed=3)
    series = write_dicom_series(img, root / "series")
    zpath = root / "series.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(series.iterdir()):
            zf.write(f, f"series/{f.name}")
    png = root / "slice.png"
    Image.fromarray((np.linspace(0, 255, 40 * 48).reshape(40, 48)).astype(np.uint8)).save(png)
    png_ref = root / "slice_ref.png"
    ref2d = np.zeros((40, 48), np.uint8)
    ref2d[10:20, 10:30] = 1  # class indices of the 4-class chromosome model
    ref2d[25:30, 5:15] = 3
    Image.fromarray(ref2d).save(png_ref)
    return {
        "image": img,
        "label": lab,
        "nifti": write_nifti(img, root / "case_image.nii.gz"),
        "nifti_label": write_nifti(lab, root / "case_label.nii.gz", label=True),
        "hdf5": write_hdf5_volume(img, root / "case.h5"),
        "dicom_dir": series,
        "dicom_zip": zpath,
        "png": png,
        "png_ref": png_ref,
    }


@pytest.fixture
def settings(tmp_path, model_dirs) -> ServerSettings:
    return ServerSettings(home=tmp_path / "home", models=list(model_dirs.values()), torch_threads=None, device="cpu")


class Server:
    """The app, a client and helpers to sign in and upload as a given user."""

    password = PASSWORD

    def __init__(self, settings: ServerSettings, start_worker: bool = False):
        self.settings = settings
        self.app = create_app(settings, start_worker=start_worker)
        self.client = TestClient(self.app)

    @property
    def db(self):
        return self.app.state.db

    def user(self, name: str, admin: bool = False) -> dict:
        """Create ``name`` and sign in; returns the Authorization header for that user."""
        auth.create_user(self.db, name, PASSWORD, is_admin=admin)
        r = self.client.post("/api/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.client.cookies.clear()  # tests name the user on every call
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def upload(
        self,
        headers: dict,
        *paths: Path,
        model: str = "ct_full",
        reference: Path | None = None,
        names: list[str] | None = None,
    ):
        files = [("files", ((names or [])[i] if names else p.name, p.read_bytes())) for i, p in enumerate(paths)]
        if reference is not None:
            files.append(("reference", (reference.name, reference.read_bytes())))
        return self.client.post("/api/studies", headers=headers, files=files, data={"model": model})

    def upload_bytes(self, headers: dict, name: str, content: bytes, model: str = "ct_full"):
        return self.client.post(
            "/api/studies", headers=headers, files=[("files", (name, io.BytesIO(content)))], data={"model": model}
        )

    def run_jobs(self) -> int:
        return self.app.state.worker.run_pending()

    def assert_nothing_stored(self) -> None:
        """No staging folder, no study folder, no row: what every refused upload must leave."""
        assert list(self.settings.tmp_dir.iterdir()) == [] and list(self.settings.studies_dir.iterdir()) == []
        assert self.db.all("SELECT id FROM studies") == [] and self.db.all("SELECT id FROM results") == []

    def restart(self) -> Server:
        """A new app over the same home, as after a server restart."""
        return Server(self.settings)


@pytest.fixture
def server(settings) -> Server:
    return Server(settings)


@pytest.fixture
def make_server(tmp_path, model_dirs):
    """Another server with its own home: ``make_server(models=["ct_full"], ...)`` (model names of model_dirs, or
    paths of other model folders)."""

    def make(models=("ct_full",), start_worker: bool = False, **changes) -> Server:
        paths = [model_dirs[m] if isinstance(m, str) else m for m in models]
        return Server(
            ServerSettings(home=tmp_path / "other-home", models=paths, torch_threads=None, device="cpu", **changes),
            start_worker=start_worker,
        )

    return make
