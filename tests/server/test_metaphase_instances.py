"""Whole metaphases in the web system (issue 14, part 5): a metaphase model's result on an uploaded image holds the
chromosome instances — counts in the result, the table at /instances, the viewer's instance layer, the `instances`
zip (a mask + a cut-out per chromosome, as `medseg predict` writes them) — split by `medseg serve --pair-model`,
kept whole without one; a bad pair model is refused at start naming it. With `medseg serve --karyotype-model` every
chromosome also gets its karyotype class (part 6), as `medseg predict --karyotype-model` gives it.

Tiny model folders as training writes them (a bias-only U-Net: every weight 0, the head's bias picks one class
everywhere). To make the instances known, the loaded predictors' probabilities are replaced by ones that label
the drawn scene by its grey values (the semantic model: chromosome / overlap; the pair model: A / B / overlap)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.errors import DataValidationError
from medseg.server.app import create_app
from medseg.server.settings import ServerSettings

SHARED_MFISH = Path(__file__).resolve().parents[3] / "shared" / "data" / "mfish"
SHAPE = (100, 120)
BG, A, B, BOTH = 10, 100, 160, 250  # grey values of the drawn scene


@pytest.fixture(scope="module")
def models(tmp_path_factory, constant_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metaphase_server_models")
    return {
        "semantic": constant_model(
            root / "metaphase", ["background", "chromosome", "overlap"], 1
        ),  # chromosome everywhere
        "pair": constant_model(root / "pairs", ["background", "chromosome_alpha", "chromosome_beta", "overlap"], 1),
    }


def _rect(r0, r1, c0, c1):
    m = np.zeros(SHAPE, bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """An isolated bar; a crossing of A (horizontal) and B (vertical); a cluster of a bar crossed by two others
    (two overlaps); saved as an LZW TIFF as the published metaphases are."""
    alone = _rect(5, 11, 5, 45)
    a, b = _rect(40, 46, 5, 65), _rect(20, 70, 30, 36)
    c1, c2, c3 = _rect(84, 90, 60, 115), _rect(74, 98, 70, 76), _rect(74, 98, 100, 106)
    grey = np.full(SHAPE, BG, np.uint8)
    for m in (alone, a, c1, c2, c3):
        grey[m] = A
    grey[b] = B
    grey[(a & b) | (c1 & c2) | (c1 & c3)] = BOTH
    path = tmp_path_factory.mktemp("scene") / "meta 1D.tif"
    Image.fromarray(grey).save(path, compression="tiff_lzw")
    return {"path": path, "grey": grey, "alone": alone, "a": a, "b": b, "overlap": a & b, "cluster": c1 | c2 | c3}


def _one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return (labels[:, None] == np.arange(n)[None, :, None, None]).astype(np.float32)


def _by_grey(x, table: dict[int, int], n: int) -> np.ndarray:
    """Probabilities that label each pixel of (N, H, W) images in [0, 1] by its grey value (``table``: grey → class)."""
    x = np.round(np.asarray(x, np.float32) * 255)
    labels = np.zeros(x.shape, np.int64)
    for value, cls in table.items():
        labels[x == value] = cls
    return _one_hot(labels, n)


def _drawn(server, model: str = "metaphase") -> None:
    """Replace the loaded predictors' probabilities by the scene's labels by grey value."""
    registry = server.app.state.registry
    entry = registry.get(model)
    registry.predictor(entry).predict_proba = lambda x, boxes=None: _by_grey(x, {A: 1, B: 1, BOTH: 2}, 3)
    if entry.pair is not None:
        registry.predictor(entry.pair).predict_proba = lambda x, boxes=None: _by_grey(x, {A: 1, B: 2, BOTH: 3}, 4)


def _server(make_server, models, pair: bool = True):
    """A server offering the metaphase model (conftest's make_server: its own home, the worker run by hand)."""
    return make_server(models=[models["semantic"]], pair_model=models["pair"] if pair else None)


def _segment(server, h: dict, path: Path, model: str = "metaphase") -> dict:
    r = server.upload(h, path, model=model)
    assert r.status_code == 201, r.text
    assert server.run_jobs() == 1
    study = server.client.get(f"/api/studies/{r.json()['id']}", headers=h).json()
    assert study["status"] == "done", study["results"][0]["error"]
    return study["results"][0]


def _zip(server, h: dict, result: dict) -> zipfile.ZipFile:
    r = server.client.get(result["downloads"]["instances"], headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_metaphase_result_holds_the_instances_split_by_the_pair_model(make_server, models, scene):
    server = _server(make_server, models)
    h = server.user("alice")
    (offered,) = server.client.get("/api/models", headers=h).json()
    assert offered["instances"] is True and offered["pair_model"]["version"].startswith("unet-")
    _drawn(server)
    result = _segment(server, h, scene["path"])

    info = result["instances"]
    assert info["n"] == 4 and (info["alone"], info["split"], info["kept_whole"]) == (1, 1, 1)
    assert (
        info["kept_whole_why"]
        == {"several_overlaps": {"count": 1, "reason": info["kept_whole_why"]["several_overlaps"]["reason"]}}
        and "two or more overlaps" in info["kept_whole_why"]["several_overlaps"]["reason"]
    )
    assert info["note"] is None and info["pair_model"] == offered["pair_model"]
    assert result["summary"]["model"]["pair_model"]["version"] == offered["pair_model"]["version"]
    assert "instances" in result["downloads"] and "instances" not in result["summary"]["classes"][0]
    assert info["karyogram"] is False and "karyogram" not in result["downloads"]  # no karyotyping model here
    assert server.client.get(f"/api/results/{result['id']}/download/karyogram", headers=h).status_code == 404

    table = server.client.get(info["table_url"], headers=h).json()
    assert table["n_instances"] == 4 and table["image"] == "meta 1D.tif"
    assert table["pair_model_version"] == offered["pair_model"]["version"]
    records = {r["separated_by"]: r for r in table["instances"] if r["separated_by"] != "pair_model"}
    split = [r for r in table["instances"] if r["separated_by"] == "pair_model"]
    assert set(records) == {"whole", "several_overlaps"} and len(split) == 2
    for r in table["instances"]:
        assert {"id", "bbox", "area", "overlaps_with", "separated_by", "colour"} <= set(r)
    assert records["whole"]["area"] == scene["alone"].sum()
    assert records["whole"]["bbox"] == {"top": 5, "left": 5, "height": 6, "width": 40}
    assert records["several_overlaps"]["area"] == scene["cluster"].sum()
    assert sorted(r["area"] for r in split) == sorted(
        [scene["b"].sum(), scene["a"].sum()]
    )  # each whole, overlap in both
    assert split[0]["overlaps_with"] == [split[1]["id"]] and split[1]["overlaps_with"] == [split[0]["id"]]
    # statuses against the median object (330 px): the bar alone, the two halves, the cluster of 1.8 × median
    assert (records["whole"]["status"], records["several_overlaps"]["status"]) == ("single", "clump")
    assert [r["status"] for r in split] == ["crossing_split"] * 2
    assert info["statuses"]["text"].startswith("≈ 1 single · 2 from split crossings · 1 clump (≈ 2) · 0 doubtful")
    assert info["statuses"]["estimate"] == 5 and "far from the 46" in info["statuses"]["warning"]

    zf = _zip(server, h, result)
    names = set(zf.namelist())
    for r in table["instances"]:  # one mask and one cut-out per chromosome
        mask = np.array(Image.open(io.BytesIO(zf.read(f"meta_1D/instances/chromosome_{r['id']:03d}_mask.png"))))
        cutout = np.array(Image.open(io.BytesIO(zf.read(f"meta_1D/instances/chromosome_{r['id']:03d}_cutout.png"))))
        assert (mask == 255).sum() == r["area"] and mask.shape == cutout.shape
        assert np.all(cutout[mask == 0] == 0) and np.all(cutout[mask == 255] > BG)
    assert len([n for n in names if n.endswith(("_mask.png", "_cutout.png"))]) == 2 * 4
    assert {
        "meta_1D/instances.json",
        "meta_1D/meta_1D_instance_labels.png",
        "meta_1D/meta_1D_labels.png",
        "meta_1D/meta_1D_instances.png",
    } <= names
    zipped = json.loads(zf.read("meta_1D/instances.json"))
    assert zipped["instances"] == [{k: v for k, v in r.items() if k != "colour"} for r in table["instances"]]
    rows = list(csv.DictReader(io.StringIO(zf.read("meta_1D/chromosomes.csv").decode())))
    assert [(int(r["id"]), r["status"], int(r["area_px"]), int(r["top"])) for r in rows] == [
        (r["id"], r["status"], r["area"], r["bbox"]["top"]) for r in table["instances"]
    ]

    layer = np.array(
        Image.open(io.BytesIO(server.client.get(result["slice_url"].format(k=0, kind="instances"), headers=h).content))
    )
    assert layer.shape == (*SHAPE, 4)
    assert np.all(layer[scene["overlap"]] == 255)  # overlap pixels: in two chromosomes, white
    assert np.all(layer[scene["grey"] == BG][:, 3] == 0)  # background transparent
    colour = records["whole"]["colour"]
    assert "#{:02x}{:02x}{:02x}".format(*layer[8, 20, :3]) == colour and layer[8, 20, 3] < 255  # fill, not outline
    assert layer[5, 20, 3] == 255  # its outline is opaque
    label = server.client.get(result["downloads"]["png"], headers=h)
    assert "label_class_indices.png" in label.headers["content-disposition"]  # not a picture: values 0, 1, 2
    semantic = np.array(Image.open(io.BytesIO(label.content)))
    assert semantic[scene["overlap"]].min() == 2 and semantic[scene["alone"]].max() == 1


def test_without_a_pair_model_crossings_are_split_by_their_arms_and_classes_pass_through(
    make_server, models, scene, monkeypatch, caplog
):
    from medseg.inference.instances import Instance

    record = Instance.record  # a karyotype classifier's keys on a record reach the table unchanged
    monkeypatch.setattr(
        Instance, "record", lambda self: {**record(self), "class": 1, "class_name": "chr1", "class_confidence": 0.75}
    )
    caplog.set_level("INFO", logger="medseg.server")
    server = _server(make_server, models, pair=False)
    h = server.user("alice")
    assert server.client.get("/api/models", headers=h).json()[0]["pair_model"] is None
    _drawn(server)
    result = _segment(server, h, scene["path"])
    info = result["instances"]
    # A and B by their arms, and the cluster of a bar crossed by two others at both overlaps
    assert info["n"] == 6 and info["counts"]["geometry"] == 2 and info["split"] == 2
    assert info["counts"]["no_pair_model"] == 0
    assert "no pair model" in info["note"] and "administrator" in info["note"] and "--pair-model" not in info["note"]
    assert info["pair_model"] is None
    assert any("--pair-model" in r.getMessage() for r in caplog.records)  # the operator's fix: in the server log
    assert "2 crossings split by their arms, 0 clusters kept whole" in info["text"]
    table = server.client.get(info["table_url"], headers=h).json()
    assert table["pair_model"] is None and table["pair_model_version"] is None
    assert {(r["class_name"], r["class_confidence"]) for r in table["instances"]} == {("chr1", 0.75)}
    assert len([n for n in _zip(server, h, result).namelist() if n.endswith("_mask.png")]) == 6


def test_real_models_without_patching(make_server, models, scene):
    """The tiny bias models as loaded: the semantic one calls every pixel chromosome, so the image is one instance."""
    server = _server(make_server, models)
    h = server.user("alice")
    info = _segment(server, h, scene["path"])["instances"]
    assert info["n"] == 1 and info["alone"] == 1
    (record,) = server.client.get(info["table_url"], headers=h).json()["instances"]
    assert record["area"] == SHAPE[0] * SHAPE[1]


def test_other_models_have_no_instances(server, phantom):
    h = server.user("alice")
    result = _segment(server, h, phantom["png"], model="chromo2d")
    assert result["instances"] is None and "instances" not in result["downloads"]
    rid = result["id"]
    assert server.client.get(f"/api/results/{rid}/instances", headers=h).status_code == 404
    assert server.client.get(f"/api/results/{rid}/download/instances", headers=h).status_code == 404
    assert server.client.get(f"/api/results/{rid}/slices/0/instances.png", headers=h).status_code == 404
    assert server.client.get("/api/models", headers=h).json()[0]["instances"] is False


def test_a_bad_pair_model_is_refused_at_start(tmp_path, models):
    semantic = models["semantic"]
    settings = dict(home=tmp_path / "home", models=[semantic], torch_threads=None, device="cpu")
    with pytest.raises(DataValidationError, match="not a pair model") as err:  # three classes, not four
        create_app(ServerSettings(**settings, pair_model=semantic), start_worker=False)
    assert str(semantic) in str(err.value)
    with pytest.raises(DataValidationError) as err:
        create_app(ServerSettings(**settings, pair_model=tmp_path / "nowhere"), start_worker=False)
    assert "nowhere" in str(err.value)
    with pytest.raises(DataValidationError, match="no --model segments background / chromosome / overlap"):
        create_app(
            ServerSettings(**{**settings, "models": [models["pair"]]}, pair_model=models["pair"]), start_worker=False
        )
    from medseg.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--model", str(semantic), "--pair-model", str(semantic), "--home", str(tmp_path / "cli-home")]
    )
    assert result.exit_code == 2 and "not a pair model" in result.output and "error:" in result.output


@pytest.mark.skipif(
    not SHARED_MFISH.is_dir(), reason=f"the real M-FISH set is not here ({SHARED_MFISH}, ../shared/data)"
)
def test_a_real_metaphase(make_server, models):
    """A published DAPI metaphase (LZW, palette TIFF) uploaded as it is; its label map stands in for the semantic
    model, so the instances are the label map's chromosome clusters."""
    from scipy import ndimage

    from medseg.data.mfish import find_metaphases, read_metaphase, semantic_labels

    m = find_metaphases(SHARED_MFISH)[0]
    _, karyo = read_metaphase(m)
    truth = semantic_labels(karyo)
    server = _server(make_server, models, pair=False)
    h = server.user("alice")
    registry = server.app.state.registry
    registry.predictor(registry.get("metaphase")).predict_proba = lambda x, boxes=None: _one_hot(truth[None], 3)
    info = _segment(server, h, m.dapi)["instances"]
    comps, n = ndimage.label(truth > 0, np.ones((3, 3), bool))
    big = int((np.bincount(comps.ravel())[1:] >= 30).sum())
    assert info["n"] == big and 20 <= big <= 80
    table = server.client.get(info["table_url"], headers=h).json()
    assert table["shape"] == list(truth.shape) and table["image"] == m.dapi.name


# ------------------------------------------------------------------------------ karyotype classes (issue 14, part 6)
KARYO_CANVAS = 64  # the tiny karyotyping model's canvas: the 60 px long chromosome A does not fit (64 - 2 x 4 margin)


@pytest.fixture(scope="module")
def karyotype_model(tmp_path_factory, constant_model) -> Path:
    """A tiny karyotyping model folder (25 classes: background, 1-22, X, Y); as loaded, X everywhere."""
    from medseg.data.mfish_karyotype import KARYOTYPE_CLASSES

    root = tmp_path_factory.mktemp("karyotype_server_model")
    path = constant_model(root / "karyo", list(KARYOTYPE_CLASSES), 23)
    meta = json.loads((path / "model.json").read_text())  # the canvas the cut-outs are placed on
    meta["preprocessing"]["size"] = [KARYO_CANVAS, KARYO_CANVAS]
    (path / "model.json").write_text(json.dumps(meta))
    return path


def _by_extent(x, boxes=None) -> np.ndarray:
    """Karyotype probabilities of (N, H, W) cut-outs: a chromosome taller than wide is an X, any other a 1 (0.8, and
    0.2 background, on every pixel)."""
    x = np.asarray(x)
    out = np.zeros((len(x), 25, *x.shape[1:]), np.float32)
    for k, cut in enumerate(x):
        rows, cols = np.flatnonzero((cut > 0).any(axis=1)), np.flatnonzero((cut > 0).any(axis=0))
        out[k, 0], out[k, 23 if rows[-1] - rows[0] > cols[-1] - cols[0] else 1] = 0.2, 0.8
    return out


def test_karyotype_model_classes_every_chromosome(make_server, models, karyotype_model, scene):
    server = make_server(
        models=[models["semantic"]],
        pair_model=models["pair"],
        karyotype_model=karyotype_model,
        karyotype_vote="majority",
    )
    h = server.user("alice")
    (offered,) = server.client.get("/api/models", headers=h).json()
    karyo = offered["karyotype_model"]
    assert karyo["version"].startswith("unet-") and len(karyo["version"]) == len("unet-") + 12
    assert karyo["vote"] == "majority" and karyo["version"] != offered["pair_model"]["version"]
    _drawn(server)
    registry = server.app.state.registry
    registry.predictor(registry.get("metaphase").karyotype).predict_proba = _by_extent
    result = _segment(server, h, scene["path"])

    info = result["instances"]
    assert info["n"] == 4 and info["karyotype_model"] == karyo == result["summary"]["model"]["karyotype_model"]
    # alone (6 x 40) and the cluster (24 x 55) lie, B (50 x 6) stands; A (6 x 60) is longer than the canvas allows
    assert info["class_counts"] == {"1": 2, "X": 1} and info["unclassified"] == 1
    assert info["classes_text"] == "classes found: 1 ×2, X ×1; 1 not classified"
    table = server.client.get(info["table_url"], headers=h).json()
    assert (table["karyotype_model"], table["karyotype_model_version"], table["karyotype_vote"]) == (
        karyo["name"],
        karyo["version"],
        "majority",
    )
    by_area = {r["area"]: r for r in table["instances"]}
    alone, a, b, cluster = (by_area[int(scene[k].sum())] for k in ("alone", "a", "b", "cluster"))
    for record, name in ((alone, "1"), (b, "X"), (cluster, "1")):
        assert (record["class"], record["class_name"]) == ({"1": 1, "X": 23}[name], name)
        assert record["class_confidence"] == 1.0 and "class_note" not in record  # majority: every pixel agrees
    assert a["class"] is None and a["class_name"] is None and a["class_confidence"] is None
    assert f"larger than the model's {KARYO_CANVAS} x {KARYO_CANVAS} canvas" in a["class_note"]
    zf = _zip(server, h, result)
    zipped = json.loads(zf.read("meta_1D/instances.json"))
    assert zipped["instances"] == [{k: v for k, v in r.items() if k != "colour"} for r in table["instances"]]
    assert zipped["karyotype_model_version"] == karyo["version"]
    # the karyogram on its own, the page's link beside the zip: the one in the zip
    assert info["karyogram"] is True and list(result["downloads"])[-2:] == ["instances", "karyogram"]
    got = server.client.get(result["downloads"]["karyogram"], headers=h)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].endswith('_karyogram.png"')
    assert got.content == zf.read("meta_1D/meta_1D_karyogram.png")
    assert Image.open(io.BytesIO(got.content)).size[0] > 100


