"""The `medseg` command line (Typer).

    medseg data synth OUT.h5 [--pommier | --n-pairs N] [--crops DIR | --metaphase IMG]
    medseg data info PATH [--classes a,b | --n-classes N] [--mask-values 0,255]
    medseg data convert SERIES... -o OUT [--format hdf5|nifti] [--allow-gaps]
    medseg plan DATA [-o CONFIG.yaml] [--classes a,b,c] [--budget-gb G] [--set key=value ...]
    medseg train CONFIG [--fold K] [--data PATH] [--set key=value ...] [--restart]
    medseg train DATA [--classes a,b,c] [--budget-gb G] [--set key=value ...]   planned on the fly (medseg plan)
    medseg cv CONFIG [--folds 0,1,...] [--data PATH]         all folds, then the held-out test report
    medseg evaluate RUN [--data PATH] [--tta] [--trust-code] [--karyotype-vote soft|majority]
    medseg predict MODEL IMAGE... -o OUT [--folds K,...|all] [--tta] [--allow-gaps] [--trust-code]
    medseg predict SEMANTIC_RUN METAPHASE... -o OUT [--pair-model PAIR_RUN] [--karyotype-model KARYO_RUN]
    medseg predict RUN FOLDER --format submission -o OUT [--folds K,...|all]   UW-Madison submission.csv
    medseg serve [--model RUN ...] [--pair-model PAIR_RUN] [--karyotype-model KARYO_RUN] [--trust-code]
    medseg users add|list|passwd|remove
    medseg models
    medseg config show CONFIG [--set key=value ...]          the resolved config, each value's source

Errors: medseg's own (and the operating system's) become one ``error:`` line naming the file and the problem,
exit code 2, in :class:`_MedsegGroup` — one handler for every command.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import List, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from medseg.errors import MedsegError


def _metavar(param) -> str:
    """argparse's metavar: the parameter's name in capitals (MODEL; --n-pairs N_PAIRS) unless it has its own."""
    if param.metavar:
        return param.metavar
    if param.param_type_name == "argument":
        return param.name.upper()
    long = [o for o in param.opts if o.startswith("--")]
    return (long or param.opts)[0].lstrip("-").replace("-", "_").upper()


class _HelpCommand(TyperCommand):
    """``--help`` as argparse writes it (nnU-Net's commands): ``Usage: medseg predict [OPTIONS] MODEL IMAGE...``,
    arguments as MODEL / IMAGE..., options as ``-o, --out DIR``: Typer's type tags (``<path>``, ``<int>``) and
    its ``{model}`` placeholders are replaced by each parameter's metavar (:func:`_metavar`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:  # errors then name the same MODEL / N_PAIRS as the help
            if param.metavar is None and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                param.metavar = _metavar(param)

    @staticmethod
    def _argument_name(param) -> str:
        return param.metavar + ("..." if param.nargs != 1 else "")

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = self._argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((self._argument_name(param), param.help or ""))
            else:
                options.append(record)  # with a metavar set, Typer writes "-o, --out DIR"
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class _HelpGroup(TyperGroup):
    """A command group whose commands write argparse-style help (:class:`_HelpCommand`); the command list gives
    each command's first sentence whole (wrapped), not cut at the terminal width."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class _HelpTyper(typer.Typer):
    """typer.Typer whose commands are :class:`_HelpCommand` unless a command names its own class."""

    def command(self, name=None, *, cls=None, **kwargs):
        return super().command(name, cls=cls or _HelpCommand, **kwargs)


class _MedsegGroup(_HelpGroup):
    """The one top-level handler: medseg's own errors (and the OS's: permission denied, disk full) become one
    line on stderr and exit code 2 wherever they are raised; a traceback is left only for real bugs.
    Warnings become one ``warning:`` line each instead of Python's two-line form with a source line."""

    def invoke(self, ctx):
        import warnings

        previous = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except MedsegError as exc:
            _fail(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            _fail(exc)
        finally:
            warnings.showwarning = previous


# rich_markup_mode=None: click's plain messages, which are never hard-wrapped (rich's error panels are).
app = _HelpTyper(cls=_MedsegGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                 help="medseg: medical image segmentation with the U-Net family.")
data_app = _HelpTyper(cls=_HelpGroup, no_args_is_help=True, rich_markup_mode=None, help="Make, inspect and convert data.")
app.add_typer(data_app, name="data")
users_app = _HelpTyper(cls=_HelpGroup, no_args_is_help=True, rich_markup_mode=None,
                       help="Accounts of the web server (medseg serve).")
app.add_typer(users_app, name="users")
config_app = _HelpTyper(cls=_HelpGroup, no_args_is_help=True, rich_markup_mode=None,
                        help="Inspect experiment configs (the YAML files under configs/).")
app.add_typer(config_app, name="config")
# soft_wrap: a message stays one line whatever the terminal width (logs and pipes see 80 columns).
# markup and highlighting off: messages hold paths and "IoU[overlap]", which rich would read as markup.
console = Console(stderr=True, soft_wrap=True, markup=False)


def one_line(exc: BaseException | str) -> str:
    """An error message on one line: embedded line breaks (from libraries' messages) become spaces."""
    return " ".join(str(exc).split())


def _fail(exc: BaseException | str) -> NoReturn:
    console.print(Text.assemble(("error:", "bold red"), " ", one_line(exc)))
    raise typer.Exit(code=2)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console.print(Text.assemble(("warning:", "yellow"), " ", one_line(message)))


def _int_list(text: Optional[str], option: str) -> Optional[list[int]]:
    """``"0,1,2"`` → [0, 1, 2]; a usage error naming the option otherwise."""
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated integers, got {text!r}") from None


TrustCodeOpt = typer.Option(False, "--trust-code", help="Allow a model.json that names code outside medseg's registry "
                            "(package.module:Class): loading it imports and runs that code. Only for folders you trust.")


AllowGapsOpt = typer.Option(False, "--allow-gaps", help="A DICOM series with whole slices missing is read with "
                            "those slices filled (the series' minimum value) and the gap reported, instead of refused.")


def _config(config: Path, data: Optional[str], name: Optional[str], epochs: Optional[int], sets: List[str],
            device: Optional[str]) -> dict:
    from medseg.config import load_config, set_dotted, validate

    cfg = load_config(config)
    if data:
        cfg["data"]["path"] = data
    if name:
        cfg["name"] = name
    if epochs:
        cfg["train"]["epochs"] = epochs
    if device:
        cfg["train"]["device"] = device
    for key, value in _set_items(sets):
        set_dotted(cfg, key, value)
    return validate(cfg)


def _set_items(sets: List[str]) -> list[tuple[str, str]]:
    """``--set key=value`` options as (key, value text) pairs; a usage error for an item without ``=``."""
    items = []
    for item in sets:
        if "=" not in item:
            raise typer.BadParameter(f"--set needs key=value, got {item!r}")
        key, value = item.split("=", 1)
        items.append((key.strip(), value))
    return items


def _planned_config(data_arg: str, data: Optional[str], name: Optional[str], epochs: Optional[int],
                    sets: List[str], device: Optional[str], classes: Optional[str],
                    budget_gb: Optional[float], restart: bool = False) -> dict:
    """``medseg train DATA``: plan a config for DATA, apply the options, print the decisions and keep the
    plan (plan.yaml, plan.json) in the run folder — unless the run was trained already and is not restarted:
    its plan is left as it is (the training refuses a config other than the run's)."""
    import json

    from medseg.data.runs import run_dir_for
    from medseg.planning import apply_sets, write_plan

    if data:
        raise typer.BadParameter(f"--data is for a YAML config; {data_arg} is the data already")
    extra: list[tuple[str, object]] = []
    if name:  # written as YAML strings, so that a name like "2024" stays a string
        extra.append(("name", json.dumps(name)))
    if epochs:  # a number of epochs instead of the planned step budget
        extra += [("train.iterations", None), ("train.epochs", epochs)]
    if device:
        extra.append(("train.device", json.dumps(device)))
    cfg, decisions, fp, settings = _plan_data(data_arg, classes, budget_gb, device, sets)
    cfg, decisions = apply_sets(cfg, decisions, extra)
    _print_decisions(decisions, f"plan for {data_arg}")
    run_dir = run_dir_for(cfg)
    if not restart and any(run_dir.glob("fold_*/config.yaml")):
        console.print(f"plan: the run {run_dir} exists; its plan.yaml is kept")
        return cfg
    yaml_path, json_path = write_plan(cfg, decisions, run_dir / "plan.yaml", fingerprint=fp,
                                      json_path=run_dir / "plan.json", settings=settings)
    console.print(f"plan: {yaml_path}, fingerprint: {json_path}")
    return cfg


DEVICE_HELP = "auto (CUDA if available, else CPU), cpu, cuda, cuda:1"
DataOpt = typer.Option(None, "--data", metavar="PATH", help="HDF5 file (Pommier layout), images/+masks/ folder, or synth:demo / synth:pommier.")
SetOpt = typer.Option([], "--set", metavar="KEY=VALUE", help="Override a config value, e.g. --set train.batch_size=32 (repeatable).")
StrayLabelsOpt = typer.Option("nearest", "--stray-labels", metavar="MODE", help="Label values outside the "
                               "classes: reject the file, make them background, or give each the label of the "
                               "nearest valid pixel (nearest).")


@data_app.command("synth")
def data_synth(
    output: Path = typer.Argument(..., help="HDF5 file to write (Pommier layout: dataset_1, N x H x W x 2)."),
    crops: Optional[Path] = typer.Option(None, metavar="DIR", help="Folder of single-chromosome crops (PNG/TIFF)."),
    metaphase: Optional[Path] = typer.Option(None, metavar="IMAGE", help="A metaphase image; chromosomes are found by thresholding."),
    n_pairs: Optional[int] = typer.Option(None, "--n-pairs", metavar="N", help="Number of overlapping pairs (default: every pair once)."),
    pommier: bool = typer.Option(False, "--pommier", help="The published size: 13,434 pairs of 94 x 93."),
    n_chromosomes: int = typer.Option(48, metavar="N", help="Size of the generated chromosome library (no --crops/--metaphase)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same pairs."),
):
    """Synthesize overlapping chromosome pairs the way Pommier made the published set."""
    from medseg.data.synth import run_synth

    summary = run_synth(output, crops_dir=crops, metaphase=metaphase, n_pairs=n_pairs, pommier=pommier,
                        n_chromosomes=n_chromosomes, seed=seed)
    # The provenance (every chromosome, every pair) is in the JSON file beside the data; one line here.
    overlap = summary["overlap_px"]
    console.print(f"wrote {summary['n_images']:,} synthesized pairs of {summary['shape'][0]}×{summary['shape'][1]} "
                  f"to {summary['output']} (overlap {overlap['min']}–{overlap['max']} px, median {overlap['median']:g}; "
                  f"{summary['seconds']:.1f} s); provenance: {summary['json']}"
                  + (f", preview: {summary['preview']}" if summary.get("preview") else ""))


@data_app.command("mfish-synth")
def data_mfish_synth(
    iso_dir: Path = typer.Argument(..., help="Isolated real chromosomes: the folder of medseg data mfish-pairs --isolated-dir (index.csv, images/, masks/)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE.H5", help="HDF5 file to write (Pommier layout); "
                                "provenance .json, preview .png and the licence .README.TXT are written beside it."),
    slides: Optional[str] = typer.Option(None, "--slides", metavar="A01,A02", help="Use only these slides (default all)."),
    exclude_slides: Optional[str] = typer.Option(None, "--exclude-slides", metavar="A01,A02", help="Never use these slides (e.g. the test slides)."),
    exclude_test_of: Optional[Path] = typer.Option(None, "--exclude-test-of", metavar="PAIRS.H5", help="Also exclude the "
                                                   "test slides of this mfish-pairs file's split (its .splits.json)."),
    n_pairs: Optional[int] = typer.Option(None, "--n-pairs", metavar="N", help="Number of pairs (default: every pair once)."),
    pommier: bool = typer.Option(False, "--pommier", help="The published size: 13,434 pairs of 94 x 93."),
    blend: str = typer.Option("0.2", "--blend", metavar="W", help="Overlap grey: max(a,b) + W*min(a,b); sum (W=1), "
                              "max (W=0), a number 0..1, or match (calibrate W to the --compare file). Default 0.2 "
                              "matches the real pairs' overlap/single ratio (median 1.40)."),
    compare: Optional[Path] = typer.Option(None, "--compare", metavar="PAIRS.H5", help="Real pairs to compare with: "
                                           "writes OUT.compare.png (histograms) and .compare.json (quartiles)."),
    max_area: Optional[int] = typer.Option(None, "--max-area", metavar="PX", help="Leave out chromosomes larger than this."),
    rule: str = typer.Option("larger", "--rule", help="Which chromosome is label 1, as medseg data mfish-pairs: "
                             "larger (default), lower-class, top-left, or none (the crop order)."),
    match_sizes: Optional[bool] = typer.Option(None, "--match-sizes/--no-match-sizes", help="Draw chromosomes "
                                               "weighted to the real pairs' area distribution (default: on when "
                                               "--compare or --exclude-test-of gives real pairs; their test pairs "
                                               "are left out)."),
    match_angles: Optional[bool] = typer.Option(None, "--match-angles/--no-match-angles", help="Keep placements by "
                                                "rejection sampling to the real crossing-angle histogram (default: "
                                                "on with --compare)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same pairs."),
):
    """Pommier's procedure on real chromosomes: overlapping pairs synthesized from the isolated M-FISH chromosomes
    of the chosen slides only (each cut by its label-map mask; those touching another or the edge skipped)."""
    from medseg.data.mfish_synth import run_mfish_synth

    try:
        s = run_mfish_synth(iso_dir, output, slides=slides, exclude_slides=exclude_slides,
                            exclude_test_of=exclude_test_of, n_pairs=n_pairs, pommier=pommier, seed=seed,
                            blend=blend, compare=compare, max_area=max_area,
                            rule=None if rule == "none" else rule, match_sizes=match_sizes,
                            match_angles=match_angles)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"wrote {s['n_images']:,} pairs synthesized from {s['source']['n_crops']:,} real chromosomes of "
                  f"slides {', '.join(s['slides_used'])} to {s['output']} (overlap weight {s['blend']}; "
                  f"{s['seconds_total']:.1f} s); provenance: {s['json']}"
                  + (f"; comparison: {s['compare_png']}, {s['compare_json']}" if compare else ""))


