"""The segmentation worker: one job at a time, never inside a request, in a process of its own
(:mod:`medseg.server.worker_process`) or, with ``job_process=False``, a thread of the web process.

Why one job at a time: a U-Net on a CPU already uses every core it is given, so two jobs at
once would only each run at half speed; ``torch_threads`` (default ``"auto"``: the job's share of the
cores, :mod:`medseg.threads`, a training beside the server counted) leaves a core to the web server so
slice requests stay fast while a job runs. The queue is the ``results`` table itself, so it survives restarts:

* a job is claimed atomically (``queued`` → ``running``, ``attempts`` + 1);
* its files are written into a folder under ``server/tmp`` and renamed into the study's ``results/<id>``
  only when all are complete, then the row is marked ``done`` — a killed job never leaves half a result;
* at start-up, a job left ``running`` by a killed server is queued again if it had been started once, and
  marked ``failed`` (with a message saying so) if it was already a retry, so a job that kills the server
  cannot do so forever; a failed study can be re-run with ``POST /api/studies/{id}/rerun``.

Tests call :meth:`Worker.run_pending` instead of starting the thread, so every job runs deterministically.

2D models segment an image, or a stack of slices (a volume or a zip of slice images) slice by slice
(:func:`_slice_labels`), fed as in training from what their model.json records: ``preprocessing.resize``
scales each slice to ``preprocessing.size`` and the probabilities back to the slice's own size (bilinear);
otherwise a slice smaller than the size is padded and cropped back; ``context_slices`` k > 0 gives each
slice its 2k + 1 neighbours ``context_stride`` apart as input channels, clamped at the stack's ends (2.5D).
A multi-label model's result keeps every structure: its probabilities > 0.5 are stored bit-packed
(:mod:`medseg.server.channels`), never reduced to one label per pixel. A metaphase model's result on a 2D image
also holds the chromosome instances (:mod:`medseg.server.metaphase`), split by the server's pair model and
classed by its karyotyping model when it has them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

import medseg
from medseg.data.folder import normalize_intensity
from medseg.data.pommier import pad_to
from medseg.data.uwgi_dataset import context_indices, from_grid, resize_stack
from medseg.errors import DataValidationError
from medseg.formats.volume import Volume
from medseg.inference.volume import class_names_of_labels, display_background, label_map, predict_volume
from medseg.server import channels, exports, metaphase, slices, stacks, volumes
from medseg.server.db import Database, now_iso
from medseg.server.registry import DEMO_NOTE, ModelRegistry
from medseg.server.settings import ServerSettings
from medseg.server.storage import (
    StudyPaths,
    check_modality,
    modality_warnings,
    model_refusal,
    new_id,
    read_input,
    read_reference,
    study_paths,
)
from medseg.server.upload import UploadRefused
from medseg.threads import compute_share

log = logging.getLogger("medseg.server")

RESTARTED_NOTE = "resumed after a server restart"
GAVE_UP = (
    "the server stopped twice while this job ran, so it was not started a third time; "
    "re-run the study (perhaps with another model)"
)


class _Progress:
    """Writes progress to the database, at most every 2 %, so polling pages see it move."""

    def __init__(self, db: Database, result_id: str):
        self.db, self.result_id, self.last = db, result_id, -1.0

    def __call__(self, fraction: float) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if fraction - self.last >= 0.02 or fraction >= 1.0:
            self.db.set_progress(self.result_id, fraction)
            self.last = fraction


SLICE_BATCH = 16  # slices predicted together (a GI slice is 266², 3 channels: a few MB a batch)


def _proba(predictor, images: np.ndarray) -> np.ndarray:
    """Probabilities (n, C, H, W) at the images' own size for images (n, H, W) — or (n, C_in, H, W), 2.5D —
    in [0, 1], fed on the model's grid: scaled to ``preprocessing.size`` and back when ``preprocessing.resize``
    (images with antialiasing, as in training, probabilities bilinear), else padded like in training when
    smaller than the size and cropped back."""
    pre = predictor.meta.get("preprocessing") or {}
    size = pre.get("size")
    h, w = images.shape[-2:]
    if size and pre.get("resize") and (h, w) != tuple(size):
        # scaled there and back exactly as training and the submission writer do (medseg.data.uwgi_dataset)
        proba = predictor.predict_proba(resize_stack(images, size, labels=False))
        return from_grid(proba, "resize", (h, w))
    if size and (h < size[0] or w < size[1]):
        th, tw = max(h, size[0]), max(w, size[1])
        top, left = (th - h) // 2, (tw - w) // 2
        padded = pad_to(images, (th, tw), pre.get("image_pad_value", 0))
        return predictor.predict_proba(padded)[..., top : top + h, left : left + w]
    return predictor.predict_proba(images)


def _label_values(predictor, image: np.ndarray) -> np.ndarray:
    """One 2D image (H, W) in [0, 1] as one uint8 label map (H, W), chosen from the class probabilities by
    :func:`~medseg.inference.volume.label_map`, as for volumes: the most probable class (argmax) for a
    multiclass model; for a multilabel model value c + 1 for the most probable class c among those above 0.5
    (where several are present, the one with the highest probability, not the first), 0 where none is.
    The image is padded like in training when it is smaller than the model's input, and cropped back.

    This single-label view is not what the worker stores for a multilabel model: :func:`_slice_labels` keeps
    every structure (bit-packed)."""
    return label_map(predictor, _proba(predictor, image[None])[0])


def _slice_labels(predictor, stack: np.ndarray, progress=None) -> np.ndarray:
    """A stack of 2D slices (D, H, W) in [0, 1] → labels (D, H, W) uint8, slice by slice with the model's 2D
    feeding (:func:`_proba`, 2.5D context from ``preprocessing.context_slices`` / ``context_stride``): class
    values (argmax) for a multiclass model; for a multilabel model every structure above 0.5 as its bit
    (:func:`medseg.server.channels.pack_probabilities`), so overlapping structures stay overlapping.
    ``progress`` (optional) gets the fraction done."""
    pre = predictor.meta.get("preprocessing") or {}
    k, stride = int(pre.get("context_slices") or 0), int(pre.get("context_stride") or 1)
    multilabel = predictor.mode == "multilabel"
    d = len(stack)
    # 2.5D: slices -k·stride … +k·stride of the stack, clamped at its ends, as training feeds them
    context = context_indices(["stack"] * d, list(range(d)), k, stride)
    out = np.zeros(stack.shape, np.uint8)
    for start in range(0, d, SLICE_BATCH):
        index = np.arange(start, min(d, start + SLICE_BATCH))
        proba = _proba(predictor, stack[index] if context is None else stack[context[index]])
        out[index] = channels.pack_probabilities(proba, axis=1) if multilabel else proba.argmax(1).astype(np.uint8)
        if progress is not None:
            progress(float(index[-1] + 1) / d)
    return out


def _predict_labels(predictor, entry, image, volume: Volume | None, multilabel: bool, progress) -> tuple:
    """(labels, grey): the label map of a 2D image, a stack of slices (slice by slice) or a volume (bit-packed
    channels for a multilabel model), and the grey values it was drawn on; ``progress`` goes from 0.1 to 0.75."""

    def segment(f):
        return progress(0.1 + 0.65 * f)

    if volume is None:
        labels = _slice_labels(predictor, normalize_intensity(image)[None], segment)
        grey = image[None]
    elif entry.spatial_dims == 2:  # a stack of slices, slice by slice
        labels, grey = _slice_labels(predictor, normalize_intensity(volume.array), segment), volume.array
    else:
        label_volume, proba = predict_volume(predictor, volume, progress=segment)
        labels = channels.pack_probabilities(proba) if multilabel else label_volume.array
        del proba
        grey = volume.array
    return labels, grey


def _provenance(job: dict, study: dict, entry, instances: dict | None, warnings: list[str]) -> dict:
    """What a result's summary records besides its measurements: the study, the result, the model(s), the
    generator and the warnings."""
    return {
        "study": {
            "id": study["id"],
            "name": study["name"],
            "input_format": study["input_format"],
            "input_files": study["input_files"],
            "input_sha256": study["input_sha256"],
            "reference_file": study["reference_file"],
        },
        "result": {"id": job["id"], "created_at": job["created_at"], "finished_at": now_iso()},
        "model": {
            "id": entry.id,
            "name": entry.name,
            "version": entry.version,
            "demo": entry.demo,
            "note": DEMO_NOTE if entry.demo else None,
            **(
                {"pair_model": instances["pair_model"], "karyotype_model": instances["karyotype_model"]}
                if instances
                else {}
            ),
        },
        "input_sha256": study["input_sha256"],
        "model_version": entry.version,
        "generator": f"medseg {medseg.__version__}",
        "warnings": warnings,
    }


class Worker:
    def __init__(self, db: Database, settings: ServerSettings, registry: ModelRegistry):
        self.db, self.settings, self.registry = db, settings, registry
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------- lifecycle

    def recover(self) -> dict:
        """Jobs a killed server left ``running``: resumed once, failed after that."""
        out = {"resumed": 0, "failed": 0}
        for row in self.db.running():
            if row["attempts"] <= 1:
                self.db.requeue(row["id"], RESTARTED_NOTE)
                out["resumed"] += 1
            else:
                self.db.fail(row["id"], GAVE_UP)
                out["failed"] += 1
        return out

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.loop, name="medseg-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job (a job still running then is resumed at the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        self._wake.set()

    def use_events(self, wake, stop) -> None:
        """Wake and stop events shared with the web process (:mod:`medseg.server.worker_process`) in place of
        this process's own."""
        self._wake, self._stop = wake, stop

    def loop(self) -> None:
        """Run jobs until stopped: the thread's body, or the worker process's."""
        if isinstance(self.settings.torch_threads, int) and self.settings.torch_threads:
            import torch

            torch.set_num_threads(int(self.settings.torch_threads))
        while not self._stop.is_set():
            try:
                ran = self.run_next()
            except Exception:  # the database itself failed: keep the thread alive and retry later
                log.exception("worker: could not take a job")
                ran = False
            if not ran:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()

    def run_pending(self, limit: int | None = None) -> int:
        """Run queued jobs here, in this thread, until none is left (or ``limit``); returns how many ran."""
        n = 0
        while (limit is None or n < limit) and self.run_next():
            n += 1
        return n

    def run_next(self) -> bool:
        job = self.db.claim_next()
        if job is None:
            return False
        self.run_job(job)
        return True

    # ------------------------------------------------------------------------------------- one job

    def run_job(self, job: dict) -> None:
        study = self.db.study_any_owner(job["study_id"])
        paths = study_paths(self.settings, job["study_id"])
        work = self.settings.tmp_dir / f"job-{job['id']}-{new_id()}"
        t0 = time.perf_counter()
        try:
            if study is None:
                return  # deleted while queued (its rows went with it)
            work.mkdir(parents=True)
            with self._thread_share():
                summary, n_slices = self._segment(job, study, paths, work)
            summary["seconds"] = round(time.perf_counter() - t0, 3)
            exports.write_summary(summary, work / "result")
            if not self._publish(job, paths, work):
                return
            self.db.finish(job["id"], n_slices, summary)
            log.info("job %s done in %.1f s", job["id"], time.perf_counter() - t0)
        except Exception as exc:
            log.warning("job %s failed", job["id"], exc_info=not isinstance(exc, DataValidationError))
            self.db.fail(job["id"], self._message(exc, paths))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _thread_share(self):
        """``torch_threads: "auto"``: this job's share of the cores (:func:`medseg.threads.compute_share`, one
        core left to the web requests), counted as a medseg compute process only while it runs."""
        if self.settings.torch_threads != "auto":
            return contextlib.nullcontext()
        return compute_share(reserve=1)

    def _message(self, exc: Exception, paths: StudyPaths) -> str:
        known = isinstance(exc, DataValidationError | UploadRefused)  # their message is for the user as it is
        text = str(exc) if known else f"{type(exc).__name__}: {exc}"
        for folder in (paths.input, paths.root, self.settings.tmp_dir, self.settings.root):
            text = text.replace(f"{folder}/", "").replace(str(folder), "")
        return text

    def _segment(self, job: dict, study: dict, paths: StudyPaths, work: Path) -> tuple[dict, int]:
        entry = self.registry.get(job["model_id"])
        if entry is None:
            raise RuntimeError(
                f"model {job['model_id']!r} ({job['model_version']}) is not offered by this server "
                "any more (it was started without that --model); re-run with another model"
            )
        progress = _Progress(self.db, job["id"])
        progress(0.02)
        predictor = self.registry.predictor(entry)
        image = read_input(paths.input, study["input_format"], study["input_files"], self.settings)
        progress(0.1)
        names = class_names_of_labels(predictor)
        multilabel = predictor.mode == "multilabel"
        structures = names[1:] if multilabel else None  # the channels of a multilabel model (bit c = channel c)
        if multilabel:
            channels.check_channels(len(structures), f"model {entry.id!r}")
        scored = exports.scored_values(predictor.meta["task"], names)  # every class but task.background
        volume = image if isinstance(image, Volume) else None
        # checked at upload and re-run too; here for a model that was swapped under its id by a restart
        refusal = model_refusal(entry, study["kind"], study["input_format"])
        if refusal:
            raise RuntimeError(f"{refusal}; re-run with another model")
        check_modality(entry, volume.modality if volume is not None else None, study["name"])
        warnings = modality_warnings(entry, image) + self._spacing_warnings(study)
        labels, grey = _predict_labels(predictor, entry, image, volume, multilabel, progress)
        progress(0.75)
        if not multilabel and labels.size and int(labels.max()) >= len(names):
            raise RuntimeError(f"the model wrote label {int(labels.max())} but names only {len(names)} values")

        out = work / "result"
        out.mkdir()
        exports.write_labels(
            labels, out, kind=study["kind"], input_format=study["input_format"], volume=volume, structures=structures
        )
        if study["input_format"] == "dicom":
            sources = exports.dicom_sources(
                paths.input, study["input_files"], work / "dicom", self.settings.max_unzipped_bytes
            )
            exports.write_dicom_seg(
                labels,
                volume,
                sources,
                names,
                entry.name,
                entry.version,
                out / exports.DOWNLOADS["dicom-seg"],
                values=scored,
                multilabel=multilabel,
            )
        progress(0.8)
        background = display_background(predictor.meta)  # drawn transparent, coloured like the figures
        if multilabel:  # one layer per structure besides the striped "label" layer
            n_slices = slices.write_multilabel_slices(labels, out / "slices", len(structures))
        else:
            n_slices = slices.write_label_slices(labels, out / "slices", background)
        reference = read_reference(paths) if study["reference_file"] else None
        if not paths.image_slices.is_dir():
            slices.write_image_slices(grey, study["window"], work / "image-slices")
        if reference is not None and not paths.reference_slices.is_dir():
            if multilabel:
                slices.write_multilabel_slices(reference, work / "reference-slices", len(structures), layers=False)
            else:
                slices.write_label_slices(reference, work / "reference-slices", background)
        # the whole arrays too, so the page draws every slice itself (medseg.server.volumes)
        volumes.write_volumes(
            out / "volume",
            grey,
            study["window"],
            labels,
            reference,
            background=background,
            n_channels=len(structures) if multilabel else 0,
        )
        instances = None
        if entry.instances and study["kind"] == "2d":  # whole metaphases → chromosome instances
            pair = None if entry.pair is None else self.registry.predictor(entry.pair)  # loaded on first use
            karyo = None if entry.karyotype is None else self.registry.predictor(entry.karyotype)  # likewise
            instances, more = metaphase.write_result_instances(
                entry, pair, image, labels[0], out, work, study_name=study["name"], karyotype_predictor=karyo
            )
            warnings += more
        progress(0.95)

        summary = exports.summarize(
            labels, names, study["spacing"], study["kind"], reference, values=scored, multilabel=multilabel
        )
        summary["background"] = background  # the viewer's legend colours (result_json)
        summary.update(_provenance(job, study, entry, instances, warnings))
        if instances is not None:
            summary["instances"] = instances
        return summary, n_slices

    @staticmethod
    def _spacing_warnings(study: dict) -> list[str]:
        """What a stack of slice images does not record (its study's spacing is [None, y, x] or None)."""
        if study["input_format"] != stacks.FORMAT:
            return []
        if study["spacing"] is None:
            return [
                (
                    "the slice images' names do not give their pixel spacing or slice thickness: sizes are in "
                    "pixels, and the NIfTI / Slicer exports place the pixels and slices 1 mm apart"
                )
            ]
        return [
            (
                "the slice thickness is not recorded in the slice images' names: no volume in ml is given (areas "
                "are summed over the slices), and the NIfTI / Slicer exports place the slices 1 mm apart"
            )
        ]

    def _publish(self, job: dict, paths: StudyPaths, work: Path) -> bool:
        """Rename the finished files into the study; False (nothing kept) if the study or result is gone."""
        if self.db.result_any_owner(job["id"]) is None or not paths.root.is_dir():
            return False
        for made, target in (
            (work / "image-slices", paths.image_slices),
            (work / "reference-slices", paths.reference_slices),
        ):
            if made.is_dir() and not target.exists():
                target.parent.mkdir(exist_ok=True)
                os.replace(made, target)
        target = paths.result(job["id"])
        target.parent.mkdir(exist_ok=True)
        if target.exists():  # a resumed job whose first run got this far
            shutil.rmtree(target)
        os.replace(work / "result", target)
        return True
