"""``data.path: mfish:pairs | mfish:synth | mfish:both``: the transfer experiment's three training sets, made
from the real M-FISH folder on first use (as ``synth:*`` sets are) and kept under ``$MEDSEG_HOME/mfish``.

* ``mfish:pairs`` — REAL overlapping pairs (``medseg data mfish-pairs``, label 1 the larger chromosome) with
  their ready split by slide (``pairs.splits.json``: a test set of held-out slides and 5 folds of the rest),
  which medseg uses for this file whenever ``splits.file`` is not set (:func:`medseg.data.runs.splits_for`).
* ``mfish:synth`` — pairs SYNTHESIZED by Pommier's procedure from the real isolated chromosomes of the
  training slides only (``medseg data mfish-synth --exclude-test-of pairs.h5``, matched to the real training
  pairs' sizes, overlap intensity and crossing angles); ``data.mfish_synth_pairs`` of them (default 13,434, the
  published size).
* ``mfish:both`` — the two together: the synthesized pairs and the real pairs of the training slides (the
  held-out slides' pairs are left out). A plain union: at the published size the real pairs are ~2 % of it;
  each real pair keeps its slide as its split group, each synthesized pair is a group of its own.

The test set of all three is the same: the real pairs of the held-out slides (evaluate with
``--data mfish:pairs``).

``mfish:karyotype`` is the karyotyping set: every real isolated chromosome as a DAPI cut-out
on a 128 × 128 canvas labelled mask × class (25 classes: background, 1–22, X, Y), tested on the same held-out
slides (:mod:`medseg.data.mfish_karyotype`). Where the folder is: ``data.mfish_source``, else ``$MEDSEG_MFISH``, else
``../shared/data/mfish`` beside the working directory or beside the medseg checkout. Every set is built in a
temporary folder and renamed when complete, so an interrupted build never leaves half a set; the M-FISH
licence notice travels with each (``*.README.TXT``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medseg.errors import DataValidationError
from medseg.paths import medseg_home

__all__ = ["KINDS", "find_mfish_source", "mfish_set_path"]

KINDS = ("pairs", "synth", "both", "karyotype", "karyotype-upright")
PUBLISHED_PAIRS = 13_434


def find_mfish_source(configured: str | None = None) -> Path:
    """The M-FISH folder: ``configured``, ``$MEDSEG_MFISH``, or ``../shared/data/mfish`` (working directory,
    then the checkout); a clear error naming every place looked at when none holds it."""
    from medseg.data.mfish import is_mfish_folder

    if configured:
        candidates = [Path(configured).expanduser()]
    else:
        candidates = [Path(p).expanduser() for p in [os.environ.get("MEDSEG_MFISH")] if p]
        candidates += [
            Path.cwd().parent / "shared" / "data" / "mfish",
            Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mfish",
        ]
    for c in candidates:
        if c.is_dir() and is_mfish_folder(c):
            return c.resolve()
    raise DataValidationError(
        candidates[0],
        "no M-FISH folder here (the published set: folders of <id>D.tif + "
        "<id>K.tif); give it with data.mfish_source or $MEDSEG_MFISH (looked at: "
        + ", ".join(str(c) for c in dict.fromkeys(candidates))
        + ")",
    )


def _set_root(source: Path) -> Path:
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:10]
    return medseg_home() / "mfish" / f"{source.name}-{digest}"


def _build(final: Path, make) -> Path:
    """Run ``make(tmp_dir)`` and rename ``tmp_dir`` to ``final`` (nothing at ``final`` until it is complete)."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the set is an ordinary folder
    try:
        make(tmp)
        try:
            tmp.replace(final)
        except OSError:
            if not final.is_dir():
                raise
            # another process finished the same set first: its copy is as good as ours
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _real(source: Path, progress: bool) -> Path:
    from medseg.data.mfish_pairs import run_mfish_pairs

    folder = _build(
        _set_root(source) / "real",
        lambda tmp: run_mfish_pairs(source, tmp / "pairs.h5", isolated_dir=tmp / "isolated", progress=progress),
    )
    return folder / "pairs.h5"