@data_app.command("synth-gi")
def data_synth_gi(
    out: Path = typer.Argument(..., help="Folder to write (UW-Madison GI Tract layout: train.csv and train/)."),
    cases: int = typer.Option(4, "--cases", metavar="N", help="Number of cases (each has 1 to 5 days of 144 or 80 slices)."),
    seed: int = typer.Option(0, "--seed", metavar="S", help="Random seed: the same seed gives the same files."),
):
    """Synthesize an abdomen-like MRI set in the UW-Madison GI Tract layout (not real anatomy)."""
    from medseg.data.synth_gi import write_synth_gi

    s = write_synth_gi(out, n_cases=cases, seed=seed)
    console.print(f"wrote {s['n_images']:,} synthesized slices ({s['n_cases']} cases, {s['n_scans']} scans; "
                  f"{s['n_images_with_masks']:,} with masks, {s['n_images_without_masks']:,} without) in the "
                  f"UW-Madison GI layout to {s['output']} ({s['seconds']:.1f} s; not real anatomy); "
                  f"manifest: {s['manifest']}")


@data_app.command("to-uwgi")
def data_to_uwgi(
    image: Path = typer.Argument(..., help="MR/CT volume (NIfTI, HDF5, DICOM folder or zip)."),
    labels: Path = typer.Argument(..., help="Its organ label volume, on the same grid."),
    out: Path = typer.Argument(..., help="UW-Madison layout folder to write or add to (train.csv + train/)."),
    case: int = typer.Option(..., "--case", metavar="C", help="Case number of the scan: its folder is caseC."),
    day: int = typer.Option(1, "--day", metavar="D", help="Day number of the scan: its folder is caseC_dayD."),
    organ: List[str] = typer.Option([], "--organ", metavar="NAME=ID[,ID]",
                                    help="Label ids of a competition organ (large_bowel, small_bowel, stomach); "
                                         "repeat per organ."),
    class_map: Optional[Path] = typer.Option(None, "--class-map", metavar="JSON",
                                             help="TotalSegmentator class_map.json instead of --organ: colon → "
                                                  "large_bowel, small_bowel, stomach by name."),
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
        organs = {}
        for item in organ:
            name, _, ids = item.partition("=")
            try:
                organs[name.strip()] = [int(v) for v in ids.split(",") if v.strip()]
            except ValueError:
                raise typer.BadParameter(f"--organ {item!r}: expected NAME=ID[,ID...] with integer ids") from None
        if not organs:
            raise typer.BadParameter("name the organs' label ids with --organ NAME=ID (or give --class-map)")
        s = volume_to_uwgi(image, labels, out, case=case, day=day, organ_labels=organs)
    organs_line = ", ".join(f"{name} {v['voxels']:,} px in {v['slices']} slices" for name, v in s["per_organ"].items())
    console.print(f"wrote case{case}_day{day}: {s['n_slices']} slices of {s['width']}x{s['height']} to {s['scans']} "
                  f"({organs_line}); rows added to {s['train_csv']}")


def _uwgi_info(path: Path) -> None:
    """`data info` on a UW-Madison GI folder: what the file names and train.csv say (nothing decoded)."""
    from collections import Counter

    from medseg.data.uwgi import CLASSES, check_consistency, read_train_csv, scan_index

    rles = read_train_csv(path / "train.csv")
    index = scan_index(path)
    check_consistency(index, rles)
    scans = {(r.case, r.day) for r in index}
    sizes = Counter(f"{r.width}x{r.height}" for r in index)
    with_masks = sum(any(rles[r.id][c] for c in CLASSES) for r in index)
    per_organ = {c: sum(bool(rles[r.id][c]) for r in index) for c in CLASSES}
    console.print(f"{path}: UW-Madison GI-tract layout — {len(index):,} slices in {len(scans)} scans of "
                  f"{len({r.case for r in index})} cases; {with_masks:,} slices with a mask, {len(index) - with_masks:,} "
                  "without; slices per organ: " + ", ".join(f"{c} {n:,}" for c, n in per_organ.items())
                  + "; sizes (W x H): " + ", ".join(f"{k} {v:,}" for k, v in sizes.most_common()))
    console.print("train it with configs/gi/unet4.yaml (task.mode multilabel, data.format uwgi); the paper's "
                  "analysis: medseg data analyze " + str(path))


@data_app.command("info")
def data_info(path: Path = typer.Argument(..., help="HDF5 file (Pommier layout), images/+masks/ folder, the M-FISH "
                                            "set, or a UW-Madison GI folder."),
              stray_labels: str = StrayLabelsOpt,
              classes: Optional[str] = typer.Option(None, "--classes", metavar="NAME,NAME,...", help="Class names in "
                                                    "class order (task.class_names); default: the Pommier file's 4 "
                                                    "classes for HDF5, and for a folder what its masks suggest."),
              n_classes: Optional[int] = typer.Option(None, "--n-classes", metavar="N", help="Number of classes, "
                                                      "when their names do not matter."),
              mask_values: Optional[str] = typer.Option(None, "--mask-values", metavar="V,V,...", help="Folder "
                                                        "masks: the stored value of each class, in class order "
                                                        "(data.mask_values), e.g. 0,255.")):
    """Read a dataset and report its size and label counts. For a folder: the distinct mask values found (with
    pixels and files) and the data.mask_values / task.class_names that read them, whatever the classes."""
    names = [c.strip() for c in classes.split(",")] if classes else None
    if names is not None and (not all(names) or len(set(names)) != len(names)):
        raise typer.BadParameter(f"--classes takes distinct comma-separated names, got {classes!r}")
    values = _int_list(mask_values, "--mask-values")
    counts = {k: v for k, v in (("--classes", len(names) if names else None), ("--n-classes", n_classes),
                                 ("--mask-values", len(values) if values else None)) if v is not None}
    if len(set(counts.values())) > 1:
        raise typer.BadParameter("these disagree on the number of classes: "
                                 + ", ".join(f"{k} gives {v}" for k, v in counts.items()))
    n = next(iter(counts.values()), None)
    if n is not None and not 2 <= n <= 256:
        raise typer.BadParameter(f"a task has 2 to 256 classes, got {n}")
    if path.is_dir():
        from medseg.data.mfish import is_mfish_folder

        if is_mfish_folder(path):
            _mfish_info(path)
            return
        from medseg.data.uwgi_dataset import is_uwgi_folder

        if is_uwgi_folder(path):
            _uwgi_info(path)
            return
        _folder_info(path, names, n, values)
        return
    if values is not None:
        raise typer.BadParameter("--mask-values applies to image folders (PNG/TIFF masks), not to an HDF5 file")
    import numpy as np

    from medseg.config import DEFAULTS
    from medseg.data.datasets import load_data

    cfg = {**DEFAULTS["data"], "path": str(path), "stray_labels": stray_labels, "size": None}
    data = load_data(cfg, n or 4)
    found, counted = np.unique(data.labels, return_counts=True)
    label = (lambda v: f"{v} {names[v]}") if names else str
    table = Table(title=str(path))
    table.add_column("field")
    table.add_column("value")
    table.add_row("images", str(len(data)))
    table.add_row("shape", str(data.images.shape[1:]))
    table.add_row("label pixels", ", ".join(f"{label(int(v))}: {c}" for v, c in zip(found, counted)))
    table.add_row("synthesized", str(data.synthesized))
    for note in data.notes:
        table.add_row("note", note)
    Console(markup=False).print(table)


def _folder_info(path: Path, names: Optional[list[str]], n: Optional[int], values: Optional[list[int]]) -> None:
    """`medseg data info FOLDER`: pairs, image sizes (from the headers), the masks' distinct values and, for the
    classes given or suggested, pixels per class, values that are no class, and the config to set."""
    from collections import Counter

    from medseg.data.folder import image_shape, pair_files, resolve_folder, suggest_mask_settings, survey_masks

    images_dir, masks_dir = resolve_folder(path)
    pairs = pair_files(images_dir, masks_dir)
    sizes = Counter(tuple(image_shape(p)[:2]) for p in pairs.images)
    survey = survey_masks(pairs.masks)
    table = Table(title=str(path))
    table.add_column("field")
    table.add_column("value")
    table.add_row("images", f"{len(pairs)} image/mask pairs ({images_dir.name}/ + {masks_dir.name}/)")
    table.add_row("image sizes", ", ".join(f"{h}x{w}: {k}" for (h, w), k in sizes.most_common(8))
                  + (f" and {len(sizes) - 8} more sizes" if len(sizes) > 8 else "")
                  + (" (different sizes: data.size [H, W] pads or crops them to one, null keeps each)"
                     if len(sizes) > 1 else ""))
    shown = [f"{_value_text(v)}: {px:,} px in {nf} file(s)" for v, px, nf in
             zip(survey.values.tolist(), survey.pixels.tolist(), survey.files.tolist())]
    table.add_row("mask values", f"{len(shown)} distinct: " + "; ".join(shown[:20])
                  + (f"; and {len(shown) - 20} more" if len(shown) > 20 else ""))
    suggestion = suggest_mask_settings(survey.values.tolist(), n, names)
    use_values = values if values is not None else suggestion["mask_values"]
    k = n if n is not None else len(suggestion["class_names"])
    class_names = names or suggestion["class_names"]
    pixels, stray = survey.classes(k, use_values)
    how = "--mask-values" if values is not None else "the suggested data.mask_values" if use_values else "class indices"
    table.add_row("classes", f"as {how}: " + "; ".join(f"{c} {class_names[c]}: {int(px):,} px"
                                                        for c, px in enumerate(pixels)))
    if stray:
        table.add_row("not a class", "; ".join(
            f"{_value_text(v)} in {len(files)} file(s), e.g. {', '.join(files[:3])}" for v, files in sorted(stray.items()))
            + " — training would refuse these masks")
    suggested = suggestion["class_names"]
    table.add_row("suggested config", f"data.mask_values: {_flow(suggestion['mask_values'])}; task.class_names: "
                  f"{_flow(suggested)}; task.background: 0; task.derived: {{}}; task.primary_metric: "
                  f"{suggested[1] if len(suggested) > 1 else suggested[0]} ({suggestion['note']})")
    Console(markup=False).print(table)


def _mfish_info(path: Path) -> None:
    """`medseg data info` on the M-FISH source set: slides, metaphases (labelled, EX unlabelled), shapes, label values."""
    from medseg.data.mfish import survey

    s = survey(path)
    files = s["label_files"]
    table = Table(title=f"{path} (M-FISH set: DAPI + karyotype label map pairs)")
    table.add_column("field")
    table.add_column("value")
    table.add_row("slides", f"{s['n_slides']} slides in {s['n_folders']} folders (<slide>__<karyotype>: a slide's "
                            "metaphases may lie in several folders; split by slide, never by image)")
    table.add_row("metaphases", f"{s['n_labelled']} labelled (<id>D.tif + <id>K.tif); {s['n_unlabelled']} EX "
                                "(extreme) without a label map, skipped")
    table.add_row("image sizes", ", ".join(f"{k}: {v}" for k, v in s["shapes"].items()))
    table.add_row("label values", "0 background, 1-22 autosomes, 23 X, 24 Y, 255 overlap; pixels (files): "
                  + ", ".join(f"{v}: {px:,} ({files[v]})" for v, px in s["label_pixels"].items()))
    table.add_row("overlap regions", f"{s['overlap_regions']:,} (8-connected regions of 255, any size)")
    table.add_row("licence", s["licence"] or "README.TXT not found: the licence requires its notice with every copy")
    table.add_row("use", "medseg data mfish SRC OUT (3-class folder), medseg data mfish-pairs SRC -o pairs.h5 "
                         "(Pommier-layout overlapping pairs)")
    Console(markup=False).print(table)


def _value_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _flow(value) -> str:
    """A value as one line of YAML flow style: ``[0, 255]``, ``[background, tumour]``, ``null``."""
    if value is None:
        return "null"
    return "[" + ", ".join(str(v) for v in value) + "]"


@data_app.command("analyze")
def data_analyze(
    data: Path = typer.Argument(..., help="UW-Madison GI Tract folder (train.csv and train/case.../scans/*.png)."),
    out: Path = typer.Option(Path("uwgi_analysis"), "--out", "-o", metavar="DIR", help="Folder to write "
                             "report.md, analysis.json, splits.json and the figures into."),
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
    count: Optional[int] = typer.Option(None, metavar="N", help="Number of pairs to export (default: all)."),
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
    src: Path = typer.Argument(..., help="The M-FISH set: one sub-folder per slide, each metaphase a ...D.tif (DAPI) and ...K.tif (karyotype) pair."),
    out: Path = typer.Argument(..., help="Folder to write images/, masks/ (background 0, chromosome 1, overlap 2)."),
    limit: Optional[int] = typer.Option(None, metavar="N", help="Convert only the first N metaphases."),
):
    """Real M-FISH metaphases as a 3-class folder set (background / chromosome / overlap), licence copied."""
    from medseg.data.mfish import write_semantic_folder

    manifest = write_semantic_folder(src, out, limit=limit, progress=True)
    px = manifest["pixels_per_class"]
    total = max(sum(px.values()), 1)
    console.print(f"wrote {manifest['n_images']} metaphases from {manifest['n_folders']} slides to {out} "
                  f"(pixels: " + ", ".join(f"{k} {100 * v / total:.2f} %" for k, v in px.items())
                  + "); split by slide: image names are <slide>__<id>")


@data_app.command("mfish-pairs")
def data_mfish_pairs(
    src: Path = typer.Argument(..., help="The M-FISH set: one sub-folder per slide, each metaphase a ...D.tif (DAPI) and ...K.tif (karyotype) pair."),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE.H5", help="HDF5 file to write (Pommier layout); "
                                "provenance .json, split by slide .splits.json, preview .png and the licence "
                                ".README.TXT are written beside it."),
    crop: str = typer.Option("94x93", "--crop", metavar="SIZE", help="Crop size as rows x columns, e.g. 94x93 (the Pommier set)."),
    rule: str = typer.Option("larger", "--rule", metavar="RULE", help="Which chromosome is label 1: larger (more "
                             "pixels, overlap included), lower-class (lower karyotype class), top-left (centroid "
                             "higher, then further left)."),
    min_overlap: int = typer.Option(10, "--min-overlap", metavar="PX", help="Overlap regions smaller than this are "
                                    "left out (counted as too small)."),
    touch: int = typer.Option(1, "--touch", metavar="PX", help="A chromosome joins an overlap when its class lies "
                              "within this many pixels of it."),
    drop_cut: bool = typer.Option(False, "--drop-cut", help="Leave out pairs that reach beyond the crop (default: "
                                  "keep them, counted)."),
    mask_others: bool = typer.Option(False, "--mask-others", help="Paint other chromosomes in the crop with the "
                                     "background grey in the image too (they are background in the labels always)."),
    limit: Optional[int] = typer.Option(None, metavar="N", help="Read only the first N labelled metaphases."),
    isolated_dir: Optional[Path] = typer.Option(None, "--isolated-dir", metavar="DIR", help="Also write every "
                                                "chromosome touching no overlap as images/ + masks/ PNGs with "
                                                "index.csv (slide, image, class, area)."),
):
    """Real overlapping pairs: a crop around every overlap of the M-FISH karyotypes that joins exactly two
    chromosomes of different classes, labelled 0/1/2/3 in the Pommier layout (train/cv/evaluate --data take it)."""
    from medseg.data.mfish_pairs import PairOptions, run_mfish_pairs

    size = crop.lower().replace("×", "x").split("x")
    try:
        options = PairOptions(crop=tuple(int(v) for v in size), rule=rule, min_overlap_px=min_overlap,
                              touch_px=touch, keep_cut=not drop_cut, mask_others=mask_others)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    s = run_mfish_pairs(src, output, options=options, limit=limit, isolated_dir=isolated_dir)
    out = s["left_out"]
    console.print(f"wrote {s['n_images']:,} real pairs of {s['shape'][0]}x{s['shape'][1]} from "
                  f"{s['source']['n_metaphases']} metaphases ({len(s['pairs_per_slide'])} slides with pairs) to "
                  f"{s['output']}: {s['overlaps_found']:,} overlap regions, left out {out['too_small']:,} under "
                  f"{min_overlap} px, {out['same_class']} same-class, {out['three_or_more']} joining three or more, "
                  f"{out['no_chromosome']} joining none, {out['duplicate']} second crossings of a pair"
                  + (f", {out['cut_by_crop']} cut by the crop" if drop_cut else
                     f"; {s['cut_by_crop_border']} kept though cut by the crop border")
                  + f"; rule {rule}; {s['source']['n_unlabelled_skipped']} unlabelled EX metaphases skipped. "
                  f"Provenance: {s['json']}; "
                  + (f"split by slide: --set splits.file={s['splits']}" if s["held_out_slides"] else
                     f"no split by slide in {s['splits']} (too few slides)")
                  + (f"; isolated chromosomes: {s['isolated']['n']:,} in {isolated_dir}" if isolated_dir else "")
                  + ("" if s["licence"]["notice"] else " (WARNING: no README.TXT licence notice found in the source)"))


