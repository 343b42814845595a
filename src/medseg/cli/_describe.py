"""What ``medseg data info`` says about each kind of data set: an HDF5 file, an images/+masks/ folder, the M-FISH
source set and a UW-Madison GI folder, as (field, value) rows or lines of text, printed by the command.

These read the data and describe it but print nothing, so they belong with the readers in medseg.data; they
wait here until that package can take them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

Rows = list[tuple[str, str]]


def describe_hdf5(path: Path, stray_labels: str, n: Optional[int], names: Optional[list[str]]) -> Rows:
    """An HDF5 file read as training reads it: images, shape, pixels per label value, whether synthesized."""
    import numpy as np

    from medseg.config import DEFAULTS
    from medseg.data.datasets import load_data

    cfg = {**DEFAULTS["data"], "path": str(path), "stray_labels": stray_labels, "size": None}
    data = load_data(cfg, n or 4)
    found, counted = np.unique(data.labels, return_counts=True)
    label = (lambda v: f"{v} {names[v]}") if names else str
    rows = [("images", str(len(data))),
            ("shape", str(data.images.shape[1:])),
            ("label pixels", ", ".join(f"{label(int(v))}: {c}" for v, c in zip(found, counted))),
            ("synthesized", str(data.synthesized))]
    return rows + [("note", note) for note in data.notes]


def _value_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _flow(value) -> str:
    """A value as one line of YAML flow style: ``[0, 255]``, ``[background, tumour]``, ``null``."""
    if value is None:
        return "null"
    return "[" + ", ".join(str(v) for v in value) + "]"


def describe_folder(path: Path, names: Optional[list[str]], n: Optional[int], values: Optional[list[int]]) -> Rows:
    """An images/+masks/ folder: pairs, image sizes (from the headers), the masks' distinct values and, for the
    classes given or suggested, pixels per class, values that are no class, and the config to set."""
    from collections import Counter

    from medseg.data.folder import image_shape, pair_files, resolve_folder, suggest_mask_settings, survey_masks

    images_dir, masks_dir = resolve_folder(path)
    pairs = pair_files(images_dir, masks_dir)
    sizes = Counter(tuple(image_shape(p)[:2]) for p in pairs.images)
    survey = survey_masks(pairs.masks)
    rows = [("images", f"{len(pairs)} image/mask pairs ({images_dir.name}/ + {masks_dir.name}/)"),
            ("image sizes", ", ".join(f"{h}x{w}: {k}" for (h, w), k in sizes.most_common(8))
             + (f" and {len(sizes) - 8} more sizes" if len(sizes) > 8 else "")
             + (" (different sizes: data.size [H, W] pads or crops them to one, null keeps each)"
                if len(sizes) > 1 else ""))]
    shown = [f"{_value_text(v)}: {px:,} px in {nf} file(s)" for v, px, nf in
             zip(survey.values.tolist(), survey.pixels.tolist(), survey.files.tolist())]
    rows.append(("mask values", f"{len(shown)} distinct: " + "; ".join(shown[:20])
                 + (f"; and {len(shown) - 20} more" if len(shown) > 20 else "")))
    suggestion = suggest_mask_settings(survey.values.tolist(), n, names)
    use_values = values if values is not None else suggestion["mask_values"]
    k = n if n is not None else len(suggestion["class_names"])
    class_names = names or suggestion["class_names"]
    pixels, stray = survey.classes(k, use_values)
    how = "--mask-values" if values is not None else "the suggested data.mask_values" if use_values else "class indices"
    rows.append(("classes", f"as {how}: " + "; ".join(f"{c} {class_names[c]}: {int(px):,} px"
                                                      for c, px in enumerate(pixels))))
    if stray:
        rows.append(("not a class", "; ".join(
            f"{_value_text(v)} in {len(files)} file(s), e.g. {', '.join(files[:3])}" for v, files in sorted(stray.items()))
            + " — training would refuse these masks"))
    suggested = suggestion["class_names"]
    rows.append(("suggested config", f"data.mask_values: {_flow(suggestion['mask_values'])}; task.class_names: "
                 f"{_flow(suggested)}; task.background: 0; task.derived: {{}}; task.primary_metric: "
                 f"{suggested[1] if len(suggested) > 1 else suggested[0]} ({suggestion['note']})"))
    return rows


def describe_mfish(path: Path) -> tuple[str, Rows]:
    """(title, rows) of the M-FISH source set: slides, metaphases (labelled, EX unlabelled), shapes, label values."""
    from medseg.data.mfish import survey

    s = survey(path)
    files = s["label_files"]
    title = f"{path} (M-FISH set: DAPI + karyotype label map pairs)"
    return title, [
        ("slides", f"{s['n_slides']} slides in {s['n_folders']} folders (<slide>__<karyotype>: a slide's "
                   "metaphases may lie in several folders; split by slide, never by image)"),
        ("metaphases", f"{s['n_labelled']} labelled (<id>D.tif + <id>K.tif); {s['n_unlabelled']} EX "
                       "(extreme) without a label map, skipped"),
        ("image sizes", ", ".join(f"{k}: {v}" for k, v in s["shapes"].items())),
        ("label values", "0 background, 1-22 autosomes, 23 X, 24 Y, 255 overlap; pixels (files): "
         + ", ".join(f"{v}: {px:,} ({files[v]})" for v, px in s["label_pixels"].items())),
        ("overlap regions", f"{s['overlap_regions']:,} (8-connected regions of 255, any size)"),
        ("licence", s["licence"] or "README.TXT not found: the licence requires its notice with every copy"),
        ("use", "medseg data mfish SRC OUT (3-class folder), medseg data mfish-pairs SRC -o pairs.h5 "
                "(Pommier-layout overlapping pairs)"),
    ]


def describe_uwgi(path: Path) -> list[str]:
    """Two lines on a UW-Madison GI folder: what the file names and train.csv say (nothing decoded), and how to
    train and analyse it."""
    from collections import Counter

    from medseg.data.uwgi import CLASSES, check_consistency, read_train_csv, scan_index

    rles = read_train_csv(path / "train.csv")
    index = scan_index(path)
    check_consistency(index, rles)
    scans = {(r.case, r.day) for r in index}
    sizes = Counter(f"{r.width}x{r.height}" for r in index)
    with_masks = sum(any(rles[r.id][c] for c in CLASSES) for r in index)
    per_organ = {c: sum(bool(rles[r.id][c]) for r in index) for c in CLASSES}
    return [f"{path}: UW-Madison GI-tract layout — {len(index):,} slices in {len(scans)} scans of "
            f"{len({r.case for r in index})} cases; {with_masks:,} slices with a mask, {len(index) - with_masks:,} "
            "without; slices per organ: " + ", ".join(f"{c} {n:,}" for c, n in per_organ.items())
            + "; sizes (W x H): " + ", ".join(f"{k} {v:,}" for k, v in sizes.most_common()),
            "train it with configs/gi/unet4.yaml (task.mode multilabel, data.format uwgi); the paper's "
            "analysis: medseg data analyze " + str(path)]
