"""Hostile uploads against ``POST /api/studies`` (the route the page uses), generated where generating helps.

Every case must be refused cleanly: a 4xx status (never a 500: the test client re-raises a server error),
a JSON body with the ``problem`` on one line, the ``file`` at fault where there is one, no server path in
the message, and nothing left behind: no new file anywhere under the server home (studies/ and tmp/
included), no study or result row. One server serves the whole module, so a case that leaked would also
show up in every later case.

Generated inputs (hypothesis, derandomized so CI sees the same ones every run, no example database):
random bytes under each accepted extension, with and without the format's magic bytes (8 × 16), truncated
valid files (4 × 8), hostile zip member names (12), hostile multipart file names (25) and random multipart
bodies (15): 212 in all, beside 22 hand-made requests (a PNG whose header claims 8000 × 8000, zip bombs, a
zip lying about its sizes, too many files or members, an MR series for a CT model, malformed multipart,
odd names on valid files). About 10 s on one core.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import tracemalloc
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medseg.formats.volume_files import write_dicom_series
from medseg.server.settings import MiB, ServerSettings
from medseg.server.upload import MAX_SHOWN_NAME

# The server fixtures (tiny models, a phantom in every format, the Server helper) live in tests/server's
# conftest, which pytest does not offer to this folder: load it once by path and reuse its fixtures.
_spec = importlib.util.spec_from_file_location("_server_conftest", Path(__file__).parents[1] / "server" / "conftest.py")
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
model_dirs, phantom = _conftest.model_dirs, _conftest.phantom


def examples(n: int) -> settings:
    """``n`` generated inputs, the same every run (CI must not find a new failure by chance), no example
    database written into the checkout, no deadline (a shared CI core is slow now and then)."""
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def nifti_header(shape: tuple[int, ...]) -> bytes:
    """A valid NIfTI-1 header (and its 4-byte extension flag) for int16 data of ``shape``, without the data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    return header.binaryblock + bytes(4)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# model for each accepted extension ("" = a DICOM file without extension), and the format's magic bytes
EXTENSIONS = {
    ".png": "chromo2d",
    ".tif": "chromo2d",
    ".nii": "ct_full",
    ".nii.gz": "ct_full",
    ".h5": "ct_full",
    ".dcm": "ct_full",
    ".zip": "ct_full",
    "": "ct_full",
}
MAGIC = {
    ".png": PNG_SIGNATURE,
    ".tif": b"II*\x00",
    ".nii": nifti_header((64, 64, 64)),
    ".nii.gz": b"\x1f\x8b\x08\x00",
    ".h5": b"\x89HDF\r\n\x1a\n",
    ".dcm": bytes(128) + b"DICM",
    ".zip": b"PK\x03\x04",
    "": bytes(128) + b"DICM",
}
BOUNDARY = "fuzzboundary7d1e"


class Fuzz:
    """The module's server, a signed-in user and the checks every case ends with."""

    def __init__(self, server):
        self.server = server
        self.headers = server.user("mallory")
        self.root = server.settings.root
        self.outside = server.settings.home.parent  # the module's temporary folder, home included
        self.baseline = self.files()

    def files(self) -> set[Path]:
        """Every file under the module's folder but the database's own (its journal comes and goes)."""
        return {p for p in self.outside.rglob("*") if not p.name.startswith("medseg.sqlite3")}

    def post(self, files: list[tuple[str, bytes]], model: str = "ct_full", field: str = "files"):
        return self.server.client.post(
            "/api/studies",
            headers=self.headers,
            data={"model": model},
            files=[(field, (name, io.BytesIO(content))) for name, content in files],
        )

    def post_raw(self, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}"):
        return self.server.client.post(
            "/api/studies", headers={**self.headers, "Content-Type": content_type}, content=body
        )

    def refused(self, response, file: str | None = None, status: int | None = None, words: str = "") -> dict:
        """The checks of every case; returns the JSON body."""
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert status is None or response.status_code == status, (response.status_code, response.text)
        body = response.json()
        assert body["problem"] and "\n" not in body["detail"] and str(self.root) not in body["detail"], body
        assert words in body["detail"], body
        if file is not None:
            assert body["file"] == file, body
        self.assert_clean()
        return body

    def assert_clean(self) -> None:
        self.server.assert_nothing_stored()
        assert self.files() == self.baseline


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory, model_dirs) -> Fuzz:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    server = _conftest.Server(
        ServerSettings(
            home=home,
            models=[model_dirs["ct_full"], model_dirs["chromo"]],
            torch_threads=None,
            device="cpu",
            max_files=40,
            max_zip_members=50,
            max_unzipped_bytes=64 * MiB,
        )
    )
    return Fuzz(server)