@data_app.command("convert")
def data_convert(
    inputs: List[Path] = typer.Argument(..., help="DICOM series folders or zips (or roots, with --scan)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder."),
    fmt: str = typer.Option("hdf5", "--format", help="Output format: hdf5 or nifti."),
    workers: Optional[int] = typer.Option(None, metavar="N", help="Series converted in parallel (default: CPU count)."),
    require_ct: bool = typer.Option(False, "--require-ct", help="Refuse series whose modality is not CT."),
    scan: bool = typer.Option(False, "--scan", help="Find every series under the given folders."),
    allow_gaps: bool = AllowGapsOpt,
):
    """Convert DICOM series to HDF5 or NIfTI ahead of training (geometry kept); reports seconds per series."""
    from medseg.data.volume_io import run_convert

    summary = run_convert(inputs, out, fmt, workers, require_modality="CT" if require_ct else None, scan=scan,
                          allow_gaps=allow_gaps)
    for r in summary["results"]:
        if r.get("error"):
            console.print(Text.assemble(("failed", "red"), f" {r['input']}: {one_line(r['error'])}"))
    per_series = summary["seconds_per_series"]
    console.print(f"converted {summary['converted']}, failed {summary['failed']}"
                  + (f", {per_series:.2f} s per series" if per_series is not None else ""))
    if summary["failed"]:
        raise typer.Exit(code=1)


