"""The CT phantom (demo data): anatomy in HU, a CTV-like label inside the body, seed variation, and the
same arrays whichever format it is written in."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medseg.data.phantom import DEMO_NOTE, HU, SMALL_SHAPE, make_phantom, phantom_structures, write_phantom
from medseg.formats.volume_files import read_volume


@pytest.fixture(scope="module")
def small():
    return make_phantom(SMALL_SHAPE, (3.0, 1.0, 1.0), seed=0)


def test_shapes_types_and_geometry(small):
    img, lab = small
    assert img.shape == lab.shape == (16, 64, 64)
    assert img.array.dtype == np.int16 and lab.array.dtype == np.uint8
    assert img.spacing == lab.spacing == (3.0, 1.0, 1.0) and img.modality == "CT"
    assert img.meta["demo"] is True and img.meta["description"] == DEMO_NOTE
    assert set(np.unique(lab.array)) == {0, 1}
    # the grid is centred in x and y: origin = −(64 − 1)/2 · 1 mm = −31.5 mm
    assert img.origin == (-31.5, -31.5, 0.0)


def test_full_size_default():
    img, lab = make_phantom(seed=3)
    assert img.shape == (72, 256, 256) and img.spacing == (3.0, 1.0, 1.0)
    assert 1000 < lab.array.sum() < 0.05 * lab.array.size


def test_hu_per_structure(small):
    img, _ = small
    regions = phantom_structures(img.shape, seed=0, exclusive=True)
    for name, expected in [
        ("air", "air"),
        ("body", "soft_tissue"),
        ("fat", "fat"),
        ("lung", "lung"),
        ("bone_cortex", "bone_cortex"),
        ("bone_marrow", "bone_marrow"),
        ("bladder", "bladder"),
        ("rectum", "rectum"),
        ("target", "target"),
    ]:
        values = img.array[regions[name]].astype(float)
        assert values.size > 0, name
        # noise is Gaussian with σ = 8 HU: the median within 3 HU, all values within 6σ = 48 HU
        # (air is clipped at −1024, 24 HU below −1000)
        assert abs(np.median(values) - HU[expected]) <= 3, name
        assert np.abs(values - HU[expected]).max() <= 48, name
    bone = img.array[regions["bone_cortex"] | regions["bone_marrow"]]
    assert bone.min() >= 700 and bone.max() <= 1200
    assert np.median(img.array[regions["lung"]]) == pytest.approx(-800, abs=3)


def test_label_is_the_target_with_margin_inside_the_body(small):
    img, lab = small
    s = phantom_structures(img.shape, seed=0)
    label = lab.array.astype(bool)
    gtv = s["gtv"]
    assert gtv.any() and np.all(label[gtv])  # the target is labelled
    assert not np.any(label & ~s["body"]) and not np.any(label & s["fat"])
    assert not np.any(label & (s["bone_cortex"] | s["bone_marrow"] | s["bladder"] | s["rectum"]))
    # margin: 10 mm · (64 · 1 mm) / 256 mm = 2.5 mm; every label voxel lies within 2.5 mm of the target,
    # and the label is larger than the target
    margin = img.meta["margin_mm"]
    assert margin == pytest.approx(2.5)
    dist = ndimage.distance_transform_edt(~gtv, sampling=img.spacing)
    assert dist[label].max() <= margin + 1e-9
    assert label.sum() > gtv.sum()


def test_seed_moves_the_target_and_is_reproducible():
    _, a = make_phantom(SMALL_SHAPE, seed=0)
    _, a2 = make_phantom(SMALL_SHAPE, seed=0)
    np.testing.assert_array_equal(a.array, a2.array)
    _, b = make_phantom(SMALL_SHAPE, seed=1)
    ca, cb = ndimage.center_of_mass(a.array), ndimage.center_of_mass(b.array)
    # seed 0: centre of mass ≈ (6.10, 31.40, 32.63) voxels, 392 voxels; seed 1: ≈ (5.55, 32.84, 32.49), 322
    assert np.linalg.norm(np.subtract(ca, cb)) > 1.0
    assert abs(int(a.array.sum()) - int(b.array.sum())) > 30


def test_write_phantom_same_arrays_in_every_format(tmp_path):
    cases = write_phantom(tmp_path, n=2, shape=SMALL_SHAPE, seed=5, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["description"] == DEMO_NOTE and manifest["demo"] is True and manifest["clinical"] is False
    assert [c["seed"] for c in manifest["cases"]] == [5, 6] and manifest["cases"] == cases
    for case in cases:
        f = case["files"]
        img, lab = make_phantom(SMALL_SHAPE, seed=case["seed"])
        images = [
            read_volume(tmp_path / f["dicom"], require_modality="CT"),
            read_volume(tmp_path / f["nifti_image"]),
            read_volume(tmp_path / f["hdf5"]),
        ]
        labels = [
            read_volume(tmp_path / f["dicom_label"]),
            read_volume(tmp_path / f["nifti_label"]),
            read_volume(tmp_path / f["hdf5"], key="label"),
        ]
        for v in images:
            np.testing.assert_array_equal(v.array, img.array)
            np.testing.assert_allclose(v.affine_lps(), img.affine_lps(), atol=1e-4)
        for v in labels:
            assert v.array.dtype == np.uint8
            np.testing.assert_array_equal(v.array, lab.array)
        assert case["target_voxels"] == int(lab.array.sum())
    assert not list(tmp_path.rglob(".*"))  # no temporary files left
