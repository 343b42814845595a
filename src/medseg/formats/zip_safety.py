"""Zips, safely: the one zip policy of medseg and the one extraction, used by the CLI (``medseg data
convert``, ``medseg predict``: the DICOM reader) and by the server (upload check, DICOM-SEG export) alike.

A 244 KB zip can declare a 200 MiB member, and a member name can point outside the folder it is extracted
to. Every archive is therefore checked against a :class:`ZipPolicy` from its central directory
(:func:`check_zip`: total declared uncompressed size, compression ratio above 16 MiB, member count,
absolute or ``..`` member names) before anything is extracted. :func:`extract_zip` then copies the
members one by one into a folder under names made here, never the members' own paths, stops at the
declared size, and leaves out directories, symbolic links and the members the caller does not want.

All refusals are :class:`~medseg.errors.DataValidationError` with a one-line message naming the archive.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medseg.errors import DataValidationError
from medseg.formats.limits import MiB, exception_text, printable

__all__ = [
    "MAX_ZIP_BYTES",
    "ZipPolicy",
    "check_zip",
    "check_zip_members",
    "extract_zip",
    "is_zip",
    "safe_member_name",
]

MAX_ZIP_BYTES = 4 * 2**30  # 4 GiB of declared uncompressed content: a CT series is rarely above 1 GiB
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError)


@dataclass(frozen=True)
class ZipPolicy:
    """What an archive may hold: ``max_bytes`` declared uncompressed in all, ``max_ratio`` uncompressed /
    compressed for the archive and for each member once they unpack to more than ``ratio_from`` bytes
    (a CT slice compresses 2–5 to 1, a bomb 1000 to 1), ``max_members`` entries."""

    max_bytes: int = MAX_ZIP_BYTES
    max_ratio: float = 100.0
    max_members: int = 20_000
    ratio_from: int = 16 * MiB


def is_zip(path: str | Path) -> bool:
    """Whether ``path`` is a zip archive by its content (whatever its name)."""
    return zipfile.is_zipfile(path)


def safe_member_name(name: str) -> bool:
    """False for absolute member names (``/x``, ``C:x``) and names with a ``..`` part (path traversal)."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return False
    return ".." not in PurePosixPath(norm).parts


def check_zip_members(path: str | Path, infos: Sequence[zipfile.ZipInfo], policy: ZipPolicy | None = None) -> None:
    """Refuse an archive whose central directory (``infos``) breaks ``policy``: too many members, unsafe
    names, too many bytes declared, or a compression ratio only a zip bomb has."""
    policy = policy or ZipPolicy()
    if len(infos) > policy.max_members:
        raise DataValidationError(
            path, f"refusing the archive: it has {len(infos):,} members, more than the limit of {policy.max_members:,}"
        )
    for info in infos:
        if not safe_member_name(info.filename):
            raise DataValidationError(
                path,
                f"refusing the archive: member {info.filename!r} has an absolute path or "
                "'..' (path traversal); re-create the zip with relative member names",
            )
    declared = sum(i.file_size for i in infos)
    if declared > policy.max_bytes:
        raise DataValidationError(
            path,
            f"refusing the archive: it unpacks to {declared:,} bytes, more than the "
            f"limit of {policy.max_bytes:,} bytes (zip-bomb guard)",
        )
    packed = sum(i.compress_size for i in infos)
    for size, compressed, what in [
        (declared, packed, "the archive"),
        *((i.file_size, i.compress_size, f"member {i.filename!r}") for i in infos),
    ]:
        if size > policy.ratio_from and size > policy.max_ratio * max(compressed, 1):
            raise DataValidationError(
                path,
                f"refusing the archive: {what} is compressed "
                f"{size / max(compressed, 1):,.0f} to 1 (more than "
                f"{policy.max_ratio:g} to 1: a zip bomb?)",
            )


def check_zip(path: str | Path, policy: ZipPolicy | None = None) -> list[zipfile.ZipInfo]:
    """Open ``path`` as a zip and check its central directory against ``policy``; its members.

    Nothing is extracted: a refusal costs the reading of the directory only.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except _ZIP_ERRORS as exc:
        raise DataValidationError(path, f"not a readable zip archive ({exception_text(exc)})") from exc
    check_zip_members(path, infos, policy)
    return infos


def extract_zip(
    zpath: Path,
    dest: Path,
    policy: ZipPolicy | int | None = None,
    skipped: list[str] | None = None,
    *,
    keep: Callable[[str], bool] | None = None,
) -> list[tuple[Path, str]]:
    """Copy the zip's members into ``dest`` under made-up names; (file, printable member name) pairs.

    The archive is checked against ``policy`` (a :class:`ZipPolicy`, or just its ``max_bytes``) before
    anything is extracted; the copy also stops at the declared size. Directories, symbolic links and
    members whose name ``keep`` refuses (the DICOM reader keeps what may be DICOM:
    :func:`medseg.formats.dicom_headers.may_be_dicom`) are not extracted; the names of the last two go to
    ``skipped``. A member that cannot be decompressed is an error naming it.
    """
    if not isinstance(policy, ZipPolicy):
        policy = ZipPolicy() if policy is None else ZipPolicy(max_bytes=int(policy))
    try:
        zf = zipfile.ZipFile(zpath)
    except _ZIP_ERRORS as exc:
        raise DataValidationError(zpath, f"not a readable zip archive ({exception_text(exc)})") from exc
    out: list[tuple[Path, str]] = []
    with zf:
        infos = zf.infolist()
        check_zip_members(zpath, infos, policy)
        total = 0
        for k, info in enumerate(infos):
            if info.is_dir():
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000 or (keep is not None and not keep(info.filename)):
                if skipped is not None:
                    skipped.append(printable(info.filename))  # a symbolic link, README.txt, __MACOSX/._x, ...
                continue
            target = dest / f"m{k:06d}"
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > policy.max_bytes:
                            raise DataValidationError(
                                zpath,
                                f"refusing the archive: more than {policy.max_bytes:,} "
                                "bytes uncompressed (zip-bomb guard)",
                            )
                        dst.write(chunk)
            except DataValidationError:
                raise
            except Exception as exc:  # noqa: BLE001 - zipfile/zlib/bz2/lzma raise many types on a damaged member
                raise DataValidationError(
                    zpath, f"member {info.filename!r} cannot be extracted ({exception_text(exc)})"
                ) from exc
            out.append((target, printable(info.filename)))
    return out