@data_app.command("phantom")
def data_phantom(
    out: Path = typer.Argument(..., help="Folder for the phantom cases."),
    n: int = typer.Option(4, metavar="N", help="Number of cases."),
    formats: str = typer.Option("dicom,nifti,hdf5", metavar="LIST", help="Comma-separated: dicom, nifti, hdf5."),
    shape: str = typer.Option("72,256,256", metavar="D,H,W", help="Volume size in voxels."),
    seed: int = typer.Option(0, help="Random seed of the first case (case k has seed + k): moves and resizes the "
                             "target and the organs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace cases already in OUT (else an existing "
                                   "DICOM series is an error)."),
):
    """Write CT-like phantom volumes with a target label (synthetic demo data, not clinical)."""
    from medseg.data.phantom import write_phantom

    cases = write_phantom(out, n=n, formats=tuple(f.strip() for f in formats.split(",")),
                          shape=tuple(_int_list(shape, "--shape")), seed=seed, overwrite=overwrite)
    console.print(f"wrote {len(cases)} phantom cases to {out} (synthetic demo data, not clinical)")


ClassesOpt = typer.Option(None, "--classes", metavar="A,B,...", help="Class names, background first, one per "
                          "label value found (default: background, foreground / class_1, ... or dataset.json's).")
