"""The sections that say which data is read and how it is cut: ``data``, ``preprocess`` (3D CT) and ``splits``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medseg.config_schema.base import Section

__all__ = ["DataConfig", "PhantomConfig", "PreprocessConfig", "SplitsConfig"]


class PhantomConfig(Section):
    """3D: ``data.path: synth:phantom`` writes this many CT-like phantom cases (DEMO DATA) once under
    $MEDSEG_HOME/synth; shape (z, y, x) voxels, spacing (z, y, x) mm (medseg.data.phantom)."""

    n: int = 12
    shape: list[int] = Field(default_factory=lambda: [24, 96, 96])
    spacing: list[float] = Field(default_factory=lambda: [3.0, 1.0, 1.0])
    seed: int = 0


class DataConfig(Section):
    path: str = Field(
        "synth:demo",
        description="An HDF5 file in the Pommier layout, a folder (images/ + masks/), "
        'a UW-Madison GI-tract folder (train.csv + train/), or "synth:demo" / "synth:pommier" / '
        '"synth:gi" for the project\'s own synthesized sets (made on first use, no download), or "mfish:pairs" / '
        '"mfish:synth" / "mfish:both" (real M-FISH pairs, pairs synthesized from its chromosomes, '
        'both; made from the real folder, medseg.data.mfish_sets) / "mfish:karyotype" (each real '
        "isolated chromosome's DAPI cut-out labelled with its class 1-22, X, Y) / "
        '"mfish:karyotype-upright" (the same chromosomes upright, scaled to their metaphase).',
    )
    format: str = Field(
        "auto",
        description="auto | pommier | folder | uwgi (the UW-Madison GI-tract competition "
        "folder: train.csv + train/case*/case*_day*/scans/*.png; auto detects it)",
    )
    h5_key: str = "dataset_1"
    size: list[int] | None = Field(
        default_factory=lambda: [128, 128],
        description=(
            "2D: every image padded all round (or centre-cropped, with a warning) to [H, W] when loaded; the papers "
            "pad 94x93 to 128x128. null: full resolution, each image keeps its own size (train on data.patch_size "
            "patches then)."
        ),
    )
    normalize: Literal["range", "zscore", "minmax"] = Field(
        "range",
        description="2D intensities: range (the stored dtype's range to [0, 1]: uint8 / 255, uint16 / "
        "65535) | zscore (then per image (x - mean) / std, std floored) | minmax (then per image "
        "(x - min) / (max - min): 16-bit MRI fills a small, scan-dependent part of its range); "
        "recorded in model.json and applied again by predict and the server",
    )
    resize: bool = Field(
        False,
        description="2D: scale every image to data.size (images bilinear, masks nearest) instead of padding "
        "or centre-cropping it; predictions are scaled back to each image's own size (the GI "
        "paper resizes to 128x128)",
    )
    context_slices: int = Field(
        0,
        description="2.5D (slice data with scans, e.g. the GI tract): k neighbouring slices of the same scan "
        "on each side are fed as extra input channels (2k + 1 in all; at the scan's ends the edge "
        "slice repeats); 0: one slice",
    )
    context_stride: int = Field(1, description="2.5D: slices between neighbours (1: adjacent slices)")
    image_pad_value: int | float | str = Field(
        "border", description='number, or "border" (median of each image\'s border)'
    )
    stray_labels: Literal["reject", "background", "nearest"] = Field(
        "nearest", description="reject | background | nearest — the real file has a few label-4 pixels"
    )
    mask_values: list[int] | None = Field(
        None, description="folder masks: stored grey values of classes 0..C-1, in order"
    )
    limit: int | None = Field(None, description="use only the first N images (quick runs)")
    synth_pairs: int = Field(1500, description="size of the synth:demo set")
    synth_seed: int = 0
    mfish_source: str | None = Field(
        None,
        description="mfish:pairs / mfish:synth / mfish:both (medseg.data.mfish_sets): the real M-FISH folder; "
        "null: $MEDSEG_MFISH, else ../shared/data/mfish",
    )
    mfish_touching_px: int = Field(
        0,
        description="whole M-FISH metaphases (data.format mfish): 0 = three classes (background / chromosome / "
        "overlap); k > 0 = a fourth class, touching: the chromosome pixels within k px of a touching "
        "chromosome of another instance, the line that seeds their separation "
        "(medseg.data.mfish_metaphase.touching_labels; task.class_names then ends in touching)",
    )
    mfish_leave_out_rearranged: bool = Field(
        False,
        description="mfish:karyotype / mfish:karyotype-upright: leave out of the training slides the chromosomes "
        "whose class a structural rearrangement of their cell's karyotype names (their label map may paint a piece "
        "of one class on another's body: medseg.data.iscn); the held-out slides keep every chromosome",
    )
    mfish_karyotype_crossed: bool = Field(
        False,
        description="mfish:karyotype / mfish:karyotype-upright: add to the training slides' isolated chromosomes "
        "those crossing one other chromosome (their class's pixels with the overlap; about 40 % more training "
        "chromosomes: medseg.data.mfish_pair_crops.crossed_chromosomes); the held-out slides keep their isolated "
        "chromosomes only, so the test set is the same",
    )
    mfish_pair_isolate_px: int | None = Field(
        None,
        ge=0,
        description="mfish:pairs: show each pair alone in its crop (every pixel farther than this from the pair "
        "painted with the crop's background: medseg.data.mfish_pair_crops.isolate_pair); a pair model trained so "
        "gets its crops so in the metaphase pipeline too (the semantic model's component, the same margin)",
    )
    mfish_synth_pairs: int = Field(13434, description="size of the mfish:synth set (13,434: Pommier's published size)")
    synth_gi_cases: int = Field(
        6, description="size of the synth:gi set (cases of 1-5 scans of 80 or 144 slices; medseg data synth-gi)"
    )
    patch_size: list[int] | None = Field(
        None,
        description="train on random patches instead of whole images: [H, W] in 2D (medseg.data.transforms, "
        "images smaller than a patch are padded), [D, H, W] in 3D (medseg.data.transforms3d); "
        "null = whole. Validation and prediction stay on whole images (by sliding window with "
        "evaluate.sliding_window.roi_size).",
    )
    patch_pos_fraction: float | None = Field(
        None,
        description="foreground oversampling, 2D and 3D: null: patch position uniform; p: centred on a "
        "foreground (target) pixel with probability p",
    )
    phantom: PhantomConfig = Field(default_factory=PhantomConfig)
    patient_pattern: str | None = Field(
        None,
        description="3D: regular expression whose first group is the patient id in a case name; splits "
        "keep a patient's series together. null: every case is its own patient.",
    )

    @field_validator("context_slices", "context_stride")
    @classmethod
    def _context(cls, value, info):
        low = 0 if info.field_name == "context_slices" else 1
        if value < low:
            raise ValueError(f"data.{info.field_name} must be >= {low}, got {value!r}")
        return value

    @field_validator("image_pad_value", mode="before")
    @classmethod
    def _pad_value(cls, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f'data.image_pad_value must be a number or "border", got {value!r}')  # noqa: TRY004
        return value

    @field_validator("size")
    @classmethod
    def _size(cls, value):
        if value is not None and (len(value) != 2 or min(value) < 1):
            raise ValueError(f"data.size must be [H, W] pixels or null (full resolution), got {value!r}")
        return value

    @model_validator(mode="after")
    def _patches(self):
        size, pos = self.patch_size, self.patch_pos_fraction
        if size is None:
            if pos is not None:
                raise ValueError("data.patch_pos_fraction needs data.patch_size")
            return self
        if len(size) not in (2, 3) or min(size) < 1:
            raise ValueError(f"data.patch_size must be [H, W] pixels (2D) or [D, H, W] voxels (3D), got {size!r}")
        if pos is not None and not 0.0 <= pos <= 1.0:
            raise ValueError(f"data.patch_pos_fraction must be in [0, 1] or null, got {pos!r}")
        return self


# --- preprocessing ----------------------------------------------------------------------------------------


class PreprocessConfig(Section):
    """3D CT preprocessing (CTV thesis §2.1, medseg.data.transforms3d.preprocess_volume): clip to
    [clip_min, clip_max], map to [0, 1] (or z-score, as nnU-Net), resample to `depth` slices (linear in z)
    and size_xy in x/y."""

    clip_min: float | None = 0.0
    clip_max: float | None = 1600.0
    normalize: Literal["range", "minmax", "none", "zscore"] = Field(
        "range",
        description="after clipping: range (the window [clip_min, clip_max] to [0, 1], the thesis) | "
        "minmax (each volume's own min/max to [0, 1]) | none | zscore ((x - mean) / std with "
        "preprocess.mean/std — nnU-Net's CT normalisation, `medseg plan` fills them from the "
        "foreground statistics —, or each volume's own mean/std when they are null: MR)",
    )
    mean: float | None = Field(
        None, description="normalize: zscore: the intensity subtracted after clipping (null: each volume's own mean)"
    )
    std: float | None = Field(
        None, description="normalize: zscore: the intensity scale, > 0 (null: each volume's own std)"
    )
    depth: int | None = 72
    size_xy: list[int] | None = Field(default_factory=lambda: [256, 256])
    depth_mode: Literal["trilinear", "nearest", "area"] = "trilinear"
    align_corners: bool = False

    @model_validator(mode="after")
    def _checks(self):
        lo, hi = self.clip_min, self.clip_max
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"preprocess.clip_min ({lo}) must be below preprocess.clip_max ({hi})")
        if self.normalize == "range" and (lo is None or hi is None):
            raise ValueError("preprocess.normalize: range needs both clip_min and clip_max (the window mapped to 0..1)")
        if (self.mean is None) != (self.std is None):
            raise ValueError(
                "preprocess.mean and preprocess.std go together: give both (a fixed z-score, as for CT) "
                "or neither (each volume's own mean and std)"
            )
        if self.mean is not None and self.normalize != "zscore":
            raise ValueError(
                f"preprocess.mean/std are used by normalize: zscore only; normalize is "
                f"{self.normalize!r} (set normalize: zscore or remove mean/std)"
            )
        if self.std is not None and not self.std > 0:
            raise ValueError(f"preprocess.std must be > 0 (the z-score's scale), got {self.std!r}")
        if self.depth is not None and self.depth < 1:
            raise ValueError(f"preprocess.depth must be a number of slices >= 1 or null, got {self.depth!r}")
        if self.size_xy is not None and (len(self.size_xy) != 2 or min(self.size_xy) < 1):
            raise ValueError(f"preprocess.size_xy must be [H, W] or null, got {self.size_xy!r}")
        return self


# --- splits ---------------------------------------------------------------------------------------------


class SplitsConfig(Section):
    """How cases are split (medseg.data.splits, medseg.data.runs.splits_for): a held-out test set of
    test_fraction, then n_folds folds on the rest; drawn once, saved as JSON under output.root/splits and reused
    by every run on the same data."""

    test_fraction: float = Field(0.2, description="share of the cases held out as the test set, in [0, 1)")
    n_folds: int = Field(
        5,
        description="number of folds (k-fold cross-validation on the non-test cases; with "
        "val_fraction, folds of their own random validation subsets)",
    )
    seed: int = 0
    protocol: Literal["random", "ordered"] = Field(
        "random",
        description="random (seeded test set) | ordered (Hu et al.: the test set is the last "
        "test_fraction of the cases in natural name order: 2 before 10)",
    )
    val_fraction: float | None = Field(
        None,
        description="null: k-fold, the validation sets of the n_folds folds partition the non-test cases | a "
        "number in (0, 1): each fold validates on its own random subset of that share of the "
        "non-test cases | 0: no validation set (train on every non-test case, keep the last "
        "checkpoint)",
    )
    file: str | None = Field(
        None,
        description="a split to use instead of drawing one: a YAML/JSON of case names, {test: [name, ...], "
        "folds: [{val: [...], train: [...]}, ...]} (folds and train optional: without folds they "
        "are drawn from the non-test cases by n_folds/val_fraction/seed; names with or without "
        "their suffix), or a split JSON medseg wrote (indices); a path that does not exist yet "
        "gets a split drawn by these settings",
    )

    stratify: bool = Field(
        False,
        description="k-fold grouped by patient/case and stratified by each image's stratum (the GI data: "
        "the number of organs in the image, 0-3), as scikit-learn's StratifiedGroupKFold (the GI "
        "paper's split); with test_fraction 0 only",
    )

    @model_validator(mode="after")
    def _stratified(self):
        if self.stratify and (self.test_fraction != 0 or self.val_fraction is not None):
            raise ValueError(
                "splits.stratify makes k-fold cross-validation folds only: set splits.test_fraction: 0 "
                "and leave splits.val_fraction null"
            )
        return self

    @field_validator("val_fraction")
    @classmethod
    def _val_fraction(cls, value):
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"splits.val_fraction must be in [0, 1) or null (k-fold), got {value!r}")
        return value
