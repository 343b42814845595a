"""A real MR/CT volume and its organ label volume, written in the UW-Madison GI Tract layout.

So that medseg's GI reader (:mod:`medseg.data.uwgi`), models and competition metric can be checked on real
anatomy (the competition set itself cannot be downloaded here), :func:`volume_to_uwgi` writes one scan
(a case on one day)::

    <out>/train.csv                      id,class,segmentation (three rows per slice, CLASSES order)
    <out>/train/case{C}/case{C}_day{D}/scans/slice_{SSSS}_{W}_{H}_{pw}_{ph}.png   16-bit grey

and :func:`totalsegmentator_mr_to_uwgi` does it for a TotalSegmentator MR volume and its "total_mr" label
map (stomach → stomach, small_bowel → small_bowel, colon → large_bowel).

**Orientation.** medseg's volumes are ``(D, H, W) = (z, y, x)`` with LPS direction cosines
(:mod:`medseg.formats.volume`). A volume (or a volume file) is first turned, by axis permutations and flips
only (no resampling), to its nearest axial LPS grid: slices along patient S (slice 1 the most inferior),
rows along P (the top row anterior), columns along L (patient's right on the image's left) -- the usual
radiological display of axial slices. A volume whose direction is the identity (as the TotalSegmentator
examples) is written as it is: slice ``s`` is ``array[s - 1]``. A bare array is taken as already ``(D, H, W)``
axial and written as it is.

**Intensity.** One linear map for the whole volume, so that grey values compare across slices:
``png = round((value - offset) * scale)``. When every value is an integer and the values fit 16 bits after
shifting a negative minimum to 0, the map is exact (``scale`` 1, ``offset = min(minimum, 0)``), so
non-negative integer MR values are written raw, as the competition's PNGs are. Otherwise (fractional values,
or a range wider than 65535) the volume's minimum..maximum go linearly to 0..65535. The map is in the
summary (``intensity``).

**Pixel spacing.** ``pw`` is the column (x) spacing and ``ph`` the row (y) spacing, with two decimals, as in
the published names.

Files appear atomically: the scan folder is written under a hidden temporary name and renamed when complete,
``train.csv`` is rewritten under a temporary name and replaced (sorted by case, day, slice, then class); on
any failure what this call created is removed and an existing ``train.csv`` is left as it was. Bad input is a
:class:`~medseg.errors.DataValidationError` naming the file (or the argument) and the problem.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg.data.uwgi import CLASSES, parse_id, read_train_csv, rle_encode
from medseg.errors import DataValidationError
from medseg.formats.atomic import atomic_file
from medseg.formats.limits import printable
from medseg.formats.volume import Volume, check_values

__all__ = [
    "TOTALSEGMENTATOR_MR_ORGANS",
    "scan_filename",
    "totalsegmentator_mr_to_uwgi",
    "volume_to_uwgi",
    "write_train_csv",
]

#: The competition's classes and the TotalSegmentator "total_mr" class names they are made of.
TOTALSEGMENTATOR_MR_ORGANS: dict[str, tuple[str, ...]] = {
    "large_bowel": ("colon",),
    "small_bowel": ("small_bowel",),
    "stomach": ("stomach",),
}

_MAX_SLICES = 9999  # four digits in the ids and file names
_UINT16_MAX = 65535


# ------------------------------------------------------------------------------------------ names and csv


def scan_filename(slice: int, width: int, height: int, pixel_w: float, pixel_h: float) -> str:
    """``slice_{SSSS}_{W}_{H}_{pw}_{ph}.png`` (spacing in mm, two decimals): the inverse of
    :func:`medseg.data.uwgi.parse_scan_filename`."""
    return f"slice_{int(slice):04d}_{int(width)}_{int(height)}_{float(pixel_w):.2f}_{float(pixel_h):.2f}.png"


def write_train_csv(path: str | Path, rles: Mapping[str, Mapping[str, str]]) -> Path:
    """Write ``{id: {class: rle}}`` as a competition ``train.csv`` (id,class,segmentation; one row per id and
    class of :data:`~medseg.data.uwgi.CLASSES`, sorted by case, day, slice, then class), atomically: the
    inverse of :func:`medseg.data.uwgi.read_train_csv`."""
    path = Path(path)
    keyed = []
    for id_, by_class in rles.items():
        missing = [c for c in CLASSES if c not in by_class]
        if missing:
            raise DataValidationError(path, f"id {printable(str(id_))} has no RLE for class(es) {', '.join(missing)}")
        keyed.append((parse_id(id_), id_))
    keyed.sort()
    with atomic_file(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("id", "class", "segmentation"))
        for _, id_ in keyed:
            writer.writerows((id_, c, rles[id_][c]) for c in CLASSES)
    return path


def _write_png(path: Path, image: np.ndarray) -> None:
    """One (H, W) uint16 slice as a 16-bit grey PNG."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint16)).save(path, format="PNG", compress_level=1)


