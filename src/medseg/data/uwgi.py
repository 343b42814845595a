"""The UW-Madison GI Tract Image Segmentation data (Kaggle), read exactly as published.

Layout (see ``shared/data/README.md``, section "UW-Madison layout")::

    <root>/train.csv                      id,class,segmentation
    <root>/train/case{C}/case{C}_day{D}/scans/slice_{SSSS}_{W}_{H}_{pw}_{ph}.png

Kaggle's hidden ``<root>/test/`` has the same tree without a CSV (``scan_index(root, subdir="test")``).

* ``id`` is ``case{C}_day{D}_slice_{SSSS}``; every id has one row per class of :data:`CLASSES`.
* ``segmentation`` is the competition's run-length encoding: space-separated pairs of a **1-based** start
  and a run length over the **row-major** flattened H × W mask; an empty field is an empty mask.
* Images are 16-bit grey PNGs; the file name gives the width W and height H in pixels (the array is
  H × W) and the pixel spacing pw × ph in mm.
* Organs may overlap (part of the large bowel lies inside the small bowel): the masks are H × W × 3, one
  channel per class in the order of :data:`CLASSES`, not a label map.

Every problem is a :class:`~medseg.errors.DataValidationError` naming the file, CSV line or id; nothing is
silently read as an empty mask.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.formats.images import check_header
from medseg.formats.limits import check_voxels, exception_text, printable

__all__ = [
    "CLASSES",
    "ScanRecord",
    "TrainCsv",
    "check_consistency",
    "masks_for",
    "parse_id",
    "parse_scan_filename",
    "read_scan",
    "read_train_csv",
    "rle_decode",
    "rle_encode",
    "scan_index",
]

#: The organs of the competition, in the order of the masks' channels.
CLASSES: tuple[str, ...] = ("large_bowel", "small_bowel", "stomach")

_ID_RE = re.compile(r"case(\d+)_day(\d+)_slice_(\d{4})")
_NUMBER = r"(\d+(?:\.\d+)?)"
_SCAN_RE = re.compile(rf"slice_(\d{{4}})_(\d+)_(\d+)_{_NUMBER}_{_NUMBER}\.png")
_INT_RE = re.compile(r"[+-]?\d+")
_CSV_COLUMNS = ("id", "class", "segmentation")


def _error(where: str | Path | None, problem: str) -> DataValidationError:
    """An error naming ``where`` (a file, or a text such as ``train.csv line 7 (id ...)``)."""
    if isinstance(where, Path):
        return DataValidationError(where, problem)
    return DataValidationError(None, f"{printable(where)}: {problem}" if where else problem)


# ---------------------------------------------------------------------------------------------------- RLE


def _parse_rle(rle: str, where: str | Path | None = "") -> tuple[np.ndarray, np.ndarray]:
    """The (0-based starts, lengths) of a competition RLE, checked for everything but the image size."""
    if not isinstance(rle, str):
        raise _error(where, f"RLE must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bad = [t for t in tokens if not _INT_RE.fullmatch(t)]
    if bad:
        raise _error(where, f"RLE holds non-integer values {printable(' '.join(bad[:3]))!r}")
    if len(tokens) % 2:
        raise _error(where, f"RLE holds an odd number of values ({len(tokens)}): it must be start/length pairs")
    values = [int(t) for t in tokens]
    starts = np.array(values[0::2], dtype=object)  # Python ints: a huge start cannot overflow
    lengths = np.array(values[1::2], dtype=object)
    for i, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        if s < 1:
            raise _error(where, f"RLE run {i + 1} starts at {s}: starts are 1-based, so at least 1")
        if n < 1:
            raise _error(where, f"RLE run {i + 1} (start {s}) has length {n}: lengths must be positive")
        if i and s < starts[i - 1] + lengths[i - 1]:
            prev_end = starts[i - 1] + lengths[i - 1] - 1
            what = "is not after" if s <= starts[i - 1] else "overlaps"
            raise _error(
                where,
                f"RLE run {i + 1} (start {s}) {what} run {i} (pixels {starts[i - 1]}..{prev_end}): "
                "runs must be increasing and disjoint",
            )
    return (starts - 1), lengths


def _check_shape(shape, where) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise _error(where, f"mask shape must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise _error(where, f"mask shape {(h, w)} must be positive")
    return h, w


def _check_fits(starts, lengths, h: int, w: int, where) -> None:
    if len(starts) and starts[-1] + lengths[-1] > h * w:
        end = starts[-1] + lengths[-1]  # 1-based last pixel of the last run
        raise _error(
            where, f"RLE mask longer than the image: its last run ends at pixel {end}, the {h}×{w} image has {h * w}"
        )


def rle_decode(rle: str, shape: tuple[int, int], *, where: str = "") -> np.ndarray:
    """The (H, W) uint8 mask (0/1) of a competition RLE over an image of ``shape`` = (H, W).

    ``where`` names the source (a CSV line, an id) in the errors: odd number of values, non-integers,
    a start < 1, a length < 1, runs not increasing or overlapping, a run past the end of the image.
    """
    h, w = _check_shape(shape, where)
    check_voxels(None, (h, w), what=f"{where or 'RLE'} mask")
    starts, lengths = _parse_rle(rle, where)
    _check_fits(starts, lengths, h, w, where)
    flat = np.zeros(h * w, dtype=np.uint8)
    for s, n in zip(starts, lengths, strict=True):
        flat[int(s) : int(s) + int(n)] = 1
    return flat.reshape(h, w)


def rle_encode(mask) -> str:
    """The competition RLE of a 2D mask (bool or 0/1): 1-based starts and lengths, row-major; ``""`` if empty."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise DataValidationError(None, f"rle_encode takes a 2D (H, W) mask, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise DataValidationError(
                None, f"rle_encode takes a binary mask (0/1 or bool); it holds values {np.unique(arr)[:5].tolist()}"
            )
        arr = arr != 0
    pixels = np.concatenate([[False], arr.ravel(), [False]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1  # 1-based positions where a run starts or ends
    starts, ends = changes[0::2], changes[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts.tolist(), ends.tolist(), strict=True))


# ------------------------------------------------------------------------------------------ names and ids


def parse_id(id: str) -> tuple[int, int, int]:
    """``case{C}_day{D}_slice_{SSSS}`` → (C, D, SSSS) as ints."""
    m = _ID_RE.fullmatch(id) if isinstance(id, str) else None
    if m is None:
        raise DataValidationError(
            None, f"id {printable(str(id))!r} is not of the form case{{C}}_day{{D}}_slice_{{SSSS}}"
        )
    case, day, slc = (int(g) for g in m.groups())
    return case, day, slc


def parse_scan_filename(name: str | Path) -> dict:
    """``slice_{SSSS}_{W}_{H}_{pw}_{ph}.png`` → dict(slice, width, height, pixel_w, pixel_h) (pixels, mm)."""
    path = Path(name)
    m = _SCAN_RE.fullmatch(path.name)
    if m is None:
        raise DataValidationError(path, "scan file name is not of the form slice_{SSSS}_{W}_{H}_{pw}_{ph}.png")
    slc, width, height = (int(g) for g in m.groups()[:3])
    pixel_w, pixel_h = (float(g) for g in m.groups()[3:])
    if width < 1 or height < 1:
        raise DataValidationError(path, f"scan file name declares a size of {width}×{height} pixels")
    if pixel_w <= 0 or pixel_h <= 0:
        raise DataValidationError(path, f"scan file name declares a pixel spacing of {pixel_w}×{pixel_h} mm")
    return {"slice": slc, "width": width, "height": height, "pixel_w": pixel_w, "pixel_h": pixel_h}


# ------------------------------------------------------------------------------------------------- train.csv


class TrainCsv(dict):
    """:func:`read_train_csv`'s {id: {class: rle}}, which remembers its file (``path``) and each row's line
    (``lines``: {(id, class): line}), so that a problem only the scans reveal (an RLE longer than its image)
    names ``train.csv`` and the line to fix, not only the id."""

    def __init__(self, path: Path | None = None):
        super().__init__()
        self.path = path
        self.lines: dict[tuple[str, str], int] = {}


def _row(rles: Mapping, id_: str, cls: str) -> str:
    """Where the RLE of (id, class) comes from: ``<train.csv> line N (id … class …)`` when ``rles`` was read by
    :func:`read_train_csv`, else the id and class alone."""
    row = f"id {id_} class {cls}"
    path = getattr(rles, "path", None)
    if path is None:
        return row
    line = getattr(rles, "lines", {}).get((id_, cls))
    return f"{path}{f' line {line}' if line else ''} ({row})"


def read_train_csv(path: str | Path) -> TrainCsv:
    """``train.csv`` → {id: {class: rle}} (every class of :data:`CLASSES` present for every id, ``""`` for an
    absent organ). Checks the columns, the ids, the classes, duplicate (id, class) rows, the RLE syntax
    (the image size is checked against the scans by :func:`check_consistency`)."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(path, "file not found" if not path.exists() else "not a file")
    out = TrainCsv(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            columns = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataValidationError(path, f"cannot be read as CSV ({exc})") from exc
        if not columns:
            raise DataValidationError(path, "empty file: expected the columns id,class,segmentation")
        missing = [c for c in _CSV_COLUMNS if c not in columns]
        if missing:
            raise DataValidationError(
                path,
                f"missing column(s) {', '.join(missing)}; the header is "
                f"{printable(','.join(str(c) for c in columns))!r}",
            )
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataValidationError(path, f"line {reader.line_num}: cannot be read as CSV ({exc})") from exc
            line = reader.line_num
            if None in row or any(row[c] is None for c in _CSV_COLUMNS):
                raise DataValidationError(path, f"line {line}: expected {len(columns)} fields")
            id_, cls, rle = row["id"].strip(), row["class"].strip(), row["segmentation"]
            try:
                parse_id(id_)
            except DataValidationError as exc:
                raise DataValidationError(path, f"line {line}: {exc.problem}") from None
            if cls not in CLASSES:
                raise DataValidationError(
                    path,
                    f"line {line} (id {id_}): unknown class {printable(cls)!r}; expected one of {', '.join(CLASSES)}",
                )
            classes = out.setdefault(id_, {})
            if cls in classes:
                raise DataValidationError(
                    path, f"line {line}: duplicate row for id {id_} class {cls} (first on line {out.lines[(id_, cls)]})"
                )
            _parse_rle(rle, f"{path} line {line} (id {id_}, class {cls})")
            classes[cls] = rle.strip()
            out.lines[(id_, cls)] = line
    if not out:
        raise DataValidationError(path, "no rows: expected one row per id and class")
    for id_, classes in out.items():
        absent = [c for c in CLASSES if c not in classes]
        if absent:
            raise DataValidationError(
                path,
                f"id {id_} has no row for class(es) {', '.join(absent)} "
                "(every id has one row per class, empty segmentation if absent)",
            )
    return out


# ------------------------------------------------------------------------------------------------- scans


@dataclass(frozen=True)
class ScanRecord:
    """One slice image: its case, day and slice numbers, file, size (pixels) and spacing (mm, (row, col)
    = (pixel_h, pixel_w), the order of the array's axes)."""

    case: int
    day: int
    slice: int
    path: Path
    width: int
    height: int
    spacing: tuple[float, float]

    @property
    def id(self) -> str:
        return f"case{self.case}_day{self.day}_slice_{self.slice:04d}"

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


_CASE_DIR = re.compile(r"case(\d+)")
_DAY_DIR = re.compile(r"case(\d+)_day(\d+)")


def scan_index(root: str | Path, *, subdir: str = "train") -> list[ScanRecord]:
    """Every ``{subdir}/case*/case*_day*/scans/*.png`` under ``root``, sorted by (case, day, slice).

    ``subdir``: ``train`` (the published training set, the default) or ``test`` (Kaggle's hidden test set,
    the same layout without masks). Folder and file names are checked (a day folder of another case, a PNG
    whose name does not parse, two files for one slice are errors naming them); nothing is decoded.
    """
    root = Path(root)
    if not isinstance(subdir, str) or not subdir or Path(subdir).name != subdir or subdir in (".", ".."):
        raise DataValidationError(root, f"subdir must be a folder name such as 'train' or 'test', got {subdir!r}")
    train = root / subdir
    expected = f"expected {subdir}/case{{C}}/case{{C}}_day{{D}}/scans/*.png"
    if not train.is_dir():
        raise DataValidationError(train, f"folder not found: {expected}")
    records: list[ScanRecord] = []
    for case_dir in sorted(p for p in train.glob("case*") if p.is_dir()):
        m = _CASE_DIR.fullmatch(case_dir.name)
        if m is None:
            raise DataValidationError(case_dir, "case folder name is not of the form case{C}")
        case = int(m.group(1))
        for day_dir in sorted(p for p in case_dir.glob("case*_day*") if p.is_dir()):
            d = _DAY_DIR.fullmatch(day_dir.name)
            if d is None or int(d.group(1)) != case:
                raise DataValidationError(day_dir, f"day folder name is not of the form case{case}_day{{D}}")
            day = int(d.group(2))
            seen: dict[int, Path] = {}
            for png in sorted((day_dir / "scans").glob("*.png")):
                info = parse_scan_filename(png)
                if info["slice"] in seen:
                    raise DataValidationError(
                        png, f"a second file for slice {info['slice']} (also {seen[info['slice']].name})"
                    )
                seen[info["slice"]] = png
                records.append(
                    ScanRecord(
                        case, day, info["slice"], png, info["width"], info["height"], (info["pixel_h"], info["pixel_w"])
                    )
                )
    if not records:
        raise DataValidationError(train, f"no scans found: {expected}")
    records.sort(key=lambda r: (r.case, r.day, r.slice))
    return records


def read_scan(record: ScanRecord) -> np.ndarray:
    """The (H, W) uint16 image of ``record``, checked against the size its file name declares."""
    from PIL import Image

    path = Path(record.path)
    check_voxels(path, record.shape)
    try:
        with Image.open(path) as img:
            check_header(path, img)  # one frame: an animated PNG is not read as its first frame
            size = img.size
            if size != (record.width, record.height):
                raise DataValidationError(
                    path, f"image is {size[0]}×{size[1]} pixels, its name declares {record.width}×{record.height}"
                )
            arr = np.array(img)
    except DataValidationError:
        raise
    except Exception as exc:  # any decoder error (OSError, SyntaxError, ...) names the file, on one line
        raise DataValidationError(path, f"cannot be read as a PNG image ({exception_text(exc)})") from exc
    if arr.ndim != 2:
        raise DataValidationError(path, f"expected a grey image, got shape {arr.shape}")
    return arr.astype(np.uint16, copy=False)


# ------------------------------------------------------------------------------------------ scans × csv


def check_consistency(index: list[ScanRecord], rles: Mapping[str, Mapping[str, str]]) -> None:
    """Every id of the CSV has an image and every image has CSV rows; every RLE fits its image."""
    ids = {}
    for r in index:
        if r.id in ids:
            raise DataValidationError(r.path, f"id {r.id} has two images (also {ids[r.id].path})")
        ids[r.id] = r
    no_image = sorted(set(rles) - set(ids))
    if no_image:
        more = f" and {len(no_image) - 5} more" if len(no_image) > 5 else ""
        raise DataValidationError(
            getattr(rles, "path", None),
            f"{len(no_image)} id(s) of train.csv have no image: {', '.join(no_image[:5])}{more}",
        )
    no_rows = [r for r in index if r.id not in rles]
    if no_rows:
        more = f" and {len(no_rows) - 5} more" if len(no_rows) > 5 else ""
        raise DataValidationError(
            no_rows[0].path,
            f"{len(no_rows)} image(s) have no rows in train.csv: {', '.join(r.id for r in no_rows[:5])}{more}",
        )
    for r in index:
        for cls, rle in rles[r.id].items():
            where = _row(rles, r.id, cls)
            starts, lengths = _parse_rle(rle, where)
            _check_fits(starts, lengths, r.height, r.width, where)


def masks_for(record: ScanRecord, rles: Mapping[str, Mapping[str, str]]) -> np.ndarray:
    """The (H, W, 3) uint8 masks of ``record``, one 0/1 channel per class of :data:`CLASSES`; overlapping
    organs are kept (a pixel may be 1 in several channels)."""
    if record.id not in rles:
        raise DataValidationError(record.path, f"id {record.id} has no rows in train.csv")
    by_class = rles[record.id]
    out = np.zeros((record.height, record.width, len(CLASSES)), dtype=np.uint8)
    for c, cls in enumerate(CLASSES):
        if cls not in by_class:
            raise DataValidationError(record.path, f"id {record.id} has no row for class {cls} in train.csv")
        out[..., c] = rle_decode(by_class[cls], record.shape, where=_row(rles, record.id, cls))
    return out