def _real_isolated(source: Path, px: int, progress: bool) -> Path:
    """``mfish:pairs`` with every crop showing its pair alone (``data.mfish_pair_isolate_px``:
    :func:`medseg.data.mfish_pair_crops.isolate_pair` on the label map's pair), the same pairs, labels, slides and
    split as the real set it is made from."""
    import h5py

    from medseg.data.mfish_pair_crops import isolate_pair

    pairs = _real(source, progress)

    def make(tmp: Path) -> None:
        out = tmp / "pairs.h5"
        with h5py.File(pairs, "r") as f, h5py.File(out, "w") as g:
            for key, value in f.attrs.items():
                g.attrs[key] = value
            for key in f:
                data = f[key][...]
                if key == "dataset_1":  # (N, H, W, 2): the DAPI crop, the 0/1/2/3 labels
                    for i in range(len(data)):
                        data[i, ..., 0] = isolate_pair(data[i, ..., 0], data[i, ..., 1] > 0, px)
                g.create_dataset(key, data=data, dtype=f[key].dtype)
        for suffix in (".splits.json", ".README.TXT"):
            shutil.copyfile(pairs.with_name("pairs" + suffix), tmp / ("pairs" + suffix))
        record = json.loads(pairs.with_name("pairs.json").read_text())
        record["isolated"] = {
            "px": px,
            "rule": "every pixel farther than px from the pair painted with the 25th percentile of those pixels "
            "(medseg.data.mfish_pair_crops.isolate_pair)",
            "from": str(pairs),
        }
        (tmp / "pairs.json").write_text(json.dumps(record, indent=1) + "\n")

    return _build(_set_root(source) / f"real_isolated_{px}px", make) / "pairs.h5"


def _synth(source: Path, n_pairs: int, seed: int, progress: bool) -> Path:
    from medseg.data.mfish_synth import run_mfish_synth

    pairs = _real(source, progress)
    folder = _build(
        _set_root(source) / f"synth_{n_pairs}_s{seed}",
        lambda tmp: run_mfish_synth(
            pairs.parent / "isolated",
            tmp / "synth.h5",
            exclude_test_of=pairs,
            compare=pairs,
            n_pairs=n_pairs,
            seed=seed,
            progress=progress,
        ),
    )
    return folder / "synth.h5"


def _both(source: Path, n_pairs: int, seed: int, progress: bool, isolate: int | None = None) -> Path:
    import h5py

    from medseg.data.mfish_pairs import held_out_slides
    from medseg.data.pommier import GROUP_KEY, read_groups, read_pommier_h5, write_pommier_h5

    synth = _synth(source, n_pairs, seed, progress)
    pairs = _real(source, progress) if isolate is None else _real_isolated(source, isolate, progress)
    held_out = held_out_slides(pairs)  # the slides mfish-synth left out too (the pairs file's own split)

    def make(tmp: Path) -> None:
        real_images, real_labels, _ = read_pommier_h5(pairs)
        slides = read_groups(pairs, len(real_images))
        keep = [i for i, slide in enumerate(slides) if slide not in held_out]
        syn_images, syn_labels, _ = read_pommier_h5(synth)
        if syn_images.shape[1:] != real_images.shape[1:]:
            raise DataValidationError(
                synth, f"pairs of {syn_images.shape[1:]} cannot join the real pairs of {real_images.shape[1:]}"
            )
        out = tmp / "both.h5"
        write_pommier_h5(
            out, np.concatenate([syn_images, real_images[keep]]), np.concatenate([syn_labels, real_labels[keep]])
        )
        groups = [f"synth-{i:05d}" for i in range(len(syn_images))] + [slides[i] for i in keep]
        with h5py.File(out, "a") as f:
            f.create_dataset(GROUP_KEY, data=np.array(groups, dtype=object), dtype=h5py.string_dtype("utf-8"))
        record = {
            "synthesized": True,
            "what": "mfish:both — SYNTHESIZED pairs from real chromosomes plus the REAL pairs of the training slides",
            "n_synthesized": int(len(syn_images)),
            "n_real": len(keep),
            "synthesized_from": str(synth),
            "real_from": str(pairs),
            "held_out_slides_left_out": held_out,
        }
        (tmp / "both.json").write_text(json.dumps(record, indent=1) + "\n")
        notice = pairs.with_name("pairs.README.TXT")
        if notice.is_file():
            shutil.copyfile(notice, tmp / "both.README.TXT")

    name = f"both_{n_pairs}_s{seed}" + ("" if isolate is None else f"_isolated_{isolate}px")
    return _build(_set_root(source) / name, make) / "both.h5"


