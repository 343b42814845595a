"""A zip of 2D slice images (PNG/TIFF, 8- or 16-bit grey) of one scan, read as one stack for a 2D model.

A 2D model trained on the slices of scans (:attr:`medseg.server.registry.ModelEntry.takes_stacks`, e.g. the
UW-Madison GI-tract models) segments a whole scan slice by slice: a zip of its slice images, or a volume
(NIfTI, HDF5, DICOM). A zip is taken as slices (input format ``slices``) when most of its members are
PNG/TIFF images and none is named like DICOM (.dcm); otherwise it is a zipped DICOM series as before
(:func:`zip_holds_slices`). Member names decide the order:

* the UW-Madison competition's names ``slice_SSSS_W_H_pw_ph.png`` (every member): ordered by the slice
  number SSSS (each number once), the pixel spacing (pw × ph mm) and the size (W × H) read from the name
  and checked against the image;
* any other names: natural order of the member paths (``slice2`` before ``slice10``), spacing unknown.

The slice thickness is never in a name: it is recorded as unknown (``None``) in the study, so no volume in ml
is claimed; the exports place the slices 1 mm apart. Checks, each refusal naming the zip and the member:
the server's zip policy first (:func:`medseg.formats.zip_safety.check_zip`, before anything is extracted; the
extraction itself copies at most the declared bytes under names made here), then every member must be a
slice image (directories and the operating system's ``__MACOSX/`` and hidden files are left out), all slices
the same size and bit depth, the sum of their pixels within the voxel budget — read from the headers
before any pixel is decoded.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np

from medseg.data.folder import IMAGE_SUFFIXES, read_image
from medseg.data.uwgi import parse_scan_filename
from medseg.errors import DataValidationError
from medseg.formats.dicom_headers import name_role
from medseg.formats.images import image_shape
from medseg.formats.limits import check_voxels, printable
from medseg.formats.volume import Volume
from medseg.formats.zip_safety import ZipPolicy, check_zip, extract_zip

FORMAT = "slices"


def _junk(name: str) -> bool:
    """Folders and what operating systems add to zips (``__MACOSX/``, ``.DS_Store``, ``._x``)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.endswith("/") or not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _is_image(name: str) -> bool:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower() in IMAGE_SUFFIXES


def zip_holds_slices(path: Path) -> bool:
    """Whether the zip at ``path`` is a stack of slice images rather than a DICOM series: at least half of
    its (non-junk) members are PNG/TIFF images, and none is named like a DICOM file. An unreadable zip is
    not (the DICOM path names its problem)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not _junk(n)]
    except Exception:  # noqa: BLE001 - any damage: the DICOM reader's check reports it
        return False
    images = sum(_is_image(n) for n in names)
    return images > 0 and 2 * images >= len(names) and not any(name_role(n) == "dicom" for n in names)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _order(members: list[str], zpath: Path) -> tuple[list[int], dict | None]:
    """Indices of ``members`` in slice order and the competition names' spacing (None when not all are such
    names)."""
    parsed = []
    for m in members:
        try:
            parsed.append(parse_scan_filename(PurePosixPath(m).name))
        except DataValidationError:
            parsed = None
            break
    if parsed is None:
        return sorted(range(len(members)), key=lambda i: _natural_key(members[i])), None
    seen: dict[int, str] = {}
    for m, p in zip(members, parsed, strict=True):
        if p["slice"] in seen:
            raise DataValidationError(
                zpath,
                f"slice number {p['slice']:04d} appears twice ({printable(seen[p['slice']])!r} "
                f"and {printable(m)!r}): upload the slices of one scan per study",
            )
        seen[p["slice"]] = m
    order = sorted(range(len(members)), key=lambda i: parsed[i]["slice"])
    first = parsed[order[0]]
    for i in order:
        p = parsed[i]
        if abs(p["pixel_w"] - first["pixel_w"]) > 1e-6 or abs(p["pixel_h"] - first["pixel_h"]) > 1e-6:
            raise DataValidationError(
                zpath,
                f"slice {printable(members[i])!r} declares a pixel spacing of "
                f"{p['pixel_w']:g}×{p['pixel_h']:g} mm, slice "
                f"{printable(members[order[0]])!r} {first['pixel_w']:g}×"
                f"{first['pixel_h']:g} mm: the slices of one scan share one",
            )
    return order, {"parsed": parsed, "pixel_w": first["pixel_w"], "pixel_h": first["pixel_h"]}


def _depth(dtype: np.dtype) -> str:
    return f"{dtype.itemsize * 8}-bit" if dtype.kind in "iu" else str(dtype)


def _member_error(zpath: Path, name: str, path: Path, exc: DataValidationError) -> DataValidationError:
    """A reader's error about an extracted member, said of the member (never of the folder it was put in)."""
    problem = exc.problem.replace(str(path), printable(name)).replace(str(path.parent), "")
    return DataValidationError(zpath, f"slice {printable(name)!r}: {problem}")


