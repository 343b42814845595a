"""Multi-label 2D models (the UW-Madison GI-tract organs, which may overlap) on the server: a zip of slice PNGs or a
volume is segmented slice by slice with the model's 2D feeding (resize, 2.5D neighbours), every structure is kept
(bit-packed, never collapsed to one label per pixel), each is counted on its own, drawn in its own layer, listed with
its colour, and exported so that reading the files back gives the same masks."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medseg.artifact import model_kwargs, model_meta, save_model
from medseg.config import load_config
from medseg.inference.predictor import Predictor
from medseg.models import build_model
from medseg.palette import channel_colours, channel_hex
from medseg.server import channels, slices
from medseg.server.registry import takes_stacks

ORGANS = ["large_bowel", "small_bowel", "stomach"]
GRID = 32


def _save_gi(directory: Path, context: int) -> Path:
    cfg = load_config(
        overrides={
            "name": directory.name,
            "task": {
                "mode": "multilabel",
                "class_names": ORGANS,
                "background": 0,
                "derived": None,
                "primary_metric": "stomach",
                "spatial_dims": 2,
            },
            "data": {
                "size": [GRID, GRID],
                "resize": True,
                "normalize": "minmax",
                "context_slices": context,
                "context_stride": 2,
            },
            "model": {"name": "unet", "depth": 2, "base_channels": 4},
        }
    )
    torch.manual_seed(0)
    return save_model(directory, build_model("unet", **model_kwargs(cfg)), model_meta(cfg))


@pytest.fixture(scope="session")
def gi_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gi-models")
    return {"gi2d": _save_gi(root / "gi2d", 0), "gi25d": _save_gi(root / "gi25d", 1)}


@pytest.fixture
def gi_server(make_server, gi_models):
    return make_server(models=[gi_models["gi2d"], gi_models["gi25d"], "ct_full", "chromo"])


def expected_masks(h: int, w: int) -> np.ndarray:
    """What the fake model finds on its grid: large bowel rows 4-15, small bowel rows 10-23 (overlap rows 10-15),
    stomach rows 0-5 × columns 26-29 (overlapping the large bowel in rows 4-5)."""
    m = np.zeros((3, h, w), bool)
    m[0, 4:16, :] = True
    m[1, 10:24, :] = True
    m[2, 0:6, 26:30] = True
    return m


@pytest.fixture
def fake_model(monkeypatch):
    """Every Predictor returns :func:`expected_masks` as probabilities; the inputs it got are recorded."""
    calls: list[np.ndarray] = []

    def predict_proba(self, images, boxes=None):
        x = np.asarray(images, dtype=np.float32)
        calls.append(x.copy())
        masks = expected_masks(*x.shape[-2:])
        return np.repeat(np.where(masks, 0.9, 0.1).astype(np.float32)[None], len(x), axis=0)

    monkeypatch.setattr(Predictor, "predict_proba", predict_proba)
    return calls


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def slice_image(value: int, h: int = GRID, w: int = GRID) -> np.ndarray:
    """A 16-bit slice: ``value`` plus a small ramp, so every slice is told apart by its level."""
    return (value + np.arange(h * w).reshape(h, w) % 7).astype(np.uint16)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def competition_zip(n: int = 4, h: int = GRID, w: int = GRID) -> bytes:
    """Slices named as in the competition (slice_SSSS_W_H_pw_ph.png), stored out of order; slice s has level
    1000·s."""
    order = [3, 1, 4, 2, 5, 6][:n]
    return zip_bytes(
        {f"case7_day0/scans/slice_{s:04d}_{w}_{h}_1.50_1.50.png": png_bytes(slice_image(1000 * s, h, w)) for s in order}
    )


def done_result(server, headers, name: str, content: bytes, model: str) -> tuple[dict, dict]:
    r = server.upload_bytes(headers, name, content, model=model)
    assert r.status_code == 201, r.text
    assert server.run_jobs() == 1
    study = server.client.get(f"/api/studies/{r.json()['id']}", headers=headers).json()
    assert study["status"] == "done", study["results"][0]["error"]
    return study, study["results"][0]


def get_png(server, headers, url: str) -> np.ndarray:
    r = server.client.get(url, headers=headers)
    assert r.status_code == 200, (url, r.text)
    return np.asarray(Image.open(io.BytesIO(r.content)))


def read_seg_nrrd(content: bytes) -> tuple[dict, np.ndarray]:
    """A .seg.nrrd as written by the server: its header fields and the layers (list, z, y, x)."""
    head, data = content.split(b"\n\n", 1)
    lines = head.decode().splitlines()
    assert lines[0] == "NRRD0004"
    fields = {}
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        key, sep, value = line.partition(":=")
        if not sep:
            key, _, value = line.partition(": ")
        fields[key] = value
    n, w, h, d = (int(v) for v in fields["sizes"].split())
    layers = np.frombuffer(gzip.decompress(data), np.uint8).reshape(d, h, w, n)
    return fields, np.moveaxis(layers, -1, 0)


# ------------------------------------------------------------------------------------------------ the encoding


def test_bits_keep_every_structure():
    masks = expected_masks(GRID, GRID)
    labels = channels.pack(masks)
    assert labels.dtype == np.uint8 and labels[12, 5] == 0b011 and labels[5, 27] == 0b101 and labels[30, 0] == 0
    assert np.array_equal(channels.unpack(labels, 3), masks)
    assert channels.overlap_count(labels) == 6 * GRID + 2 * 4
    assert channels.structure_mask(labels, 2, multilabel=True).sum() == masks[1].sum()  # names[2] = channel 1
    assert channels.file_value(3, True) == 4 and channels.file_value(3, False) == 3
    with pytest.raises(RuntimeError, match="at most 8"):
        channels.pack(np.zeros((9, 2, 2), bool))


def test_layers_draw_fill_outline_and_stripes():
    labels = channels.pack(expected_masks(GRID, GRID))
    red, green = channel_colours(2)
    layer = slices.channel_rgba(channels.channel_mask(labels, 0), red)
    assert layer[4, 5, 3] == 255 and layer[8, 5, 3] == slices.FILL_ALPHA and layer[30, 5, 3] == 0  # outline, fill
    assert layer[8, 5, :3].tolist() == red.tolist()
    composite = slices.multilabel_rgba(labels, 3)
    overlap = composite[10:16, :, :3].reshape(-1, 3)  # large + small bowel: striped in both colours
    assert {tuple(c) for c in overlap.tolist()} == {tuple(red.tolist()), tuple(green.tolist())}
    assert np.all(composite[labels > 0, 3] == 255) and np.all(composite[labels == 0, 3] == 0)
    one = slices.multilabel_rgba(np.ones((3, 3), np.uint8), 1)  # one structure: plain colour as before
    assert np.all(one[..., :3] == red) and np.all(one[..., 3] == 255)


def test_which_models_take_stacks():
    assert takes_stacks({"task": {"mode": "multilabel", "spatial_dims": 2}})
    assert takes_stacks({"task": {"mode": "multiclass"}, "preprocessing": {"context_slices": 1}})
    assert not takes_stacks({"task": {"mode": "multiclass"}, "preprocessing": {"context_slices": 0}})
    assert not takes_stacks({"task": {"mode": "multilabel", "spatial_dims": 3}})
    assert not takes_stacks({"task": {"mode": "multilabel"}, "preprocessing": {"slice_stacks": False}})


# ------------------------------------------------------------------------------------------------ the server


def test_models_list_their_structures(gi_server):
    h = gi_server.user("alice")
    models = {m["id"]: m for m in gi_server.client.get("/api/models", headers=h).json()}
    gi = models["gi2d"]
    assert gi["mode"] == "multilabel" and gi["stacks"] and gi["spatial_dims"] == 2
    assert gi["channels"] == [
        {"channel": c, "name": n, "value": 1 << c, "colour": channel_hex(c)} for c, n in enumerate(ORGANS)
    ]
    assert len({c["colour"] for c in gi["channels"]}) == 3
    assert models["chromo2d"]["channels"] == [] and not models["chromo2d"]["stacks"]
    assert [c["name"] for c in models["ct_full"]["channels"]] == ["ctv"] and not models["ct_full"]["stacks"]


def test_zip_of_png_slices_keeps_overlapping_structures(gi_server, fake_model, tmp_path):
    h = gi_server.user("alice")
    study, result = done_result(gi_server, h, "scan.zip", competition_zip(4), "gi2d")
    assert study["kind"] == "3d" and study["input_format"] == "slices" and study["shape"] == [4, GRID, GRID]
    assert study["spacing"] == [None, 1.5, 1.5]  # pixel spacing from the names, thickness unknown
    assert all(x.shape == (4, GRID, GRID) for x in fake_model)  # one grey slice per input, on the model's grid
    assert any("slice thickness" in w for w in result["warnings"])

    # the API names every structure with its colour, value in the files and own layer
    assert result["multilabel"] and [c["name"] for c in result["channels"]] == ORGANS
    assert [(c["value"], c["colour"], c["layer"]) for c in result["channels"]] == [
        (1 << c, channel_hex(c), f"label-{c}") for c in range(3)
    ]
    assert [(c["value"], c["colour"]) for c in result["classes"]] == [
        (1, channel_hex(0)),
        (2, channel_hex(1)),
        (4, channel_hex(2)),
    ]
    assert set(result["downloads"]) == {"png-slices", "nifti", "slicer-seg", "summary.json", "summary.csv"}

    # every structure counted on its own: the overlap pixels count for both
    masks = expected_masks(GRID, GRID)
    summary = result["summary"]
    assert summary["label_encoding"]["kind"] == "bits"
    rows = {c["name"]: c for c in summary["classes"]}
    for c, organ in enumerate(ORGANS):
        assert rows[organ]["voxels"] == 4 * int(masks[c].sum())
        assert rows[organ]["area_mm2"] == pytest.approx(rows[organ]["voxels"] * 1.5 * 1.5)
        assert rows[organ]["volume_ml"] is None
    assert summary["overlap"]["count"] == 4 * (6 * GRID + 2 * 4)
    assert sum(r["voxels"] for r in rows.values()) == 4 * int(masks.any(0).sum()) + summary["overlap"]["count"]

    csv_rows = gi_server.client.get(result["downloads"]["summary.csv"], headers=h).text.splitlines()
    assert csv_rows[0] == "value,name,voxels,volume_ml,area_mm2"
    assert [row.split(",")[:2] for row in csv_rows[1:]] == [
        ["1", "large_bowel"],
        ["2", "small_bowel"],
        ["4", "stomach"],
    ]

    # the exports read back give the same masks, with the overlap in two structures
    z = zipfile.ZipFile(io.BytesIO(gi_server.client.get(result["downloads"]["png-slices"], headers=h).content))
    assert z.namelist() == [f"slice_{s:04d}_{GRID}_{GRID}_1.50_1.50.png" for s in (1, 2, 3, 4)]  # slice order
    for name in z.namelist():
        label = np.asarray(Image.open(z.open(name)))
        assert np.array_equal(channels.unpack(label, 3), masks)
        assert label[12, 5] == 3 and label[5, 27] == 5
    out = tmp_path / "label.nii.gz"
    out.write_bytes(gi_server.client.get(result["downloads"]["nifti"], headers=h).content)
    data = np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0)
    assert data.shape == (4, GRID, GRID) and all(np.array_equal(channels.unpack(s, 3), masks) for s in data)
    fields, layers = read_seg_nrrd(gi_server.client.get(result["downloads"]["slicer-seg"], headers=h).content)
    assert [fields[f"Segment{c}_Name"] for c in range(3)] == ORGANS
    assert [int(fields[f"Segment{c}_Layer"]) for c in range(3)] == [0, 1, 2]
    assert fields["kinds"] == "list domain domain domain"
    assert all(np.array_equal(layers[c].astype(bool), np.broadcast_to(masks[c], (4, GRID, GRID))) for c in range(3))

    # the viewer's layers: one per structure, both colours where two overlap
    url = result["slice_url"]
    image_means = [get_png(gi_server, h, url.format(k=k, kind="image")).mean() for k in range(4)]
    assert image_means == sorted(image_means)  # ordered by the slice number, not the zip's order
    red, green, blue = (np.array(c) for c in channel_colours(3))
    first = get_png(gi_server, h, url.format(k=0, kind="label-0"))
    second = get_png(gi_server, h, url.format(k=0, kind="label-1"))
    third = get_png(gi_server, h, url.format(k=0, kind="label-2"))
    assert first[12, 5, 3] > 0 and second[12, 5, 3] > 0 and third[12, 5, 3] == 0
    assert first[12, 5, :3].tolist() == red.tolist() and second[12, 5, :3].tolist() == green.tolist()
    assert third[5, 27, :3].tolist() == blue.tolist() and first[5, 27, 3] > 0
    combined = get_png(gi_server, h, url.format(k=0, kind="label"))
    assert combined.shape == (GRID, GRID, 4) and combined[30, 0, 3] == 0 and combined[12, 5, 3] == 255
    assert gi_server.client.get(url.format(k=0, kind="label-3"), headers=h).status_code == 404


def test_25d_model_gets_neighbouring_slices_and_sizes_come_back(gi_server, fake_model):
    """Natural order of other names (scan2 before scan10), each slice with its neighbours 2 slices away as
    channels (clamped at the ends), resized to the model's 32 × 32 and the result back to 40 × 48."""
    h = gi_server.user("alice")
    numbers = [10, 2, 1, 3, 4]  # slice k of the natural order has level 1000·(k + 1)
    level = {n: 1000 * (k + 1) for k, n in enumerate(sorted(numbers))}
    content = zip_bytes({f"scan{n}.png": png_bytes(np.full((40, 48), level[n], np.uint16)) for n in numbers})
    study, result = done_result(gi_server, h, "scan.zip", content, "gi25d")
    assert study["shape"] == [5, 40, 48] and study["spacing"] is None
    assert any("pixel spacing" in w for w in result["warnings"])
    [x] = fake_model
    assert x.shape == (5, 3, GRID, GRID)  # (N, 2k + 1, H, W) on the model's grid
    slice_of = np.round(x[:, :, 0, 0] * 65535 / 1000).astype(int) - 1  # which slice fills each channel
    assert slice_of.tolist() == [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 4], [2, 4, 4]]
    label = get_png(gi_server, h, result["slice_url"].format(k=0, kind="label-0"))
    assert label.shape == (40, 48, 4)
    rows = {c["name"]: c for c in result["summary"]["classes"]}
    assert rows["small_bowel"]["area_mm2"] is None and rows["small_bowel"]["voxels"] > 0


