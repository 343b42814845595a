"""DICOM series, NIfTI and HDF5 readers/writers keep voxel values and geometry; bad series are refused
with the file named; ``convert_series`` converts in parallel and reports timings."""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg.errors import DataValidationError
from medseg.formats.volume import Volume
from medseg.formats.volume_files import (
    convert_series,
    read_dicom_series,
    read_hdf5_volume,
    read_nifti,
    read_volume,
    run_convert,
    volume_format,
    write_dicom_series,
    write_hdf5_volume,
    write_label_like,
    write_nifti,
    write_volume,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


def _oblique_direction() -> np.ndarray:
    """A rotation of 10° about z then 5° about x: columns are the x, y, z axes."""
    a, b = np.radians(10), np.radians(5)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ rz


def _volume(shape=(6, 10, 12), seed=0, **kw) -> Volume:
    rng = np.random.default_rng(seed)
    array = rng.integers(-1024, 1500, shape).astype(np.int16)
    geo = {
        "spacing": (2.5, 0.7, 0.8),
        "origin": (-100.25, -50.5, 33.75),
        "direction": _oblique_direction(),
        "modality": "CT",
    }
    geo.update(kw)
    return Volume(array, **geo)


def _hand_slice(
    path: Path,
    raw: np.ndarray,
    position,
    *,
    series_uid,
    orientation=(1, 0, 0, 0, 1, 0),
    spacing=(0.7, 0.8),
    slope=1.0,
    intercept=0.0,
    instance=1,
    modality="CT",
    pixel_data=True,
    transfer_syntax=ExplicitVRLittleEndian,
):
    """One CT slice written by hand with pydicom (not by the writer under test)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CT, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "T"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 2.5
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope}", f"{intercept}"
    if pixel_data:
        ds.PixelData = raw.astype("<u2").tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([raw.astype("<u2").tobytes()])
    ds.save_as(path, enforce_file_format=True)


def _hand_series(
    folder: Path,
    n=8,
    *,
    rows=5,
    cols=6,
    slope=2.0,
    intercept=-1024.0,
    dz=2.5,
    z0=-40.0,
    orientation=(1, 0, 0, 0, 1, 0),
    series_uid="1.2.3.4",
    skip=(),
    names=None,
    **kw,
):
    """n slices whose raw value is 100·k + pixel index (k = slice number along +z); file names and
    InstanceNumbers in an order unrelated to position. Returns the raw array in position order (z up)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = (100 * np.arange(n)[:, None, None] + np.arange(rows * cols).reshape(rows, cols)).astype(np.uint16)
    perm = np.random.default_rng(1).permutation(n)
    for k in range(n):
        if k in skip:
            continue
        name = names[k] if names else f"x{perm[k]:02d}_{'abcdefghijklmnop'[(k * 7) % 16]}.dcm"
        _hand_slice(
            folder / name,
            raw[k],
            (12.5, -7.25, z0 + k * dz),
            series_uid=series_uid,
            orientation=orientation,
            slope=slope,
            intercept=intercept,
            instance=int(n - perm[k]),
            **kw,
        )
    return raw


# ---------------------------------------------------------------------------------------------- DICOM


def test_dicom_writer_round_trip_keeps_values_and_geometry(tmp_path):
    vol = _volume()
    folder = write_dicom_series(vol, tmp_path / "series", series_description="round trip")
    assert sorted(p.name for p in folder.iterdir()) == [f"IM{k:04d}.dcm" for k in range(1, 7)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    ds = pydicom.dcmread(folder / "IM0002.dcm")
    assert ds.SOPClassUID == CT and ds.Modality == "CT" and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    # slice 1 sits one z step (2.5 mm) along the z axis from the origin
    expected = np.array(vol.origin) + 2.5 * vol.direction[:, 2]
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected, atol=1e-6)
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.8] and float(ds.SliceThickness) == 2.5
    back = read_dicom_series(folder, require_modality="CT")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-6)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    assert back.meta["SeriesDescription"] == "round trip" and len(back.meta["sop_instance_uids"]) == 6