def test_karyotype_model_loaded_by_the_worker_on_first_use(make_server, models, karyotype_model, scene):
    """The tiny karyotyping model as loaded (X everywhere, soft vote): the worker loads it for the first job."""
    server = make_server(models=[models["semantic"]], karyotype_model=karyotype_model)
    h = server.user("alice")
    _drawn(server)
    entry = server.app.state.registry.get("metaphase")
    assert entry.karyotype is not None and entry.karyotype._predictor is None
    info = _segment(server, h, scene["path"])["instances"]
    assert entry.karyotype._predictor is not None
    assert info["karyotype_model"]["vote"] == "soft" and info["pair_model"] is None
    # A and B split by their arms (no pair model), the cluster of three parted at its two overlaps; its long bar
    # (80 px) is too large for the tiny model's canvas
    assert info["n"] == 6 and info["class_counts"] == {"X": 5} and info["unclassified"] == 1
    records = server.client.get(info["table_url"], headers=h).json()["instances"]
    named = [r for r in records if r["class"] is not None]
    assert {r["class_name"] for r in named} == {"X"} and all(0.5 < r["class_confidence"] <= 1 for r in named)


def test_a_bad_karyotype_model_is_refused_at_start(tmp_path, models, karyotype_model):
    semantic = models["semantic"]
    settings = dict(home=tmp_path / "home", models=[semantic], torch_threads=None, device="cpu")
    with pytest.raises(DataValidationError, match="not a karyotyping model") as err:  # three classes, not 25
        create_app(ServerSettings(**settings, karyotype_model=semantic), start_worker=False)
    assert str(semantic) in str(err.value)
    with pytest.raises(DataValidationError, match="--karyotype-model is given, but no --model segments"):
        create_app(
            ServerSettings(**{**settings, "models": [models["pair"]]}, karyotype_model=karyotype_model),
            start_worker=False,
        )
    with pytest.raises(ValueError, match="--karyotype-vote takes soft or majority"):
        create_app(
            ServerSettings(**settings, karyotype_model=karyotype_model, karyotype_vote="mean"), start_worker=False
        )
    from medseg.cli import app

    result = CliRunner().invoke(
        app,
        ["serve", "--model", str(semantic), "--karyotype-model", str(semantic), "--home", str(tmp_path / "cli-home")],
    )
    assert result.exit_code == 2 and "not a karyotyping model" in result.output and "error:" in result.output
    assert f"error: {semantic}: not a karyotyping model" in result.output  # names the folder given
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--model",
            str(semantic),
            "--karyotype-model",
            str(karyotype_model),
            "--karyotype-vote",
            "mean",
            "--home",
            str(tmp_path / "cli-home"),
        ],
    )
    assert result.exit_code == 2 and "--karyotype-vote takes soft or majority" in result.output