# ------------------------------------------------------------------------------------------ inputs


def _where(source) -> Path | None:
    return Path(source) if isinstance(source, (str, os.PathLike)) else None


def _error(where: Path | None, name: str, problem: str) -> DataValidationError:
    """An error naming the file, or the argument (``image``, ``labels``) for an array."""
    return DataValidationError(where, problem) if where is not None else DataValidationError(None, f"{name}: {problem}")


def _load(source, name: str) -> tuple[np.ndarray, Volume | None]:
    """(array, volume or None) of a path, a Volume or an array."""
    if isinstance(source, (str, os.PathLike)):
        from medseg.formats.volume_files import read_volume

        vol = read_volume(source)
        return vol.array, vol
    if isinstance(source, Volume):
        return source.array, source
    try:
        return np.asarray(source), None
    except Exception as exc:  # ragged lists and the like
        raise DataValidationError(None, f"{name}: cannot be read as an array ({exc})") from exc


def _axial_transform(volume: Volume) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """The axis order and flips that turn ``volume.array`` to its nearest axial LPS grid: slices along S,
    rows along P, columns along L (see the module docstring)."""
    dirs = volume.direction[:, [2, 1, 0]]  # column a: the LPS direction of array axis a (arrays are z, y, x)
    dirs = dirs / np.linalg.norm(dirs, axis=0)
    order: list[int] = []
    for component in (2, 1, 0):  # S → slices, P → rows, L → columns
        free = [a for a in range(3) if a not in order]
        order.append(max(free, key=lambda a: abs(dirs[component, a])))
    flips = tuple(bool(dirs[component, a] < 0) for component, a in zip((2, 1, 0), order, strict=True))
    return (order[0], order[1], order[2]), (flips[0], flips[1], flips[2])


def _apply(array: np.ndarray, order, flips) -> np.ndarray:
    out = array.transpose(order)
    return out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]


def _same_grid(image: Volume, labels: Volume, where: Path | None) -> None:
    problems = []
    if not np.allclose(image.spacing, labels.spacing, rtol=1e-4, atol=1e-6):
        problems.append(
            f"spacing {tuple(round(s, 4) for s in labels.spacing)} mm vs the image's "
            f"{tuple(round(s, 4) for s in image.spacing)} (z, y, x)"
        )
    if not np.allclose(image.origin, labels.origin, atol=1e-2):
        problems.append(
            f"origin {tuple(round(o, 3) for o in labels.origin)} mm vs the image's "
            f"{tuple(round(o, 3) for o in image.origin)}"
        )
    if not np.allclose(image.direction, labels.direction, atol=1e-4):
        problems.append(
            f"direction {labels.direction.round(4).tolist()} vs the image's {image.direction.round(4).tolist()}"
        )
    if problems:
        raise _error(where, "labels", "the label volume is not on the image's grid: " + "; ".join(problems))


def _intensity_map(image: np.ndarray) -> tuple[np.ndarray, dict]:
    """The uint16 volume and the map ``png = round((value - offset) * scale)`` (module docstring)."""
    lo, hi = float(image.min()), float(image.max())
    integral = image.dtype.kind in "biu" or bool(np.all(np.mod(image, 1) == 0))
    if integral and hi - min(lo, 0.0) <= _UINT16_MAX:
        offset, scale, mode = min(lo, 0.0), 1.0, "exact"
        out = (image.astype(np.int64) - int(offset)).astype(np.uint16)
    else:
        offset, mode = lo, "linear"
        scale = _UINT16_MAX / (hi - lo) if hi > lo else 1.0
        out = np.rint((image.astype(np.float64) - offset) * scale).clip(0, _UINT16_MAX).astype(np.uint16)
    return out, {"mode": mode, "offset": offset, "scale": scale, "min": lo, "max": hi}


def _check_int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise DataValidationError(None, f"{name} must be an integer ≥ {lo}, got {value!r}")
    return int(value)


