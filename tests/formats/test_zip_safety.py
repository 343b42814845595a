"""The one zip extraction of medseg (medseg.formats.zip_safety.extract_zip), used by the DICOM reader and the
server's DICOM-SEG export; the policy checks themselves are tested in test_limits.py."""

from __future__ import annotations

import zipfile

import pytest

from medseg.errors import DataValidationError
from medseg.formats.dicom_headers import may_be_dicom
from medseg.formats.zip_safety import ZipPolicy, extract_zip, is_zip


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_zip_made_up_names_keep_filter_and_skipped(tmp_path):
    zpath = _zip(tmp_path / "s.zip", {"a/IM1": b"one", "a/README.txt": b"hi", "__MACOSX/._IM1": b"x", "a/IM2": b"two"})
    link = zipfile.ZipInfo("a/link")
    link.external_attr = 0o120777 << 16  # a symbolic link
    with zipfile.ZipFile(zpath, "a") as zf:
        zf.writestr(link, "/etc/passwd")
        zf.writestr("a/sub/", b"")  # a directory entry
    out = tmp_path / "out"
    out.mkdir()
    skipped: list[str] = []
    got = extract_zip(zpath, out, skipped=skipped, keep=may_be_dicom)
    assert [(p.name, name) for p, name in got] == [("m000000", "a/IM1"), ("m000003", "a/IM2")]
    assert [p.read_bytes() for p, _ in got] == [b"one", b"two"]
    assert skipped == ["a/README.txt", "__MACOSX/._IM1", "a/link"]
    assert sorted(p.name for p in out.iterdir()) == ["m000000", "m000003"]
    everything = tmp_path / "all"
    everything.mkdir()
    assert len(extract_zip(zpath, everything)) == 4  # no keep filter: every regular file, links still left out


def test_extract_zip_applies_the_policy_before_extracting(tmp_path):
    zpath = _zip(tmp_path / "big.zip", {"a.dcm": bytes(5000)})
    for policy in (4000, ZipPolicy(max_bytes=4000)):
        with pytest.raises(DataValidationError, match="unpacks to 5,000 bytes, more than the limit of 4,000"):
            extract_zip(zpath, tmp_path, policy)
    assert not (tmp_path / "m000000").exists()
    (tmp_path / "no.zip").write_bytes(b"PK\x03\x04 truncated")
    assert not is_zip(tmp_path / "no.zip") and is_zip(zpath)
    with pytest.raises(DataValidationError, match=r"no\.zip: not a readable zip archive"):
        extract_zip(tmp_path / "no.zip", tmp_path)
