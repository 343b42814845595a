"""``medseg data``: make (synthesize, convert, export), inspect and analyse data sets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medseg.cli._common import AllowGapsOpt, StrayLabelsOpt, command_group, console, int_list, one_line
from medseg.data.registry import InfoRequest, data_set_for, info_config

data_app = command_group("Make, inspect and convert data.")


@data_app.command("synth")
def data_synth(
    output: Path = typer.Argument(..., help="HDF5 file to write (Pommier layout: dataset_1, N x H x W x 2)."),
    crops: Path | None = typer.Option(None, metavar="DIR", help="Folder of single-chromosome crops (PNG/TIFF)."),
    metaphase: Path | None = typer.Option(
        None, metavar="IMAGE", help="A metaphase image; chromosomes are found by thresholding."
    ),
    n_pairs: int | None = typer.Option(
        None, "--n-pairs", metavar="N", help="Number of overlapping pairs (default: every pair once)."
    ),
    pommier: bool = typer.Option(False, "--pommier", help="The published size: 13,434 pairs of 94 x 93."),
    n_chromosomes: int = typer.Option(
        48, metavar="N", help="Size of the generated chromosome library (no --crops/--metaphase)."
    ),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same pairs."),
):
    """Synthesize overlapping chromosome pairs the way Pommier made the published set."""
    from medseg.data.synth import run_synth

    summary = run_synth(
        output,
        crops_dir=crops,
        metaphase=metaphase,
        n_pairs=n_pairs,
        pommier=pommier,
        n_chromosomes=n_chromosomes,
        seed=seed,
    )
    # The provenance (every chromosome, every pair) is in the JSON file beside the data; one line here.
    overlap = summary["overlap_px"]
    console.print(
        f"wrote {summary['n_images']:,} synthesized pairs of {summary['shape'][0]}×{summary['shape'][1]} "
        f"to {summary['output']} (overlap {overlap['min']}–{overlap['max']} px, median {overlap['median']:g}; "
        f"{summary['seconds']:.1f} s); provenance: {summary['json']}"
        + (f", preview: {summary['preview']}" if summary.get("preview") else "")
    )


@data_app.command("mfish-synth")
def data_mfish_synth(
    iso_dir: Path = typer.Argument(
        ...,
        help="Isolated real chromosomes: the folder of medseg data mfish-pairs --isolated-dir "
        "(index.csv, images/, masks/).",
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        metavar="FILE.H5",
        help="HDF5 file to write (Pommier layout); "
        "provenance .json, preview .png and the licence .README.TXT are written beside it.",
    ),
    slides: str | None = typer.Option(None, "--slides", metavar="A01,A02", help="Use only these slides (default all)."),
    exclude_slides: str | None = typer.Option(
        None, "--exclude-slides", metavar="A01,A02", help="Never use these slides (e.g. the test slides)."
    ),
    exclude_test_of: Path | None = typer.Option(
        None,
        "--exclude-test-of",
        metavar="PAIRS.H5",
        help="Also exclude the test slides of this mfish-pairs file's split (its .splits.json).",
    ),
    n_pairs: int | None = typer.Option(
        None, "--n-pairs", metavar="N", help="Number of pairs (default: every pair once)."
    ),
    pommier: bool = typer.Option(False, "--pommier", help="The published size: 13,434 pairs of 94 x 93."),
    blend: str = typer.Option(
        "0.2",
        "--blend",
        metavar="W",
        help="Overlap grey: max(a,b) + W*min(a,b); sum (W=1), "
        "max (W=0), a number 0..1, or match (calibrate W to the --compare file). Default 0.2 "
        "matches the real pairs' overlap/single ratio (median 1.40).",
    ),
    compare: Path | None = typer.Option(
        None,
        "--compare",
        metavar="PAIRS.H5",
        help="Real pairs to compare with: writes OUT.compare.png (histograms) and .compare.json (quartiles).",
    ),
    max_area: int | None = typer.Option(
        None, "--max-area", metavar="PX", help="Leave out chromosomes larger than this."
    ),
    rule: str = typer.Option(
        "larger",
        "--rule",
        help="Which chromosome is label 1, as medseg data mfish-pairs: "
        "larger (default), lower-class, top-left, or none (the crop order).",
    ),
    match_sizes: bool | None = typer.Option(
        None,
        "--match-sizes/--no-match-sizes",
        help="Draw chromosomes "
        "weighted to the real pairs' area distribution (default: on when "
        "--compare or --exclude-test-of gives real pairs; their test pairs "
        "are left out).",
    ),
    match_angles: bool | None = typer.Option(
        None,
        "--match-angles/--no-match-angles",
        help="Keep placements by rejection sampling to the real crossing-angle histogram (default: on with --compare).",
    ),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same pairs."),
):
    """Pommier's procedure on real chromosomes: overlapping pairs synthesized from the isolated M-FISH chromosomes
    of the chosen slides only (each cut by its label-map mask; those touching another or the edge skipped)."""
    from medseg.data.mfish_synth import run_mfish_synth

    try:
        s = run_mfish_synth(
            iso_dir,
            output,
            slides=slides,
            exclude_slides=exclude_slides,
            exclude_test_of=exclude_test_of,
            n_pairs=n_pairs,
            pommier=pommier,
            seed=seed,
            blend=blend,
            compare=compare,
            max_area=max_area,
            rule=None if rule == "none" else rule,
            match_sizes=match_sizes,
            match_angles=match_angles,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(
        f"wrote {s['n_images']:,} pairs synthesized from {s['source']['n_crops']:,} real chromosomes of "
        f"slides {', '.join(s['slides_used'])} to {s['output']} (overlap weight {s['blend']}; "
        f"{s['seconds_total']:.1f} s); provenance: {s['json']}"
        + (f"; comparison: {s['compare_png']}, {s['compare_json']}" if compare else "")
    )


@data_app.command("synth-gi")
def data_synth_gi(
    out: Path = typer.Argument(..., help="Folder to write (UW-Madison GI Tract layout: train.csv and train/)."),
    cases: int = typer.Option(
        4, "--cases", metavar="N", help="Number of cases (each has 1 to 5 days of 144 or 80 slices)."
    ),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Random seed: the same seed gives the same files."),
):
    """Synthesize an abdomen-like MRI set in the UW-Madison GI Tract layout (not real anatomy)."""
    from medseg.data.synth_gi import write_synth_gi

    s = write_synth_gi(out, n_cases=cases, seed=seed)
    console.print(
        f"wrote {s['n_images']:,} synthesized slices ({s['n_cases']} cases, {s['n_scans']} scans; "
        f"{s['n_images_with_masks']:,} with masks, {s['n_images_without_masks']:,} without) in the "
        f"UW-Madison GI layout to {s['output']} ({s['seconds']:.1f} s; not real anatomy); "
        f"manifest: {s['manifest']}"
    )


def _organ_labels(organ: list[str]) -> dict[str, list[int]]:
    """``--organ NAME=ID[,ID]`` options as {organ: label ids}; a usage error for a malformed or missing one."""
    organs = {}
    for item in organ:
        name, _, ids = item.partition("=")
        try:
            organs[name.strip()] = [int(v) for v in ids.split(",") if v.strip()]
        except ValueError:
            raise typer.BadParameter(f"--organ {item!r}: expected NAME=ID[,ID...] with integer ids") from None
    if not organs:
        raise typer.BadParameter("name the organs' label ids with --organ NAME=ID (or give --class-map)")
    return organs


@data_app.command("to-uwgi")
def data_to_uwgi(
    image: Path = typer.Argument(..., help="MR/CT volume (NIfTI, HDF5, DICOM folder or zip)."),
    labels: Path = typer.Argument(..., help="Its organ label volume, on the same grid."),
    out: Path = typer.Argument(..., help="UW-Madison layout folder to write or add to (train.csv + train/)."),
    case: int = typer.Option(..., "--case", metavar="C", help="Case number of the scan: its folder is caseC."),
    day: int = typer.Option(1, "--day", metavar="D", help="Day number of the scan: its folder is caseC_dayD."),
    organ: list[str] = typer.Option(
        [],
        "--organ",
        metavar="NAME=ID[,ID]",
        help="Label ids of a competition organ (large_bowel, small_bowel, stomach); repeat per organ.",
    ),
    class_map: Path | None = typer.Option(
        None,
        "--class-map",
        metavar="JSON",
        help="TotalSegmentator class_map.json instead of --organ: colon → large_bowel, small_bowel, stomach by name.",
    ),
    key: str = typer.Option("total_mr", "--key", help="Task of --class-map to read (total_mr, total)."),
):
    """Write a labelled volume as one scan of the UW-Madison GI layout (axial 16-bit PNG slices + train.csv RLE):
    real anatomy for the GI pipeline, e.g. TotalSegmentator's MR example."""
    from medseg.data.uwgi_convert import totalsegmentator_mr_to_uwgi, volume_to_uwgi

    if class_map is not None:
        if organ:
            raise typer.BadParameter("give --organ or --class-map, not both")
        s = totalsegmentator_mr_to_uwgi(image, labels, class_map, out, case=case, day=day, key=key)
    else:
        s = volume_to_uwgi(image, labels, out, case=case, day=day, organ_labels=_organ_labels(organ))
    organs_line = ", ".join(f"{name} {v['voxels']:,} px in {v['slices']} slices" for name, v in s["per_organ"].items())
    console.print(
        f"wrote case{case}_day{day}: {s['n_slices']} slices of {s['width']}x{s['height']} to {s['scans']} "
        f"({organs_line}); rows added to {s['train_csv']}"
    )