def test_dicom_writer_refuses_an_occupied_folder_and_overwrites_on_request(tmp_path):
    vol = _volume()
    write_dicom_series(vol, tmp_path / "s")
    with pytest.raises(DataValidationError, match="already exists"):
        write_dicom_series(vol, tmp_path / "s")
    vol2 = vol.with_array(vol.array[:3])
    write_dicom_series(vol2, tmp_path / "s", overwrite=True)
    assert len(list((tmp_path / "s").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_dicom_writer_non_integer_values_are_quantized_within_a_step(tmp_path):
    vol = Volume(np.linspace(-0.5, 0.5, 2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4))
    back = read_dicom_series(write_dicom_series(vol, tmp_path / "f"))
    # range 1.0 over 65534 steps: error at most half a step, 1/65534/2 ≈ 7.6e-6
    assert back.array.dtype == np.float32
    np.testing.assert_allclose(back.array, vol.array, atol=8e-6)


def test_hand_written_series_sorted_by_position_with_rescale(tmp_path):
    raw = _hand_series(tmp_path / "s", slope=2.0, intercept=-1024.0)
    vol = read_dicom_series(tmp_path / "s")
    # HU = 2 · raw − 1024: slice 0 pixel 0 → −1024, slice 7 pixel 29 → 2·(700+29) − 1024 = 434
    assert vol.array.dtype == np.int16
    assert vol.array[0, 0, 0] == -1024 and vol.array[7, 4, 5] == 434
    np.testing.assert_array_equal(vol.array, raw.astype(np.int32) * 2 - 1024)
    assert vol.spacing == pytest.approx((2.5, 0.7, 0.8))  # (z from positions, PixelSpacing row, column)
    assert vol.origin == pytest.approx((12.5, -7.25, -40.0))  # lowest z slice
    np.testing.assert_allclose(vol.direction, np.eye(3))
    assert vol.modality == "CT"


def test_float_rescale_gives_exact_float32(tmp_path):
    raw = _hand_series(tmp_path / "s", n=3, slope=0.5, intercept=-1024.25)
    vol = read_dicom_series(tmp_path / "s")
    # 0.5 · raw − 1024.25, e.g. slice 2 pixel 1: 0.5 · 201 − 1024.25 = −923.75
    assert vol.array.dtype == np.float32 and vol.array[2, 0, 1] == -923.75
    np.testing.assert_array_equal(vol.array, raw * 0.5 - 1024.25)


def test_slice_order_follows_the_normal_not_z(tmp_path):
    # rows run along −x, columns along +y: normal = (−1,0,0) × (0,1,0) = (0,0,−1), so the first slice of the
    # volume is the one with the HIGHEST patient z (−40 + 7·2.5 = −22.5)
    raw = _hand_series(tmp_path / "s", slope=1.0, intercept=0.0, orientation=(-1, 0, 0, 0, 1, 0))
    vol = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(vol.array, raw[::-1].astype(np.int16))
    assert vol.origin == pytest.approx((12.5, -7.25, -22.5))
    np.testing.assert_allclose(vol.direction, [[-1, 0, 0], [0, 1, 0], [0, 0, -1]], atol=1e-12)
    # voxel (x=0, y=0, z=7) is the slice at z = −22.5 − 7·2.5 = −40
    np.testing.assert_allclose(vol.affine_lps() @ [0, 0, 7, 1], [12.5, -7.25, -40.0, 1])


def test_zip_of_a_series_reads_like_the_folder_and_leaves_no_temp_files(tmp_path, monkeypatch):
    raw = _hand_series(tmp_path / "s", n=4)
    zpath = tmp_path / "s.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in (tmp_path / "s").iterdir():
            zf.write(f, f"patient/series/{f.name}")
        zf.writestr("README.txt", "not dicom")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmpdir))
    vol = read_volume(zpath)
    np.testing.assert_array_equal(vol.array, raw.astype(np.int32) * 2 - 1024)
    assert list(tmpdir.iterdir()) == []
    assert vol.meta["source"] == str(zpath) and vol.meta["files"][0].startswith("patient/series/")


# ------------------------------------------------------------------------------------- bad DICOM input


