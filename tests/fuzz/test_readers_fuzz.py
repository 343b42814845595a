"""Generated corrupt and hostile inputs for every reader of medseg.

Every case asserts the same contract: the reader raises :class:`DataValidationError` (never another
exception type) whose message is one line and names the file; where damage may leave a valid file (a
flipped byte in pixel data), the result must then be complete (no slice lost, same shape). ``run_convert``
leaves nothing in its output folder for an input it refuses. Inputs are generated with hypothesis
(derandomized: the same inputs on every run) from small files written here, and from the real dcmqi CT
slices in ``/work/shared/data/ct/dcmqi/ct-3slice/`` when that folder exists. The number of inputs tried is
printed at the end of the module ("fuzz: N inputs").
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medseg.data.folder import read_image, read_mask
from medseg.data.pommier import read_pommier_h5, write_pommier_h5
from medseg.errors import DataValidationError
from medseg.formats.volume import Volume
from medseg.formats.volume_files import (
    hdf5_shape,
    read_dicom_series,
    read_hdf5_volume,
    read_nifti,
    read_volume,
    run_convert,
    write_hdf5_volume,
    write_nifti,
)

REAL_CT = Path("/work/shared/data/ct/dcmqi/ct-3slice")
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRIED = {"inputs": 0}


@pytest.fixture(scope="module", autouse=True)
def _report_count(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"fuzz: {TRIED['inputs']} inputs tried")


class Blob(bytes):
    """File content whose repr stays short when hypothesis prints a failing example."""

    def __repr__(self) -> str:
        return f"<{len(self):,} bytes>"


class Blobs(list):
    def __repr__(self) -> str:
        return f"<{len(self)} files>"


def _fresh(tmp_path: Path) -> Path:
    """A new folder for one generated input (hypothesis runs many examples in one test)."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


