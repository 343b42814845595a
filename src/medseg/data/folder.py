"""The generic 2D dataset: a folder of images and a folder of masks with the same file names.

Layout::

    data/
      images/   img_01.tif  img_02.tif  ...
      masks/    img_01.png  img_02.png  ...     (or labels/)

An image and its mask are paired by file stem; the extension may differ (``img_01.tif`` <-> ``img_01.png``).
Pairs are in natural name order (``img_2`` before ``img_10``, :func:`medseg.data.splits.natural_key`), the
order ``splits.protocol: ordered`` takes "the last cases" in.
Files are PNG or TIFF, 8- or 16-bit (float TIFF images too), grey. TIFFs may be uncompressed or LZW, Deflate
or PackBits compressed: tifffile decodes what it can without the optional ``imagecodecs`` package, Pillow the
rest (LZW above all, the usual microscopy compression); palette TIFFs are read as their indices. Colour images
are converted to grey (ITU-R 601 luma, as Pillow's ``convert("L")``); colour masks are accepted only when all
colour channels are equal, because a colour-coded mask has no unambiguous class order.

Masks hold class indices ``0..num_classes-1``. Binary masks stored as 0/255 (or 0/65535, or 0/1) are read
as {0, 1} when ``num_classes == 2``. Any other grey coding is mapped with ``mask_values``: the stored
grey values of the classes in class order, e.g. ``[0, 85, 170, 255]`` -> classes 0..3. A value that is
neither a class index nor in ``mask_values`` is never dropped or thresholded silently: the reader raises
:class:`~medseg.errors.DataValidationError` naming the file, the offending values and the allowed ones.

Intensities are scaled by the range of the stored dtype (uint8 / 255, uint16 / 65535), not per image,
so that the same tissue keeps the same value from one image to the next.

Size and values are checked before they can hurt, by the checked reader every 2D data set shares
(:mod:`medseg.formats.images`): the image's height × width is read from the header and checked against the
voxel budget of :mod:`medseg.formats.limits` before any pixel is decoded (a 62 KB PNG may declare 8000 × 8000
pixels), a multi-page file is refused, and NaN/inf, complex and non-numeric pixels are refused naming the
file. A loaded data set is checked against the memory limit as it grows.

Unknown masks. :func:`survey_masks` lists the distinct values a folder's masks hold (pixels and files per
value) without knowing the classes, and :func:`suggest_mask_settings` turns them into the ``data.mask_values``
and ``task.class_names`` to set; ``medseg data info FOLDER`` reports both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.data.pommier import pad_to
from medseg.data.splits import natural_key
from medseg.errors import DataValidationError
from medseg.formats.images import check_integer_labels, read_stored
from medseg.formats.limits import MAX_CLASSES, check_dataset_bytes
from medseg.progress import Progress

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
MASK_DIR_NAMES = ("masks", "labels")
_MAX_LISTED = 10
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------------------------- reading


def _to_grey(arr: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) colour -> (H, W) grey in the same dtype (alpha dropped); (H, W, 2) grey+alpha -> grey."""
    if arr.shape[-1] == 2:
        return np.ascontiguousarray(arr[..., 0])
    rgb = arr[..., :3].astype(np.float64)
    grey = rgb @ _LUMA
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(arr.dtype)
    return grey.astype(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32)


