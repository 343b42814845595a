"""The models a server offers: trained medseg run or fold directories given to ``medseg serve --model``.

Each gets a stable id (from its folder name), a *version* (architecture + short sha256 of its weight
files, so a result names exactly which weights made it even after a folder is retrained), its spatial
dimensions (a 3D model cannot take an image; a 2D model takes a volume or a zip of slices only when it was
trained on the slices of scans: :func:`takes_stacks`) and a *demo* flag: a model trained on synthesized or
phantom data is marked so the page can say plainly that it is not a clinical model.
Weights are loaded on first use, by the worker, and kept.

Metaphase models (background / chromosome / overlap, :func:`~medseg.inference.instances.is_metaphase_model`)
also give chromosome instances; ``medseg serve --pair-model PAIR_RUN`` attaches one pair model (four classes,
checked at start by :func:`~medseg.inference.instances.check_pair_model`) to every one of them, described and
versioned like the models (architecture + sha256 of its weights) and loaded on first use too. Without it a
metaphase model still gives instances, every crossing kept whole. ``medseg serve --karyotype-model KARYO_RUN``
likewise attaches one karyotyping model (background, 1-22, X, Y, checked at start by
:func:`~medseg.inference.karyotype.check_karyotype_model`) that gives every instance its class, voted over its
pixels as ``--karyotype-vote`` says (``soft`` or ``majority``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medseg.artifact import check_model_meta, read_model_meta
from medseg.errors import DataValidationError
from medseg.inference.instances import check_pair_model, is_metaphase_model
from medseg.inference.karyotype import check_karyotype_model
from medseg.inference.predictor import Predictor, model_dirs
from medseg.inference.volume import display_background, label_names
from medseg.metrics.karyotype import VOTES
from medseg.palette import channel_hex, class_hex

DEMO_NOTE = "demo model trained on synthetic data — not a clinical model"
_DEMO_WORDS = ("phantom", "demo")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _synthesized(directory: Path, meta: dict) -> str | None:
    """Why ``directory``'s model counts as a demo model, or None."""
    data = meta.get("data") or {}
    if data.get("synthesized"):
        return "model.json: data.synthesized is true"
    if str(data.get("source", "")).startswith("synth:"):
        return f"model.json: trained on {data['source']}"
    config = directory / "config.yaml"
    if config.is_file():
        try:
            cfg = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError):
            cfg = {}
        path = str(((cfg.get("data") or {}).get("path")) or "")
        if path.startswith("synth:") or "phantom" in path.lower():
            return f"config.yaml: data.path is {path}"
    for name in (directory.name, directory.parent.name):
        if any(w in name.lower() for w in _DEMO_WORDS):
            return f"the model folder is called {name!r}"
    return None


def needed_modality(meta: dict) -> tuple[str | None, str]:
    """The modality a model needs (upper case, or None when its model.json says nothing) and why.

    An explicit ``modality`` (in ``task``, ``preprocessing`` or ``preprocessing.volume``) is taken as it is.
    Otherwise a 3D model whose preprocessing clips to a fixed window and maps it to [0, 1]
    (``normalize: range``) needs CT: a fixed intensity window only means the same tissue in every scan when
    the values are calibrated, as CT numbers are and MR or PET intensities are not."""
    pre = meta.get("preprocessing") or {}
    volume = pre.get("volume") or {}
    for where, section in (("task", meta.get("task") or {}), ("preprocessing", pre), ("preprocessing.volume", volume)):
        if section.get("modality"):
            return str(section["modality"]).upper(), f"model.json: {where}.modality"
    if volume.get("normalize") == "range" and None not in (volume.get("clip_min"), volume.get("clip_max")):
        return "CT", (
            f"model.json: trained on intensities clipped to the fixed window "
            f"[{volume['clip_min']}, {volume['clip_max']}]"
        )
    return None, "model.json records no modality"