def _check_organs(
    organ_labels: Mapping[str, Sequence[int]], labels: np.ndarray, where: Path | None
) -> dict[str, tuple[int, ...]]:
    if not isinstance(organ_labels, Mapping) or not organ_labels:
        raise DataValidationError(
            None, f"organ_labels must map organ names (of {', '.join(CLASSES)}) to label ids, got {organ_labels!r}"
        )
    unknown = [str(k) for k in organ_labels if k not in CLASSES]
    if unknown:
        raise DataValidationError(
            None,
            f"organ_labels: unknown organ name(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(CLASSES)}",
        )
    out: dict[str, tuple[int, ...]] = {}
    for organ, ids in organ_labels.items():
        ids = (ids,) if isinstance(ids, (int, np.integer)) else tuple(ids)
        if not ids or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 1 for i in ids):
            raise DataValidationError(
                None, f"organ_labels[{organ!r}] must be positive integer label ids, got {organ_labels[organ]!r}"
            )
        out[organ] = tuple(int(i) for i in ids)
    present = set(np.unique(labels).tolist())
    absent = {organ: [i for i in ids if i not in present] for organ, ids in out.items()}
    absent = {organ: ids for organ, ids in absent.items() if ids}
    if absent:
        listed = "; ".join(f"{organ} {ids}" for organ, ids in absent.items())
        raise _error(
            where, "labels", f"label id(s) absent from the label volume: {listed} (it holds {sorted(present)[:40]})"
        )
    return out


# ------------------------------------------------------------------------------------------ the converter


def volume_to_uwgi(
    image,
    labels,
    out_root: str | Path,
    *,
    case: int,
    day: int,
    organ_labels: Mapping[str, Sequence[int]],
    spacing: Sequence[float] | None = None,
    append: bool = True,
) -> dict:
    """Write ``image`` and its organ ``labels`` as scan ``case{case}_day{day}`` of the UW-Madison layout
    under ``out_root``; returns a summary (JSON-ready).

    ``image``, ``labels``: volume files (read with :func:`medseg.formats.volume_files.read_volume`),
    :class:`~medseg.formats.volume.Volume` objects (both turned to axial LPS, see the module docstring; label
    volumes must be on the image's grid) or ``(D, H, W)`` arrays (taken as axial, written as they are).
    ``organ_labels``: competition class (of :data:`~medseg.data.uwgi.CLASSES`) → the label ids that make it;
    a class left out gets empty masks. ``spacing``: for an array image, its ``(z, y, x)`` or in-plane
    ``(y, x)`` spacing in mm (required then; a volume's own spacing is used otherwise).
    ``append``: add to an existing ``train.csv`` (refusing ids it already holds); ``False`` refuses an
    ``out_root`` that already holds one.
    """
    case = _check_int(case, "case", 0)
    day = _check_int(day, "day", 0)
    img_where, lab_where = _where(image), _where(labels)
    img, img_vol, lab, lab_vol = _load_pair(image, labels, img_where, lab_where)
    img, lab, vox, orientation = _to_axial(img, lab, img_vol, lab_vol, img_where, lab_where, spacing)
    if img.shape[0] > _MAX_SLICES:
        raise _error(img_where, "image", f"{img.shape[0]} slices: ids and file names have room for {_MAX_SLICES}")
    organs = _check_organs(organ_labels, lab, lab_where)
    pixels, intensity = _intensity_map(img)
    depth, height, width = img.shape
    pixel_h, pixel_w = vox[1], vox[2]
    if min(round(pixel_h, 2), round(pixel_w, 2)) <= 0:
        raise _error(
            img_where, "image", f"pixel spacing {pixel_w}×{pixel_h} mm is 0.00 with the two decimals of the file names"
        )

    rles, present, voxels = _masks(lab, organs, case, day)
    names = [scan_filename(z + 1, width, height, pixel_w, pixel_h) for z in range(depth)]

    # Where it goes, and what it must not clash with.
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise DataValidationError(out_root, "exists and is not a folder")
    csv_path = out_root / "train.csv"
    day_dir = out_root / "train" / f"case{case}" / f"case{case}_day{day}"
    existing = _existing_rows(csv_path, rles, append) if csv_path.exists() else {}
    if day_dir.exists():
        raise DataValidationError(day_dir, "already exists: a scan of this case and day was written before")
    _write_scan(out_root, day_dir, csv_path, names, pixels, {**existing, **rles})

    two_plus = int(np.count_nonzero(present.sum(axis=0) >= 2))
    return {
        "output": str(out_root),
        "train_csv": str(csv_path),
        "scans": str(day_dir / "scans"),
        "case": case,
        "day": day,
        "ids": [next(iter(rles)), next(reversed(rles))],
        "n_slices": depth,
        "width": width,
        "height": height,
        "pixel_w": float(pixel_w),
        "pixel_h": float(pixel_h),
        "slice_mm": None if np.isnan(vox[0]) else float(vox[0]),
        "orientation": orientation,
        "intensity": intensity,
        "organ_labels": {cls: list(ids) for cls, ids in organs.items()},
        "per_organ": {
            cls: {"voxels": voxels[cls], "slices": int(np.count_nonzero(present[k]))} for k, cls in enumerate(CLASSES)
        },
        "n_slices_with_masks": int(np.count_nonzero(present.any(axis=0))),
        "n_slices_with_2plus_organs": two_plus,
        "n_slices_with_3_organs": int(np.count_nonzero(present.all(axis=0))),
        "image_source": None if img_where is None else str(img_where),
        "labels_source": None if lab_where is None else str(lab_where),
    }