BudgetOpt = typer.Option(None, "--budget-gb", metavar="G", help="Memory one training step may take on the device, "
                         "in GB: sizes the patch and the batch (default 8 on CUDA, 2 on a CPU).")


def _is_data_argument(path: Path) -> bool:
    """Whether ``medseg train``'s first argument is data to plan from (a data folder, an HDF5 file, synth:...)
    rather than a YAML config; a run folder (with a saved config) is left to the config loader's message."""
    if str(path).startswith("synth:"):
        return True
    if path.name.lower().endswith((".yaml", ".yml")):
        return False
    if path.is_dir() and ((path / "config.yaml").is_file() or any(path.glob("fold_*/config.yaml"))):
        return False
    return True


def _plan_device(device: Optional[str]) -> str:
    """cpu or cuda: what a plan is sized for (``--device``, else CUDA when it is available)."""
    if device and device != "auto":
        return "cuda" if device.startswith("cuda") else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _plan_data(data: str, classes: Optional[str], budget_gb: Optional[float], device: Optional[str],
               sets: List[str], progress: bool = True):
    """Fingerprint ``data`` and plan a config for it (``medseg plan`` and ``medseg train DATA``):
    (config, decisions, fingerprint, settings)."""
    from medseg.planning import fingerprint, plan

    kind = _plan_device(device)
    names = [c for c in classes.split(",") if c.strip()] if classes else None
    fp = fingerprint(data, progress=progress)
    cfg, decisions = plan(fp, memory_budget_gb=budget_gb, device=kind, class_names=names, sets=_set_items(sets))
    budget = budget_gb if budget_gb is not None else ("8 (default)" if kind == "cuda" else "2 (default)")
    return cfg, decisions, fp, {"device": kind, "memory_budget_gb": budget}


def _print_decisions(decisions, title: str) -> None:
    """The planner's decisions as a table on a terminal (key, value, reason); in a log or pipe one plain
    unwrapped line each (``key = value  # reason``), so nothing is folded at 80 columns."""
    from medseg.planning.planner import format_value

    out = Console(markup=False, highlight=False)
    if not out.is_terminal:
        print(title)
        for d in decisions:
            print(f"  {d.key} = {format_value(d.value)}  # {d.reason}")
        return
    table = Table(title=title, show_lines=False)
    for column in ("key", "value", "reason"):
        table.add_column(column, overflow="fold")
    for d in decisions:
        table.add_row(Text(d.key), Text(format_value(d.value)), Text(d.reason))  # Text: no rich markup
    out.print(table)


@app.command()
def plan(
    data: str = typer.Argument(..., metavar="DATA", help="images/+masks/ folder (2D), folder of volumes (3D), "
                               "Pommier-layout HDF5, or synth:demo / synth:pommier / synth:phantom."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="CONFIG", help="YAML config to write (default: "
                                       "plan_NAME.yaml here, NAME the data's); the fingerprint goes beside it as "
                                       "CONFIG's stem + .plan.json."),
    classes: Optional[str] = ClassesOpt,
    budget_gb: Optional[float] = BudgetOpt,
    device: Optional[str] = typer.Option(None, help="Plan for cpu or cuda (default: CUDA if available)."),
    sets: List[str] = SetOpt,
):
    """Configure training from the data itself (nnU-Net's planning): fingerprint DATA, choose patch,
    network, batch, normalisation and schedule, print every decision with its reason, write the config."""
    from medseg.planning import write_plan

    cfg, decisions, fp, settings = _plan_data(data, classes, budget_gb, device, sets)
    path = out if out is not None else Path(f"{cfg['name']}.yaml")
    _print_decisions(decisions, f"plan for {data}")
    yaml_path, json_path = write_plan(cfg, decisions, path, fingerprint=fp, settings=settings)
    console.print(f"wrote {yaml_path} (fingerprint: {json_path}); train with: medseg train {yaml_path}")


def _config_or_plan(config: Path, data, name, epochs, sets, device, classes, budget_gb, restart: bool = False) -> dict:
    """The config of `train` / `cv`: the YAML given, or one planned from DATA given in its place."""
    if _is_data_argument(config):  # under torchrun rank 0 alone plans; the other ranks train its config
        from medseg.training.run import plan_on_main_rank

        return plan_on_main_rank(lambda: _planned_config(str(config), data, name, epochs, sets, device, classes,
                                                         budget_gb, restart), device, _set_items(sets))
    if classes or budget_gb is not None:
        raise typer.BadParameter("--classes and --budget-gb plan a config from DATA; with a YAML config set "
                                 "task.class_names and the sizes in it (or with --set)")
    return _config(config, data, name, epochs, sets, device)


@app.command()
def train(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Experiment YAML, e.g. configs/chromosomes/unet.yaml; "
                                  "or DATA (a data folder, HDF5 file or synth:...) to plan the config on the fly."),
    fold: int = typer.Option(0, metavar="K", help="Cross-validation fold to train."),
    data: Optional[str] = DataOpt,
    name: Optional[str] = typer.Option(None, help="Run name (default: the config's name)."),
    epochs: Optional[int] = typer.Option(None, metavar="N", help="Number of epochs (overrides train.epochs)."),
    sets: List[str] = SetOpt,
    device: Optional[str] = typer.Option(None, help=f"{DEVICE_HELP} (default: the config's train.device)."),
    restart: bool = typer.Option(False, "--restart", help="Start over instead of resuming an interrupted run; a run "
                                 "folder holding another training (other data, config or split) is replaced."),
    classes: Optional[str] = ClassesOpt,
    budget_gb: Optional[float] = BudgetOpt,
    nproc: int = typer.Option(1, "--nproc", metavar="N", help="Train with N processes on this machine "
                              "(DistributedDataParallel via torchrun: one per GPU, or N CPU processes sharing the "
                              "cores); train.batch_size stays the global batch."),
):
    """Train one fold. An interrupted run resumes from its last epoch. Given DATA instead of a config, plans
    one first (as medseg plan) and keeps plan.yaml and plan.json in the run folder. Several processes:
    --nproc N, or torchrun --nproc-per-node N -m medseg train CONFIG (multi-node: torchrun's rendezvous flags)."""
    from medseg.threads import configure_threads
    from medseg.training import distributed
    from medseg.training.run import train_fold

    cfg = _config_or_plan(config, data, name, epochs, sets, device, classes, budget_gb, restart)
    if nproc > 1 and not distributed.env_info().active:
        _launch_ranks(cfg, fold, restart, nproc)
        return
    configure_threads()
    try:
        summary = train_fold(cfg, fold, restart=restart)
    finally:
        distributed.cleanup()
    if not distributed.env_info().is_main:
        return
    best, primary = summary["best_val"], cfg["task"]["primary_metric"]
    iou = best.get(f"val_iou/{primary}")
    if "val_loss" in best:
        result = (f"best epoch {summary['best_epoch']} of {summary['epochs_run']} (val loss {best['val_loss']:.4f}"
                  + (f", IoU[{primary}] {100 * iou:.1f} %)" if iou is not None else ")"))
    else:  # no validation set: the last epoch's model is the one kept
        result = f"{summary['epochs_run']} epochs, no validation set: the last model is kept"
    console.print(f"fold {summary['fold']}: {result}; model and history in {summary['run_dir']}")


def _launch_ranks(cfg: dict, fold: int, restart: bool, nproc: int) -> None:
    """``train --nproc N``: torchrun with N processes on this machine, each training this config (handed over
    as the resolved YAML); a failed rank makes the command fail with torchrun's exit code named."""
    import tempfile

    from medseg.config import save_config
    from medseg.training import distributed

    with tempfile.TemporaryDirectory(prefix="medseg-ddp-") as tmp:
        path = Path(tmp) / "config.yaml"
        save_config(cfg, path)
        args = ["train", str(path), "--fold", str(fold)] + (["--restart"] if restart else [])
        console.print(f"launching {nproc} processes: {' '.join(distributed.launch_command(nproc, args))}")
        code = distributed.launch(nproc, args)
    if code:
        _fail(f"distributed training with {nproc} processes failed (torchrun exit code {code}; the failing rank's "
              "error is above); run the same command again to resume from the last saved epoch")