def _check_2d(path: Path, arr: np.ndarray, what: str) -> None:
    if arr.ndim != 2:
        raise DataValidationError(
            path, f"{what} has shape {arr.shape}; expected a 2D grey image (H x W) or an RGB/RGBA image"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataValidationError(path, f"{what} is empty (shape {arr.shape})")


def read_image(path: str | Path, *, max_voxels: int | None = None) -> np.ndarray:
    """Read one PNG or TIFF image as a 2D array in its stored dtype (uint8, uint16, float, ...).

    Colour images (RGB, RGBA, palette) are converted to grey with the ITU-R 601 luma weights, keeping the
    dtype; an alpha channel is dropped. Raises :class:`DataValidationError` naming the file when it is
    missing, unreadable, corrupt, a multi-page stack, not a 2D image, holds NaN/inf or non-numeric
    pixels, or declares more pixels than the voxel budget (``max_voxels``, default
    ``$MEDSEG_MAX_VOXELS`` or 2**27; checked from the header, before decoding).
    """
    path = Path(path)
    arr, palette_colours = read_stored(path, "image", max_voxels)
    if palette_colours is not None:
        arr = palette_colours
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        arr = _to_grey(arr)
    _check_2d(path, arr, "image")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return np.ascontiguousarray(arr)


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """Scale an image to float32 in [0, 1].

    * uint8 is divided by 255 and uint16 by 65535: the range of the dtype, **not** each image's own
      min/max, so that intensities stay comparable between images (a dark image stays dark). A 12-bit
      camera image stored as uint16 therefore lies in [0, 4095/65535]; that is intended.
    * bool becomes 0/1.
    * Float images (and other integer dtypes, whose range says nothing about the data) are min-max
      scaled per image; a constant image becomes all zeros.

    Raises ``ValueError`` for NaN or infinite values.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        return image.astype(np.float32)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / np.float32(65535.0)
    if image.dtype.kind not in "uif":
        raise ValueError(f"cannot normalise an image of dtype {image.dtype}")
    x = image.astype(np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("image holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def _describe_values(values: np.ndarray, counts: np.ndarray, limit: int = 20) -> str:
    parts = [f"{_fmt(v)} ({int(c)} px)" for v, c in zip(values[:limit], counts[:limit], strict=True)]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(parts) + more


def _fmt(v) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def read_mask(
    path: str | Path, num_classes: int, *, mask_values: Sequence[int] | None = None, max_voxels: int | None = None
) -> np.ndarray:
    """Read one mask as a 2D uint8 array of class indices ``0..num_classes-1``.

    * ``mask_values`` given: stored grey value ``mask_values[k]`` becomes class ``k``
      (e.g. ``[0, 85, 170, 255]`` -> 0..3); it must hold ``num_classes`` distinct values.
    * otherwise, with ``num_classes == 2``: a binary mask stored as 0/255, 0/65535 or 0/1 becomes {0, 1};
    * otherwise values ``0..num_classes-1`` are kept as class indices.

    Palette PNGs are read as their palette indices. Colour masks are accepted only when R, G and B are
    equal everywhere. Any other value raises :class:`DataValidationError` naming the file, the offending
    values (with pixel counts) and the allowed ones.
    """
    path = Path(path)
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be between 2 and {MAX_CLASSES} (uint8 labels), got {num_classes}")
    lut_values: list[int] | None = None
    if mask_values is not None:
        lut_values = [int(v) for v in mask_values]
        if len(lut_values) != num_classes:
            raise ValueError(
                f"mask_values lists {len(lut_values)} values {lut_values} but num_classes is {num_classes}; "
                "give one stored value per class, in class order"
            )
        if len(set(lut_values)) != len(lut_values):
            raise ValueError(f"mask_values {lut_values} repeats a value; each class needs its own value")

    arr = _mask_array(path, max_voxels)
    values, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
    classes = classes_of_values(values, num_classes, lut_values)
    unknown = classes < 0
    if unknown.any():
        if lut_values is not None:
            raise DataValidationError(
                path,
                f"mask values not in mask_values: {_describe_values(values[unknown], counts[unknown])}; "
                f"allowed values: {lut_values} (class 0..{num_classes - 1} in that order)",
            )
        binary = " (or 0/255, 0/65535 for a binary mask)" if num_classes == 2 else ""
        raise DataValidationError(
            path,
            f"mask values that are not class indices: {_describe_values(values[unknown], counts[unknown])}; "
            f"allowed values: 0..{num_classes - 1}{binary}. If the mask stores classes as other grey "
            "values, pass mask_values (one stored value per class, in class order, e.g. [0, 85, 170, 255]); "
            "`medseg data info FOLDER` lists the values the masks hold.",
        )
    return classes.astype(np.uint8)[inverse.reshape(arr.shape)]


def classes_of_values(values: np.ndarray, num_classes: int, mask_values: Sequence[int] | None = None) -> np.ndarray:
    """The class each distinct stored value of one mask stands for (int64, -1: not a class), by
    :func:`read_mask`'s rules: ``mask_values[k]`` → class k; else, for 2 classes, a mask of 0 and one of
    1/255/65535 is binary; else a value is its own class index when it is in ``0..num_classes-1``."""
    values = np.asarray(values)
    if mask_values is not None:
        index = {float(v): k for k, v in enumerate(mask_values)}
        return np.array([index.get(float(v), -1) for v in values], dtype=np.int64)
    vset = {float(v) for v in values}
    if num_classes == 2:
        for hi in (1.0, 255.0, 65535.0):
            if vset <= {0.0, hi}:
                return (values == hi).astype(np.int64)
    inside = (values >= 0) & (values < num_classes)
    return np.where(inside, values.astype(np.int64), np.int64(-1))


def _mask_array(path: Path, max_voxels: int | None) -> np.ndarray:
    """A mask file as its stored grey values, (H, W), integer (or integer-valued float); the file's checks of
    :func:`read_mask` (colour masks must be grey, integer labels), not yet any class mapping."""
    arr, _ = read_stored(path, "mask", max_voxels)  # palette masks: the indices are the stored values
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        if arr.shape[-1] == 2:  # grey + alpha
            arr = arr[..., 0]
        else:
            rgb = arr[..., :3]
            differ = (rgb[..., 0] != rgb[..., 1]) | (rgb[..., 0] != rgb[..., 2])
            if differ.any():
                y, x = np.argwhere(differ)[0]
                raise DataValidationError(
                    path,
                    f"colour mask: the R, G, B channels differ at {int(differ.sum())} pixels "
                    f"(e.g. pixel y={y}, x={x} is {tuple(int(c) for c in rgb[y, x])}). Masks must be grey "
                    "class indices (or grey values mapped with mask_values); convert colour-coded masks "
                    "to class indices first.",
                )
            arr = rgb[..., 0]
    _check_2d(path, arr, "mask")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    check_integer_labels(path, arr, "mask")
    return arr


# --------------------------------------------------------------------------------------------- pairing


@dataclass
class FolderPairs:
    """Image/mask files paired by stem, in natural name order (``img_2`` before ``img_10``)."""

    images: list[Path]
    masks: list[Path]
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def _list_images(folder: Path, what: str) -> dict[str, Path]:
    folder = Path(folder)
    if not folder.exists():
        raise DataValidationError(folder, f"{what} folder not found")
    if not folder.is_dir():
        raise DataValidationError(folder, f"{what} path is not a folder")
    by_stem: dict[str, Path] = {}
    other: Counter[str] = Counter()
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            other[p.suffix.lower() or "(no extension)"] += 1
            continue
        if p.stem in by_stem:
            raise DataValidationError(
                folder,
                f"two {what} files share the name '{p.stem}': {by_stem[p.stem].name} and {p.name}; "
                "keep one file per name",
            )
        by_stem[p.stem] = p
    if not by_stem:
        found = ", ".join(f"{n} {ext}" for ext, n in other.most_common()) if other else "nothing"
        raise DataValidationError(
            folder, f"no {what} files (PNG or TIFF: {', '.join(IMAGE_SUFFIXES)}) in this folder; found {found}"
        )
    return by_stem


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" (and {len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def pair_files(images_dir: str | Path, masks_dir: str | Path) -> FolderPairs:
    """Pair every image in ``images_dir`` with the mask of the same stem in ``masks_dir``.

    Pairs are in natural name order (:func:`medseg.data.splits.natural_key`: ``img_2`` before ``img_10``).
    Only PNG/TIFF files are considered; hidden files and sub-folders are ignored. An image without a
    mask, a mask without an image, an empty folder or two files of one stem in a folder raise
    :class:`DataValidationError` naming (up to 10 of) the files concerned.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images = _list_images(images_dir, "image")
    masks = _list_images(masks_dir, "mask")
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        problems = []
        if no_mask:
            problems.append(
                f"{len(no_mask)} image(s) in {images_dir} have no mask in {masks_dir}: "
                + _listing([images[s].name for s in no_mask])
            )
        if no_image:
            problems.append(
                f"{len(no_image)} mask(s) in {masks_dir} have no image in {images_dir}: "
                + _listing([masks[s].name for s in no_image])
            )
        raise DataValidationError(
            masks_dir if no_mask else images_dir,
            "; ".join(problems) + ". A mask must have the same file name as its image (the extension may differ).",
        )
    names = sorted(images, key=natural_key)
    return FolderPairs(images=[images[n] for n in names], masks=[masks[n] for n in names], names=names)


def resolve_folder(path: str | Path) -> tuple[Path, Path]:
    """For a dataset given as one folder, return its ``images/`` and ``masks/`` (or ``labels/``) sub-folders.

    Sub-folder names are matched case-insensitively. Raises :class:`DataValidationError` describing the
    expected layout when they are missing or ambiguous.
    """
    path = Path(path)
    layout = (
        "expected a folder holding an 'images/' sub-folder and a 'masks/' (or 'labels/') sub-folder, "
        "with each mask named like its image (e.g. images/img_01.tif and masks/img_01.png)"
    )
    if not path.exists():
        raise DataValidationError(path, f"data folder not found; {layout}")
    if not path.is_dir():
        raise DataValidationError(path, f"not a folder; {layout}")
    subdirs = {p.name.lower(): p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    images = subdirs.get("images")
    masks = [subdirs[n] for n in MASK_DIR_NAMES if n in subdirs]
    if images is None or not masks:
        found = ", ".join(sorted(p.name + "/" for p in subdirs.values())) or "no sub-folders"
        missing = " and ".join(
            ([] if images is not None else ["'images/'"]) + ([] if masks else ["'masks/' (or 'labels/')"])
        )
        raise DataValidationError(path, f"no {missing} sub-folder; {layout}. Found: {found}")
    if len(masks) > 1:
        raise DataValidationError(
            path, f"both {masks[0].name}/ and {masks[1].name}/ are present; keep one mask folder ({layout})"
        )
    return images, masks[0]


# --------------------------------------------------------------------------------------------- loading


def load_folder_dataset(
    images_dir: str | Path,
    masks_dir: str | Path,
    *,
    num_classes: int,
    size: tuple[int, int] | None = None,
    mask_values: Sequence[int] | None = None,
    pad_value: float | str = "border",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a folder dataset into memory.

    Returns ``images`` float32 (N, H, W) in [0, 1] (see :func:`normalize_intensity`), ``labels`` uint8
    (N, H, W) and the pair ``names`` (file stems, in natural order). An image and its mask must have the same shape.
    With ``size`` every pair is padded all round (or centre-cropped) to ``size`` with
    :func:`medseg.data.pommier.pad_to`: images with ``pad_value`` (a number in the normalised [0, 1]
    scale, or ``"border"``, the median of each image's border), masks with 0 (background). Without
    ``size`` all images must share one shape.
    """
    pairs = pair_files(images_dir, masks_dir)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    held = 0  # bytes of the normalised images and masks so far: the data set is held in memory whole
    for img_path, mask_path in zip(pairs.images, pairs.masks, strict=True):
        raw = read_image(img_path)
        mask = read_mask(mask_path, num_classes, mask_values=mask_values)
        pixels = int(np.prod(size)) if size is not None else raw.size
        held += pixels * (np.dtype(np.float32).itemsize + 1)
        check_dataset_bytes(
            Path(images_dir),
            held * len(pairs) // (len(images) + 1),
            what=f"the {len(pairs)} images of this folder (estimated from the first {len(images) + 1})",
        )
        if raw.shape != mask.shape:
            raise DataValidationError(
                img_path,
                f"image is {raw.shape[0]}x{raw.shape[1]} (HxW) but its mask {mask_path} is "
                f"{mask.shape[0]}x{mask.shape[1]}; an image and its mask must have the same shape",
            )
        try:
            image = normalize_intensity(raw)
        except ValueError as exc:
            raise DataValidationError(img_path, str(exc)) from exc
        if size is not None:
            image = pad_to(image, tuple(size), pad_value)
            mask = pad_to(mask, tuple(size), 0)
        images.append(image)
        labels.append(mask)
    if size is None:
        shapes: dict[tuple[int, ...], list[str]] = {}
        for path, image in zip(pairs.images, images, strict=True):
            shapes.setdefault(image.shape, []).append(path.name)
        if len(shapes) > 1:
            listed = "; ".join(
                f"{s[0]}x{s[1]}: {len(files)} file(s), e.g. {', '.join(files[:3])}"
                for s, files in sorted(shapes.items(), key=lambda kv: -len(kv[1]))
            )
            raise DataValidationError(
                Path(images_dir),
                f"images have {len(shapes)} different shapes (HxW) — {listed}. Pass size=(H, W) to pad or "
                "centre-crop them all to one size: in a config `data.size: [H, W]` (command line: "
                "`--set data.size=[H,W]`), or `data.size: null` to keep each image at full resolution.",
            )
    return (
        np.stack(images).astype(np.float32, copy=False),
        np.stack(labels).astype(np.uint8, copy=False),
        list(pairs.names),
    )


# --------------------------------------------------------------------------------------------- surveying


@dataclass
class MaskSurvey:
    """The distinct stored values of a folder's masks: ``values`` (sorted), ``pixels`` and ``files`` per value,
    and per file its own values and pixel counts (``per_file``: name → (values, counts))."""

    values: np.ndarray
    pixels: np.ndarray
    files: np.ndarray
    per_file: dict[str, tuple[np.ndarray, np.ndarray]]

    def classes(self, num_classes: int, mask_values: Sequence[int] | None = None) -> tuple[np.ndarray, dict]:
        """Pixels per class (``num_classes``,) under :func:`read_mask`'s rules, and the values that are not a
        class: ``{value: [file names]}``."""
        pixels = np.zeros(num_classes, dtype=np.int64)
        stray: dict[float, list[str]] = {}
        for name, (values, counts) in self.per_file.items():
            classes = classes_of_values(values, num_classes, mask_values)
            np.add.at(pixels, classes[classes >= 0], counts[classes >= 0])
            for v in values[classes < 0]:
                stray.setdefault(float(v), []).append(name)
        return pixels, stray


def survey_masks(mask_files: Sequence[str | Path], *, progress: bool = True) -> MaskSurvey:
    """Read every mask (as stored: no class count needed) and count its distinct values. Raises
    :class:`DataValidationError` naming the file for what :func:`read_mask` refuses whatever the classes
    (unreadable, colour-coded, non-integer, over the voxel budget)."""
    totals: dict[float, list[int]] = {}
    per_file: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in Progress(list(mask_files), desc="reading masks", unit="mask", disable=not progress):
        path = Path(path)
        values, counts = np.unique(_mask_array(path, None), return_counts=True)
        per_file[path.name] = (values, counts)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            entry = totals.setdefault(float(v), [0, 0])
            entry[0] += int(c)
            entry[1] += 1
    keys = sorted(totals)
    return MaskSurvey(
        values=np.array(keys),
        pixels=np.array([totals[k][0] for k in keys], dtype=np.int64),
        files=np.array([totals[k][1] for k in keys], dtype=np.int64),
        per_file=per_file,
    )


def suggest_mask_settings(
    values: Sequence[float], num_classes: int | None = None, class_names: Sequence[str] | None = None
) -> dict:
    """The ``data.mask_values`` and ``task.class_names`` that read masks holding these distinct ``values``.

    Values ``0..k-1`` are class indices (no ``mask_values`` needed); any other coding (e.g. 0/255, or
    0/85/170/255) maps its sorted values to classes 0, 1, ... in order. ``num_classes``/``class_names``, when
    given, are kept (their count must match the values found to suggest a mapping). Returns
    ``{"mask_values": list | None, "class_names": list, "note": str}``; the note says what was assumed.
    """
    vals = sorted(int(v) if float(v).is_integer() else float(v) for v in values)
    n = len(class_names) if class_names else num_classes
    indices = bool(vals) and all(isinstance(v, int) and 0 <= v for v in vals) and (n is None or max(vals) < n)
    if indices and (n is not None or vals == list(range(len(vals)))):
        k = n if n is not None else len(vals)
        names = list(class_names) if class_names else _default_names(k)
        return {
            "mask_values": None,
            "class_names": names,
            "note": f"the masks hold class indices {vals[0]}..{vals[-1]}: no data.mask_values needed",
        }
    if n is not None and n != len(vals):
        return {
            "mask_values": None,
            "class_names": list(class_names) if class_names else _default_names(n),
            "note": f"the masks hold {len(vals)} distinct values but {n} classes were given: give one class per "
            "stored value (or fix the masks); data.mask_values lists one value per class, in class "
            "order",
        }
    names = list(class_names) if class_names else _default_names(len(vals))
    note = (
        f"the {len(vals)} stored values, in increasing order, as classes 0..{len(vals) - 1}"
        + (" (0 first: the background)" if vals and vals[0] == 0 else "")
        + "; reorder to match your classes"
    )
    return {"mask_values": vals, "class_names": names, "note": note}


def _default_names(k: int) -> list[str]:
    if k == 2:
        return ["background", "foreground"]
    return ["background"] + [f"class_{i}" for i in range(1, k)]