def _class_options(classes: str | None, n_classes: int | None, mask_values: str | None):
    """``data info``'s --classes, --n-classes and --mask-values as (names, number of classes, mask values), each
    None when not given; a usage error when they disagree on the number of classes."""
    names = [c.strip() for c in classes.split(",")] if classes else None
    if names is not None and (not all(names) or len(set(names)) != len(names)):
        raise typer.BadParameter(f"--classes takes distinct comma-separated names, got {classes!r}")
    values = int_list(mask_values, "--mask-values")
    counts = {
        k: v
        for k, v in (
            ("--classes", len(names) if names else None),
            ("--n-classes", n_classes),
            ("--mask-values", len(values) if values else None),
        )
        if v is not None
    }
    if len(set(counts.values())) > 1:
        raise typer.BadParameter(
            "these disagree on the number of classes: " + ", ".join(f"{k} gives {v}" for k, v in counts.items())
        )
    n = next(iter(counts.values()), None)
    if n is not None and not 2 <= n <= 256:
        raise typer.BadParameter(f"a task has 2 to 256 classes, got {n}")
    return names, n, values


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """(field, value) rows as a two-column table on stdout."""
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for field, value in rows:
        table.add_row(field, value)
    Console(markup=False).print(table)


@data_app.command("info")
def data_info(
    path: Path = typer.Argument(
        ..., help="HDF5 file (Pommier layout), images/+masks/ folder, the M-FISH set, or a UW-Madison GI folder."
    ),
    stray_labels: str = StrayLabelsOpt,
    classes: str | None = typer.Option(
        None,
        "--classes",
        metavar="NAME,NAME,...",
        help="Class names in "
        "class order (task.class_names); default: the Pommier file's 4 "
        "classes for HDF5, and for a folder what its masks suggest.",
    ),
    n_classes: int | None = typer.Option(
        None, "--n-classes", metavar="N", help="Number of classes, when their names do not matter."
    ),
    mask_values: str | None = typer.Option(
        None,
        "--mask-values",
        metavar="V,V,...",
        help="Folder masks: the stored value of each class, in class order (data.mask_values), e.g. 0,255.",
    ),
):
    """Read a dataset and report its size and label counts. For a folder: the distinct mask values found (with
    pixels and files) and the data.mask_values / task.class_names that read them, whatever the classes."""
    names, n, values = _class_options(classes, n_classes, mask_values)
    if values is not None and not path.is_dir():
        raise typer.BadParameter("--mask-values applies to image folders (PNG/TIFF masks), not to an HDF5 file")
    request = InfoRequest(stray_labels=stray_labels, names=names, n_classes=n, mask_values=values)
    description = data_set_for(info_config(path)).describe(path, request)
    if description.lines:
        for line in description.lines:
            console.print(line)
        return
    _print_table(description.title, description.rows)


