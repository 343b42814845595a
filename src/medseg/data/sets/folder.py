"""Folders of 2D images with masks of the same names (``images/`` + ``masks/``; :mod:`medseg.data.folder`): what
``data.format: folder`` reads, and ``auto`` for any folder no other data set recognises."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medseg.data.registry import DataSet, Description, InfoRequest, Rows, register_data_set


def _value_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _flow(value) -> str:
    """A value as one line of YAML flow style: ``[0, 255]``, ``[background, tumour]``, ``null``."""
    if value is None:
        return "null"
    return "[" + ", ".join(str(v) for v in value) + "]"


def describe_folder(path: Path, names: list[str] | None, n: int | None, values: list[int] | None) -> Rows:
    """An images/+masks/ folder: pairs, image sizes (from the headers), the masks' distinct values and, for the
    classes given or suggested, pixels per class, values that are no class, and the config to set."""
    from collections import Counter

    from medseg.data.folder import pair_files, resolve_folder, suggest_mask_settings, survey_masks
    from medseg.formats.images import image_shape

    images_dir, masks_dir = resolve_folder(path)
    pairs = pair_files(images_dir, masks_dir)
    sizes = Counter(tuple(image_shape(p)[:2]) for p in pairs.images)
    survey = survey_masks(pairs.masks)
    rows = [
        ("images", f"{len(pairs)} image/mask pairs ({images_dir.name}/ + {masks_dir.name}/)"),
        (
            "image sizes",
            ", ".join(f"{h}x{w}: {k}" for (h, w), k in sizes.most_common(8))
            + (f" and {len(sizes) - 8} more sizes" if len(sizes) > 8 else "")
            + (
                " (different sizes: data.size [H, W] pads or crops them to one, null keeps each)"
                if len(sizes) > 1
                else ""
            ),
        ),
    ]
    shown = [
        f"{_value_text(v)}: {px:,} px in {nf} file(s)"
        for v, px, nf in zip(survey.values.tolist(), survey.pixels.tolist(), survey.files.tolist(), strict=True)
    ]
    rows.append(
        (
            "mask values",
            f"{len(shown)} distinct: "
            + "; ".join(shown[:20])
            + (f"; and {len(shown) - 20} more" if len(shown) > 20 else ""),
        )
    )
    suggestion = suggest_mask_settings(survey.values.tolist(), n, names)
    use_values = values if values is not None else suggestion["mask_values"]
    k = n if n is not None else len(suggestion["class_names"])
    class_names = names or suggestion["class_names"]
    pixels, stray = survey.classes(k, use_values)
    how = "--mask-values" if values is not None else "the suggested data.mask_values" if use_values else "class indices"
    rows.append(
        ("classes", f"as {how}: " + "; ".join(f"{c} {class_names[c]}: {int(px):,} px" for c, px in enumerate(pixels)))
    )
    if stray:
        rows.append(
            (
                "not a class",
                "; ".join(
                    f"{_value_text(v)} in {len(files)} file(s), e.g. {', '.join(files[:3])}"
                    for v, files in sorted(stray.items())
                )
                + " — training would refuse these masks",
            )
        )
    suggested = suggestion["class_names"]
    rows.append(
        (
            "suggested config",
            f"data.mask_values: {_flow(suggestion['mask_values'])}; task.class_names: "
            f"{_flow(suggested)}; task.background: 0; task.derived: {{}}; task.primary_metric: "
            f"{suggested[1] if len(suggested) > 1 else suggested[0]} ({suggestion['note']})",
        )
    )
    return rows


class ImageFolders(DataSet):
    """An images/ + masks/ folder (``imagesTr``/``labelsTr`` and the like:
    :func:`~medseg.data.folder.resolve_folder`)."""

    name = format = "folder"

    def claims(self, spec: str, cfg: Mapping) -> bool:
        fmt = cfg["data"].get("format", "auto")
        return fmt == self.format or (fmt == "auto" and Path(spec).expanduser().is_dir())

    def load(self, cfg: dict, progress: bool = True):
        from medseg.data.datasets import load_data

        return load_data(cfg["data"], len(cfg["task"]["class_names"]))

    def describe(self, path: Path, request: InfoRequest) -> Description:
        return Description(str(path), describe_folder(path, request.names, request.n_classes, request.mask_values))


register_data_set(ImageFolders())