def _check_message(exc: DataValidationError, name: str | tuple[str, ...]) -> str:
    """One line, naming ``name`` (or one of the names: a geometry error names the files around the damage)."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    names = (name,) if isinstance(name, str) else name
    assert any(n in message for n in names), (names, message)
    return message


def refused(call: Callable[[], object], name: str | tuple[str, ...]) -> str:
    """``call`` must raise DataValidationError with a one-line message naming ``name``; the message."""
    TRIED["inputs"] += 1
    try:
        result = call()
    except DataValidationError as exc:
        return _check_message(exc, name)
    pytest.fail(f"{name}: accepted ({type(result).__name__}), expected a DataValidationError")


def refused_or_valid(call: Callable[[], object], name: str | tuple[str, ...], valid: Callable[[object], None]) -> None:
    """For damage that may leave a usable file: either refused as :func:`refused` says, or ``valid(result)``."""
    TRIED["inputs"] += 1
    try:
        result = call()
    except DataValidationError as exc:
        _check_message(exc, name)
        return
    valid(result)


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for offset, value in edits:
        out[offset % len(out)] = value
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8)


def _convert_leaves_nothing(tmp_path: Path, inp: Path, name: str) -> None:
    out = _fresh(tmp_path) / "out"
    summary = run_convert([inp], out, "hdf5", workers=1, progress=False)
    TRIED["inputs"] += 1
    assert summary["failed"] == 1, summary
    error = summary["results"][0]["error"]
    assert "\n" not in error and name in error, error
    assert os.listdir(out) == []


# ------------------------------------------------------------------------------------------------ HDF5


def _volume(shape=(4, 6, 5)) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1000, 1000, shape).astype(np.int16), (2.0, 0.5, 0.5), (1.0, 2.0, 3.0))


@pytest.fixture(scope="module")
def h5_bytes(tmp_path_factory) -> bytes:
    path = write_hdf5_volume(_volume(), tmp_path_factory.mktemp("h5") / "v.h5", label=np.ones((4, 6, 5), np.uint8))
    return Blob(path.read_bytes())


@pytest.fixture(scope="module")
def pommier_bytes(tmp_path_factory) -> bytes:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 20, 18), dtype=np.uint8)
    labels = rng.integers(0, 4, (3, 20, 18), dtype=np.uint8)
    return Blob(write_pommier_h5(tmp_path_factory.mktemp("p") / "p.h5", images, labels).read_bytes())


HDF5_READERS = {
    "read_volume": read_volume,
    "read_hdf5_volume(label)": lambda p: read_hdf5_volume(p, "label"),
    "hdf5_shape": hdf5_shape,
    "read_pommier_h5": read_pommier_h5,
}


@FUZZ
@given(data=st.binary(min_size=0, max_size=3000), signature=st.booleans())
def test_hdf5_random_bytes(tmp_path, data, signature):
    path = _fresh(tmp_path) / "random.h5"
    path.write_bytes((b"\x89HDF\r\n\x1a\n" if signature else b"") + data)
    for reader in HDF5_READERS.values():
        refused(lambda r=reader: r(path), "random.h5")


@FUZZ
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_hdf5_truncated(tmp_path, h5_bytes, pommier_bytes, fraction):
    folder = _fresh(tmp_path)
    for data, readers in (
        (h5_bytes, ("read_volume", "read_hdf5_volume(label)", "hdf5_shape")),
        (pommier_bytes, ("read_pommier_h5",)),
    ):
        path = folder / "cut.h5"
        path.write_bytes(data[: int(fraction * len(data))])
        for name in readers:
            refused(lambda r=HDF5_READERS[name], p=path: r(p), "cut.h5")


@settings(FUZZ, max_examples=200)
@given(changes=edits)
def test_hdf5_corrupted_bytes(tmp_path, h5_bytes, pommier_bytes, changes):
    folder = _fresh(tmp_path)
    path = folder / "flipped.h5"
    path.write_bytes(_flip(h5_bytes, changes))

    def same_grid(vol):
        assert isinstance(vol, Volume) and vol.shape == (4, 6, 5)

    refused_or_valid(lambda: read_volume(path), "flipped.h5", same_grid)
    refused_or_valid(lambda: read_hdf5_volume(path, "label"), "flipped.h5", same_grid)
    ppath = folder / "pflipped.h5"
    ppath.write_bytes(_flip(pommier_bytes, changes))

    def three_images(result):
        images, labels, _ = result
        assert images.shape == labels.shape == (3, 20, 18)

    refused_or_valid(lambda: read_pommier_h5(ppath, stray_labels="background"), "pflipped.h5", three_images)


def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for name, (data, attrs) in datasets.items():
            if data is None:
                f.create_group(name)
                continue
            d = f.create_dataset(name, data=data)
            for k, v in attrs.items():
                d.attrs[k] = v
    return path


GEO = {"spacing": [1.0, 1.0, 1.0]}
BAD_HDF5 = {
    "2d": {"image": (np.zeros((4, 5)), GEO)},
    "4d": {"image": (np.zeros((2, 3, 4, 5)), GEO)},
    "empty": {"image": (np.zeros((0, 4, 5)), GEO)},
    "group": {"image": (None, {})},
    "strings": {"image": (np.array([[["a", "b"]]], dtype=object).astype("S1"), GEO)},
    "complex": {"image": (np.ones((2, 3, 4), np.complex64), GEO)},
    "compound": {"image": (np.zeros((2, 3, 4), dtype=[("a", "i4"), ("b", "f4")]), GEO)},
    "nan": {"image": (np.full((2, 3, 4), np.nan), GEO)},
    "no spacing": {"image": (np.zeros((2, 3, 4)), {})},
    "spacing abc": {"image": (np.zeros((2, 3, 4)), {"spacing": "abc"})},
    "spacing 2": {"image": (np.zeros((2, 3, 4)), {"spacing": [1.0, 1.0]})},
    "spacing zero": {"image": (np.zeros((2, 3, 4)), {"spacing": [0.0, 1.0, -1.0]})},
    "spacing nan": {"image": (np.zeros((2, 3, 4)), {"spacing": [np.nan, 1.0, 1.0]})},
    "origin inf": {"image": (np.zeros((2, 3, 4)), {**GEO, "origin": [np.inf, 0.0, 0.0]})},
    "direction singular": {"image": (np.zeros((2, 3, 4)), {**GEO, "direction": np.zeros((3, 3))})},
    "direction text": {"image": (np.zeros((2, 3, 4)), {**GEO, "direction": "eye"})},
    "pommier 3d": {"dataset_1": (np.zeros((3, 20, 18), np.uint8), {})},
    "pommier float": {"dataset_1": (np.zeros((3, 20, 18, 2), np.float32), {})},
}


@pytest.mark.parametrize("case", list(BAD_HDF5))
def test_hdf5_wrong_shapes_dtypes_and_attributes(tmp_path, case):
    path = _h5(tmp_path / "bad.h5", **BAD_HDF5[case])
    reader = read_pommier_h5 if case.startswith("pommier") else read_volume
    refused(lambda: reader(path), "bad.h5")
    if not case.startswith("pommier"):
        _convert_leaves_nothing(tmp_path, path, "bad.h5")


# ------------------------------------------------------------------------------------------------ DICOM

CT = "1.2.840.10008.5.1.4.1.1.2"


def _slice_bytes(k: int, rows: int = 24, cols: int = 24, z: float | None = None) -> bytes:
    """One small CT slice (PixelData of rows × cols × 2 bytes; above 1 KiB it stays on disk until decoded)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CT, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", "F", "1.2.3", "1.2.3.4"
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = ["0.0", "0.0", f"{2.5 * k if z is None else z:.4f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.8]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    ds.PixelData = (np.arange(rows * cols, dtype="<i2") + 100 * k).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def series() -> list[bytes]:
    return Blobs(Blob(_slice_bytes(k)) for k in range(3))


def _write_series(folder: Path, slices: list[bytes], names=("a.dcm", "b.dcm", "c.dcm")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in zip(names, slices, strict=True):
        (folder / name).write_bytes(data)
    return folder


def _three_slices(vol) -> None:
    assert isinstance(vol, Volume) and vol.shape[0] == 3, "a slice was lost"


@FUZZ
@given(which=st.integers(0, 2), fraction=st.floats(0, 1, exclude_max=True))
def test_dicom_series_with_a_truncated_slice(tmp_path, series, which, fraction):
    slices = list(series)
    slices[which] = slices[which][: int(fraction * len(slices[which]))]
    folder = _write_series(_fresh(tmp_path) / "s", slices)
    name = "abc"[which] + ".dcm"
    refused(lambda: read_dicom_series(folder), name)
    refused(lambda: read_dicom_series(sorted(folder.iterdir())), name)


@settings(FUZZ, max_examples=200)
@given(which=st.integers(0, 2), changes=edits)
def test_dicom_series_with_corrupted_bytes(tmp_path, series, which, changes):
    slices = list(series)
    slices[which] = _flip(slices[which], changes)
    folder = _write_series(_fresh(tmp_path) / "s", slices)
    refused_or_valid(lambda: read_dicom_series(folder), ("a.dcm", "b.dcm", "c.dcm"), _three_slices)


@FUZZ
@given(which=st.integers(0, 2), fraction=st.floats(0, 1, exclude_max=True), no_suffix=st.booleans())
def test_dicom_zip_with_a_truncated_member(tmp_path, series, which, fraction, no_suffix):
    folder = _fresh(tmp_path)
    names = ["IM1", "IM2", "IM3"] if no_suffix else ["a.dcm", "b.dcm", "c.dcm"]
    zpath = folder / "series.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, (name, data) in enumerate(zip(names, series, strict=True)):
            zf.writestr(f"export/{name}", data[: int(fraction * len(data))] if k == which else data)
        zf.writestr("export/README.txt", "not DICOM")
    message = refused(lambda: read_dicom_series(zpath), "series.zip")
    assert f"export/{names[which]}" in message


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("content", ["empty", "zeros", "text", "marker only"])
def test_dicom_series_with_a_non_dicom_slice(tmp_path, series, which, content):
    slices = list(series)
    slices[which] = {
        "empty": b"",
        "zeros": bytes(len(slices[which])),
        "text": b"not a slice\n" * 50,
        "marker only": bytes(128) + b"DICM",
    }[content]
    folder = _write_series(tmp_path / "s", slices)
    name = "abc"[which] + ".dcm"
    refused(lambda: read_dicom_series(folder), name)
    if which == 2:
        _convert_leaves_nothing(tmp_path, folder, name)


def _patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new.ljust(len(old)))


BAD_TAGS = {
    "position abc": (b"0.0\\0.0\\2.5000", b"abc"),
    "position two values": (b"0.0\\0.0\\2.5000", b"0\\0"),
    "position nan": (b"0.0\\0.0\\2.5000", b"0\\0\\nan"),
    "position inf": (b"0.0\\0.0\\2.5000", b"0\\0\\inf"),
    "spacing text": (b"0.7\\0.8", b"a\\b"),
    "spacing nan": (b"0.7\\0.8", b"nan\\1"),
    "slope text": (b"(\x00S\x10DS\x02\x001 ", b"(\x00S\x10DS\x02\x00x "),  # (0028,1053) RescaleSlope
    "intercept text": (b"-1024", b"HU"),
}


@pytest.mark.parametrize("case", list(BAD_TAGS))
def test_dicom_bad_numeric_tags(tmp_path, series, case):
    old, new = BAD_TAGS[case]
    slices = list(series)
    slices[1] = _patched(slices[1], old, new)
    folder = _write_series(tmp_path / "s", slices)
    message = refused(lambda: read_dicom_series(folder), "b.dcm")
    assert {
        "position": "ImagePositionPatient",
        "spacing": "PixelSpacing",
        "slope": "RescaleSlope",
        "intercept": "RescaleIntercept",
    }[case.split()[0]] in message


@pytest.mark.parametrize("rows, cols", [(60000, 60000), (65535, 1), (0, 24)])
def test_dicom_huge_or_empty_rows_and_columns(tmp_path, series, rows, cols):
    slices = []
    for data in series:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.Rows, ds.Columns = rows, cols
        buf = io.BytesIO()
        ds.save_as(buf)
        slices.append(buf.getvalue())
    folder = _write_series(tmp_path / "s", slices)
    refused(lambda: read_dicom_series(folder), "a.dcm")


def test_dicom_gap_is_refused(tmp_path):
    folder = _write_series(tmp_path / "s", [_slice_bytes(k) for k in (0, 1, 3, 4)], names=("a", "b", "c", "d"))
    message = refused(lambda: read_dicom_series(folder), "b")
    assert "c" in message and "1 slice(s) missing" in message
    _convert_leaves_nothing(tmp_path, folder, "1 slice(s) missing")


@FUZZ
@given(missing=st.integers(1000, 10**9))
def test_dicom_huge_gap_with_allow_gaps_stays_within_the_budget(tmp_path, missing):
    # positions 0, 2.5, 5, then far away: whole missing slices by the thousands or billions; never allocated
    slices = [_slice_bytes(k) for k in range(3)] + [_slice_bytes(3, z=2.5 * (3 + missing))]
    folder = _write_series(_fresh(tmp_path) / "s", slices, names=("a", "b", "c", "d"))
    message = refused(lambda: read_dicom_series(folder, allow_gaps=True, max_voxels=24 * 24 * 1000), "s")
    assert "exceeds the limit" in message or "irregular" in message


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="real dcmqi CT slices not available here")
@settings(FUZZ, max_examples=25)
@given(which=st.integers(0, 2), fraction=st.floats(0, 1, exclude_max=True), changes=edits)
def test_real_ct_slices_truncated_or_corrupted(tmp_path, which, fraction, changes):
    folder = _fresh(tmp_path) / "ct"
    shutil.copytree(REAL_CT, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    victim = sorted(folder.iterdir())[which]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(fraction * len(data))])
    refused(lambda: read_dicom_series(folder), victim.name)
    victim.write_bytes(_flip(data, changes))
    refused_or_valid(lambda: read_dicom_series(folder), ("01.dcm", "02.dcm", "03.dcm"), _three_slices)