def _karyotype(
    source: Path,
    progress: bool,
    layout: str = "canvas",
    upright_shape=None,
    leave_out_rearranged: bool = False,
    crossed: bool = False,
) -> Path:
    import sys

    from medseg.data.karyotype_features import UPRIGHT_SHAPE
    from medseg.data.mfish_karyotype import CANVAS, run_mfish_karyotype

    shape = tuple(int(v) for v in (upright_shape or UPRIGHT_SHAPE))

    def make(tmp: Path) -> None:
        s = run_mfish_karyotype(
            source,
            tmp / "karyotype.h5",
            layout=layout,
            upright_shape=shape,
            leave_out_rearranged=leave_out_rearranged,
            crossed=crossed,
            progress=progress,
        )
        if progress:
            counts = ", ".join(f"{name} {v['train']}/{v['test']}" for name, v in s["per_class"].items())
            print(
                f"mfish:karyotype: {s['n_images']} chromosomes ({s['n_train']} training, {s['n_test']} test on the "
                f"held-out slides {', '.join(s['held_out_slides'])}); per class train/test: {counts}; left out: "
                + ", ".join(f"{k} {v}" for k, v in s["left_out"].items()),
                file=sys.stderr,
            )

    # _r: the sets carry the hand-made features and each chromosome's in_rearrangement (sets built before them
    # lack the HDF5 'features' / 'in_rearrangement': a new folder rebuilds them)
    name = f"karyotype_c{CANVAS}_r" if layout == "canvas" else "karyotype_upright_{}x{}_r".format(*shape)
    name += "_normal_training" if leave_out_rearranged else ""
    name += "_crossed" if crossed else ""
    return _build(_set_root(source) / name, make) / "karyotype.h5"


def _upright_canvas(size) -> tuple[int, int] | None:
    """The upright canvas of ``mfish:karyotype-upright`` from ``data.size`` (rows, cols; the set is built once per
    canvas), or None for the default; a square or malformed size is refused (the canvas is taller than wide)."""
    if size is None:
        return None
    if isinstance(size, int | float) or len(size) != 2 or int(size[0]) <= int(size[1]) or min(size) < 8:
        raise DataValidationError(
            None, f"mfish:karyotype-upright needs data.size [rows, cols] taller than wide, got {size!r}"
        )
    return int(size[0]), int(size[1])


def mfish_set_path(kind: str, data_cfg: dict, *, progress: bool = True) -> Path:
    """The HDF5 file of ``mfish:<kind>`` (made here if missing; see the module docstring)."""
    if kind not in KINDS:
        raise DataValidationError(
            None, f"unknown M-FISH set 'mfish:{kind}'; use " + ", ".join(f"mfish:{k}" for k in KINDS)
        )
    source = find_mfish_source(data_cfg.get("mfish_source"))
    n_pairs = int(data_cfg.get("mfish_synth_pairs") or PUBLISHED_PAIRS)
    seed = int(data_cfg.get("synth_seed", 0))
    isolate = data_cfg.get("mfish_pair_isolate_px")
    isolate = None if isolate is None else int(isolate)
    if kind == "pairs":
        return _real(source, progress) if isolate is None else _real_isolated(source, isolate, progress)
    if kind == "synth":
        return _synth(source, n_pairs, seed, progress)
    if kind in ("karyotype", "karyotype-upright"):
        leave_out = bool(data_cfg.get("mfish_leave_out_rearranged"))
        crossed = bool(data_cfg.get("mfish_karyotype_crossed"))
        if kind == "karyotype":
            return _karyotype(source, progress, leave_out_rearranged=leave_out, crossed=crossed)
        return _karyotype(source, progress, "upright", _upright_canvas(data_cfg.get("size")), leave_out, crossed)
    return _both(source, n_pairs, seed, progress, isolate)