def test_untrained_25d_model_runs_on_a_slice_zip(gi_server):
    h = gi_server.user("alice")
    _, result = done_result(gi_server, h, "scan.zip", competition_zip(3, 40, 36), "gi25d")
    assert result["n_slices"] == 3 and result["summary"]["shape"] == [3, 40, 36]


def test_one_slice_png(gi_server, fake_model, tmp_path):
    h = gi_server.user("alice")
    reference = tmp_path / "reference.png"  # in the results' own bit coding: large + small bowel, no stomach
    reference.write_bytes(png_bytes(channels.pack(expected_masks(GRID, GRID)[:2])))
    image = tmp_path / "slice.png"
    image.write_bytes(png_bytes(slice_image(5000)))
    r = gi_server.upload(h, image, model="gi2d", reference=reference)
    assert r.status_code == 201, r.text
    assert gi_server.run_jobs() == 1
    result = gi_server.client.get(f"/api/studies/{r.json()['id']}", headers=h).json()["results"][0]
    assert result["status"] == "done", result["error"]
    assert [c["dice"] for c in result["summary"]["classes"]] == [1, 1, 0]
    assert set(result["downloads"]) == {"png", "summary.json", "summary.csv"}
    label = get_png(gi_server, h, result["downloads"]["png"])
    assert np.array_equal(channels.unpack(label, 3), expected_masks(GRID, GRID))
    rows = [c["pixels"] for c in result["summary"]["classes"]]
    assert rows == [int(m.sum()) for m in expected_masks(GRID, GRID)]
    assert result["summary"]["overlap"] == {
        "count": 6 * GRID + 8,
        "unit": "pixels",
        "text": result["summary"]["overlap"]["text"],
    }