# ------------------------------------------------------------------------------------------------ NIfTI


@pytest.fixture(scope="module")
def nifti_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("nii")
    return {s: Blob(write_nifti(_volume(), folder / f"v{s}").read_bytes()) for s in (".nii", ".nii.gz")}


@FUZZ
@given(fraction=st.floats(0, 1, exclude_max=True), gz=st.booleans())
def test_nifti_truncated(tmp_path, nifti_files, fraction, gz):
    suffix = ".nii.gz" if gz else ".nii"
    data = nifti_files[suffix]
    path = _fresh(tmp_path) / f"cut{suffix}"
    path.write_bytes(data[: int(fraction * len(data))])
    refused(lambda: read_volume(path), path.name)


@settings(FUZZ, max_examples=200)
@given(changes=st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6))
def test_nifti_corrupted_header(tmp_path, nifti_files, changes):
    path = _fresh(tmp_path) / "flipped.nii"
    path.write_bytes(_flip(nifti_files[".nii"], changes))
    refused_or_valid(
        lambda: read_nifti(path, max_voxels=10**6),
        "flipped.nii",
        lambda vol: isinstance(vol, Volume) and vol.array.size <= 10**6,
    )


def _nifti_bytes_with(**fields) -> bytes:
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    data = bytearray(img.header.binaryblock + b"\0" * 4 + np.zeros(120, np.int16).tobytes())
    if "dims" in fields:
        data[40:48] = struct.pack("<4h", len(fields["dims"]), *fields["dims"][:3])
    if "pixdim" in fields:
        data[80:92] = struct.pack("<3f", *fields["pixdim"])
    return bytes(data)