def test_no_dicom_files(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(DataValidationError, match="no DICOM image files") as e:
        read_dicom_series(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)


def test_mixed_slice_sizes_named(tmp_path):
    _hand_series(tmp_path / "s", n=4)
    _hand_slice(tmp_path / "s" / "odd.dcm", np.zeros((3, 3)), (12.5, -7.25, -30.0), series_uid="1.2.3.4")
    with pytest.raises(DataValidationError, match=r"mixed slice sizes.*1 file\(s\) of 3×3.*odd\.dcm"):
        read_dicom_series(tmp_path / "s")


def test_missing_slice_named_with_gap_position(tmp_path):
    _hand_series(tmp_path / "s", n=8, skip=(4,), names=[f"s{k}.dcm" for k in range(8)])
    # slices at −40 … −22.5 every 2.5 mm, the one at −30 missing: a 5 mm gap between −32.5 (s3) and −27.5 (s5)
    with pytest.raises(DataValidationError) as e:
        read_dicom_series(tmp_path / "s")
    msg = str(e.value)
    assert str(tmp_path / "s") in msg and "gap of 5.000 mm" in msg and "-32.500" in msg and "-27.500" in msg
    assert "s3.dcm" in msg and "s5.dcm" in msg and "1 slice(s) missing" in msg and "2.500 mm" in msg


def test_missing_pixel_data_named(tmp_path):
    _hand_series(tmp_path / "s", n=3)
    _hand_slice(
        tmp_path / "s" / "hollow.dcm", np.zeros((5, 6)), (12.5, -7.25, -32.5), series_uid="1.2.3.4", pixel_data=False
    )
    with pytest.raises(DataValidationError, match=r"hollow\.dcm: no pixel data"):
        read_dicom_series(tmp_path / "s")


def test_mr_refused_when_ct_required(tmp_path):
    _hand_series(tmp_path / "mr", n=3, modality="MR")
    with pytest.raises(DataValidationError, match=r"Modality is MR, a CT series is required") as e:
        read_dicom_series(tmp_path / "mr", require_modality="CT")
    assert str(tmp_path / "mr") in str(e.value)
    assert read_dicom_series(tmp_path / "mr").modality == "MR"  # fine when nothing is required


def test_two_series_in_one_folder(tmp_path):
    _hand_series(tmp_path / "s", n=3, series_uid="1.2.3.4")
    _hand_series(tmp_path / "s", n=2, series_uid="1.2.3.5", names=["b0.dcm", "b1.dcm"])
    with pytest.raises(DataValidationError, match=r"mixed series: 2 different SeriesInstanceUIDs.*series_uid="):
        read_dicom_series(tmp_path / "s")
    assert read_dicom_series(tmp_path / "s", series_uid="1.2.3.5").shape == (2, 5, 6)


def test_zip_path_traversal_refused(tmp_path):
    _hand_series(tmp_path / "s", n=2)
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in (tmp_path / "s").iterdir():
            zf.write(f, f.name)
        zf.writestr("../evil", b"x")
    with pytest.raises(DataValidationError, match=r"evil\.zip.*'\.\./evil'.*path traversal"):
        read_dicom_series(zpath)
    assert not (tmp_path / "evil").exists()


def test_zip_bomb_refused_by_declared_size(tmp_path):
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", bytes(3_000_000))  # 3 MB of zeros, a few kB compressed
    assert zpath.stat().st_size < 20_000
    with pytest.raises(DataValidationError, match=r"bomb\.zip.*3,000,000 bytes.*limit of 1,000,000"):
        read_dicom_series(zpath, max_zip_bytes=1_000_000)


def test_compressed_without_decoder_named(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    _hand_series(tmp_path / "s", n=2, transfer_syntax=JPEGLSLossless, names=["a.dcm", "b.dcm"])
    with pytest.raises(DataValidationError, match=r"a\.dcm: no decoder for its compressed transfer syntax JPEG-LS"):
        read_dicom_series(tmp_path / "s")


# ----------------------------------------------------------------------------------------- NIfTI, HDF5


def test_nifti_round_trip_keeps_affine_and_voxel_to_mm(tmp_path):
    vol = Volume(
        np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6),
        spacing=(2.0, 0.5, 0.75),
        origin=(10.0, -20.0, 30.0),
        modality="CT",
    )
    path = write_nifti(vol, tmp_path / "v.nii.gz")
    img = nib.load(path)
    # nibabel's array is (x, y, z): voxel x=3, y=2, z=1 is our array[1, 2, 3]
    assert img.shape == (6, 5, 4) and np.asarray(img.dataobj)[3, 2, 1] == vol.array[1, 2, 3]
    # LPS of that voxel: (10 + 3·0.75, −20 + 2·0.5, 30 + 1·2) = (12.25, −19, 32) → RAS (−12.25, 19, 32)
    np.testing.assert_allclose(img.affine @ [3, 2, 1, 1], [-12.25, 19.0, 32.0, 1])
    np.testing.assert_allclose(vol.affine_lps() @ [3, 2, 1, 1], [12.25, -19.0, 32.0, 1])
    back = read_nifti(path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == np.int16 and back.modality == "CT"
    np.testing.assert_allclose(back.affine_lps(), vol.affine_lps(), atol=1e-5)


def test_nifti_oblique_affine_and_uint8_labels(tmp_path):
    vol = _volume()
    back = read_nifti(write_nifti(vol, tmp_path / "o.nii"))
    # the sform is float32: 1e-4 mm is far below its ~1e-5 relative precision at 100 mm
    np.testing.assert_allclose(back.affine_lps(), vol.affine_lps(), atol=1e-4)
    lab = vol.with_array((vol.array > 0).astype(np.int64) * 2)
    lpath = write_nifti(lab, tmp_path / "l.nii.gz", label=True)
    assert nib.load(lpath).get_data_dtype() == np.uint8
    np.testing.assert_array_equal(read_nifti(lpath).array, lab.array)
    with pytest.raises(DataValidationError, match=r"bad\.nii\.gz.*integers 0\.\.255"):
        write_nifti(vol.with_array(np.full(vol.shape, 300)), tmp_path / "bad.nii.gz", label=True)


def test_hdf5_round_trip_with_label(tmp_path):
    vol = _volume()
    label = (vol.array > 500).astype(np.uint8)
    path = write_hdf5_volume(vol, tmp_path / "v.h5", label=label)
    back = read_hdf5_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.spacing == vol.spacing and back.origin == vol.origin and back.modality == "CT"
    np.testing.assert_array_equal(back.direction, vol.direction)
    lab = read_hdf5_volume(path, key="label")
    assert lab.array.dtype == np.uint8 and np.array_equal(lab.array, label) and lab.spacing == vol.spacing
    with pytest.raises(DataValidationError, match=r"no dataset 'mask'.*\['image', 'label'\]"):
        read_hdf5_volume(path, key="mask")


def test_hdf5_without_geometry_is_refused(tmp_path):
    import h5py

    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f["image"] = np.zeros((2, 3, 4))
    with pytest.raises(DataValidationError, match=r"bare\.h5.*no 'spacing' attribute"):
        read_hdf5_volume(tmp_path / "bare.h5")


def test_dicom_to_nifti_to_volume_same_geometry_and_values(tmp_path):
    raw = _hand_series(tmp_path / "s", orientation=(0.8, 0.6, 0, -0.6, 0.8, 0))
    dicom = read_volume(tmp_path / "s")
    write_volume(dicom, tmp_path / "s.nii.gz")
    nifti = read_volume(tmp_path / "s.nii.gz")
    np.testing.assert_array_equal(nifti.array, raw.astype(np.int32) * 2 - 1024)
    np.testing.assert_allclose(nifti.affine_lps(), dicom.affine_lps(), atol=1e-4)
    # a voxel through both: (x=2, y=3, z=5) is the same mm point
    np.testing.assert_allclose(nifti.affine_lps() @ [2, 3, 5, 1], dicom.affine_lps() @ [2, 3, 5, 1], atol=1e-4)


def test_formats_and_label_like(tmp_path):
    assert volume_format("a.nii.gz") == "nifti" and volume_format("a.NII") == "nifti"
    assert volume_format("a.hdf5") == "hdf5" and volume_format("a.zip") == "dicom"
    with pytest.raises(DataValidationError, match="unknown volume format"):
        volume_format(tmp_path / "a.png")
    _hand_series(tmp_path / "s", n=3)
    ref = read_volume(tmp_path / "s")
    label = np.zeros(ref.shape, np.int32)
    label[1, 2:4, 3:5] = 1
    out = write_label_like(label, ref, tmp_path / "s_label")  # DICOM reference → NIfTI
    assert out.name == "s_label.nii.gz"
    back = read_volume(out)
    assert back.array.dtype == np.uint8 and back.array.sum() == 4
    np.testing.assert_allclose(back.affine_lps(), ref.affine_lps(), atol=1e-4)
    h5ref = read_volume(write_volume(ref, tmp_path / "r.h5"))
    hout = write_label_like(label, h5ref, tmp_path / "r_label")  # HDF5 reference → HDF5 "label"
    assert hout.suffix == ".h5" and read_volume(hout).meta["key"] == "label"
    with pytest.raises(DataValidationError, match="label shape"):
        write_label_like(label[:1], ref, tmp_path / "x.nii.gz")


# -------------------------------------------------------------------------------------------- convert


def test_convert_series_two_in_parallel_with_timings(tmp_path):
    raws = [_hand_series(tmp_path / "in" / name, n=4, z0=z0) for name, z0 in (("a", 0.0), ("b", 5.0))]
    (tmp_path / "in" / "bad").mkdir()
    inputs = [tmp_path / "in" / "a", tmp_path / "in" / "b", tmp_path / "in" / "bad"]
    results = convert_series(inputs, tmp_path / "out", "hdf5", workers=2, progress=False)
    assert [r["input"] for r in results] == [str(p) for p in inputs]
    for r, raw in zip(results[:2], raws, strict=True):
        assert r["error"] is None and r["seconds"] > 0 and r["shape"] == [4, 5, 6]
        assert r["spacing"] == pytest.approx([2.5, 0.7, 0.8])
        np.testing.assert_array_equal(read_volume(r["output"]).array, raw.astype(np.int32) * 2 - 1024)
    assert results[2]["output"] is None and "no DICOM image files" in results[2]["error"]
    summary = run_convert(inputs[:1], tmp_path / "out2", "nifti", workers=1, progress=False)
    assert summary["converted"] == 1 and summary["failed"] == 0 and summary["seconds_per_series"] > 0
    assert Path(summary["results"][0]["output"]).name == "a.nii.gz"
    scanned = run_convert([tmp_path / "in"], tmp_path / "out3", "nifti", workers=1, scan=True, progress=False)
    assert [Path(r["input"]).name for r in scanned["results"]] == ["a", "b"] and scanned["failed"] == 0


def test_convert_fail_fast_raises_the_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no DICOM image files") as e:
        convert_series([tmp_path / "empty"], tmp_path / "out", workers=1, progress=False, fail_fast=True)
    assert e.value.path == tmp_path / "empty"


def test_duplicate_positions_named(tmp_path):
    _hand_series(tmp_path / "s", n=3, names=["a.dcm", "b.dcm", "c.dcm"])
    _hand_slice(tmp_path / "s" / "twin.dcm", np.zeros((5, 6)), (12.5, -7.25, -37.5), series_uid="1.2.3.4")
    pattern = r"s: two slices at the same position \(-37\.500 mm.*: (b\.dcm and twin\.dcm|twin\.dcm and b\.dcm)"
    with pytest.raises(DataValidationError, match=pattern):
        read_dicom_series(tmp_path / "s")


def test_localizer_and_non_image_objects_are_skipped(tmp_path):
    raw = _hand_series(tmp_path / "s", n=3)
    # a scout view in the same series (other orientation), and a DICOM object without an image
    _hand_slice(
        tmp_path / "s" / "scout.dcm", np.zeros((5, 6)), (0, 0, 0), series_uid="1.2.3.4", orientation=(0, 1, 0, 0, 0, -1)
    )
    ds = pydicom.dcmread(tmp_path / "s" / "scout.dcm")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(tmp_path / "s" / "scout.dcm")
    rt = pydicom.dcmread(tmp_path / "s" / "scout.dcm")
    for kw in ("Rows", "Columns", "PixelData"):
        delattr(rt, kw)
    rt.Modality = "RTSTRUCT"
    rt.save_as(tmp_path / "s" / "rtstruct.dcm")
    vol = read_dicom_series(tmp_path / "s", require_modality="CT")
    np.testing.assert_array_equal(vol.array, raw.astype(np.int32) * 2 - 1024)
    assert vol.meta["skipped_files"] == 2


def test_gantry_tilt_warns_and_keeps_the_normal(tmp_path):
    folder = tmp_path / "tilt"
    folder.mkdir()
    for k in range(3):  # each slice 2.5 mm up and 1 mm posterior: not along the normal (0, 0, 1)
        _hand_slice(folder / f"{k}.dcm", np.full((5, 6), k), (0.0, 1.0 * k, 2.5 * k), series_uid="9")
    with pytest.warns(UserWarning, match="gantry tilt"):
        vol = read_dicom_series(folder)
    assert vol.spacing[0] == pytest.approx(2.5)
    np.testing.assert_allclose(vol.direction, np.eye(3))


# ------------------------------------------------------------------------------ no silent slice loss


def _one_line_naming(exc: DataValidationError, *names: str) -> str:
    msg = str(exc)
    assert "\n" not in msg
    for name in names:
        assert name in msg, (name, msg)
    return msg


@pytest.mark.parametrize("which", [0, 3, 7])  # first, middle, last slice in position order
@pytest.mark.parametrize("damage", ["empty", "truncated", "header only", "zeros"])
def test_a_damaged_slice_anywhere_is_an_error_naming_it(tmp_path, which, damage):
    names = [f"s{k}.dcm" for k in range(8)]
    _hand_series(tmp_path / "s", n=8, rows=40, cols=40, names=names)  # 3200 bytes of pixels: deferred
    victim = tmp_path / "s" / names[which]
    data = victim.read_bytes()
    victim.write_bytes(
        {"empty": b"", "truncated": data[:-100], "header only": data[:400], "zeros": bytes(len(data))}[damage]
    )
    with pytest.raises(DataValidationError) as e:
        read_dicom_series(tmp_path / "s")
    _one_line_naming(e.value, names[which], str(tmp_path / "s"))


def test_truncated_last_slice_in_a_zip_and_a_file_list_is_named(tmp_path):
    names = [f"s{k}.dcm" for k in range(4)]
    _hand_series(tmp_path / "s", n=4, rows=40, cols=40, names=names)
    last = tmp_path / "s" / "s3.dcm"
    last.write_bytes(last.read_bytes()[:-1])
    zpath = tmp_path / "s.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for n in names:
            zf.write(tmp_path / "s" / n, f"series/{n}")
    with pytest.raises(DataValidationError, match="truncated") as e:
        read_dicom_series(zpath)
    _one_line_naming(e.value, "series/s3.dcm", "s.zip")
    with pytest.raises(DataValidationError) as e:
        read_dicom_series(sorted((tmp_path / "s").iterdir()))
    _one_line_naming(e.value, "s3.dcm")


def test_no_suffix_files_are_read_by_content(tmp_path):
    """PACS exports name slices IM000001 without a suffix: read by content; a README or LICENSE is skipped
    and listed; a no-suffix file that is empty or starts with zeros is a damaged slice."""
    raw = _hand_series(tmp_path / "s", n=3, names=["IM000001", "IM000002", "1.2.840.99.3"])
    (tmp_path / "s" / "README").write_text("exported by a PACS\n")
    (tmp_path / "s" / "notes.txt").write_text("hello")
    (tmp_path / "s" / ".DS_Store").write_bytes(bytes(64))
    (tmp_path / "s" / "__MACOSX").mkdir()
    (tmp_path / "s" / "__MACOSX" / "IM000001").write_bytes(bytes(10))
    vol = read_dicom_series(tmp_path / "s")
    np.testing.assert_array_equal(vol.array, raw.astype(np.int32) * 2 - 1024)
    assert vol.meta["skipped_files"] == 4
    assert sorted(vol.meta["skipped_names"]) == [".DS_Store", "README", "__MACOSX/IM000001", "notes.txt"]
    (tmp_path / "s" / "IM000004").write_bytes(b"")
    with pytest.raises(DataValidationError, match="IM000004: is empty"):
        read_dicom_series(tmp_path / "s")
    (tmp_path / "s" / "IM000004").write_bytes(bytes(300))
    with pytest.raises(DataValidationError, match="IM000004: starts with zero bytes"):
        read_dicom_series(tmp_path / "s")


def test_zeros_named_dcm_are_refused_without_parsing(tmp_path, monkeypatch):
    def no_parsing(*args, **kwargs):
        raise AssertionError("pydicom.dcmread must not be called for bytes that are not DICOM")

    monkeypatch.setattr(pydicom, "dcmread", no_parsing)
    zeros = tmp_path / "zeros.dcm"
    zeros.write_bytes(bytes(2**20))
    with pytest.raises(DataValidationError, match="not a readable DICOM file") as e:
        read_dicom_series(zeros)
    _one_line_naming(e.value, "zeros.dcm")
    marker = tmp_path / "marker.dcm"  # the 'DICM' marker, then nothing DICOM
    marker.write_bytes(bytes(128) + b"DICM" + bytes(2**20))
    with pytest.raises(DataValidationError, match="marker.dcm: has the 'DICM' marker but no DICOM element"):
        read_dicom_series(tmp_path)


def test_dicom_file_too_large_for_the_budget_is_refused_by_its_size(tmp_path, monkeypatch):
    _hand_series(tmp_path / "s", n=2, rows=40, cols=40, names=["a.dcm", "b.dcm"])
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", "10")
    monkeypatch.setattr("medseg.formats.limits._DICOM_HEADER_BYTES", 1000)
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: pytest.fail("parsed a file refused by its size"))
    with pytest.raises(DataValidationError, match=r"a\.dcm: is [\d,]+ bytes, more than any image"):
        read_dicom_series(tmp_path / "s")


def _patch_tag(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1 and len(new) <= len(old)
    path.write_bytes(data.replace(old, new.ljust(len(old))))


@pytest.mark.parametrize(
    "old, new, tag",
    [
        (b"12.5000\\-7.2500\\-35.0000", b"abc", "ImagePositionPatient"),
        (b"12.5000\\-7.2500\\-35.0000", b"1\\2", "ImagePositionPatient"),
        (b"12.5000\\-7.2500\\-35.0000", b"nan\\0\\0", "ImagePositionPatient"),
        (b"0.7\\0.8", b"x\\y", "PixelSpacing"),
        (b"-1024.0", b"HU", "RescaleIntercept"),
    ],
)
def test_bad_numeric_tags_name_the_file_and_the_tag(tmp_path, old, new, tag):
    _hand_series(tmp_path / "s", n=3, names=["a.dcm", "b.dcm", "c.dcm"])
    target = (
        next(p for p in sorted((tmp_path / "s").iterdir()) if old in p.read_bytes())
        if tag == "ImagePositionPatient"
        else tmp_path / "s" / "b.dcm"
    )
    _patch_tag(target, old, new)
    with pytest.raises(DataValidationError) as e:
        read_dicom_series(tmp_path / "s")
    _one_line_naming(e.value, target.name, tag)


def test_huge_rows_and_columns_are_refused_from_the_header(tmp_path):
    _hand_series(tmp_path / "s", n=2, names=["a.dcm", "b.dcm"])
    for f in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(f)
        ds.Rows = ds.Columns = 60000  # the pixel data do not match: nothing may be allocated before the check
        ds.save_as(f)
    with pytest.raises(DataValidationError, match=r"3,600,000,000 voxels .* exceeds the limit") as e:
        read_dicom_series(tmp_path / "s")
    _one_line_naming(e.value, "a.dcm")
    # a series within each slice's budget but over it in all
    _hand_series(tmp_path / "t", n=5, rows=20, cols=20)
    with pytest.raises(
        DataValidationError, match=r"the series of 2,000 voxels \(5, 20, 20\) exceeds the limit of 1,000"
    ):
        read_dicom_series(tmp_path / "t", max_voxels=1000)


def test_a_gap_is_refused_naming_both_neighbours_or_filled_on_request(tmp_path):
    _hand_series(tmp_path / "s", n=8, skip=(4, 5), names=[f"s{k}.dcm" for k in range(8)])
    with pytest.raises(DataValidationError) as e:
        read_dicom_series(tmp_path / "s")
    msg = _one_line_naming(e.value, "s3.dcm", "s6.dcm", "gap of 7.500 mm", "2 slice(s) missing", "allow_gaps")
    assert "-32.500" in msg and "-25.000" in msg
    with pytest.warns(UserWarning, match=r"2 missing slice\(s\) between s3\.dcm and s6\.dcm"):
        vol = read_dicom_series(tmp_path / "s", allow_gaps=True)
    assert vol.shape == (8, 5, 6) and vol.spacing[0] == pytest.approx(2.5)
    assert vol.origin == pytest.approx((12.5, -7.25, -40.0))
    minimum = vol.array[[0, 1, 2, 3, 6, 7]].min()
    assert (vol.array[4:6] == minimum).all() and minimum == -1024
    assert vol.meta["gaps"] == [
        {
            "after": "s3.dcm",
            "before": "s6.dcm",
            "after_mm": -32.5,
            "before_mm": -25.0,
            "gap_mm": 7.5,
            "slices_filled": 2,
        }
    ]
    assert vol.meta["files"][4:6] == ["", ""] and vol.meta["files"][6] == "s6.dcm"
    assert len(vol.meta["sop_instance_uids"]) == 8


def test_irregular_spacing_is_refused_even_with_allow_gaps(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for k, z in enumerate([0.0, 2.5, 5.0, 7.5, 11.25, 13.75]):  # 3.75 mm: one and a half slices
        _hand_slice(folder / f"{k}.dcm", np.zeros((5, 6)), (0, 0, z), series_uid="9")
    with pytest.raises(DataValidationError, match=r"irregular slice spacing.*3\.dcm.*4\.dcm|3\.dcm.*4\.dcm.*irregular"):
        read_dicom_series(folder, allow_gaps=True)


def test_convert_with_allow_gaps_and_nothing_left_behind_on_failure(tmp_path):
    _hand_series(tmp_path / "in" / "gap", n=6, skip=(2,))
    out = tmp_path / "out"
    failed = run_convert([tmp_path / "in" / "gap"], out, "nifti", workers=1, progress=False)
    assert failed["failed"] == 1 and "1 slice(s) missing" in failed["results"][0]["error"]
    assert list(out.iterdir()) == []
    with pytest.warns(UserWarning, match="missing slice"):
        done = run_convert([tmp_path / "in" / "gap"], out, "nifti", workers=1, allow_gaps=True, progress=False)
    assert done["converted"] == 1 and done["results"][0]["gaps"][0]["slices_filled"] == 1
    assert read_volume(done["results"][0]["output"]).shape == (6, 5, 6)


def test_truncated_rtstruct_is_skipped_but_truncated_image_is_not(tmp_path):
    _hand_series(tmp_path / "s", n=3, names=["a.dcm", "b.dcm", "c.dcm"])
    ds = pydicom.dcmread(tmp_path / "s" / "a.dcm")
    for kw in ("Rows", "Columns", "PixelData"):
        delattr(ds, kw)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set
    ds.SeriesInstanceUID = "1.2.3.99"  # an RTSTRUCT has a series of its own
    ds.save_as(tmp_path / "s" / "rt.dcm")
    assert read_dicom_series(tmp_path / "s").meta["skipped_names"] == ["rt.dcm"]
    ds.SeriesInstanceUID = "1.2.3.4"  # one without an image in the image series: a damaged slice
    ds.save_as(tmp_path / "s" / "rt.dcm")
    with pytest.raises(DataValidationError, match=r"rt\.dcm: no Rows/Columns in an object of the image series"):
        read_dicom_series(tmp_path / "s")
    (tmp_path / "s" / "rt.dcm").unlink()
    c = tmp_path / "s" / "c.dcm"
    data = c.read_bytes()
    c.write_bytes(data[: data.index(b"(\x00\x02\x00US")])  # cut at an element: before SamplesPerPixel, Rows...
    with pytest.raises(DataValidationError, match=r"c\.dcm: no Rows/Columns \(a CT Image Storage object\)"):
        read_dicom_series(tmp_path / "s")
    c.write_bytes(data[: data.index(b"MONOCHROME2") + 4])  # cut inside a value
    with pytest.raises(DataValidationError, match=r"c\.dcm: truncated: PhotometricInterpretation declares 12 bytes"):
        read_dicom_series(tmp_path / "s")


# ---------------------------------------------------------------------------------- zips, one policy


def test_zip_member_compressed_beyond_the_ratio_is_refused_by_the_cli_reader(tmp_path):
    zpath = tmp_path / "ratio.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", bytes(20 * 2**20))
    with pytest.raises(
        DataValidationError, match=r"ratio\.zip: refusing the archive: .* is compressed 1,029 to 1 .*zip bomb"
    ):
        read_volume(zpath)
    assert not list(tmp_path.glob("medseg-zip-*"))


def test_damaged_zip_member_is_named(tmp_path):
    _hand_series(tmp_path / "s", n=2, names=["a.dcm", "b.dcm"])
    zpath = tmp_path / "s.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((tmp_path / "s").iterdir()):
            zf.write(f, f.name)
    data = bytearray(zpath.read_bytes())
    start = data.index(b"b.dcm") + 5 + 20  # inside b.dcm's compressed bytes
    data[start : start + 40] = bytes(40)
    zpath.write_bytes(bytes(data))
    with pytest.raises(DataValidationError, match=r"s\.zip: member 'b\.dcm' cannot be extracted"):
        read_dicom_series(zpath)


# ----------------------------------------------------------------------- NIfTI and HDF5: refused up front


def _nifti(path: Path, array: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


@pytest.mark.parametrize("case", ["complex", "nan", "inf", "empty"])
def test_nifti_values_that_cannot_be_used_are_refused(tmp_path, case):
    array = {
        "complex": np.ones((3, 4, 5), np.complex64),
        "nan": np.full((3, 4, 5), np.nan, np.float32),
        "inf": np.full((3, 4, 5), np.inf, np.float32),
        "empty": np.zeros((0, 4, 5), np.float32),
    }[case]
    path = _nifti(tmp_path / f"{case}.nii.gz", array)
    with pytest.raises(DataValidationError) as e:
        read_volume(path)
    msg = _one_line_naming(e.value, f"{case}.nii.gz")
    assert {"complex": "complex values", "nan": "60 NaN or infinite", "inf": "NaN or infinite", "empty": "empty"}[
        case
    ] in msg


@pytest.mark.parametrize("pixdim", [(0.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, float("nan"))])
def test_nifti_zero_negative_or_nan_voxel_size_is_refused(tmp_path, pixdim):
    import struct

    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    path = tmp_path / "bad.nii"
    nib.save(img, str(path))
    data = bytearray(path.read_bytes())
    data[80:92] = struct.pack("<3f", *pixdim)  # pixdim[1:4]: nibabel would set 0 and -1 to 1 when loading
    path.write_bytes(bytes(data))
    with pytest.raises(DataValidationError, match=r"bad\.nii: .*(pixdim|spacing)"):
        read_nifti(path)


def test_nifti_huge_header_dims_are_refused_before_reading(tmp_path, monkeypatch):
    path = _nifti(tmp_path / "big.nii", np.zeros((4, 5, 6), np.int16))
    data = bytearray(path.read_bytes())
    import struct

    data[42:48] = struct.pack("<3h", 30000, 30000, 30000)  # dim[1:4]; the file holds 120 values
    path.write_bytes(bytes(data))
    with pytest.raises(DataValidationError, match=r"big\.nii: the NIfTI image of 27,000,000,000,000 voxels"):
        read_volume(path)


def test_hdf5_bad_spacing_attribute_and_corrupt_metadata(tmp_path):
    import h5py

    path = write_hdf5_volume(_volume(), tmp_path / "v.h5")
    with h5py.File(path, "a") as f:
        f["image"].attrs["spacing"] = "abc"
    with pytest.raises(DataValidationError, match=r"v\.h5: attribute 'spacing' of 'image' is 'abc', not numbers"):
        read_volume(path)
    good = write_hdf5_volume(_volume(), tmp_path / "good.h5")
    data = bytearray(good.read_bytes())
    i = data.index(b"HEAP")
    data[i : i + 4] = b"XXXX"
    bad = tmp_path / "heap.h5"
    bad.write_bytes(bytes(data))
    for reader in (read_volume, read_hdf5_volume, lambda p: read_hdf5_volume(p, "label")):
        with pytest.raises(DataValidationError, match="heap signature") as e:
            reader(bad)
        _one_line_naming(e.value, "heap.h5")


def test_hdf5_nan_and_voxel_budget(tmp_path):
    vol = Volume(np.zeros((4, 5, 6), np.float32))
    vol.array[1, 2, 3] = np.nan
    path = write_hdf5_volume(vol, tmp_path / "nan.h5")
    with pytest.raises(
        DataValidationError, match=r"nan\.h5: dataset 'image' holds 1 NaN or infinite value\(s\) of 120"
    ):
        read_volume(path)
    with pytest.raises(
        DataValidationError, match=r"dataset 'image' of 120 voxels \(4, 5, 6\) exceeds the limit of 100"
    ):
        read_volume(path, max_voxels=100)


def test_hdf5_strings_are_stored_in_the_object_header(tmp_path):
    """libhdf5 can loop forever reading a damaged global heap (where variable-length strings live): the
    writer keeps its strings fixed-length, so a file written here never needs that heap."""
    path = write_hdf5_volume(_volume(), tmp_path / "v.h5", label=np.ones((6, 10, 12), np.uint8))
    assert b"GCOL" not in path.read_bytes()
    back = read_volume(path)
    assert back.modality == "CT" and back.meta["format"] == "hdf5"
