"""One voxel budget, one memory limit for whole data sets (medseg.formats.limits) and one zip policy
(medseg.formats.zip_safety), shared by the CLI readers and the server."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from medseg.errors import DataValidationError
from medseg.formats.limits import (
    DEFAULT_MAX_VOXELS,
    check_dataset_bytes,
    check_voxels,
    exception_text,
    voxel_budget,
)
from medseg.formats.zip_safety import ZipPolicy, check_zip


def test_voxel_budget_default_environment_and_argument(monkeypatch):
    monkeypatch.delenv("MEDSEG_MAX_VOXELS", raising=False)
    assert voxel_budget() == DEFAULT_MAX_VOXELS == 512**3
    assert check_voxels("a.png", (512, 512, 512)) == 2**27
    with pytest.raises(
        DataValidationError,
        match=r"a\.png: image of 134,217,729 voxels .* exceeds the limit of "
        r"134,217,728 voxels \(MEDSEG_MAX_VOXELS\)",
    ):
        check_voxels("a.png", (134_217_729,))
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", "1000")  # read at each call
    assert voxel_budget() == 1000
    with pytest.raises(DataValidationError, match=r"b\.nii: the volume of 1,001 voxels"):
        check_voxels("b.nii", (7, 11, 13), "the volume")
    assert check_voxels("b.nii", (7, 11, 13), max_voxels=2000) == 1001  # an explicit budget wins
    with pytest.raises(DataValidationError) as e:
        check_voxels("c.h5", (60000, 60000, 60000), max_voxels=10)  # Python ints: no overflow
    assert "216,000,000,000,000 voxels" in str(e.value) and "MEDSEG_MAX_VOXELS" not in str(e.value)
    monkeypatch.setenv("MEDSEG_MAX_VOXELS", "lots")
    with pytest.raises(DataValidationError, match="MEDSEG_MAX_VOXELS='lots' is not a whole number"):
        voxel_budget()


def test_negative_header_size_is_refused():
    with pytest.raises(DataValidationError, match="negative size"):
        check_voxels("x", (4, -1))


def test_dataset_bytes_limit(monkeypatch):
    monkeypatch.delenv("MEDSEG_MAX_DATASET_BYTES", raising=False)
    check_dataset_bytes("d.h5", 2**20)  # a MiB fits any machine
    monkeypatch.setenv("MEDSEG_MAX_DATASET_BYTES", str(2**20))
    with pytest.raises(DataValidationError, match=r"d\.h5: the data set would take 0\.00 GiB in memory, more than"):
        check_dataset_bytes("d.h5", 2**20 + 1)


def test_exception_text_is_one_line():
    assert exception_text(OSError("bad\n  local heap\tsignature")) == "OSError: bad local heap signature"
    assert exception_text(KeyError()) == "KeyError"


def _zip(path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_policy(tmp_path):
    ok = _zip(tmp_path / "ok.zip", {"a/IM1": b"x" * 100, "a/IM2": b"y" * 100})
    assert [i.filename for i in check_zip(ok)] == ["a/IM1", "a/IM2"]
    cases = {
        "members": (
            _zip(tmp_path / "many.zip", {f"{k}.dcm": b"" for k in range(5)}),
            ZipPolicy(max_members=4),
            "it has 5 members, more than the limit of 4",
        ),
        "traversal": (_zip(tmp_path / "evil.zip", {"../x.dcm": b"x"}), None, "'../x.dcm' has an absolute path"),
        "absolute": (_zip(tmp_path / "abs.zip", {"/etc/x": b"x"}), None, "absolute path"),
        "declared": (
            _zip(tmp_path / "big.zip", {"a.dcm": bytes(5000)}),
            ZipPolicy(max_bytes=4000),
            "it unpacks to 5,000 bytes, more than the limit of 4,000",
        ),
        "ratio": (_zip(tmp_path / "bomb.zip", {"a.dcm": bytes(17 * 2**20)}), None, "is compressed"),
    }
    for name, (path, policy, words) in cases.items():
        with pytest.raises(DataValidationError) as e:
            check_zip(path, policy)
        assert words in str(e.value) and path.name in str(e.value) and "\n" not in str(e.value), name
    (tmp_path / "no.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataValidationError, match=r"no\.zip: not a readable zip archive \(BadZipFile"):
        check_zip(tmp_path / "no.zip")


def test_a_highly_compressed_member_below_16_mib_is_fine(tmp_path):
    check_zip(_zip(tmp_path / "z.zip", {"zeros.dcm": bytes(8 * 2**20)}))  # ratio ~1000, but only 8 MiB


def test_server_refuses_with_the_same_policy(tmp_path):
    from medseg.server.settings import ServerSettings
    from medseg.server.storage import check_header_size, check_upload_zip
    from medseg.server.upload import UploadRefused

    settings = ServerSettings(home=tmp_path / "home", max_zip_members=2)
    path = _zip(tmp_path / "three.zip", {"a": b"", "b": b"", "c": b""})
    with pytest.raises(UploadRefused) as e:
        check_upload_zip(path, "three.zip", settings)
    with pytest.raises(DataValidationError) as same:
        check_zip(path, ZipPolicy(max_members=2))
    assert e.value.status == 422 and e.value.problem == same.value.problem

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(buf, format="PNG")
    png = tmp_path / "x.png"
    png.write_bytes(buf.getvalue())
    settings.max_voxels = 1000
    with pytest.raises(UploadRefused, match="1,200 voxels"):
        check_header_size(png, "png", "x.png", settings)
    settings.max_voxels = 1200
    check_header_size(png, "png", "x.png", settings)
    check_header_size(tmp_path / "three.zip", "nifti", "three.zip", settings)  # unreadable: the full read says why
