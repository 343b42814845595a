"""The data-set registry: the order its claims are asked, each data set claiming its own paths and not another's,
and a clear error naming a path no data set reads."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config import DEFAULTS
from medseg.data import registry
from medseg.data.datasets import resolve_data_path
from medseg.data.registry import DataSet, data_set_for, data_sets, info_config, load_any_data, register_data_set
from medseg.errors import DataValidationError

# the fallbacks: a Pommier file takes whatever is not a folder, an image folder any other folder, and a config of
# volumes any path: each claims the paths of the data sets before it too
FALLBACKS = {"volumes", "pommier", "folder"}


def _cfg(path, spatial_dims: int = 2, **data) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    cfg["data"].update(path=str(path), **data)
    cfg["task"]["spatial_dims"] = spatial_dims
    return cfg


def _claimants(cfg: dict) -> list[str]:
    return [d.name for d in data_sets() if d.claims(str(cfg["data"]["path"]), cfg)]


@pytest.fixture
def paths(tmp_path) -> dict[str, Path]:
    h5 = tmp_path / "pairs.h5"
    h5.write_bytes(b"")
    folder = tmp_path / "membranes"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    mfish = tmp_path / "mfish"
    (mfish / "A01__XY").mkdir(parents=True)
    (mfish / "A01__XY" / "A0101D.tif").write_bytes(b"")  # the names are what recognise it
    uwgi = tmp_path / "uw"
    (uwgi / "train").mkdir(parents=True)
    (uwgi / "train.csv").write_text("id,class,segmentation\n")
    return {"h5": h5, "folder": folder, "mfish": mfish, "uwgi": uwgi}


def test_claims_are_asked_in_one_order():
    assert [d.name for d in data_sets()] == [
        "synth:phantom",
        "volumes",
        "synth:demo",
        "synth:pommier",
        "synth:gi",
        "mfish:*",
        "mfish",
        "uwgi",
        "pommier",
        "folder",
    ]


@pytest.mark.parametrize(
    ("key", "spatial_dims", "expected"),
    [
        ("h5", 2, "pommier"),
        ("folder", 2, "folder"),
        ("mfish", 2, "mfish"),
        ("uwgi", 2, "uwgi"),
        ("synth:demo", 2, "synth:demo"),
        ("synth:pommier", 2, "synth:pommier"),
        ("synth:gi", 2, "synth:gi"),
        ("mfish:pairs", 2, "mfish:*"),
        ("mfish:karyotype", 2, "mfish:*"),
        ("folder", 3, "volumes"),
        ("synth:phantom", 3, "synth:phantom"),
    ],
)
def test_each_data_set_claims_its_own_paths_and_no_other_does(paths, key, spatial_dims, expected):
    cfg = _cfg(paths.get(key, key), spatial_dims)
    claimants = _claimants(cfg)
    assert claimants[0] == expected and data_set_for(cfg).name == expected  # first claim wins
    assert set(claimants) - FALLBACKS <= {expected}, f"{key} is claimed by {claimants}"


def test_an_explicit_format_decides_over_the_path(paths):
    assert data_set_for(_cfg(paths["mfish"], format="folder")).name == "folder"
    assert data_set_for(_cfg(paths["folder"], format="pommier")).name == "pommier"
    assert data_set_for(_cfg("synth:demo", format="uwgi")).name == "uwgi"  # as before: the GI reader refuses it
    assert data_set_for(_cfg("mfish:pairs", format="mfish")).name == "mfish"
    assert data_set_for(_cfg(paths["uwgi"], format="mfish")).name == "mfish"


def test_tasks_are_named_by_the_data_sets_that_always_hold_them(paths):
    assert data_set_for(_cfg(paths["uwgi"])).task == data_set_for(_cfg("synth:gi")).task == "gi"
    assert data_set_for(_cfg("synth:phantom", 3)).task == data_set_for(_cfg(paths["folder"], 3)).task == "ctv"
    assert data_set_for(_cfg(paths["h5"])).task is None  # chromosome pairs or karyotype cut-outs: the classes say


def test_a_missing_path_is_refused_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "set.h5"
    with pytest.raises(DataValidationError, match="data not found") as err:
        load_any_data(_cfg(missing))
    assert err.value.path == missing and str(missing) in str(err.value)
    with pytest.raises(DataValidationError, match="data not found"):
        resolve_data_path(_cfg(missing)["data"])
    out = CliRunner().invoke(app, ["data", "info", str(missing)])
    assert out.exit_code != 0 and f"{missing}: data not found" in " ".join(out.output.split())


def test_a_format_no_data_set_reads_is_refused_naming_the_path_and_the_formats(tmp_path):
    with pytest.raises(DataValidationError, match="no data set medseg knows reads this") as err:
        data_set_for(_cfg(tmp_path, format="nifti"))
    assert err.value.path == tmp_path and "as data.format 'nifti'" in str(err.value)
    assert str(err.value).endswith("one of mfish, uwgi, pommier, folder")


def test_an_unknown_synthesized_set_names_the_known_ones():
    with pytest.raises(DataValidationError, match="'synth:nope'; use synth:demo, synth:pommier or synth:gi"):
        resolve_data_path(_cfg("synth:nope")["data"])
    # the phantom is a set of volumes: 2D data never make it
    with pytest.raises(DataValidationError, match="unknown synthesized set 'synth:phantom'"):
        resolve_data_path(_cfg("synth:phantom")["data"])


def test_a_registered_data_set_is_asked_in_its_place(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_DATA_SETS", list(registry._DATA_SETS))

    class Zarr(DataSet):
        name = format = "zarr"

        def claims(self, spec, cfg):
            return spec.endswith(".zarr")

    register_data_set(Zarr(), before="pommier")
    names = [d.name for d in data_sets()]
    assert names.index("zarr") == names.index("pommier") - 1
    assert data_set_for(_cfg(tmp_path / "a.zarr")).name == "zarr"
    with pytest.raises(ValueError, match="registered twice"):
        register_data_set(Zarr())
    with pytest.raises(ValueError, match="no data set 'nope'"):
        register_data_set(type("Other", (Zarr,), {"name": "other"})(), before="nope")


def test_data_info_describes_the_synthesized_gi_set_as_a_gi_folder(tmp_path, monkeypatch):
    # `data info synth:gi` read the set as an image folder and failed; it is a UW-Madison folder
    from medseg.data.synth_gi import write_synth_gi

    monkeypatch.setenv("MEDSEG_HOME", str(tmp_path / "home"))
    data = info_config("synth:gi")["data"]
    target = tmp_path / "home" / "synth" / f"gi_cases{data['synth_gi_cases']}_seed{data['synth_seed']}"
    write_synth_gi(target, n_cases=2, seed=1, slices=4, progress=False)  # small, where synth:gi finds its set
    assert resolve_data_path(data) == (target, True)
    out = CliRunner().invoke(app, ["data", "info", "synth:gi"])
    assert out.exit_code == 0, out.output
    assert "UW-Madison GI-tract layout" in out.output and "slices in" in out.output
