"""Whole volumes for the in-browser viewer: one manifest and two or three arrays per result, exact enough for
any window, cached for good (ETag + immutable, 304 on revalidation), and nobody else's."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.server import volumes
from medseg.server.slices import CT_WINDOW


def _done(server, headers, path, **kw) -> dict:
    r = server.upload(headers, path, **kw)
    assert r.status_code == 201, r.text
    assert server.run_jobs() == 1
    study = server.client.get(f"/api/studies/{r.json()['id']}", headers=headers).json()
    assert study["status"] == "done", study
    return study["results"][0]


def _array(entry: dict, body: bytes, shape) -> np.ndarray:
    return np.frombuffer(body, np.dtype(entry["dtype"]).newbyteorder("<")).reshape(shape)


def test_manifest_and_arrays_give_back_the_study(server, phantom):
    h = server.user("alice")
    result = _done(server, h, phantom["nifti"], reference=phantom["nifti_label"])
    r = server.client.get(result["volume_url"], headers=h)
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"] and r.headers["etag"]
    manifest = r.json()
    shape = manifest["shape"]
    assert shape == list(phantom["image"].array.shape) and manifest["version"] == volumes.FORMAT_VERSION

    image = manifest["image"]
    got = server.client.get(image["url"], headers={**h, "Accept-Encoding": "gzip"})
    assert got.headers["content-encoding"] == "gzip" and "immutable" in got.headers["cache-control"]
    values = image["offset"] + image["scale"] * _array(image, got.content, shape).astype(np.float64)
    np.testing.assert_array_equal(values, phantom["image"].array)  # integer HU: stored exactly
    assert image["window"]["low"] == CT_WINDOW["low"] and image["window"]["high"] == CT_WINDOW["high"]

    label = server.client.get(manifest["label"]["url"], headers=h)
    assert np.all(_array(manifest["label"], label.content, shape) == 1)  # the "everything" model
    # a one-structure sigmoid model: bit-packed, its structure in channel 0's colour as in the slice PNGs
    assert manifest["multilabel"] and manifest["label"]["channels"] == [[230, 40, 40]]
    reference = server.client.get(manifest["reference"]["url"], headers=h)
    np.testing.assert_array_equal(_array(manifest["reference"], reference.content, shape), phantom["label"].array)


def test_revalidation_answers_304_and_clients_without_gzip_get_plain_bytes(server, phantom):
    h = server.user("alice")
    result = _done(server, h, phantom["nifti"])
    manifest = server.client.get(result["volume_url"], headers=h)
    again = server.client.get(result["volume_url"], headers={**h, "If-None-Match": manifest.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == manifest.headers["etag"]

    url = manifest.json()["label"]["url"]
    zipped = server.client.get(url, headers={**h, "Accept-Encoding": "gzip"})
    assert (
        server.client.get(
            url, headers={**h, "Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
        ).status_code
        == 304
    )
    plain = server.client.get(url, headers={**h, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != zipped.headers["etag"]
    assert len(plain.content) == int(np.prod(manifest.json()["shape"]))  # uint8, one byte a voxel

    png = result["slice_url"].format(k=3, kind="image")  # the per-slice API keeps the same caching
    first = server.client.get(png, headers=h)
    assert "immutable" in first.headers["cache-control"]
    assert server.client.get(png, headers={**h, "If-None-Match": first.headers["etag"]}).status_code == 304
    assert server.client.get(png, headers={**h, "If-None-Match": '"other"'}).status_code == 200


def test_bad_versions_kinds_and_other_users(server, phantom):
    alice, bob = server.user("alice"), server.user("bob")
    result = _done(server, alice, phantom["nifti"])
    url = result["volume_url"]
    assert url.endswith(f"/v{volumes.FORMAT_VERSION}")
    for path, status in [
        (url.replace(f"/v{volumes.FORMAT_VERSION}", "/v999"), 404),
        (url + "/other", 404),
        (url + "/reference", 404),
    ]:  # no reference uploaded
        r = server.client.get(path, headers=alice)
        assert r.status_code == status and r.json()["detail"], path
    for path in (url, url + "/image", url + "/label"):
        assert server.client.get(path, headers=bob).status_code == 404
        assert server.client.get(path).status_code == 401


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_wide_images_are_quantised_over_their_range(dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(0, 1, (2, 8, 8)) * (1e6 if dtype == np.int32 else 1)).astype(dtype)
    stored, entry = volumes.encode_image(array, {"kind": "x", "low": 0.0, "high": 1.0})
    assert stored.dtype == np.uint16 and entry["dtype"] == "uint16"
    back = entry["offset"] + entry["scale"] * stored.astype(np.float64)
    assert np.abs(back - array).max() <= entry["scale"] / 2 + 1e-9 * np.abs(array).max()


def test_multilabel_maps_give_their_structures_colours_not_a_lut():
    labels = np.array([[[0, 1, 2, 3]]], np.uint8)
    stored, entry = volumes.encode_labels(labels, 0, n_channels=2)
    assert "lut" not in entry and len(entry["channels"]) == 2 and stored.dtype == np.uint8
    stored, entry = volumes.encode_labels(np.array([[[0, 300]]]), 0, n_channels=0)
    assert stored.dtype == np.uint16 and entry["lut"][0][3] == 0 and len(entry["lut"]) == 301