def _load_pair(
    image, labels, img_where: Path | None, lab_where: Path | None
) -> tuple[np.ndarray, Volume | None, np.ndarray, Volume | None]:
    """The image and label arrays (and volumes, or None), checked: 3D, finite, one shape, integer label ids."""
    img, img_vol = _load(image, "image")
    lab, lab_vol = _load(labels, "labels")
    for arr, where, name in ((img, img_where, "image"), (lab, lab_where, "labels")):
        if arr.ndim != 3:
            raise _error(where, name, f"a 3D (D, H, W) volume is needed, got shape {arr.shape}")
        check_values(where, arr, name if where is None else "the " + name)
    if lab.shape != img.shape:
        raise _error(
            lab_where, "labels", f"label grid shape {lab.shape} differs from the image's {img.shape} (D, H, W)"
        )
    if lab.dtype.kind not in "biu" and not np.all(np.mod(lab, 1) == 0):
        raise _error(
            lab_where, "labels", f"label ids must be integers; the label volume holds fractional values ({lab.dtype})"
        )
    return img, img_vol, lab, lab_vol


def _to_axial(
    img: np.ndarray,
    lab: np.ndarray,
    img_vol: Volume | None,
    lab_vol: Volume | None,
    img_where: Path | None,
    lab_where: Path | None,
    spacing: Sequence[float] | None,
) -> tuple:
    """(image, labels, voxel spacing (z, y, x), orientation record): a volume turned to axial LPS, an array as
    it is with the given ``spacing`` (its slice spacing NaN when only ``(y, x)`` is given)."""
    if img_vol is not None:
        if spacing is not None:
            raise DataValidationError(img_where, "spacing is taken from the image volume; give it only for an array")
        if lab_vol is not None:
            _same_grid(img_vol, lab_vol, lab_where)
        order, flips = _axial_transform(img_vol)
        img, lab = _apply(img, order, flips), _apply(lab, order, flips)
        vox = tuple(img_vol.spacing[a] for a in order)
        orientation = {
            "axis_order": list(order),
            "flipped": list(flips),
            "note": "axial LPS: slice 1 most inferior, rows anterior→posterior, columns right→left",
        }
    else:
        if spacing is None:
            raise DataValidationError(
                None,
                "spacing: give the (z, y, x) or (y, x) voxel spacing in mm of an "
                "array image (the file names carry the pixel spacing)",
            )
        sp = tuple(float(s) for s in spacing)
        if len(sp) not in (2, 3) or not all(np.isfinite(s) and s > 0 for s in sp):
            raise DataValidationError(None, f"spacing must be 2 or 3 positive numbers (mm), got {spacing!r}")
        vox = sp if len(sp) == 3 else (float("nan"), *sp)
        orientation = {
            "axis_order": [0, 1, 2],
            "flipped": [False, False, False],
            "note": "array taken as (D, H, W) axial, written as it is",
        }
    return img, lab, vox, orientation


def _masks(
    lab: np.ndarray, organs: dict[str, tuple[int, ...]], case: int, day: int
) -> tuple[dict[str, dict[str, str]], np.ndarray, dict[str, int]]:
    """Every slice's RLE per class (``{id: {class: rle}}``), which slices hold each class (classes × slices) and
    each class's voxel count."""
    depth = lab.shape[0]
    rles: dict[str, dict[str, str]] = {}
    present = np.zeros((len(CLASSES), depth), bool)
    voxels = {}
    for k, cls in enumerate(CLASSES):
        mask = np.isin(lab, organs[cls]) if cls in organs else np.zeros(lab.shape, bool)
        present[k] = mask.any(axis=(1, 2))
        voxels[cls] = int(np.count_nonzero(mask))
        for z in range(depth):
            id_ = f"case{case}_day{day}_slice_{z + 1:04d}"
            rles.setdefault(id_, {})[cls] = rle_encode(mask[z])
    return rles, present, voxels