@contextmanager
def limits(fuzz: Fuzz, **changes):
    """Change server settings for one case."""
    before = {k: getattr(fuzz.server.settings, k) for k in changes}
    for k, v in changes.items():
        setattr(fuzz.server.settings, k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            setattr(fuzz.server.settings, k, v)


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of zeros: a few dozen KB that decode to width × height bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), bytes(width + 1)  # each row: filter type 0, then the pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def multipart(filename: str, content: bytes, model: str = "ct_full") -> bytes:
    """A multipart body written by hand, so file names reach the server exactly as given."""
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode("utf-8", "surrogatepass")
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


# ------------------------------------------------------------------------------------------------ generated


@pytest.mark.parametrize("ext", list(EXTENSIONS))
@examples(16)
@given(data=st.binary(max_size=4096), magic=st.booleans())
def test_random_bytes_under_every_extension(fuzz, ext, data, magic):
    name = f"random{ext}"
    fuzz.refused(fuzz.post([(name, MAGIC.get(ext, b"") * magic + data)], model=EXTENSIONS[ext]), file=name)


TRUNCATE = {
    "nifti": ("case_image.nii.gz", "ct_full"),
    "hdf5": ("case.h5", "ct_full"),
    "dicom_zip": ("series.zip", "ct_full"),
    "png": ("slice.png", "chromo2d"),
}


@pytest.mark.parametrize("key", list(TRUNCATE))
@examples(8)
@given(fraction=st.floats(0.0, 0.9))
def test_truncated_valid_files(fuzz, phantom, key, fraction):
    name, model = TRUNCATE[key]
    content = phantom[key].read_bytes()
    fuzz.refused(fuzz.post([(name, content[: int(len(content) * fraction)])], model=model), file=name)


@examples(12)
@given(
    prefix=st.sampled_from(["../", "/", "/etc/", "C:/", "a/../../", "..\\", "x/..\\..\\", "\\\\host\\share\\"]),
    stem=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12),
)
def test_zip_members_with_absolute_or_parent_paths(fuzz, prefix, stem):
    member = f"{prefix}{stem}.dcm"
    body = fuzz.refused(
        fuzz.post([("series.zip", zip_bytes({"ok/IM1.dcm": b"DICM", member: b"DICM" * 8}))]), file="series.zip"
    )
    assert "path traversal" in body["problem"] or "absolute" in body["problem"]


@examples(25)
@given(
    name=st.one_of(
        st.text(min_size=0, max_size=40).map(lambda s: f"../../{s}.png"),
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=700),
        st.sampled_from(["x\x00.png", "a\x00/../../b.png", "..", ".", "/", "\\..\\..\\x.png", "con.png", "é" * 300]),
    )
)
def test_hostile_file_names(fuzz, name):
    body = fuzz.refused(fuzz.post_raw(multipart(name, b"certainly not an image", "chromo2d")))
    shown = body["file"]
    if shown is not None:  # 415/422 name the file as the client called it: base name, printable, bounded
        assert "/" not in shown and "\\" not in shown and "\x00" not in shown and len(shown) <= MAX_SHOWN_NAME


@examples(15)
@given(body=st.binary(max_size=2048), prefix=st.sampled_from([b"", f"--{BOUNDARY}\r\n".encode()]))
def test_random_multipart_bodies(fuzz, body, prefix):
    fuzz.refused(fuzz.post_raw(prefix + body))


# ------------------------------------------------------------------------------------------------ hand-made


def test_png_whose_header_claims_8000_by_8000(fuzz):
    """Refused from the header, before 64 MB of pixels are decoded (the readers' header-size checks)."""
    content = png_claiming(8000, 8000)
    with limits(fuzz, max_voxels=4096 * 4096):
        tracemalloc.start()
        try:
            response = fuzz.post([("huge.png", content)], model="chromo2d")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    fuzz.refused(response, file="huge.png", status=422)
    assert peak < 32 * MiB, f"{peak / MiB:.0f} MiB allocated: the pixels were decoded before the size was checked"