@app.command()
def cv(
    config: Path = typer.Argument(..., metavar="CONFIG", help="Experiment YAML, e.g. configs/chromosomes/unet.yaml; "
                                  "or DATA (a data folder, HDF5 file or synth:...) to plan the config on the fly."),
    folds: Optional[str] = typer.Option(None, metavar="K,...", help="Comma-separated folds to train (default: all)."),
    data: Optional[str] = DataOpt,
    name: Optional[str] = typer.Option(None, help="Run name (default: the config's name)."),
    epochs: Optional[int] = typer.Option(None, metavar="N", help="Number of epochs per fold (overrides train.epochs)."),
    sets: List[str] = SetOpt,
    device: Optional[str] = typer.Option(None, help=f"{DEVICE_HELP} (default: the config's train.device)."),
    restart: bool = typer.Option(False, "--restart", help="Start every fold over instead of resuming interrupted "
                                 "ones; a run folder holding another training (other data, config or split) is replaced."),
    evaluate: bool = typer.Option(True, help="Score every fold on the held-out test set afterwards."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (flips, 90° rotations) in the evaluation."),
    classes: Optional[str] = ClassesOpt,
    budget_gb: Optional[float] = BudgetOpt,
    parallel: int = typer.Option(1, "--parallel", metavar="K", help="Train K folds at once, each in its own process "
                                 "(one GPU each when there are GPUs; on the CPU the cores are shared among them)."),
):
    """Cross-validation: train every fold, then evaluate them on the held-out test set. Given DATA instead of a
    config, plans one first (as medseg plan) and keeps plan.yaml and plan.json in the run folder."""
    from medseg.evaluation.evaluate import evaluate_run
    from medseg.data.runs import run_dir_for
    from medseg.threads import configure_threads
    from medseg.training import distributed
    from medseg.training.run import cross_validate, cross_validate_parallel

    cfg = _config_or_plan(config, data, name, epochs, sets, device, classes, budget_gb, restart)
    fold_list = _int_list(folds, "--folds")
    if parallel < 1:
        raise typer.BadParameter(f"--parallel takes K >= 1 folds at once, got {parallel}")
    if parallel > 1 and distributed.env_info().active:
        raise typer.BadParameter("--parallel starts processes of its own: not under torchrun")
    try:
        if parallel > 1:  # the children take their shares; this process only waits (not counted) until they end
            cross_validate_parallel(cfg, folds=fold_list, parallel=parallel, restart=restart)
            configure_threads()
        else:
            configure_threads()
            cross_validate(cfg, folds=fold_list, restart=restart)
    finally:
        distributed.cleanup()
    if evaluate and distributed.env_info().is_main:  # the folds were just trained from the user's own config: its code is trusted
        report = evaluate_run(run_dir_for(cfg), tta=tta, folds=fold_list, device=cfg["train"]["device"], trust_code=True)
        console.print(f"report: {report}")
        _print_competition(report)


def _print_competition(report: Path) -> None:
    """One line per fold and the fold mean of the UW-Madison competition score, when the run has one (GI tract)."""
    try:
        metrics = json.loads((Path(report).parent / "metrics.json").read_text())["metrics"]
    except (OSError, ValueError, KeyError):
        return
    comp = metrics.get("competition")
    if not comp:
        return
    for fold in metrics.get("per_fold") or []:
        c = fold.get("competition") or {}
        if c and len(metrics.get("per_fold")) > 1:
            console.print(f"{fold.get('fold')}: uw_score {c['uw_score']:.4f} (dice {c['dice']:.4f}, hausdorff_score "
                          f"{c['hausdorff_score']:.4f}; {c['n_scans']} scans)")
    other = (comp.get("other_convention") or {}).get("uw_score")
    console.print(f"competition score (mean over folds): uw_score {comp['uw_score']:.4f} = 0.4 × dice {comp['dice']:.4f} "
                  f"+ 0.6 × hausdorff_score {comp['hausdorff_score']:.4f}"
                  + (f"; {other:.4f} with the paper's empty-mask Dice 0" if other is not None else ""))


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run directory (runs/NAME) or one fold directory."),
    data: Optional[str] = DataOpt,
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Test-time augmentation (flips, 90° rotations) "
                                       "or not (default: the run's evaluate.tta)."),
    folds: Optional[str] = typer.Option(None, metavar="K,...", help="Comma-separated folds to evaluate (default: "
                                        "every trained fold)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", help="Report folder (default RUN/evaluation)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    limit_test: Optional[int] = typer.Option(None, metavar="N", help="Score only the first N test images (quick look)."),
    trust_code: bool = TrustCodeOpt,
    karyotype_vote: Optional[str] = typer.Option(None, "--karyotype-vote", metavar="VOTE", help="Karyotype runs "
                                                 "(classes 1-22, X, Y): soft (mean probability over a chromosome's "
                                                 "pixels) or majority (its pixels' most frequent class); default: "
                                                 "the run's evaluate.karyotype_vote (soft)."),
):
    """Write report.md, metrics.json and figures for a trained run, in the task's terms (per-class scores, worst
    and best cases; the papers' numbers beside ours for the tasks they report)."""
    from medseg.evaluation.evaluate import evaluate_run

    if karyotype_vote not in (None, "soft", "majority"):
        raise typer.BadParameter(f"--karyotype-vote takes soft or majority, got {karyotype_vote!r}")
    report = evaluate_run(run, data=data, tta=tta, folds=_int_list(folds, "--folds"), device=device, out_dir=out,
                          limit_test=limit_test, trust_code=trust_code, karyotype_vote=karyotype_vote)
    console.print(f"report: {report}")
    _print_competition(report)