def takes_stacks(meta: dict) -> bool:
    """Whether a 2D model segments a stack of slices — a zip of slice images, or a volume (NIfTI, HDF5, DICOM)
    slice by slice — and not only single images: ``preprocessing.slice_stacks`` in its model.json when set
    (true / false); otherwise a 2.5D model (``preprocessing.context_slices`` > 0: it needs the neighbouring
    slices) or a multi-label one (structures of a scan that may overlap, such as the UW-Madison GI-tract
    organs). A multiclass 2D model of single images (the chromosome models) takes images only."""
    task = meta.get("task") or {}
    if int(task.get("spatial_dims", 2)) != 2:
        return False
    pre = meta.get("preprocessing") or {}
    if pre.get("slice_stacks") is not None:
        return bool(pre["slice_stacks"])
    return int(pre.get("context_slices") or 0) > 0 or task.get("mode", "multiclass") == "multilabel"


@dataclass
class ModelEntry:
    id: str
    path: Path
    meta: dict
    version: str
    sha256: str
    demo_reason: str | None
    n_folds: int
    pair: ModelEntry | None = None  # the pair model that splits crossings (metaphase models, --pair-model)
    karyotype: ModelEntry | None = None  # the karyotyping model that classes the instances (--karyotype-model)
    karyotype_vote: str = "soft"  # how it votes over an instance's pixels (--karyotype-vote)
    _predictor: Predictor | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.meta.get("model", {}).get("name", "model"))

    @property
    def spatial_dims(self) -> int:
        return int(self.meta["task"].get("spatial_dims", 2))

    @property
    def demo(self) -> bool:
        return self.demo_reason is not None

    @property
    def labels(self) -> list[str]:
        return label_names(self.meta)

    @property
    def multilabel(self) -> bool:
        return self.meta["task"].get("mode", "multiclass") == "multilabel"

    @property
    def takes_stacks(self) -> bool:
        """A 2D model that segments stacks of slices (:func:`takes_stacks`)."""
        return takes_stacks(self.meta)

    def channels(self) -> list[dict]:
        """A multi-label model's structures: channel, name, value in the label files (bit 2**c,
        :mod:`medseg.server.channels`) and colour; [] for a multiclass model."""
        if not self.multilabel:
            return []
        return [
            {"channel": c, "name": n, "value": 1 << c, "colour": channel_hex(c)}
            for c, n in enumerate(self.meta["task"]["class_names"])
        ]

    @property
    def instances(self) -> bool:
        """A metaphase model (background / chromosome / overlap): its 2D results also hold chromosome instances."""
        return is_metaphase_model(self.meta)

    @property
    def modality(self) -> tuple[str | None, str]:
        """(modality, why): see :func:`needed_modality`."""
        return needed_modality(self.meta)

    def public(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "spatial_dims": self.spatial_dims,
            "mode": self.meta["task"].get("mode", "multiclass"),
            "folds": self.n_folds,
            "classes": [
                {"value": v, "name": n, "colour": class_hex(v, display_background(self.meta))}
                for v, n in enumerate(self.labels)
            ],
            "channels": self.channels(),
            "stacks": self.takes_stacks,
            "demo": self.demo,
            "demo_note": DEMO_NOTE if self.demo else None,
            "demo_reason": self.demo_reason,
            "modality": self.modality[0],
            "instances": self.instances,
            "pair_model": None if self.pair is None else {"name": self.pair.name, "version": self.pair.version},
            "karyotype_model": self.karyotype_model(),
        }

    def karyotype_model(self) -> dict | None:
        """{name, version, vote} of the karyotyping model that classes this model's instances, or None."""
        if self.karyotype is None:
            return None
        return {"name": self.karyotype.name, "version": self.karyotype.version, "vote": self.karyotype_vote}