def read_slice_zip(
    zpath: Path, work_dir: Path, *, policy: ZipPolicy | None = None, max_voxels: int | None = None
) -> Volume:
    """The slices of the zip at ``zpath`` as one Volume (D, H, W) in their stored dtype, extracted into a
    temporary folder under ``work_dir`` (removed again). ``meta``: ``format`` "slices", ``slice_names``
    (member names in slice order), ``pixel_spacing`` ((y, x) mm, or None when the names do not give it);
    the Volume's spacing is (1, y, x) (1 where unknown). Raises DataValidationError naming ``zpath`` and
    the member (see the module docstring)."""
    zpath = Path(zpath)
    infos = check_zip(zpath, policy)
    members = [i.filename for i in infos if not i.is_dir() and not _junk(i.filename)]
    others = [m for m in members if not _is_image(m)]
    if others:
        listed = ", ".join(repr(printable(m)) for m in others[:3]) + (
            f" and {len(others) - 3} more" if len(others) > 3 else ""
        )
        raise DataValidationError(
            zpath,
            f"zip member {listed} is not a slice image: a zip of slices holds only the PNG/TIFF slices of one scan",
        )
    if not members:
        raise DataValidationError(zpath, "the zip holds no PNG/TIFF slice images")
    order, named = _order(members, zpath)
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="slices-", dir=work_dir))
    try:
        wanted = set(members)
        extracted = {name: path for path, name in extract_zip(zpath, tmp, policy, keep=lambda n: n in wanted)}
        paths = [extracted[printable(members[i])] for i in order]
        names = [members[i] for i in order]
        shapes = []
        for name, path in zip(names, paths, strict=True):
            try:
                shapes.append(tuple(image_shape(path))[:2])
            except DataValidationError as exc:
                raise _member_error(zpath, name, path, exc) from exc
        for i, (name, shape) in enumerate(zip(names, shapes, strict=True)):
            if named is not None:
                p = named["parsed"][order[i]]
                if shape != (p["height"], p["width"]):
                    raise DataValidationError(
                        zpath,
                        f"slice {printable(name)!r} is {shape[1]}×{shape[0]} pixels, its "
                        f"name declares {p['width']}×{p['height']}",
                    )
            if shape != shapes[0]:
                raise DataValidationError(
                    zpath,
                    f"slice {printable(name)!r} is {shape[1]}×{shape[0]} pixels, slice "
                    f"{printable(names[0])!r} {shapes[0][1]}×{shapes[0][0]}: all slices of "
                    "one scan must be the same size",
                )
        check_voxels(zpath, (len(names), *shapes[0]), f"the stack of {len(names)} slices", max_voxels)
        arrays = []
        for name, path in zip(names, paths, strict=True):
            try:
                array = read_image(path, max_voxels=max_voxels)
            except DataValidationError as exc:
                raise _member_error(zpath, name, path, exc) from exc
            if arrays and array.dtype != arrays[0].dtype:
                raise DataValidationError(
                    zpath,
                    f"slice {printable(name)!r} holds {_depth(array.dtype)} pixels, slice "
                    f"{printable(names[0])!r} {_depth(arrays[0].dtype)}: all slices of "
                    "one scan must have the same bit depth",
                )
            arrays.append(array)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pixel = (named["pixel_h"], named["pixel_w"]) if named is not None else None
    return Volume(
        np.stack(arrays),
        (1.0, *(pixel or (1.0, 1.0))),
        modality=None,
        meta={
            "format": FORMAT,
            "source": str(zpath),
            "slice_names": names,
            "pixel_spacing": list(pixel) if pixel else None,
        },
    )


def study_spacing(volume: Volume) -> list | None:
    """The spacing a study of this stack records: [None (thickness unknown), y, x] or None."""
    pixel = volume.meta.get("pixel_spacing")
    return [None, *pixel] if pixel else None


__all__ = ["FORMAT", "read_slice_zip", "study_spacing", "zip_holds_slices"]
