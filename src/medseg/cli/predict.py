"""``medseg predict``: your own images, CT volumes, whole metaphases (chromosome instances, their karyotype
classes) or a UW-Madison competition submission."""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli._common import DEVICE_HELP, AllowGapsOpt, TrustCodeOpt, check_vote, console, int_list


def _fold_choice(model: Path, text: str | None) -> list[int] | None:
    """``--folds``: None (every fold: ``all`` or not given) or the folds, each of which must be in ``model``."""
    from medseg.artifact import MODEL_META
    from medseg.errors import DataValidationError

    if text is None or text.strip().lower() == "all":
        return None
    folds = int_list(text, "--folds")
    if not folds:
        raise typer.BadParameter(f"--folds takes comma-separated fold numbers or 'all', got {text!r}")
    if (model / MODEL_META).is_file():
        raise DataValidationError(
            model,
            f"--folds {text} is for a run folder holding fold_*; this is one fold's "
            "model (give the run folder, or no --folds)",
        )
    found = {p.name for p in model.glob("fold_*") if (p / MODEL_META).is_file()}
    missing = [k for k in dict.fromkeys(folds) if f"fold_{k}" not in found]
    if missing and found:
        raise DataValidationError(
            model,
            f"no trained fold {', '.join(map(str, missing))} here (trained: "
            f"{', '.join(sorted(found, key=lambda n: int(n.split('_')[1])))})",
        )
    return folds


# The longer options of predict, named here so that its signature stays readable.
_ImagesArg = typer.Argument(
    ...,
    metavar="IMAGE",
    help="PNG/TIFF/JPEG images or folders of them (2D "
    "models; natural name order) or volumes: NIfTI, HDF5, DICOM folder/zip (3D; "
    "DICOM files are told by their bytes, whatever their names); with --format "
    "submission: one UW-Madison competition folder (holding test/ or train/, or that "
    "folder itself).",
)
_PairModelOpt = typer.Option(
    None,
    "--pair-model",
    metavar="PAIR_RUN",
    help="Whole metaphases: a "
    "4-class pair model (background, chromosome A, B, overlap) that splits "
    "each crossing of two chromosomes; MODEL must then segment background / "
    "chromosome / overlap. Writes OUT/IMAGE-NAME/ with every chromosome's mask "
    "and cut-out, instances.json and an instance figure.",
)
_CrossingsOpt = typer.Option(
    "auto",
    "--crossings",
    metavar="HOW",
    help="Whole metaphases: how a crossing of two chromosomes is parted: auto (the pair model when given, "
    "else geometry), pair_model, geometry (its arms paired by direction), whole (kept whole).",
)
_KaryotypeModelOpt = typer.Option(
    None,
    "--karyotype-model",
    metavar="KARYO_RUN",
    help="Whole "
    "metaphases: a karyotyping model (classes 1-22, X, Y; configs/mfish/"
    "karyotype_unet.yaml) that gives every chromosome its class: "
    "class, class_name, class_confidence in instances.json.",
)
_KaryotypeVoteOpt = typer.Option(
    "soft",
    "--karyotype-vote",
    metavar="VOTE",
    help="With --karyotype-model: soft (mean probability over the chromosome's pixels) or majority.",
)


def predict(
    model: Path = typer.Argument(..., help="Run directory (fold ensemble) or one fold directory."),
    images: list[Path] = _ImagesArg,
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder."),
    fmt: str = typer.Option(
        "files",
        "--format",
        metavar="FORMAT",
        help="files: label map, overlay, masks per "
        "image or volume; submission: the UW-Madison GI Tract Kaggle submission.csv (id,class,"
        "predicted; RLE at each slice's own size) + submission.json (counts, ms per slice).",
    ),
    folds: str | None = typer.Option(
        None,
        "--folds",
        metavar="K,...",
        help="Folds of a run to load, or 'all' (the "
        "default): their probabilities are averaged, so this is also the fold "
        "ensemble (no separate command); e.g. --folds 0,2.",
    ),
    threshold: float = typer.Option(
        0.5,
        "--threshold",
        metavar="P",
        help="--format submission: a pixel is an organ where its probability is above P.",
    ),
    tta: bool | None = typer.Option(
        None,
        "--tta/--no-tta",
        help="Test-time augmentation (flips, 90° rotations) "
        "or not (default: the model's evaluate.tta; planned models mirror).",
    ),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    trust_code: bool = TrustCodeOpt,
    allow_gaps: bool = AllowGapsOpt,
    pair_model: Path | None = _PairModelOpt,
    crossings: str = _CrossingsOpt,
    karyotype_model: Path | None = _KaryotypeModelOpt,
    karyotype_vote: str = _KaryotypeVoteOpt,
):
    """Segment your own images (label map, overlay, each whole chromosome as mask and cut-out) or CT volumes
    (label in the input's format and geometry + per-class volumes in ml); or, with --format submission, write a
    UW-Madison GI Tract competition submission for a folder of scans."""
    from medseg.inference.image import predict_image_files
    from medseg.inference.inputs import prediction_inputs
    from medseg.inference.predictor import Predictor

    if fmt not in ("files", "submission"):
        raise typer.BadParameter(f"--format takes files or submission, got {fmt!r}")
    if fmt == "submission" and len(images) != 1:
        raise typer.BadParameter(f"--format submission takes one competition folder, got {len(images)} paths")
    fold_list = _fold_choice(model, folds)
    predictor = Predictor.from_path(model, folds=fold_list, device=device, tta=tta, trust_code=trust_code)
    if fmt == "submission":
        _predict_submission(predictor, model, images[0], out, threshold)
        return
    images, notes = prediction_inputs(images, predictor.spatial_dims, f"model {model}")
    for note in notes:
        console.print(note)
    if predictor.spatial_dims == 3:
        _predict_volumes(predictor, images, out, allow_gaps)
        return
    from medseg.inference.instances import is_metaphase_model

    if pair_model is not None or karyotype_model is not None or is_metaphase_model(predictor.meta):
        # whole metaphases → chromosome instances (→ their karyotype classes)
        _predict_metaphases(
            predictor,
            model,
            pair_model,
            images,
            out,
            device=device,
            tta=tta,
            trust_code=trust_code,
            karyotype_model=karyotype_model,
            karyotype_vote=karyotype_vote,
            crossings=crossings,
        )
        return
    s = predict_image_files(predictor, images, out)
    console.print(
        f"{s['n_images']} image(s) → {out} in {s['total_seconds']:.1f} s ({s['ms_per_image']:.0f} ms per "
        f"image{', with TTA' if predictor.tta else ''})"
    )