@data_app.command("analyze")
def data_analyze(
    data: Path = typer.Argument(..., help="UW-Madison GI Tract folder (train.csv and train/case.../scans/*.png)."),
    out: Path = typer.Option(
        Path("uwgi_analysis"),
        "--out",
        "-o",
        metavar="DIR",
        help="Folder to write report.md, analysis.json, splits.json and the figures into.",
    ),
):
    """Tables 1-4 and Figs. 3, 6, 12 of the GI-tract paper for a UW-Madison folder, beside the paper's values,
    and its 5-fold split (by case, stratified by organ count)."""
    from medseg.data.uwgi_analysis import write_analysis

    written = write_analysis(data, out)
    console.print(f"wrote the analysis of {data} to {written['report']}")


@data_app.command("export")
def data_export(
    path: Path = typer.Argument(..., help="HDF5 file in the Pommier layout."),
    out: Path = typer.Argument(..., help="Folder to write images/ and masks/ into (the generic folder layout)."),
    count: int | None = typer.Option(None, metavar="N", help="Number of pairs to export (default: all)."),
    start: int = typer.Option(0, metavar="N", help="Index of the first pair to export."),
    stray_labels: str = StrayLabelsOpt,
):
    """Write pairs of a Pommier-layout HDF5 as PNG images and class-index masks (same file names)."""
    from medseg.data.pommier import read_pommier_h5, write_png_pairs

    images, labels, report = read_pommier_h5(path, stray_labels=stray_labels)
    stop = len(images) if count is None else min(len(images), start + count)
    written = write_png_pairs(out, images[start:stop], labels[start:stop], first_index=start)
    console.print(f"wrote {written} image/mask pairs to {out}/images and {out}/masks ({report.summary()})")