class ModelRegistry:
    def __init__(
        self,
        paths: list[Path],
        device: str = "auto",
        *,
        trust_code: bool = False,
        pair_model: Path | None = None,
        karyotype_model: Path | None = None,
        karyotype_vote: str = "soft",
    ):
        """``trust_code``: the operator's --trust-code; without it a model.json naming code outside medseg's
        registry is refused here, at start-up, before anything is imported. ``pair_model``: --pair-model,
        checked here (a 2D model of four classes) and attached to every metaphase model; ``karyotype_model``:
        --karyotype-model, the same (a 2D model of the karyotype's 25 classes), voting by ``karyotype_vote``."""
        if karyotype_vote not in VOTES:
            raise ValueError(f"--karyotype-vote takes {' or '.join(VOTES)}, got {karyotype_vote!r}")
        self.device = device
        self.trust_code = trust_code
        self._lock = threading.Lock()
        self.entries: dict[str, ModelEntry] = {}
        for path in paths:
            entry = self._describe(Path(path))
            self.entries[entry.id] = entry
        self.pair: ModelEntry | None = None
        self.karyotype: ModelEntry | None = None
        self.karyotype_vote = karyotype_vote
        if pair_model is not None:
            self.pair = self._describe_pair(Path(pair_model))
        if karyotype_model is not None:
            self.karyotype = self._describe_karyotype(Path(karyotype_model))
        metaphase = [e for e in self.entries.values() if e.instances]
        for flag, given in (("--pair-model", pair_model), ("--karyotype-model", karyotype_model)):
            if given is not None and not metaphase:
                raise DataValidationError(
                    given,
                    f"{flag} is given, but no --model segments background / "
                    "chromosome / overlap (whole metaphases, "
                    "configs/mfish/metaphase_unet.yaml): nothing would use it",
                )
        for entry in metaphase:
            entry.pair, entry.karyotype, entry.karyotype_vote = self.pair, self.karyotype, karyotype_vote

    def _describe_pair(self, path: Path) -> ModelEntry:
        """The pair model, described like a model (its version: architecture + sha256 of the weights) and
        refused, naming its folder, unless it is a 2D model of four classes."""
        entry = self._describe(path)
        check_pair_model(entry.meta, path)
        return entry

    def _describe_karyotype(self, path: Path) -> ModelEntry:
        """The karyotyping model, described like a model and refused, naming its folder, unless it is a 2D
        multiclass model of the karyotype's classes (background, 1-22, X, Y)."""
        entry = self._describe(path)
        check_karyotype_model(entry.meta, path)
        return entry

    def _describe(self, path: Path) -> ModelEntry:
        dirs = model_dirs(path)  # raises DataValidationError naming the folder when nothing is there
        metas = [read_model_meta(d) for d in dirs]  # each model.json read once
        meta = metas[0]
        shas = []
        for d, m in zip(dirs, metas, strict=True):
            weights = check_model_meta(d, m, trust_code=self.trust_code)  # the file model.json names
            if not weights.is_file():
                raise DataValidationError(weights, "missing: the model has no weights")
            shas.append(_sha256_file(weights))
        sha = shas[0] if len(shas) == 1 else hashlib.sha256("".join(shas).encode()).hexdigest()
        described = list(zip(dirs, metas, strict=True)) + ([] if path in dirs else [(path, meta)])
        reasons = [r for d, m in described if (r := _synthesized(d, m))]
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-.") or "model"
        if re.fullmatch(r"fold_\d+", base):
            base = f"{path.resolve().parent.name}-{base}"
        model_id, k = base, 2
        while model_id in self.entries:
            model_id, k = f"{base}-{k}", k + 1
        name = str(meta.get("model", {}).get("name", "model"))
        return ModelEntry(model_id, path, meta, f"{name}-{sha[:12]}", sha, reasons[0] if reasons else None, len(dirs))

    def get(self, model_id: str) -> ModelEntry | None:
        return self.entries.get(model_id)

    def public(self) -> list[dict]:
        return [e.public() for e in self.entries.values()]

    @property
    def any_demo(self) -> bool:
        return any(e.demo for e in self.entries.values())

    def predictor(self, entry: ModelEntry) -> Predictor:
        """Loaded once, on first use (the worker thread), and kept."""
        with self._lock:
            if entry._predictor is None:
                entry._predictor = Predictor.from_path(  # tta as the model records it (evaluate.tta), as predict
                    entry.path, device=self.device, tta=None, trust_code=self.trust_code
                )
            return entry._predictor