def test_nifti_volume_for_a_slice_model_and_rerun(gi_server, fake_model, phantom, tmp_path):
    from medseg.formats.volume_files import write_nifti

    h = gi_server.user("alice")
    truth = np.repeat(channels.pack(expected_masks(32, 32))[None], 8, axis=0)
    truth[:4] &= 0b011  # the reference has no stomach in the first half: Dice < 1 there only
    reference = write_nifti(phantom["image"].with_array(truth), tmp_path / "ref.nii.gz", label=True)
    r = gi_server.upload(h, phantom["nifti"], model="gi2d", reference=reference)
    assert r.status_code == 201, r.text
    gi_server.run_jobs()
    study = gi_server.client.get(f"/api/studies/{r.json()['id']}", headers=h).json()
    result = study["results"][0]
    assert result["status"] == "done", result["error"]
    dice = {c["name"]: c["dice"] for c in result["summary"]["classes"]}
    assert dice["large_bowel"] == 1 and dice["small_bowel"] == 1 and dice["stomach"] == pytest.approx(2 * 4 / 12)
    ref_slice = get_png(gi_server, h, result["slice_url"].format(k=0, kind="reference"))
    assert ref_slice[12, 5, 3] == 255 and ref_slice[30, 0, 3] == 0
    assert study["kind"] == "3d" and study["shape"] == [8, 32, 32]
    assert set(result["downloads"]) == {"nifti", "slicer-seg", "summary.json", "summary.csv"}
    assert len(fake_model) == 1 and fake_model[0].shape == (8, 32, 32)
    out = tmp_path / "label.nii.gz"
    out.write_bytes(gi_server.client.get(result["downloads"]["nifti"], headers=h).content)
    written, source = nib.load(str(out)), nib.load(str(phantom["nifti"]))
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    data = np.asarray(written.dataobj).transpose(2, 1, 0)
    assert all(np.array_equal(channels.unpack(s, 3), expected_masks(32, 32)) for s in data)
    voxel_ml = float(np.prod(phantom["image"].spacing)) / 1000
    large = result["summary"]["classes"][0]
    assert large["voxels"] == 8 * 12 * 32 and large["volume_ml"] == pytest.approx(large["voxels"] * voxel_ml)
    fields, _ = read_seg_nrrd(gi_server.client.get(result["downloads"]["slicer-seg"], headers=h).content)
    spacing = [float(v) for v in fields["space directions"].split(") (")[-1].strip("()").split(",")]
    assert np.linalg.norm(spacing) == pytest.approx(phantom["image"].spacing[0])
    # the same volume re-run with a 3D model; a model of single 2D images is refused
    r = gi_server.client.post(f"/api/studies/{study['id']}/rerun", headers=h, json={"model": "ct_full"})
    assert r.status_code == 201
    r = gi_server.client.post(f"/api/studies/{study['id']}/rerun", headers=h, json={"model": "chromo2d"})
    assert r.status_code == 422 and "segments 2D images one at a time" in r.json()["detail"]