def test_neighbouring_ids_get_distant_palette_colours():
    from medseg.inference.instances import instance_colours
    from medseg.server.metaphase import instance_lut

    for n in (1, 2, 7, 46, 60):
        lut, palette = instance_lut(n), instance_colours(n)
        assert (lut[0] == 0).all() and sorted(map(tuple, lut[1:])) == sorted(map(tuple, palette))  # each colour once
        index = [next(k for k, c in enumerate(palette) if (c == row).all()) for row in lut[1:]]
        if n >= 7:  # ids i and i + 1 (neighbours in raster order) are a third of the palette apart or more
            assert min(min(abs(a - b), n - abs(a - b)) for a, b in zip(index, index[1:], strict=False)) >= n // 3


STATIC = Path(__file__).resolve().parents[2] / "src" / "medseg" / "server" / "static"


def test_the_page_offers_the_chromosomes_first_and_the_karyogram_beside_them():
    """The metaphase page's downloads: the chromosomes zip first, the karyogram next (shown only where the result
    has one), the label as class indices; the upload help names metaphase images and TIFF."""
    html = (STATIC / "index.html").read_text()
    downloads = html[html.index('<div class="downloads">') :]
    order = [downloads.index(f'id="download-{k}"') for k in ("instances", "karyogram", "label", "summary")]
    assert order == sorted(order)
    assert re.search(r'id="download-karyogram"[^>]*hidden', html)
    js = (STATIC / "app.js").read_text()
    assert 'show($("download-karyogram"), Boolean(d.karyogram))' in js and "Label (PNG, class indices)" in js
    help_text = html[html.index('id="upload-file"') : html.index("</small>")]
    assert "metaphase image (TIFF" in help_text