BAD_NIFTI = {
    "huge dims": lambda: _nifti_bytes_with(dims=(3, 30000, 30000, 30000)),
    "negative dims": lambda: _nifti_bytes_with(dims=(3, -4, 5, 6)),
    "zero spacing": lambda: _nifti_bytes_with(pixdim=(0.0, 1.0, 1.0)),
    "negative spacing": lambda: _nifti_bytes_with(pixdim=(1.0, -1.0, 1.0)),
    "nan spacing": lambda: _nifti_bytes_with(pixdim=(0.0, -1.0, float("nan"))),
}


@pytest.mark.parametrize("case", [*BAD_NIFTI, "complex", "nan values", "2d"])
def test_nifti_hostile_headers_and_values(tmp_path, case):
    path = tmp_path / "bad.nii"
    if case in BAD_NIFTI:
        path.write_bytes(BAD_NIFTI[case]())
    else:
        array = {
            "complex": np.ones((3, 4, 5), np.complex128),
            "nan values": np.full((3, 4, 5), np.nan, np.float32),
            "2d": np.zeros((4, 5), np.float32),
        }[case]
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    refused(lambda: read_volume(path), "bad.nii")
    _convert_leaves_nothing(tmp_path, path, "bad.nii")


# ------------------------------------------------------------------------------------------------ PNG, TIFF


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 256))
        + _chunk(b"IEND", b"")
    )