ZIPS = {
    "ratio bomb": ({"bomb.dcm": bytes(24 * MiB)}, "zip bomb"),
    "declared size over the limit": ({f"IM{k}.dcm": bytes(17 * MiB) for k in range(4)}, "unpacks to"),
    "too many members": ({f"IM{k:03d}.dcm": b"DICM" for k in range(51)}, "more than the limit of 50"),
    "nested zip": ({"inner.zip": zip_bytes({"IM1.dcm": b"DICM"})}, "no DICOM image files"),
    "no DICOM in it": ({"readme.txt": b"hello"}, "no DICOM image files"),
    "empty": ({}, ""),
}


@pytest.mark.parametrize("case", list(ZIPS))
def test_hostile_zips(fuzz, case):
    members, words = ZIPS[case]
    fuzz.refused(fuzz.post([("series.zip", zip_bytes(members))]), file="series.zip", status=422, words=words)


def test_zip_whose_member_lies_about_its_size(fuzz, phantom):
    """A member declaring 100 bytes that inflates to 8 MiB: the reader stops at the declared size."""
    real = zip_bytes({"IM0001.dcm": bytes(8 * MiB)})
    local = real.find(b"PK\x03\x04")
    central = real.find(b"PK\x01\x02")
    lying = bytearray(real)
    struct.pack_into("<I", lying, local + 22, 100)  # uncompressed size in the local header...
    struct.pack_into("<I", lying, central + 24, 100)  # ...and in the central directory
    fuzz.refused(fuzz.post([("lying.zip", bytes(lying))]), file="lying.zip")


def test_too_many_files_and_many_corrupt_ones(fuzz):
    fuzz.refused(fuzz.post([(f"IM{k:03d}.dcm", b"DICM") for k in range(41)]), status=413, words="more than 40 files")
    files = [(f"IM{k:03d}.dcm", bytes(128) + b"DICM" + bytes([k]) * 64) for k in range(30)]
    body = fuzz.refused(fuzz.post(files), status=422)
    assert body["file"].startswith("IM") and body["file"].endswith(".dcm")  # the slice at fault


def test_truncated_slice_in_a_dicom_series(fuzz, phantom):
    files = [(f.name, f.read_bytes()) for f in sorted(phantom["dicom_dir"].iterdir())]
    files[3] = (files[3][0], files[3][1][: len(files[3][1]) // 2])
    fuzz.refused(fuzz.post(files), status=422)


def test_mr_series_for_a_ct_model(fuzz, phantom, tmp_path):
    series = write_dicom_series(phantom["image"].with_array(phantom["image"].array, modality="MR"), tmp_path / "mr")
    files = [(f.name, f.read_bytes()) for f in sorted(series.iterdir())]
    fuzz.refused(
        fuzz.post([("mr.zip", zip_bytes(dict(files)))]),
        file="mr.zip",
        status=422,
        words="modality is MR, but model 'ct_full' needs CT",
    )
    fuzz.refused(fuzz.post(files), file="DICOM series (8 files)", status=422, words="needs CT")


def test_malformed_requests(fuzz):
    header_break = multipart("a.png\r\nContent-Type: text/html", b"x", "chromo2d")
    for response in (
        fuzz.post_raw(b"--x--", "multipart/form-data"),  # no boundary
        fuzz.post_raw(b"{}", "application/json"),
        fuzz.post_raw(multipart("a.nii.gz", b"x")[:-30]),  # cut in the middle of the part
        fuzz.post_raw(header_break),
        fuzz.post([("a.nii.gz", b"x")], field="reference"),  # a reference without an image
        fuzz.post([("a.nii.gz", b"x")], model="x" * 5000),
    ):
        fuzz.refused(response)


def test_odd_names_with_valid_content_are_stored_safely(fuzz, phantom):
    """Not a refusal: the client's path is dropped, the name made safe and kept inside the study."""
    long_name = "n" * 400 + ".nii.gz"
    for name, key, model in (
        ("../../x.png", "png", "chromo2d"),
        ("..\\..\\x.png", "png", "chromo2d"),
        (long_name, "nifti", "ct_full"),
    ):
        r = fuzz.post_raw(multipart(name, phantom[key].read_bytes(), model))
        assert r.status_code == 201, r.text
        study = r.json()
        [stored] = (fuzz.server.settings.studies_dir / study["id"] / "input").iterdir()
        assert stored.name in ("x.png", long_name[-120:]) and len(study["name"]) <= MAX_SHOWN_NAME
        assert fuzz.server.client.delete(f"/api/studies/{study['id']}", headers=fuzz.headers).status_code == 204
        fuzz.assert_clean()