def _predict_submission(predictor, model: Path, folder: Path, out: Path, threshold: float) -> None:
    """``--format submission``: the competition's submission.csv for one folder of scans, and its timing."""
    from medseg.inference.submission import write_submission

    s = write_submission(predictor, folder, out, threshold=threshold, model=model)
    console.print(
        f"{s['n_slices']:,} slices of {s['n_scans']} scans ({s['n_models']} fold(s)) → {s['csv']}  "
        f"{s['total_ms_per_slice']:.1f} ms/slice (prediction {s['predict_ms_per_slice']:.1f}, "
        f"RLE + writing {s['rle_write_ms_per_slice']:.2f}); timing: {s['json']}"
    )


def _predict_volumes(predictor, volumes: list[Path], out: Path, allow_gaps: bool) -> None:
    """3D models: a label volume per input and the volume of each class in ml."""
    from medseg.inference.volume import predict_volume_file

    for path in volumes:
        summary = predict_volume_file(predictor, path, out, allow_gaps=allow_gaps)
        console.print(
            f"{path} → {summary['label_file']}  " + ", ".join(f"{k}: {v} ml" for k, v in summary["volume_ml"].items())
        )


def _load_metaphase_helpers(
    predictor,
    model: Path,
    pair_model: Path | None,
    *,
    device: str,
    tta: bool | None,
    trust_code: bool,
    karyotype_model: Path | None,
    karyotype_vote: str,
):
    """(pair predictor or None, karyotype classifier or None) for whole metaphases, each model checked for its
    role; MODEL itself must segment background / chromosome / overlap."""
    from medseg.errors import DataValidationError
    from medseg.inference.instances import check_pair_model, is_metaphase_model
    from medseg.inference.predictor import Predictor

    if not is_metaphase_model(predictor.meta):
        raise DataValidationError(
            model,
            "--pair-model needs a model of background / chromosome / overlap "
            f"(configs/mfish/metaphase_unet.yaml); this one segments "
            f"{', '.join(map(str, predictor.class_names))}",
        )
    pair = None
    if pair_model is not None:
        pair = Predictor.from_path(pair_model, device=device, tta=tta, trust_code=trust_code)
        check_pair_model(pair.meta, pair_model)
    if karyotype_model is None:
        return pair, None
    from medseg.inference.karyotype import check_karyotype_model, classify_instances  # every instance's class

    check_vote(karyotype_vote)
    karyo = Predictor.from_path(karyotype_model, device=device, tta=tta, trust_code=trust_code)
    check_karyotype_model(karyo.meta, karyotype_model)

    def classify(image, instances):
        return classify_instances(karyo, image, instances, vote=karyotype_vote)

    return pair, classify


def _predict_metaphases(
    predictor,
    model: Path,
    pair_model: Path | None,
    images: list[Path],
    out: Path,
    *,
    device: str,
    tta: bool | None,
    trust_code: bool,
    karyotype_model: Path | None = None,
    karyotype_vote: str = "soft",
    crossings: str = "auto",
) -> None:
    from medseg.inference.instance_status import chromosomes_csv, instance_statuses, status_summary
    from medseg.inference.instances import CROSSINGS, FALLBACKS, predict_metaphase_file, separation_text

    if crossings not in CROSSINGS:
        raise typer.BadParameter(f"--crossings takes {', '.join(CROSSINGS)}, got {crossings!r}")

    pair, classify = _load_metaphase_helpers(
        predictor,
        model,
        pair_model,
        device=device,
        tta=tta,
        trust_code=trust_code,
        karyotype_model=karyotype_model,
        karyotype_vote=karyotype_vote,
    )

    def extra_keys(image, instances):  # every record's status (single, clump, ...), with its class if classified
        statuses = instance_statuses(instances, image.shape, image)
        classes = classify(image, instances) if classify is not None else [{}] * len(instances)
        return [{**c, **st} for c, st in zip(classes, statuses, strict=True)]

    for path in images:
        s = predict_metaphase_file(predictor, pair, path, out, classify=extra_keys, crossings=crossings)
        Path(s["out"], "chromosomes.csv").write_text(chromosomes_csv(s["instances"]), encoding="utf-8")
        c, headline = s["counts"], status_summary(s["instances"])
        console.print(
            f"{path} → {s['out']}  {s['n_instances']} objects: {headline['text']} ({separation_text(c)}: "
            + ", ".join(f"{k} {c[k]}" for k in FALLBACKS)
            + "); chromosomes.csv"
        )
        if headline["warning"]:
            console.print(f"  warning: {headline['warning']}")
        if classify is not None:
            named = [r["class_name"] for r in s["instances"] if r.get("class_name")]
            console.print(
                f"  karyotype ({karyotype_vote} vote): {len(named)} of {s['n_instances']} chromosomes "
                "classified (class, class_name, class_confidence in instances.json)"
            )