def test_dicom_seg_has_one_segment_per_structure_and_keeps_overlaps(gi_server, fake_model, phantom, tmp_path):
    import highdicom as hd

    h = gi_server.user("alice")
    _, result = done_result(gi_server, h, "series.zip", phantom["dicom_zip"].read_bytes(), "gi2d")
    assert set(result["downloads"]) == {"nifti", "dicom-seg", "slicer-seg", "summary.json", "summary.csv"}
    out = tmp_path / "seg.dcm"
    out.write_bytes(gi_server.client.get(result["downloads"]["dicom-seg"], headers=h).content)
    seg = hd.seg.segread(out)
    assert seg.get_segment_numbers() == [1, 2, 3]
    assert [seg.get_segment_description(n).SegmentLabel for n in (1, 2, 3)] == ORGANS
    volume = seg.get_volume(segment_numbers=[1, 2, 3], combine_segments=False).array  # (D, H, W, segments)
    masks = expected_masks(32, 32)
    for k in range(volume.shape[0]):
        assert np.array_equal(np.moveaxis(volume[k], -1, 0).astype(bool), masks)
    assert volume[0, 12, 5].tolist() == [1, 1, 0]  # an overlap pixel in both segments


BAD_ZIPS = {
    "mixed sizes": (
        lambda: zip_bytes({"a1.png": png_bytes(slice_image(1)), "a2.png": png_bytes(slice_image(2, 40, 48))}),
        "gi2d",
        422,
        "'a2.png' is 48×40 pixels, slice 'a1.png' 32×32: all slices of one scan must be the same size",
    ),
    "a text file": (
        lambda: zip_bytes(
            {"a1.png": png_bytes(slice_image(1)), "a2.png": png_bytes(slice_image(2)), "notes.txt": b"hello"}
        ),
        "gi2d",
        422,
        "zip member 'notes.txt' is not a slice image",
    ),
    "a broken PNG": (
        lambda: zip_bytes({"a1.png": png_bytes(slice_image(1)), "a2.png": b"not a png" * 10}),
        "gi2d",
        422,
        "slice 'a2.png': cannot be read",
    ),
    "a wrong declared size": (
        lambda: zip_bytes({"slice_0001_40_40_1.50_1.50.png": png_bytes(slice_image(1))}),
        "gi2d",
        422,
        "is 32×32 pixels, its name declares 40×40",
    ),
    "two scans": (
        lambda: zip_bytes({f"{d}/slice_0001_32_32_1.50_1.50.png": png_bytes(slice_image(1)) for d in ("day1", "day2")}),
        "gi2d",
        422,
        "slice number 0001 appears twice",
    ),
    "mixed bit depth": (
        lambda: zip_bytes({"a1.png": png_bytes(slice_image(1)), "a2.png": png_bytes(np.zeros((32, 32), np.uint8))}),
        "gi2d",
        422,
        "holds 8-bit pixels, slice 'a1.png' 16-bit",
    ),
    "path traversal": (lambda: zip_bytes({"../a1.png": png_bytes(slice_image(1))}), "gi2d", 422, "path traversal"),
    "not a zip": (lambda: b"PK\x03\x04 truncated", "gi2d", 422, "not a readable zip"),
    "a model of single images": (lambda: competition_zip(2), "chromo2d", 422, "which segments 2D images one at a time"),
    "a 3D model": (lambda: competition_zip(2), "ct_full", 422, "a zip of 2D slice images cannot be segmented"),
}


@pytest.mark.parametrize("case", list(BAD_ZIPS))
def test_bad_slice_zips_are_refused_with_file_and_problem(gi_server, case):
    make, model, status, words = BAD_ZIPS[case]
    h = gi_server.user("alice")
    r = gi_server.upload_bytes(h, "scan.zip", make(), model=model)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["file"] == "scan.zip" and body["detail"].startswith("scan.zip: ") and words in body["detail"], body
    assert str(gi_server.settings.root) not in body["detail"]
    gi_server.assert_nothing_stored()


def test_slice_zip_voxel_limit_from_the_headers(gi_server):
    gi_server.settings.max_voxels = 3 * GRID * GRID
    h = gi_server.user("alice")
    r = gi_server.upload_bytes(h, "scan.zip", competition_zip(4), model="gi2d")
    assert r.status_code == 422 and "the stack of 4 slices of 4,096 voxels" in r.json()["detail"], r.text
    gi_server.assert_nothing_stored()