def _fold_choice(model: Path, text: Optional[str]) -> Optional[list[int]]:
    """``--folds``: None (every fold: ``all`` or not given) or the folds, each of which must be in ``model``."""
    from medseg.artifact import MODEL_META
    from medseg.errors import DataValidationError

    if text is None or text.strip().lower() == "all":
        return None
    folds = _int_list(text, "--folds")
    if not folds:
        raise typer.BadParameter(f"--folds takes comma-separated fold numbers or 'all', got {text!r}")
    if (model / MODEL_META).is_file():
        raise DataValidationError(model, f"--folds {text} is for a run folder holding fold_*; this is one fold's "
                                         "model (give the run folder, or no --folds)")
    found = {p.name for p in model.glob("fold_*") if (p / MODEL_META).is_file()}
    missing = [k for k in dict.fromkeys(folds) if f"fold_{k}" not in found]
    if missing and found:
        raise DataValidationError(model, f"no trained fold {', '.join(map(str, missing))} here (trained: "
                                         f"{', '.join(sorted(found, key=lambda n: int(n.split('_')[1])))})")
    return folds


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Run directory (fold ensemble) or one fold directory."),
    images: List[Path] = typer.Argument(..., metavar="IMAGE", help="PNG/TIFF/JPEG images or folders of them (2D "
                                        "models; natural name order) or volumes: NIfTI, HDF5, DICOM folder/zip (3D; "
                                        "DICOM files are told by their bytes, whatever their names); with --format "
                                        "submission: one UW-Madison competition folder (holding test/ or train/, or that "
                                        "folder itself)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder."),
    fmt: str = typer.Option("files", "--format", metavar="FORMAT", help="files: label map, overlay, masks per "
                            "image or volume; submission: the UW-Madison GI Tract Kaggle submission.csv (id,class,"
                            "predicted; RLE at each slice's own size) + submission.json (counts, ms per slice)."),
    folds: Optional[str] = typer.Option(None, "--folds", metavar="K,...", help="Folds of a run to load, or 'all' (the "
                                        "default): their probabilities are averaged, so this is also the fold "
                                        "ensemble (no separate command); e.g. --folds 0,2."),
    threshold: float = typer.Option(0.5, "--threshold", metavar="P", help="--format submission: a pixel is an "
                                    "organ where its probability is above P."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Test-time augmentation (flips, 90° rotations) "
                                       "or not (default: the model's evaluate.tta; planned models mirror)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    trust_code: bool = TrustCodeOpt,
    allow_gaps: bool = AllowGapsOpt,
    pair_model: Optional[Path] = typer.Option(None, "--pair-model", metavar="PAIR_RUN", help="Whole metaphases: a "
                                              "4-class pair model (background, chromosome A, B, overlap) that splits "
                                              "each crossing of two chromosomes; MODEL must then segment background / "
                                              "chromosome / overlap. Writes OUT/IMAGE-NAME/ with every chromosome's mask "
                                              "and cut-out, instances.json and an instance figure."),
    karyotype_model: Optional[Path] = typer.Option(None, "--karyotype-model", metavar="KARYO_RUN", help="Whole "
                                                   "metaphases: a karyotyping model (classes 1-22, X, Y; configs/mfish/"
                                                   "karyotype_unet.yaml) that gives every chromosome its class: "
                                                   "class, class_name, class_confidence in instances.json."),
    karyotype_vote: str = typer.Option("soft", "--karyotype-vote", metavar="VOTE", help="With --karyotype-model: "
                                       "soft (mean probability over the chromosome's pixels) or majority."),
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
        from medseg.inference.submission import write_submission

        s = write_submission(predictor, images[0], out, threshold=threshold, model=model)
        console.print(f"{s['n_slices']:,} slices of {s['n_scans']} scans ({s['n_models']} fold(s)) → {s['csv']}  "
                      f"{s['total_ms_per_slice']:.1f} ms/slice (prediction {s['predict_ms_per_slice']:.1f}, "
                      f"RLE + writing {s['rle_write_ms_per_slice']:.2f}); timing: {s['json']}")
        return
    images, notes = prediction_inputs(images, predictor.spatial_dims, f"model {model}")
    for note in notes:
        console.print(note)
    if predictor.spatial_dims == 3:
        from medseg.inference.volume import predict_volume_file

        for path in images:
            summary = predict_volume_file(predictor, path, out, allow_gaps=allow_gaps)
            console.print(f"{path} → {summary['label_file']}  "
                          + ", ".join(f"{k}: {v} ml" for k, v in summary["volume_ml"].items()))
        return
    from medseg.inference.instances import is_metaphase_model

    if pair_model is not None or karyotype_model is not None or is_metaphase_model(predictor.meta):
        # whole metaphases → chromosome instances (→ their karyotype classes)
        _predict_metaphases(predictor, model, pair_model, images, out, device=device, tta=tta, trust_code=trust_code,
                            karyotype_model=karyotype_model, karyotype_vote=karyotype_vote)
        return
    s = predict_image_files(predictor, images, out)
    console.print(f"{s['n_images']} image(s) → {out} in {s['total_seconds']:.1f} s ({s['ms_per_image']:.0f} ms per "
                  f"image{', with TTA' if predictor.tta else ''})")


def _predict_metaphases(predictor, model: Path, pair_model: Optional[Path], images: List[Path], out: Path, *,
                        device: str, tta: Optional[bool], trust_code: bool, karyotype_model: Optional[Path] = None,
                        karyotype_vote: str = "soft") -> None:
    from medseg.errors import DataValidationError
    from medseg.inference.instances import FALLBACKS, check_pair_model, is_metaphase_model, predict_metaphase_file
    from medseg.inference.predictor import Predictor

    if not is_metaphase_model(predictor.meta):
        raise DataValidationError(model, "--pair-model needs a model of background / chromosome / overlap "
                                         f"(configs/mfish/metaphase_unet.yaml); this one segments "
                                         f"{', '.join(map(str, predictor.class_names))}")
    pair = None
    if pair_model is not None:
        pair = Predictor.from_path(pair_model, device=device, tta=tta, trust_code=trust_code)
        check_pair_model(pair.meta, pair_model)
    classify = None
    if karyotype_model is not None:  # every instance's class (medseg.inference.karyotype)
        from medseg.inference.karyotype import check_karyotype_model, classify_instances

        if karyotype_vote not in ("soft", "majority"):
            raise typer.BadParameter(f"--karyotype-vote takes soft or majority, got {karyotype_vote!r}")
        karyo = Predictor.from_path(karyotype_model, device=device, tta=tta, trust_code=trust_code)
        check_karyotype_model(karyo.meta, karyotype_model)

        def classify(image, instances):
            return classify_instances(karyo, image, instances, vote=karyotype_vote)
    from medseg.inference.instance_status import chromosomes_csv, instance_statuses, status_summary

    def extra_keys(image, instances):  # every record's status (single, clump, ...), with its class if classified
        statuses = instance_statuses(instances, image.shape, image)
        classes = classify(image, instances) if classify is not None else [{}] * len(instances)
        return [{**c, **st} for c, st in zip(classes, statuses, strict=True)]

    for path in images:
        s = predict_metaphase_file(predictor, pair, path, out, classify=extra_keys)
        Path(s["out"], "chromosomes.csv").write_text(chromosomes_csv(s["instances"]), encoding="utf-8")
        c, headline = s["counts"], status_summary(s["instances"])
        console.print(f"{path} → {s['out']}  {s['n_instances']} objects: {headline['text']} ({c['pair_model']} "
                      f"crossings split by the pair model, {sum(c[k] for k in FALLBACKS)} clusters kept whole: "
                      + ", ".join(f"{k} {c[k]}" for k in FALLBACKS) + "); chromosomes.csv")
        if headline["warning"]:
            console.print(f"  warning: {headline['warning']}")
        if classify is not None:
            named = [r["class_name"] for r in s["instances"] if r.get("class_name")]
            console.print(f"  karyotype ({karyotype_vote} vote): {len(named)} of {s['n_instances']} chromosomes "
                          "classified (class, class_name, class_confidence in instances.json)")


@app.command("evaluate-metaphases")
def evaluate_metaphases_cmd(
    model: Optional[Path] = typer.Argument(None, help="Semantic run (background / chromosome / overlap [/ touching]), "
                                           "e.g. runs/mfish_metaphase_unet; none with --baseline otsu."),
    data: Path = typer.Option(..., "--data", metavar="DIR", help="The M-FISH folder (../shared/data/mfish)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Report folder: metrics.json, report.md, figures."),
    pair_model: Optional[Path] = typer.Option(None, "--pair-model", metavar="PAIR_RUN", help="4-class pair model "
                                              "that splits crossings (without it, crossings stay whole)."),
    slides: str = typer.Option("test", "--slides", metavar="SLIDES", help="test (default): the held-out slides of "
                               "`medseg data mfish-pairs` (never seen by a model trained on its split); all; or "
                               "slide ids, e.g. A20,P09."),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="Only the first N metaphases (quick look)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    trust_code: bool = TrustCodeOpt,
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="NAME", help="otsu (the one there is): no "
                                           "model, Otsu's threshold + distance watershed, scored the same way."),
    debris_rules: bool = typer.Option(True, "--debris-rules/--no-debris-rules", help="Leave out specks, nuclei and "
                                      "border fragments by size and shape against the metaphase's median chromosome."),
):
    """Chromosome instances on whole M-FISH metaphases against their label maps: instance precision / recall / F1 at
    IoU >= 0.5, splits, merges, overlap IoU, per metaphase, per slide, per imaging system and pooled."""
    from medseg.evaluation.instances import evaluate_metaphases
    from medseg.inference.regions import DebrisRules

    m = evaluate_metaphases(model, data, out, pair_model=pair_model, slides=slides, limit=limit, device=device,
                            trust_code=trust_code, baseline=baseline, debris=DebrisRules(enabled=debris_rules))
    p = m["pooled"]
    console.print(f"{m['n_metaphases']} metaphases of {', '.join(m['slides'])}: precision {100 * p['precision']:.1f} %, "
                  f"recall {100 * p['recall']:.1f} %, F1 {100 * p['f1']:.1f} % ({p['tp']} of {p['n_true']} chromosomes "
                  f"at IoU >= 0.5), {p['split']} splits, {p['merge']} merges, overlap IoU "
                  + (f"{100 * p['overlap_iou']:.1f} %" if p['overlap_iou'] == p['overlap_iou'] else "–")
                  + f"; report: {out / 'report.md'}")
    right = [f"{k} {v['right']}/{v['n']}" for k, v in m["status_accuracy"].items() if v["n"]]
    console.print("statuses right against the label maps: " + (", ".join(right) or "no objects"))


@app.command()
def reproduce(
    spec: Path = typer.Argument(..., help="Table spec, e.g. configs/tables/rse_unet_table4.yaml"),
    quick: bool = typer.Option(False, "--quick", help="Reduced CPU mode: small synthesized set, few epochs, narrow nets, fold 0."),
    data: Optional[str] = DataOpt,
    folds: Optional[str] = typer.Option(None, metavar="K,...", help="Comma-separated folds (default: all; --quick: 0)."),
    device: Optional[str] = typer.Option(None, help=f"{DEVICE_HELP} (default: each config's train.device)."),
    out: Path = typer.Option(Path("runs/tables"), "--out", "-o", metavar="DIR", help="Where the table's runs and report go."),
    restart: bool = typer.Option(False, "--restart", help="Start every row's runs over instead of resuming them."),
    sets: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override a config value of every row, e.g. --set train.epochs=3 (repeatable)."),
    unset: List[str] = typer.Option([], "--unset", metavar="KEY",
                                    help="Drop the spec's own setting of KEY, so each row keeps its config's value, e.g. "
                                         "--unset model.base_channels: every network at its paper's width (repeatable)."),
):
    """Reproduce one of the papers' tables: train/evaluate every row, report ours beside the published numbers."""
    from medseg.experiments.tables import reproduce_table

    report = reproduce_table(spec, quick=quick, data=data, folds=_int_list(folds, "--folds"), device=device, output_root=out, restart=restart,
                             overrides=sets, unset=unset)
    console.print(f"report: {report}")