def _existing_rows(csv_path: Path, rles: Mapping[str, object], append: bool) -> dict[str, dict[str, str]]:
    """The rows of an existing ``train.csv`` the new scan is added to; refused without ``append``, with columns
    that appending would drop, or when it holds any of the ids of ``rles``."""
    if not append:
        raise DataValidationError(
            csv_path, "already exists: pass append=True to add a scan to it, or choose a new folder"
        )
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    extra = [c for c in header if c not in ("id", "class", "segmentation")]
    if extra:
        raise DataValidationError(
            csv_path,
            f"has column(s) {', '.join(map(printable, extra))} besides "
            "id,class,segmentation; appending would drop them",
        )
    existing = read_train_csv(csv_path)
    clash = sorted(set(existing) & set(rles), key=parse_id)
    if clash:
        more = f" and {len(clash) - 5} more" if len(clash) > 5 else ""
        raise DataValidationError(
            csv_path, f"already holds {len(clash)} of the ids to write: {', '.join(clash[:5])}{more}"
        )
    return existing


def _write_scan(
    out_root: Path, day_dir: Path, csv_path: Path, names: list[str], pixels: np.ndarray, rows: dict[str, dict[str, str]]
) -> None:
    """The scan's PNGs into ``day_dir`` (written under a temporary name, then renamed) and ``train.csv``
    rewritten with ``rows``; on any failure what this call created is removed."""
    created: list[Path] = []  # folders this call made, removed again (if empty) on failure
    for folder in (out_root, out_root / "train", day_dir.parent):
        if not folder.exists():
            folder.mkdir()
            created.append(folder)
    tmp_dir = day_dir.with_name(f".{day_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    moved = False
    try:
        (tmp_dir / "scans").mkdir(parents=True)
        for z, name in enumerate(names):
            _write_png(tmp_dir / "scans" / name, pixels[z])
        os.replace(tmp_dir, day_dir)
        moved = True
        write_train_csv(csv_path, rows)
    except BaseException:
        shutil.rmtree(day_dir if moved else tmp_dir, ignore_errors=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


def totalsegmentator_mr_to_uwgi(
    mr_path: str | Path,
    seg_path: str | Path,
    class_map_path: str | Path,
    out_root: str | Path,
    *,
    case: int,
    day: int,
    append: bool = True,
    key: str = "total_mr",
) -> dict:
    """A TotalSegmentator MR volume (``mr_path``) and its label map (``seg_path``) as scan
    ``case{case}_day{day}`` under ``out_root`` (see :func:`volume_to_uwgi`), with the ids of
    ``class_map_path`` (a JSON ``{key: {"id": "name"}}``, ``key`` "total_mr") for the organs of
    :data:`TOTALSEGMENTATOR_MR_ORGANS`: colon → large_bowel, small_bowel, stomach."""
    class_map_path = Path(class_map_path)
    try:
        table = json.loads(class_map_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataValidationError(class_map_path, f"cannot be read as JSON ({exc})") from exc
    classes = table.get(key) if isinstance(table, dict) else None
    if not isinstance(classes, dict):
        raise DataValidationError(class_map_path, f"no class table {key!r} (an object of id → name)")
    by_name: dict[str, list[int]] = {}
    for id_, name in classes.items():
        try:
            by_name.setdefault(str(name), []).append(int(id_))
        except ValueError:
            raise DataValidationError(class_map_path, f"{key}: id {printable(str(id_))!r} is not an integer") from None
    organ_labels = {}
    for cls, names in TOTALSEGMENTATOR_MR_ORGANS.items():
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DataValidationError(class_map_path, f"{key} has no class {', '.join(missing)} (needed for {cls})")
        organ_labels[cls] = [i for n in names for i in by_name[n]]
    summary = volume_to_uwgi(mr_path, seg_path, out_root, case=case, day=day, organ_labels=organ_labels, append=append)
    summary["class_map"] = {
        "path": str(class_map_path),
        "key": key,
        "organs": {cls: list(names) for cls, names in TOTALSEGMENTATOR_MR_ORGANS.items()},
    }
    return summary
