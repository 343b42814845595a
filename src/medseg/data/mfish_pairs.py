"""Real overlapping-chromosome pairs from the M-FISH karyotypes, in the Pommier layout (``medseg data mfish-pairs``).

The published Pommier set is synthesized (two chromosomes pasted across each other, :mod:`medseg.data.synth`).
The M-FISH karyotypes (:mod:`medseg.data.mfish`: 0 background, 1–24 chromosome class, 255 overlap) give **real**
overlaps: wherever two chromosomes cross in a metaphase, the expert's label map says which class each is and
where they overlap. :func:`pairs_from_karyotype` cuts one crop (94×93, rows × columns, as ``POMMIER_SHAPE``)
around every overlap that joins exactly two chromosomes and labels it 0 background, 1 chromosome A only,
2 chromosome B only, 3 overlap; :func:`run_mfish_pairs` writes them with
:func:`medseg.data.pommier.write_pommier_h5`, so ``medseg train/cv/evaluate/reproduce --data pairs.h5`` read
them like the published file.

Rules (all in :class:`PairOptions`; the sidecar JSON records them):

* **Overlap region**: a connected component (8-neighbourhood) of label 255 of at least ``min_overlap_px`` pixels
  (default 10); smaller ones are counted as ``too_small`` and left out.
* **Chromosomes it joins**: the distinct classes 1–24 within ``touch_px`` pixels of it (default 1: the
  pixels next to it). One class: two copies of the same chromosome (or one folded on itself), which the label map
  cannot tell apart → ``same_class``, left out. Three or more → ``three_or_more``, left out. None →
  ``no_chromosome``, left out. Exactly two → a pair.
* **A chromosome instance** of class c is the connected component, holding the overlap, of the class-c pixels
  together with every overlap region that borders class c: so a chromosome cut in two by this overlap (or by
  another crossing) is one chromosome, and its pixels under another crossing belong to it too. When the same two
  chromosomes cross twice, the second crossing gives the same pair again → ``duplicate``, left out.
* **Which is label 1** (``rule``): ``larger`` (default) — the chromosome with more pixels, overlap included,
  ties to the lower class; ``lower-class`` — the lower karyotype class (1–22, X = 23, Y = 24), the analogue of
  Pommier's "lower index in the karyotype-ordered crop list"; ``top-left`` — the one whose centroid lies higher
  in the metaphase (then further left).
* **Crop**: along each axis centred on the pair's bounding box when it fits in the crop, else on the overlap's
  bounding box; shifted to stay inside the metaphase. A pair that does not fit is ``cut`` by the crop border:
  kept by default and counted (``keep_cut=False`` leaves them out, counted as ``cut_by_crop``).
* **Other chromosomes** inside the crop (and overlap pixels that are not this pair's) are background in the label
  map; the crops holding any are counted (``with_other_chromosomes``). ``mask_others=True`` also paints their
  pixels in the image with the median grey of the crop's background pixels.
* The image is the DAPI counterstain as recorded (8-bit, dark background ≈ 13, not the black of the published
  set's pasted chromosomes).

:func:`isolated_chromosomes` gives every chromosome that touches no overlap (one crop and mask each, with its
class and area); ``--isolated-dir`` writes them as an ``images/`` + ``masks/`` folder with ``index.csv``.

Split by slide, never by pair: the pairs of one metaphase share chromosomes, and a slide's metaphases share a
patient. A slide's metaphases may lie in several folders, one per karyotype found on it (``A02__15``,
``A02__18``, ``A02__XY`` are slide ``A02``: :func:`medseg.data.mfish.slide_of`), so the split unit is the slide,
which keeps every folder together too. The folder and slide of every pair are stored in the HDF5 file (datasets
``folder``, ``slide`` and ``image`` beside ``dataset_1``, which readers of the Pommier layout ignore), in the
sidecar JSON, and as a ready split file by slide (``<output>.splits.json``, names as medseg gives the pairs of
an HDF5 file: ``<stem>[i]``) for ``--set splits.file=...``. Which slides are held out is decided in one place,
:func:`held_out_slides`, which every M-FISH set tested on them uses (pairs, synthesized pairs, whole metaphases,
the karyotyping set). The set's licence notice is copied beside every file written (``<output>.README.TXT``,
``README.TXT`` in the isolated folder) and quoted in the JSON, as the licence requires.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.mfish import (
    find_metaphases,
    find_unlabelled,
    licence_notice,
    read_metaphase,
    slide_of,
)
from medseg.data.mfish_pair_crops import (  # noqa: F401  (re-exported)
    LEFT_OUT,
    IsolatedChromosome,
    Pair,
    PairOptions,
    isolated_chromosomes,
    pairs_from_karyotype,
)
from medseg.data.pommier import POMMIER_CLASSES
from medseg.data.synth import RULE_TEXT, RULES, order_pair  # noqa: F401  (re-exported)
from medseg.errors import DataValidationError
from medseg.progress import Progress

__all__ = [
    "LEFT_OUT",
    "RULES",
    "IsolatedChromosome",
    "Pair",
    "PairOptions",
    "group_splits",
    "held_out_slides",
    "isolated_chromosomes",
    "order_pair",
    "pair_slides",
    "pairs_from_karyotype",
    "run_mfish_pairs",
]

_DATASET = "M-FISH Image Set #1 (PSI / Advanced Digital Imaging Research, 2000), as published in jeanpat/MFISH"


def group_splits(groups: list[str], stem: str, *, test_fraction: float = 0.2, n_folds: int = 5, seed: int = 0) -> dict:
    """A split file by group (the slide) for pairs ``stem[0]``, ``stem[1]``, … of groups ``groups``: a test set and
    ``n_folds`` validation sets, each made of whole groups (:func:`medseg.data.splits.make_splits` over the
    groups in natural order), in the names format of ``splits.file``. Under three groups: no test set, no folds
    (``{"test": []}``)."""
    from medseg.data.splits import make_splits, natural_key

    units = sorted(set(groups), key=natural_key)
    if len(units) < 3:  # too few slides for a test set and k folds of whole slides
        return {"test": []}
    n_rest = len(units) - int(np.floor(len(units) * test_fraction + 1e-9))
    made = make_splits(len(units), test_fraction=test_fraction, n_folds=max(2, min(n_folds, n_rest)), seed=seed)

    def names(unit_indices: list[int]) -> list[str]:
        chosen = {units[u] for u in unit_indices}
        return [f"{stem}[{i}]" for i, g in enumerate(groups) if g in chosen]

    return {"test": names(made["test"]), "folds": [{"val": names(f["val"])} for f in made["folds"]]}


def held_out_slides(pairs: str | Path | Sequence[str], *, seed: int = 0, progress: bool = False) -> list[str]:
    """The held-out test slides of ``medseg data mfish-pairs`` (sorted): the one rule every M-FISH set that
    must never test on a pair model's training slides follows (``mfish:pairs`` / ``synth`` / ``both``, the whole
    metaphases of :mod:`medseg.data.mfish_metaphase`, ``mfish:karyotype``). The slides of the test set of
    :func:`group_splits` over the slide of every pair, drawn with ``seed`` (``mfish-pairs``' ``split_seed``,
    default 0). ``pairs`` is

    * the slides of the pairs, one per pair in the pairs' order (what :func:`run_mfish_pairs` collects);
    * an M-FISH folder: the pairs are cut from every labelled metaphase with the default :class:`PairOptions`
      (as ``mfish-pairs`` does, nothing written; about 4 s for the 133 metaphases);
    * a pairs file written by ``mfish-pairs`` (``.h5``): the test names of its own ``<stem>.splits.json``,
      mapped to slides by its ``slide`` dataset — the file's record decides (``seed`` is not used: the file may
      have been written with another ``split_seed``).

    On the 133 labelled metaphases (22 slides with pairs, seed 0): A20, P09, V18, V27."""
    if isinstance(pairs, (str, Path)):
        path = Path(pairs)
        if path.is_dir():
            return held_out_slides(pair_slides(path, progress=progress)[0], seed=seed)
        return _held_out_of_file(path)
    slides = [str(s) for s in pairs]
    split = group_splits(slides, "p", seed=seed)
    return sorted({slides[int(name[2:-1])] for name in split["test"]})


def pair_slides(root: str | Path, *, progress: bool = False) -> tuple[list[str], list[str]]:
    """The slide of every pair ``medseg data mfish-pairs ROOT`` cuts (default :class:`PairOptions`, in its
    order; nothing written) and every slide of the labelled metaphases (sorted)."""
    slides: list[str] = []
    every: set[str] = set()
    for m in Progress(find_metaphases(root), desc="M-FISH pairs' slides", unit="image", disable=not progress):
        dapi, karyo = read_metaphase(m)
        found, _ = pairs_from_karyotype(dapi, karyo, folder=m.folder, image_id=m.id)
        slides += [slide_of(m.folder)] * len(found)
        every.add(slide_of(m.folder))
    return slides, sorted(every)


def _held_out_of_file(pairs_h5: Path) -> list[str]:
    import h5py

    split_path = pairs_h5.with_name(pairs_h5.stem + ".splits.json")
    if not split_path.is_file():
        raise DataValidationError(split_path, "no split file beside the pairs file (medseg data mfish-pairs writes it)")
    test = json.loads(split_path.read_text())["test"]
    with h5py.File(pairs_h5, "r") as f:
        if "slide" not in f:
            raise DataValidationError(pairs_h5, "no 'slide' dataset: not a medseg data mfish-pairs file")
        slides = [s.decode() if isinstance(s, bytes) else str(s) for s in f["slide"][:]]
    prefix = pairs_h5.stem + "["
    return sorted({slides[int(name[len(prefix) : -1])] for name in test if name.startswith(prefix)})


def _write_isolated(out_dir: Path, chromosomes: list[IsolatedChromosome], notice: Path | None) -> Path:
    from PIL import Image

    from medseg.formats.atomic import atomic_file

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    per_image: Counter = Counter()
    for ch in chromosomes:
        per_image[(ch.folder, ch.image_id)] += 1
        name = f"{ch.folder}__{ch.image_id}__{per_image[(ch.folder, ch.image_id)]:03d}_c{ch.cls:02d}"
        for sub, arr in (("images", ch.image), ("masks", ch.mask.astype(np.uint8) * 255)):
            with atomic_file(out_dir / sub / f"{name}.png", ".png") as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
        rows.append(
            {
                "name": name,
                "folder": ch.folder,
                "image": ch.image_id,
                "class": ch.cls,
                "area": ch.area,
                "top": ch.box[0],
                "left": ch.box[1],
                "height": ch.box[2],
                "width": ch.box[3],
                "touches_other": int(ch.touches_other),
                "at_border": int(ch.at_border),
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["name"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(out_dir / "index.csv", ".csv") as tmp:
        tmp.write_text(buf.getvalue())
    if notice is not None:
        shutil.copyfile(notice, out_dir / "README.TXT")
    return out_dir / "index.csv"


def run_mfish_pairs(
    src: str | Path,
    output: str | Path,
    *,
    options: PairOptions = PairOptions(),
    limit: int | None = None,
    isolated_dir: str | Path | None = None,
    isolated_margin: int = 4,
    split_seed: int = 0,
    preview: bool = True,
    progress: bool = True,
) -> dict:
    """Body of ``medseg data mfish-pairs``: the pairs of the first ``limit`` (default all) labelled metaphases
    under ``src`` written to ``output`` (Pommier HDF5 layout, plus datasets ``folder``, ``slide`` and ``image``
    naming each pair's folder, slide and metaphase), ``<output stem>.json`` (provenance: REAL data, source,
    options, rule, counts, one record per pair), ``<output stem>.splits.json`` (split by slide),
    ``<output stem>.png`` (preview) and ``<output stem>.README.TXT`` (the set's licence notice). With
    ``isolated_dir``, every chromosome that touches no overlap as ``images/`` + ``masks/`` PNGs with
    ``index.csv``. Returns the summary (the JSON without the per-pair records, plus the paths)."""
    started = time.perf_counter()
    src, files = Path(src), _PairsFiles.of(Path(output))
    output = files.output
    metaphases = find_metaphases(src)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        metaphases = metaphases[:limit]
    unlabelled = find_unlabelled(src)
    notice, notice_text = licence_notice(src)

    cut = _cut_pairs(metaphases, options, isolated_dir, isolated_margin, progress)
    if not cut.pairs:
        raise DataValidationError(
            src,
            f"no overlap in the {len(metaphases)} metaphase(s) read joins exactly two chromosomes of different "
            f"classes (counts: {dict(cut.counts)}); nothing to write",
        )
    cut.stack()
    summary = _pairs_summary(cut, src, metaphases, limit, len(unlabelled), options, split_seed, files)
    summary["licence"] = {"file": files.licence.name if notice else None, "notice": notice_text}
    if isolated_dir is not None:
        summary["isolated"] = {
            "dir": str(isolated_dir),
            "n": len(cut.isolated),
            "left_out_small": cut.isolated_small,
            "touching_another_chromosome": sum(c.touches_other for c in cut.isolated),
            "at_metaphase_border": sum(c.at_border for c in cut.isolated),
        }
    provenance = dict(summary, pairs=[p.record() for p in cut.pairs])
    split = group_splits(cut.slides, output.stem, seed=split_seed)
    if not split["test"]:
        _warn_no_test_set(src, cut.slides, split, files.splits)

    output.parent.mkdir(parents=True, exist_ok=True)
    _write_pairs_set(files, notice, options, cut, provenance, split, preview)
    if isolated_dir is not None:
        summary["isolated"]["index"] = str(_write_isolated(Path(isolated_dir), cut.isolated, notice))
    summary.update(
        output=str(output),
        json=str(files.json),
        splits=str(files.splits),
        preview=str(files.png) if preview else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return summary


@dataclass(frozen=True)
class _PairsFiles:
    """The files ``medseg data mfish-pairs`` writes for ``output``."""

    output: Path
    json: Path  # provenance
    png: Path  # preview
    splits: Path
    licence: Path  # the set's licence notice

    @classmethod
    def of(cls, output: Path) -> _PairsFiles:
        from medseg.data.synth import sidecar_paths

        json_path, png_path = sidecar_paths(output)
        if output.suffix.lower() in (".json", ".png", ".txt"):
            raise ValueError(f"output {output} would collide with its sidecar files; use a .h5 name")
        return cls(
            output,
            json_path,
            png_path,
            output.with_name(output.stem + ".splits.json"),
            output.with_name(output.stem + ".README.TXT"),
        )

    def temps(self, preview: bool, notice: Path | None) -> dict[Path, Path]:
        """The temporary name each file is written under (the preview only with ``preview``, the licence
        notice only when there is one)."""
        temps = {
            self.output: self.output.with_name(f".{self.output.name}.mfish-tmp"),
            self.json: self.json.with_name(f".{self.json.name}.mfish-tmp"),
            self.splits: self.splits.with_name(f".{self.splits.name}.mfish-tmp"),
        }
        if preview:
            temps[self.png] = self.png.with_name(f".{self.png.name}.mfish-tmp.png")
        if notice is not None:
            temps[self.licence] = self.licence.with_name(f".{self.licence.name}.mfish-tmp")
        return temps


@dataclass
class _CutPairs:
    """What :func:`_cut_pairs` gathers from the metaphases; :meth:`stack` adds the arrays that are written."""

    pairs: list[Pair] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # overlaps found, left out (per reason), cut, ...
    shapes: Counter = field(default_factory=Counter)  # metaphase shapes, "HxW"
    isolated: list[IsolatedChromosome] = field(default_factory=list)
    isolated_small: int = 0
    images: np.ndarray | None = None  # (N, H, W) uint8, one per pair
    labels: np.ndarray | None = None  # (N, H, W): 0 background, 1 A, 2 B, 3 overlap
    slides: list[str] = field(default_factory=list)  # the slide of every pair
    overlap_px: np.ndarray | None = None  # overlap pixels in each crop

    def stack(self) -> None:
        self.images = np.stack([p.image for p in self.pairs])
        self.labels = np.stack([p.labels for p in self.pairs])
        self.slides = [slide_of(p.folder) for p in self.pairs]
        self.overlap_px = (self.labels == 3).reshape(len(self.labels), -1).sum(axis=1)


def _cut_pairs(metaphases, options: PairOptions, isolated_dir, isolated_margin: int, progress: bool) -> _CutPairs:
    """The pairs of every metaphase, with the counts, and (with ``isolated_dir``) its isolated chromosomes."""
    cut = _CutPairs()
    for m in Progress(metaphases, desc="M-FISH metaphases", unit="image", disable=not progress):
        dapi, karyo = read_metaphase(m)
        cut.shapes[f"{dapi.shape[0]}x{dapi.shape[1]}"] += 1
        found, c = pairs_from_karyotype(dapi, karyo, options, folder=m.folder, image_id=m.id)
        cut.pairs += found
        cut.counts.update(c)
        if isolated_dir is not None:
            chromosomes, small = isolated_chromosomes(
                dapi, karyo, touch_px=options.touch_px, margin=isolated_margin, folder=m.folder, image_id=m.id
            )
            cut.isolated += chromosomes
            cut.isolated_small += small
    return cut


def _pairs_summary(
    cut: _CutPairs,
    src: Path,
    metaphases,
    limit: int | None,
    n_unlabelled: int,
    options: PairOptions,
    split_seed: int,
    files: _PairsFiles,
) -> dict:
    """The set's provenance record (the JSON sidecar without the per-pair records), up to its licence."""
    import medseg

    counts, overlap_px = cut.counts, cut.overlap_px
    return {
        "synthesized": False,
        "real": True,
        "format": "pommier",
        "dataset": _DATASET,
        "medseg_version": medseg.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "path": str(src.resolve()),
            "n_metaphases": len(metaphases),
            "limit": limit,
            "n_unlabelled_skipped": n_unlabelled,
            "unlabelled_rule": "EX (extreme) metaphases have no "
            "label map and are skipped; any other DAPI image without one is an error",
            "metaphase_shapes": dict(cut.shapes),
            "folders": sorted({m.folder for m in metaphases}),
        },
        "shape": list(options.crop),
        "n_images": len(cut.pairs),
        "labels": {
            "0": "background (other chromosomes too)",
            "1": "chromosome A only",
            "2": "chromosome B only",
            "3": "overlap of A and B",
        },
        "class_names": list(POMMIER_CLASSES),
        "rule": {"name": options.rule, "text": RULE_TEXT[options.rule]},
        "options": asdict(options) | {"crop": list(options.crop)},
        "overlaps_found": int(counts["overlaps"]),
        "kept": len(cut.pairs),
        "left_out": {k: int(counts[k]) for k in LEFT_OUT},
        "cut_by_crop_border": int(counts["cut"]),
        "cut_kept": options.keep_cut,
        "with_other_chromosomes": int(counts["with_other_chromosomes"]),
        "pairs_per_folder": dict(sorted(Counter(p.folder for p in cut.pairs).items())),
        "pairs_per_slide": dict(sorted(Counter(cut.slides).items())),
        "overlap_px_in_crop": {
            "min": int(overlap_px.min()),
            "median": float(np.median(overlap_px)),
            "max": int(overlap_px.max()),
        },
        "split_by": "slide (folder[:3], e.g. A02 for A02__15 and A02__XY): HDF5 datasets 'slide' and 'folder', "
        "pairs[*].slide here, and the split file",
        "splits_file": files.splits.name,
        "split_seed": split_seed,
        "held_out_slides": held_out_slides(cut.slides, seed=split_seed),
    }