@data_app.command("mfish")
def data_mfish(
    src: Path = typer.Argument(
        ...,
        help="The M-FISH set: one sub-folder per slide, each metaphase a ...D.tif (DAPI) and ...K.tif "
        "(karyotype) pair.",
    ),
    out: Path = typer.Argument(..., help="Folder to write images/, masks/ (background 0, chromosome 1, overlap 2)."),
    limit: int | None = typer.Option(None, metavar="N", help="Convert only the first N metaphases."),
):
    """Real M-FISH metaphases as a 3-class folder set (background / chromosome / overlap), licence copied."""
    from medseg.data.mfish import write_semantic_folder

    manifest = write_semantic_folder(src, out, limit=limit, progress=True)
    px = manifest["pixels_per_class"]
    total = max(sum(px.values()), 1)
    console.print(
        f"wrote {manifest['n_images']} metaphases from {manifest['n_folders']} slides to {out} "
        f"(pixels: "
        + ", ".join(f"{k} {100 * v / total:.2f} %" for k, v in px.items())
        + "); split by slide: image names are <slide>__<id>"
    )


def _pairs_summary(s: dict, min_overlap: int, drop_cut: bool, rule: str, isolated_dir: Path | None) -> str:
    """``data mfish-pairs``' one line: what was written, what was left out and why, where the split is."""
    out = s["left_out"]
    return (
        f"wrote {s['n_images']:,} real pairs of {s['shape'][0]}x{s['shape'][1]} from "
        f"{s['source']['n_metaphases']} metaphases ({len(s['pairs_per_slide'])} slides with pairs) to "
        f"{s['output']}: {s['overlaps_found']:,} overlap regions, left out {out['too_small']:,} under "
        f"{min_overlap} px, {out['same_class']} same-class, {out['three_or_more']} joining three or more, "
        f"{out['no_chromosome']} joining none, {out['duplicate']} second crossings of a pair"
        + (
            f", {out['cut_by_crop']} cut by the crop"
            if drop_cut
            else f"; {s['cut_by_crop_border']} kept though cut by the crop border"
        )
        + f"; rule {rule}; {s['source']['n_unlabelled_skipped']} unlabelled EX metaphases skipped. "
        f"Provenance: {s['json']}; "
        + (
            f"split by slide: --set splits.file={s['splits']}"
            if s["held_out_slides"]
            else f"no split by slide in {s['splits']} (too few slides)"
        )
        + (f"; isolated chromosomes: {s['isolated']['n']:,} in {isolated_dir}" if isolated_dir else "")
        + ("" if s["licence"]["notice"] else " (WARNING: no README.TXT licence notice found in the source)")
    )


