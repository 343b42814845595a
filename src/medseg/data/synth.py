"""Synthesizer of overlapping-chromosome pairs in the Pommier layout (``medseg data synth``).

The published set (Pommier, DeepFISH: ``LowRes_13434_overlapping_pairs.h5``) was made from single
chromosomes segmented out of one real metaphase (DAPI image combined with the Cy3 telomere image, so
telomeres are bright spots at the chromosome ends). Twelve chromosomes (one of each group of four of the
46) gave the C(12, 2) = 66 unordered pairs; for each pair the two chromosomes were rotated and translated
relative to each other so that they cross, the two grey images were *added* and the two masks labelled
1 (alpha) and 2 (beta), 3 where they overlap; 14,850 images were generated, the 1,416 without overlap were
deleted, leaving 13,434 images of 94 x 93 pixels on a black background.

This command does the same from three kinds of source:

* :func:`~medseg.data.procedural_chromosomes.chromosome_library` -- procedural chromosomes drawn by
  :func:`~medseg.data.procedural_chromosomes.render_chromosome` (curved, banded, centromere constriction,
  rounded ends, telomere spots, blur and noise), at the scale of the published set;
* :func:`~medseg.data.chromosome_crops.crops_from_folder` -- a user's single-chromosome crops (PNG/TIFF/...);
* :func:`~medseg.data.chromosome_crops.crops_from_metaphase` -- the chromosomes segmented out of a whole
  metaphase image;

and :func:`~medseg.data.pair_composition.synthesize_pairs` composes the pairs (the composition rule and
which chromosome is alpha: :mod:`medseg.data.pair_composition`). Here :func:`run_synth` writes the HDF5 file
(read back by :func:`medseg.data.pommier.read_pommier_h5`), a provenance JSON and a preview PNG. The names of
those modules are re-exported, so ``from medseg.data.synth import ...`` reaches every part of the synthesizer.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.data.chromosome_crops import (  # noqa: F401  (re-exported)
    IMAGE_SUFFIXES,
    LABELLED_MIN_SHARE,
    NUCLEUS_MIN_AREA,
    NUCLEUS_MIN_AXIS_RATIO,
    NUCLEUS_MIN_SOLIDITY,
    ChromosomeCrop,
    crops_from_folder,
    crops_from_metaphase,
    is_nucleus_like,
    label_map_beside,
    otsu_threshold,
)
from medseg.data.pair_composition import (  # noqa: F401  (re-exported)
    BLEND_WEIGHTS,
    RULE_TEXT,
    RULES,
    Blend,
    PairPlacement,
    check_blend,
    order_pair,
    place_pair,
    rotate_crop,
    synthesize_pairs,
)
from medseg.data.pommier import POMMIER_CLASSES, POMMIER_SHAPE, give_default_mode, write_pommier_h5
from medseg.data.procedural_chromosomes import chromosome_library, render_chromosome
from medseg.errors import DataValidationError
from medseg.palette import colourize, legend_handles

__all__ = [
    "ChromosomeCrop",
    "PairPlacement",
    "POMMIER_N_PAIRS",
    "IMAGE_SUFFIXES",
    "render_chromosome",
    "chromosome_library",
    "crops_from_folder",
    "crops_from_metaphase",
    "rotate_crop",
    "place_pair",
    "synthesize_pairs",
    "save_preview",
    "sidecar_paths",
    "run_synth",
    "otsu_threshold",
]

#: Size of the published set: 14,850 generated - 1,416 without overlap.
POMMIER_N_PAIRS = 13_434


def save_preview(
    path: str | Path, images: np.ndarray, labels: np.ndarray, *, n: int = 12, title: str = "",
    overlap_px: np.ndarray | None = None,
) -> Path:  # fmt: skip
    """Save a grid of ``n`` examples (image beside its coloured label map) as a PNG, atomically.

    Examples are picked at evenly spaced quantiles of the overlap size, from the smallest to the largest,
    so the preview shows the range of the set. Colours and legend from :mod:`medseg.palette`, as in every
    figure: background black, alpha red, beta green, overlap blue.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if overlap_px is None:
        overlap_px = (labels == 3).reshape(len(labels), -1).sum(axis=1)
    n = max(1, min(n, len(images)))
    order = np.argsort(overlap_px, kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))]
    per_row = 3
    rows = int(math.ceil(len(picks) / per_row))
    fig = Figure(figsize=(2.0 * 2 * per_row, 2.1 * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for k, idx in enumerate(picks):
        r, c = divmod(k, per_row)
        ax = fig.add_subplot(rows, 2 * per_row, r * 2 * per_row + 2 * c + 1)
        ax.imshow(images[idx], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"#{idx}", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(rows, 2 * per_row, r * 2 * per_row + 2 * c + 2)
        ax.imshow(colourize(labels[idx]), interpolation="nearest")
        ax.set_title(f"overlap {int(overlap_px[idx])} px", fontsize=8)
        ax.axis("off")
    fig.legend(
        handles=legend_handles(POMMIER_CLASSES), loc="lower center", ncol=len(POMMIER_CLASSES), fontsize=8,
        frameon=False,
    )  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        give_default_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sidecar_paths(output: str | Path) -> tuple[Path, Path]:
    """The provenance JSON and the preview PNG written beside ``output``: same name, ``.json``/``.png``."""
    output = Path(output)
    return output.with_suffix(".json"), output.with_suffix(".png")


def run_synth(
    output: str | Path,
    *,
    crops_dir: str | Path | None = None,
    metaphase: str | Path | None = None,
    n_pairs: int | None = None,
    pommier: bool = False,
    n_chromosomes: int = 48,
    shape: tuple[int, int] = POMMIER_SHAPE,
    seed: int = 0,
    progress: bool = True,
    min_overlap_px: int = 1,
    crop_scale: float = 1.0,
    blend: Blend = "sum",
    preview: bool = True,
    crops: list[ChromosomeCrop] | None = None,
    source: dict | None = None,
    extra: dict | None = None,
    rule: str | None = None,
    crop_weights: np.ndarray | None = None,
    accept: Callable[[np.ndarray], float] | None = None,
) -> dict:
    """Body of ``medseg data synth``: make a Pommier-layout set of overlapping pairs and write it.

    Source: the crops in ``crops_dir`` (:func:`crops_from_folder`), or the chromosomes of the
    ``metaphase`` image (:func:`crops_from_metaphase`), or by default ``n_chromosomes`` procedural
    chromosomes (:func:`chromosome_library`). ``n_pairs``: how many images to keep (default one pass over
    all pairs). ``pommier=True``: exactly 13,434 images at 94 x 93, the published size (``n_pairs`` and
    ``shape`` must then be left at their defaults or agree). ``crop_scale`` rescales user crops.
    ``crops`` (with ``source``, a dict describing them for the provenance) gives prepared crops instead,
    e.g. real isolated chromosomes (:func:`medseg.data.mfish_synth.run_mfish_synth`); ``extra``: more
    top-level entries for the JSON and the summary. ``rule``, ``crop_weights``, ``accept``: see
    :func:`synthesize_pairs` (off by default).

    Writes ``output`` (HDF5, :func:`medseg.data.pommier.write_pommier_h5`), ``<output stem>.json``
    (provenance: source, seed, counts, shape, medseg version, ``"synthesized": true``, the alpha/beta crop
    of every image) and ``<output stem>.png`` (preview grid). All three are written under temporary names
    and renamed at the end, so a failure leaves none of them half-written. Returns the summary (the JSON's
    content without the per-image list, plus the paths and the time taken).
    """
    started = time.perf_counter()
    output = Path(output)
    n_pairs, shape = _checked_request(output, (crops_dir, metaphase, crops), pommier, n_pairs, shape)
    blend = check_blend(blend)
    if crops is not None:
        source = dict(source or {"kind": "crops"})
    else:
        crops, source = _load_source(crops_dir, metaphase, crop_scale, n_chromosomes, seed)
    source["n_crops"] = len(crops)
    source["crops"] = [c.name for c in crops]

    images, labels, stats = synthesize_pairs(
        crops,
        n_pairs=n_pairs,
        shape=shape,
        seed=seed,
        min_overlap_px=min_overlap_px,
        progress=progress,
        blend=blend,
        rule=rule,
        crop_weights=crop_weights,
        accept=accept,
    )
    summary = _summary(
        source,
        stats,
        seed=seed,
        pommier=pommier,
        shape=shape,
        min_overlap_px=min_overlap_px,
        blend=blend,
        rule=rule,
        counts_accept=accept is not None,
    )
    summary.update(extra or {})
    provenance = dict(summary, pairs=stats["pair_index"].tolist())
    title = f"{output.name}: {len(images)} synthesized pairs ({source['kind']} source, seed {seed})"
    json_path, png_path = _write_set(
        output, images, labels, provenance, stats["overlap_px"], preview_title=title if preview else None
    )
    summary.update(
        output=str(output),
        json=str(json_path),
        preview=str(png_path) if preview else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return summary


def _checked_request(
    output: Path, sources: tuple, pommier: bool, n_pairs: int | None, shape: tuple[int, int]
) -> tuple[int | None, tuple[int, int]]:
    """``(n_pairs, shape)`` of a :func:`run_synth` call, refusing an output named like its sidecar files, two
    sources at once, and a ``pommier=True`` contradicted by ``n_pairs`` or ``shape``."""
    if output.suffix.lower() in (".json", ".png"):
        raise ValueError(f"output {output} would collide with its sidecar files; use a .h5 name")
    if sum(x is not None for x in sources) > 1:
        raise ValueError("give either crops_dir, metaphase or crops, not two of them")
    shape = (int(shape[0]), int(shape[1]))
    if pommier:
        if n_pairs not in (None, POMMIER_N_PAIRS):
            raise ValueError(f"pommier=True makes exactly {POMMIER_N_PAIRS} pairs; n_pairs={n_pairs} contradicts it")
        if shape != tuple(POMMIER_SHAPE):
            raise ValueError(
                f"pommier=True makes {POMMIER_SHAPE[0]}x{POMMIER_SHAPE[1]} images; shape={shape} contradicts it"
            )
        n_pairs = POMMIER_N_PAIRS
    return n_pairs, shape


def _load_source(
    crops_dir: str | Path | None, metaphase: str | Path | None, crop_scale: float, n_chromosomes: int, seed: int
) -> tuple[list[ChromosomeCrop], dict]:
    """The crops of a user's folder, of a metaphase image, or else procedural ones, and their provenance."""
    if crops_dir is not None:
        crops = crops_from_folder(crops_dir, scale=crop_scale)
        return crops, {"kind": "folder", "path": str(Path(crops_dir).resolve()), "crop_scale": crop_scale}
    if metaphase is not None:
        return _metaphase_source(metaphase, crop_scale)
    source = {
        "kind": "procedural",
        "n_chromosomes": n_chromosomes,
        "generator": "medseg.data.synth.chromosome_library",
    }
    return chromosome_library(n_chromosomes, seed=seed), source


def _metaphase_source(metaphase: str | Path, crop_scale: float) -> tuple[list[ChromosomeCrop], dict]:
    """The chromosomes of a metaphase image (kept by the M-FISH label map beside it, else by shape)."""
    beside = label_map_beside(metaphase)
    karyo = None
    if beside is not None:
        from medseg.data.mfish import _read_tif

        karyo = _read_tif(beside)
    kept: dict = {}
    crops = crops_from_metaphase(metaphase, scale=crop_scale, label_map=karyo, stats=kept)
    source = {
        "kind": "metaphase",
        "path": str(Path(metaphase).resolve()),
        "crop_scale": crop_scale,
        "kept_by": f"label map {beside.name}" if beside is not None else "shape (nuclei dropped)",
        **kept,
    }
    if len(crops) < 2:
        raise DataValidationError(metaphase, f"found {len(crops)} chromosome(s); at least two are needed")
    return crops, source


def _summary(
    source: dict,
    stats: dict,
    *,
    seed: int,
    pommier: bool,
    shape: tuple[int, int],
    min_overlap_px: int,
    blend: Blend,
    rule: str | None,
    counts_accept: bool,
) -> dict:
    """What :func:`run_synth` returns and its JSON records (without the per-image list and the paths)."""
    import medseg

    overlaps = stats["overlap_px"]
    summary = {
        "synthesized": True,
        "format": "pommier",
        "medseg_version": medseg.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "seed": seed,
        "pommier": pommier,
        "shape": list(shape),
        "n_images": int(stats["kept"]),
        "generated": stats["generated"],
        "kept": stats["kept"],
        "rejected_no_overlap": stats["rejected_no_overlap"],
        "rejected_covered": stats["rejected_covered"],
        "rejected_outside": stats["rejected_outside"],
        "passes": stats["passes"],
        "min_overlap_px": min_overlap_px,
        "composition": (
            f"{blend} of background-subtracted signals, clipped to 0..255; background 0"
            if isinstance(blend, str)
            else f"max(a, b) + {blend:g} * min(a, b) of background-subtracted signals, clipped to 0..255; background 0"
        ),
        "blend": blend,
        "labels": {"0": "background", "1": "alpha only", "2": "beta only", "3": "overlap"},
        "overlap_px": {
            "min": int(overlaps.min()),
            "median": float(np.median(overlaps)),
            "max": int(overlaps.max()),
        },
        "saturated_overlap_px": stats["saturated_px"],
    }
    if rule is not None:
        summary["rule"] = rule
    if counts_accept:
        summary["rejected_accept"] = stats["rejected_accept"]
    return summary


def _write_set(
    output: Path,
    images: np.ndarray,
    labels: np.ndarray,
    provenance: dict,
    overlaps: np.ndarray,
    *,
    preview_title: str | None,
) -> tuple[Path, Path]:
    """Write the HDF5 file, its provenance JSON and (with a ``preview_title``) its preview PNG under temporary
    names, then rename all of them, so that a failure leaves none half-written. Returns the sidecars' paths."""
    json_path, png_path = sidecar_paths(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_h5 = output.with_name(f".{output.name}.synth-tmp")
    tmp_json = json_path.with_name(f".{json_path.name}.synth-tmp")
    tmp_png = png_path.with_name(f".{png_path.name}.synth-tmp.png")
    try:
        write_pommier_h5(tmp_h5, images, labels)
        tmp_json.write_text(json.dumps(provenance, indent=1) + "\n")
        if preview_title is not None:
            save_preview(tmp_png, images, labels, overlap_px=overlaps, title=preview_title)
        os.replace(tmp_h5, output)
        os.replace(tmp_json, json_path)
        if preview_title is not None:
            os.replace(tmp_png, png_path)
    except BaseException:
        for p in (tmp_h5, tmp_json, tmp_png):
            p.unlink(missing_ok=True)
        raise
    return json_path, png_path