@FUZZ
@given(
    width=st.integers(1, 2**31 - 1),
    height=st.integers(1, 2**31 - 1),
    kind=st.sampled_from([(8, 0), (16, 0), (8, 2), (8, 6), (1, 0)]),
)
def test_png_declaring_huge_dimensions(tmp_path, monkeypatch, width, height, kind):
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", str(2**20))
    path = _fresh(tmp_path) / "crafted.png"
    path.write_bytes(_png_declaring(width, height, *kind))
    if width * height <= 2**20 and width * height * 2 <= 256:
        return  # the 256 data bytes may really hold such a tiny image
    refused(lambda: read_image(path), "crafted.png")
    refused(lambda: read_mask(path, 2), "crafted.png")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("img")
    arr = np.random.default_rng(2).integers(0, 255, (40, 30), dtype=np.uint8)
    Image.fromarray(arr).save(folder / "a.png")
    tifffile.imwrite(folder / "a.tif", arr)
    tifffile.imwrite(folder / "c.tif", arr, compression="zlib")
    return {name: Blob((folder / name).read_bytes()) for name in ("a.png", "a.tif", "c.tif")} | {
        "array": Blob(arr.tobytes())
    }


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(["a.png", "a.tif", "c.tif"]), fraction=st.floats(0, 1, exclude_max=True))
def test_images_truncated(tmp_path, images, name, fraction):
    data = images[name]
    path = _fresh(tmp_path) / f"cut{Path(name).suffix}"
    path.write_bytes(data[: int(fraction * len(data))])

    def intact(arr):  # a PNG cut inside IEND still decodes fully
        assert arr.tobytes() == images["array"], "a truncated image was read with made-up pixels"

    refused_or_valid(lambda: read_image(path), path.name, intact)


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(["a.png", "a.tif", "c.tif"]), changes=edits)
def test_images_corrupted(tmp_path, images, name, changes):
    path = _fresh(tmp_path) / f"flipped{Path(name).suffix}"
    path.write_bytes(_flip(images[name], changes))
    refused_or_valid(lambda: read_image(path), path.name, lambda arr: arr.ndim == 2)