@data_app.command("mfish-pairs")
def data_mfish_pairs(
    src: Path = typer.Argument(
        ...,
        help="The M-FISH set: one sub-folder per slide, each metaphase a ...D.tif (DAPI) and ...K.tif "
        "(karyotype) pair.",
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        metavar="FILE.H5",
        help="HDF5 file to write (Pommier layout); "
        "provenance .json, split by slide .splits.json, preview .png and the licence "
        ".README.TXT are written beside it.",
    ),
    crop: str = typer.Option(
        "94x93", "--crop", metavar="SIZE", help="Crop size as rows x columns, e.g. 94x93 (the Pommier set)."
    ),
    rule: str = typer.Option(
        "larger",
        "--rule",
        metavar="RULE",
        help="Which chromosome is label 1: larger (more "
        "pixels, overlap included), lower-class (lower karyotype class), top-left (centroid "
        "higher, then further left).",
    ),
    min_overlap: int = typer.Option(
        10, "--min-overlap", metavar="PX", help="Overlap regions smaller than this are left out (counted as too small)."
    ),
    touch: int = typer.Option(
        1,
        "--touch",
        metavar="PX",
        help="A chromosome joins an overlap when its class lies within this many pixels of it.",
    ),
    drop_cut: bool = typer.Option(
        False, "--drop-cut", help="Leave out pairs that reach beyond the crop (default: keep them, counted)."
    ),
    mask_others: bool = typer.Option(
        False,
        "--mask-others",
        help="Paint other chromosomes in the crop with the "
        "background grey in the image too (they are background in the labels always).",
    ),
    limit: int | None = typer.Option(None, metavar="N", help="Read only the first N labelled metaphases."),
    isolated_dir: Path | None = typer.Option(
        None,
        "--isolated-dir",
        metavar="DIR",
        help="Also write every "
        "chromosome touching no overlap as images/ + masks/ PNGs with "
        "index.csv (slide, image, class, area).",
    ),
):
    """Real overlapping pairs: a crop around every overlap of the M-FISH karyotypes that joins exactly two
    chromosomes of different classes, labelled 0/1/2/3 in the Pommier layout (train/cv/evaluate --data take it)."""
    from medseg.data.mfish_pairs import PairOptions, run_mfish_pairs

    size = crop.lower().replace("×", "x").split("x")
    try:
        options = PairOptions(
            crop=tuple(int(v) for v in size),
            rule=rule,
            min_overlap_px=min_overlap,
            touch_px=touch,
            keep_cut=not drop_cut,
            mask_others=mask_others,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    s = run_mfish_pairs(src, output, options=options, limit=limit, isolated_dir=isolated_dir)
    console.print(_pairs_summary(s, min_overlap, drop_cut, rule, isolated_dir))


@data_app.command("convert")
def data_convert(
    inputs: list[Path] = typer.Argument(..., help="DICOM series folders or zips (or roots, with --scan)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder."),
    fmt: str = typer.Option("hdf5", "--format", help="Output format: hdf5 or nifti."),
    workers: int | None = typer.Option(None, metavar="N", help="Series converted in parallel (default: CPU count)."),
    require_ct: bool = typer.Option(False, "--require-ct", help="Refuse series whose modality is not CT."),
    scan: bool = typer.Option(False, "--scan", help="Find every series under the given folders."),
    allow_gaps: bool = AllowGapsOpt,
):
    """Convert DICOM series to HDF5 or NIfTI ahead of training (geometry kept); reports seconds per series."""
    from medseg.formats.volume_files import run_convert

    summary = run_convert(
        inputs, out, fmt, workers, require_modality="CT" if require_ct else None, scan=scan, allow_gaps=allow_gaps
    )
    for r in summary["results"]:
        if r.get("error"):
            console.print(Text.assemble(("failed", "red"), f" {r['input']}: {one_line(r['error'])}"))
    per_series = summary["seconds_per_series"]
    console.print(
        f"converted {summary['converted']}, failed {summary['failed']}"
        + (f", {per_series:.2f} s per series" if per_series is not None else "")
    )
    if summary["failed"]:
        raise typer.Exit(code=1)


@data_app.command("phantom")
def data_phantom(
    out: Path = typer.Argument(..., help="Folder for the phantom cases."),
    n: int = typer.Option(4, metavar="N", help="Number of cases."),
    formats: str = typer.Option("dicom,nifti,hdf5", metavar="LIST", help="Comma-separated: dicom, nifti, hdf5."),
    shape: str = typer.Option("72,256,256", metavar="D,H,W", help="Volume size in voxels."),
    seed: int = typer.Option(
        0, help="Random seed of the first case (case k has seed + k): moves and resizes the target and the organs."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace cases already in OUT (else an existing DICOM series is an error)."
    ),
):
    """Write CT-like phantom volumes with a target label (synthetic demo data, not clinical)."""
    from medseg.data.phantom import write_phantom

    cases = write_phantom(
        out,
        n=n,
        formats=tuple(f.strip() for f in formats.split(",")),
        shape=tuple(int_list(shape, "--shape")),
        seed=seed,
        overwrite=overwrite,
    )
    console.print(f"wrote {len(cases)} phantom cases to {out} (synthetic demo data, not clinical)")