@app.command()
def models():
    """List the registered architectures."""
    from medseg.models import available_models

    for name in available_models():
        typer.echo(name)


@config_app.command("show")
def config_show(
    config: Path = typer.Argument(..., help="Experiment YAML, e.g. configs/chromosomes/unet.yaml"),
    sets: List[str] = SetOpt,
):
    """Print the resolved config as YAML (defaults, the _base_ chain, CONFIG, --set), each value's source at
    the end of its line: default, the YAML file that set it, or --set."""
    from medseg.config import format_config, resolve_config

    typer.echo(format_config(resolve_config(config, sets=_set_items(sets))), nl=False)


HomeOpt = typer.Option(None, "--home", metavar="DIR", help="Where the server keeps its database and studies (default $MEDSEG_HOME).")


PasswordStdinOpt = typer.Option(False, "--password-stdin", help="Read the password from standard input.")


def _server_db(home: Optional[Path]):
    """(settings, database) of the server home that the ``users`` commands work on."""
    from medseg.server.db import Database
    from medseg.server.settings import ServerSettings

    settings = ServerSettings(home=home) if home else ServerSettings()
    return settings, Database(settings.db_path)


def _new_password(password_stdin: bool) -> str:
    """One line from stdin (scripts), else prompted twice without echo."""
    import sys

    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (letters, digits, _ . @ -)."),
    admin: bool = typer.Option(False, "--admin", help="May create users through the API."),
    password_stdin: bool = PasswordStdinOpt,
    home: Optional[Path] = HomeOpt,
):
    """Create a user of the web server (the password is prompted for unless --password-stdin)."""
    from medseg.server.auth import create_user

    settings, db = _server_db(home)
    user = create_user(db, name, _new_password(password_stdin), is_admin=admin)  # AuthError: one line, exit 2
    console.print(f"created {'administrator' if user.is_admin else 'user'} {user.username} in {settings.db_path}")


@users_app.command("list")
def users_list(home: Optional[Path] = HomeOpt):
    """List the users of the web server."""
    table = Table("user", "admin", "studies", "created")
    for u in _server_db(home)[1].users():
        table.add_row(u["username"], "yes" if u["is_admin"] else "", str(u["n_studies"]), u["created_at"])
    Console().print(table)


@users_app.command("passwd")
def users_passwd(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = PasswordStdinOpt,
    home: Optional[Path] = HomeOpt,
):
    """Set a user's password (prompted unless --password-stdin); every session of that user ends. (A running
    server's sign-in back-off on the account stays until it expires; the API's admin reset lifts it.)"""
    from medseg.server.auth import set_password

    _, db = _server_db(home)
    user = set_password(db, name, _new_password(password_stdin))
    console.print(f"password of {user.username} changed; their sessions ended")


@users_app.command("remove")
def users_remove(
    name: str = typer.Argument(..., help="User name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    home: Optional[Path] = HomeOpt,
):
    """Remove a user with their sessions, studies and results, the files on disk included."""
    from medseg.server.auth import user_named
    from medseg.server.storage import remove_user

    settings, db = _server_db(home)
    row = user_named(db, name)
    if not yes:
        typer.confirm(f"remove user {row['username']} and their {len(db.studies(row['id']))} studies (files "
                      "included)?", abort=True)
    user, removed = remove_user(db, settings, name)
    studies = f"{removed} stud{'y' if removed == 1 else 'ies'}"
    console.print(f"removed user {user.username} and {studies} from {settings.root}")


@app.command()
def serve(
    model: List[Path] = typer.Option([], "--model", metavar="RUN", help="A trained run or fold directory (repeatable)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    home: Optional[Path] = HomeOpt,
    max_upload_mb: int = typer.Option(1024, metavar="MIB", help="Largest upload in MiB (413 beyond)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    trust_code: bool = typer.Option(False, "--trust-code", help="Serve models whose model.json names code outside "
                                    "medseg's registry (importing it runs it). Off: such models are refused at start."),
    pair_model: Optional[Path] = typer.Option(None, "--pair-model", metavar="PAIR_RUN", help="A 4-class pair model "
                                              "(background, chromosome A, B, overlap) for every metaphase model "
                                              "(background / chromosome / overlap): it splits each crossing of two "
                                              "chromosomes in the results' chromosome instances; without it crossings "
                                              "are kept whole."),
    karyotype_model: Optional[Path] = typer.Option(None, "--karyotype-model", metavar="KARYO_RUN", help="A "
                                                   "karyotyping model (classes 1-22, X, Y; configs/mfish/"
                                                   "karyotype_unet.yaml) for every metaphase model: it gives each "
                                                   "chromosome instance its class (class, class_name, "
                                                   "class_confidence in instances.json, the page's class column)."),
    karyotype_vote: str = typer.Option("soft", "--karyotype-vote", metavar="VOTE", help="With --karyotype-model: "
                                       "soft (mean probability over the chromosome's pixels) or majority."),
    login_failures_per_address: int = typer.Option(100, "--login-failures-per-address", metavar="N", help="Failed "
                                                   "sign-ins from one address within 15 minutes before it backs off "
                                                   "(429, 15 s doubling); everyone behind one NAT or proxy shares "
                                                   "it. 0: no address limit (the per-account limit, 5, stays)."),
    access_log: str = typer.Option("errors", "--access-log", metavar="LEVEL", help="off, errors (responses >= "
                                   "400) or all."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", metavar="FILE", help="Write the server's log and "
                                            "access log to FILE, rotated at --log-max-mb (default: the console)."),
    log_max_mb: int = typer.Option(10, "--log-max-mb", metavar="MIB", help="Size at which --log-file rotates."),
    log_backups: int = typer.Option(5, "--log-backups", metavar="N", help="Rotated log files kept."),
    job_thread: bool = typer.Option(False, "--job-thread", help="Run segmentation jobs in a thread of the web "
                                    "process instead of a worker process of their own (slower under load)."),
):
    """Run the web server: upload a study, automatic segmentation, slice viewer, downloads."""
    import uvicorn

    from medseg.server.app import create_app, lock_home
    from medseg.server.settings import MiB, ServerSettings

    if karyotype_vote not in ("soft", "majority"):
        raise typer.BadParameter(f"--karyotype-vote takes soft or majority, got {karyotype_vote!r}")
    try:
        settings = ServerSettings(models=list(model), max_upload_bytes=max_upload_mb * MiB, device=device,
                                  trust_code=trust_code, pair_model=pair_model, karyotype_model=karyotype_model,
                                  karyotype_vote=karyotype_vote, login_failures_per_address=login_failures_per_address,
                                  access_log=access_log, log_file=log_file, log_max_bytes=log_max_mb * MiB,
                                  log_backups=log_backups, job_process=not job_thread,
                                  **({"home": home} if home else {}))
    except ValueError as exc:  # a limit or log option out of range
        raise typer.BadParameter(str(exc)) from None
    lock = lock_home(settings)  # noqa: F841 - held until the process ends
    web = create_app(settings)
    registry = web.state.registry
    for entry in registry.entries.values():
        note = "  (demo model trained on synthetic data — not a clinical model)" if entry.demo else ""
        console.print(f"model {entry.id}: {entry.version}, {entry.spatial_dims}D, {entry.path}{note}")
        if entry.instances:
            console.print("  chromosome instances: " + (f"pair model {entry.pair.version}, {entry.pair.path}"
                                                        if entry.pair else "no --pair-model, crossings kept whole"))
            if entry.karyotype:
                console.print(f"  karyotype classes: {entry.karyotype.version} ({entry.karyotype_vote} vote), "
                              f"{entry.karyotype.path}")
    if not registry.entries:
        console.print("no model given (--model RUN_DIR): uploads will be refused", style="yellow")
    if not web.state.db.users():
        console.print("no user yet: create one with 'medseg users add NAME'", style="yellow")
    console.print(f"data in {settings.root}; open http://{host}:{port}/")
    # the access log is medseg's (medseg.server.logs: off / errors / all, rotated), not uvicorn's line per request
    uvicorn.run(web, host=host, port=port, log_level="info", access_log=False)


if __name__ == "__main__":  # pragma: no cover
    app()