def _warn_no_test_set(src: Path, slides: list[str], split: dict, splits_path: Path) -> None:
    """Said where the file is made, not later when a training on it refuses or tests on nothing."""
    found = sorted(set(slides))
    folds = (
        "no folds either: medseg train/cv on it will refuse it"
        if "folds" not in split
        else "models trained on it cannot be tested on slides they never saw"
    )
    warnings.warn(
        f"{src}: the pairs come from {len(found)} slide(s) ({', '.join(found)}); holding out 20 % of the "
        f"slides as the test set needs pairs from at least 5 slides, so {splits_path.name} holds no "
        f"test set and {folds} — cut the pairs from a folder with more slides, or give a split with "
        "splits.file",
        stacklevel=3,
    )


def _write_pairs_set(
    files: _PairsFiles,
    notice: Path | None,
    options: PairOptions,
    cut: _CutPairs,
    provenance: dict,
    split: dict,
    preview: bool,
) -> None:
    """The HDF5 set and its sidecars, each under its temporary name until all are written: all of them or
    none."""
    import h5py

    from medseg.data.pommier import give_default_mode, write_pommier_h5
    from medseg.data.synth import save_preview
    from medseg.formats.atomic import atomic_files

    temps = files.temps(preview, notice)
    with atomic_files(temps):  # all of them or none
        write_pommier_h5(temps[files.output], cut.images, cut.labels)
        with h5py.File(temps[files.output], "a") as f:
            text = h5py.string_dtype("utf-8")
            f.create_dataset("folder", data=np.array([p.folder for p in cut.pairs], dtype=object), dtype=text)
            f.create_dataset("slide", data=np.array(cut.slides, dtype=object), dtype=text)
            f.create_dataset("image", data=np.array([p.image_id for p in cut.pairs], dtype=object), dtype=text)
            f.attrs["source"] = _DATASET + " -- REAL data; licence notice in the .README.TXT beside this file"
            f.attrs["rule"] = RULE_TEXT[options.rule]
        temps[files.json].write_text(json.dumps(provenance, indent=1) + "\n")
        temps[files.splits].write_text(json.dumps(split, indent=1) + "\n")
        for p in (temps[files.json], temps[files.splits]):
            give_default_mode(p)
        if notice is not None:
            shutil.copyfile(notice, temps[files.licence])
        if preview:
            save_preview(
                temps[files.png],
                cut.images,
                cut.labels,
                overlap_px=cut.overlap_px,
                title=f"{files.output.name}: {len(cut.images)} real M-FISH overlapping pairs (rule {options.rule})",
            )