@pytest.mark.parametrize("case", ["nan", "inf", "pages", "complex", "volume page"])
def test_tiff_hostile_content(tmp_path, case):
    path = tmp_path / "bad.tif"
    if case == "pages":
        tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    elif case == "volume page":
        tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint8), volumetric=True, photometric="minisblack")
    elif case == "complex":
        tifffile.imwrite(path, np.ones((8, 8), np.complex64))
    else:
        arr = np.ones((8, 8), np.float32)
        arr[3, 4] = np.nan if case == "nan" else -np.inf
        tifffile.imwrite(path, arr)
    refused(lambda: read_image(path), "bad.tif")


# ------------------------------------------------------------------------------------------------ zips


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _declare_size(data: bytes, size: int) -> bytes:
    """The zip with its (only) member's uncompressed size in the central directory set to ``size``."""
    i = data.rindex(b"PK\x01\x02")
    return data[: i + 24] + struct.pack("<I", size) + data[i + 28 :]


EVIL_NAMES = st.one_of(
    st.sampled_from(["../x.dcm", "a/../../x.dcm", "/etc/passwd", "C:/x.dcm", "..\\x.dcm", "a\\..\\..\\x"]),
    st.builds(lambda a, b: f"{a}/../{b}", st.text("abc/", min_size=0, max_size=6), st.text("xyz", min_size=1)),
)


@FUZZ
@given(name=EVIL_NAMES)
def test_zip_traversal_names(tmp_path, series, name):
    zpath = _fresh(tmp_path) / "evil.zip"
    zpath.write_bytes(_zip_bytes({"a.dcm": series[0], name: b"x"}))
    refused(lambda: read_dicom_series(zpath), "evil.zip")
    assert not list(tmp_path.rglob("x.dcm")) and not list(tmp_path.rglob("passwd"))


@FUZZ
@given(size=st.integers(17 * 2**20, 2**32 - 1))
def test_zip_declaring_a_huge_member(tmp_path, series, size):
    zpath = _fresh(tmp_path) / "declared.zip"
    zpath.write_bytes(_declare_size(_zip_bytes({"a.dcm": series[0]}), size))
    refused(lambda: read_dicom_series(zpath), "declared.zip")


@pytest.mark.parametrize("case", ["ratio", "members", "total", "garbage", "lying size"])
def test_zip_bombs_and_limits(tmp_path, series, case):
    zpath = tmp_path / "bomb.zip"
    options = {}
    if case == "ratio":
        zpath.write_bytes(_zip_bytes({"big.dcm": bytes(20 * 2**20)}))
    elif case == "members":
        zpath.write_bytes(_zip_bytes({f"{k}.dcm": b"" for k in range(20_001)}))
    elif case == "total":
        zpath.write_bytes(_zip_bytes({"a.dcm": series[0], "b.dcm": series[1]}))
        options = {"max_zip_bytes": len(series[0])}
    elif case == "garbage":
        zpath.write_bytes(b"PK\x03\x04" + os.urandom(500))
    else:  # the directory says 100 bytes, the member holds more: the copy stops, the CRC check fails
        zpath.write_bytes(_declare_size(_zip_bytes({"a.dcm": series[0]}), 100))
    refused(lambda: read_dicom_series(zpath, **options), "bomb.zip")
    if not options:
        _convert_leaves_nothing(tmp_path, zpath, "bomb.zip")


@FUZZ
@given(
    name=st.text(st.characters(codec="utf-8", exclude_characters="/\\"), min_size=1, max_size=12).filter(
        lambda n: not n.startswith(".") and "__MACOSX" not in n
    )
)  # hidden names are skipped, by design
def test_zip_member_names_with_control_characters_stay_on_one_line(tmp_path, series, name):
    zpath = _fresh(tmp_path) / "names.zip"
    zpath.write_bytes(_zip_bytes({f"{name}.dcm": series[0][:300], "b.dcm": series[1]}))
    refused(lambda: read_dicom_series(zpath), "names.zip")
