"""The one training loop of medseg.

2D and 3D, softmax and sigmoid tasks all run through :class:`Trainer`; variants (adversarial, noisy-label)
subclass it and override :meth:`Trainer.train_step` (and :meth:`Trainer.extra_modules` for more networks)
rather than copying the loop — the nnU-Net v2 pattern.

Per epoch: train (Adam; AMP, channels-last, torch.compile where they gain: see below), validate (loss and
per-class IoU/Dice), step ReduceLROnPlateau on the validation loss (factor 0.5, patience 3), keep the best
weights, write ``history.csv``/``history.json`` and the resumable state; stop early after ``patience`` (9)
epochs without a better validation loss.

Beyond the papers, for training on one's own data:

* **Budget in optimizer steps** (``train.iterations: N``, nnU-Net's way of saying how long to train): it
  overrides ``train.epochs``; the run takes ceil(N / steps per epoch) epochs and the last one stops after
  exactly N steps in all. Every history row records ``steps``, the optimizer steps done so far.
* **Epochs of steps** (``train.steps_per_epoch: 250``, nnU-Net's epoch): an epoch is that many batches drawn
  with replacement, however few or many training images there are, so a small set is not validated after
  every handful of steps. Unset, an epoch is one pass over the training set (the papers' epoch).
* **Cheap validation** (``train.validation``): each epoch validates a fixed, seeded subset of the validation
  images (``images``), which selects the best model; the selected model is validated on all of them once at
  the end (``final_validation`` in summary.json), and every ``full_every`` epochs if asked. Every row records
  ``training_time_s`` and ``validation_time_s`` (validating and saving), the summary the run's ``validation_share``.
* **Schedules follow the budget** (:mod:`medseg.training.schedules`): poly and cosine set the rate before each
  step from the progress — steps / budget, or elapsed / ``train.time_limit_minutes`` when further — so a
  time-limited run anneals fully by its limit; the limit ends a run cleanly wherever it falls (resumable:
  the elapsed time is saved with the state). Rows record ``progress`` and ``lr_end``. The budget's arithmetic:
  :class:`medseg.training.budget.TrainingBudget`.
* **Validation like inference**: with ``evaluate.sliding_window.roi_size`` (2D [H, W] or 3D [D, H, W]) the
  validation images are segmented window by window, as the predictor does, so a model trained on patches is
  validated on whole images. Images of different sizes (``data.size: null``) are validated one at a time at
  their own size.
* **No validation set** (no validation indices, e.g. ``splits.val_fraction: 0``): nothing is validated; the
  plateau schedule and early stopping follow the training loss, the model is saved after every epoch and the
  last one is the model kept (said once when training starts).

Several processes (``torchrun`` / ``medseg train --nproc N``; :mod:`medseg.training.distributed`):
the networks that train are wrapped in DistributedDataParallel (the model through its ``training_loss``
hook, so a recurrent model's passes and deep supervision train as in one process), each rank takes its
slice of every global batch (``train.batch_size``), validation is sharded and its raw counts gathered
(:meth:`SegmentationMetrics.merge`), the epoch's history row — and with it every decision: best model,
learning-rate step, early stop, time limit — is rank 0's, broadcast, and only rank 0 writes files, from the
unwrapped network (the same safetensors keys as one process). With one process none of this runs.

Speed options (:mod:`medseg.training.speed`; measurements in ``benchmarks/results/distributed_cpu.json``,
README "Beyond one process"), each kept on by default only where an end-to-end training measured a gain:

* ``train.amp``: mixed precision. CUDA: bf16 where the GPU has it, else fp16 with loss scaling. CPU: bf16
  autocast only where the processor has native bf16 arithmetic (:func:`cpu_bf16_native`: AVX512-BF16 or AMX
  on x86, the BF16 extension on Arm); elsewhere it is **off** — emulated bf16 made a 2D step 11× slower here.
* ``train.channels_last`` (2D models): ``auto`` = on CUDA, off on the CPU (:data:`CPU_CHANNELS_LAST_AUTO`);
  ``true`` on any device, ``false`` never.
* ``train.compile``: in the training steps the network runs ``torch.compile``d (``train.compile_backend``,
  default inductor, static shapes; called from its training-loss hook, through DDP when several processes
  train); validation, checkpoints and the saved model use the plain module, so ``model.safetensors`` keeps
  its keys.
  Inductor on the CPU needs a C++ compiler: without one the run warns once and trains uncompiled, and a
  compilation that fails at the first step does the same. Off by default: on the CPU the compilation (~75 s
  for the demo U-Net from an empty cache) outweighed the faster steps (1.16×) for a training of the demo's
  length. Inductor's CPU kernels keep the thread count they were compiled with (medseg's share of the cores
  may change later: fix ``MEDSEG_THREADS`` for long compiled runs beside other jobs).
* ``train.num_workers``: ``auto`` sizes the DataLoader workers from this process's share of the cores
  (:func:`medseg.threads.num_workers_for`: none on the CPU); each worker runs one intra-op thread
  (:func:`medseg.threads.init_worker`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset
from tqdm.auto import tqdm

from medseg.artifact import (
    model_kwargs,
    model_meta,
    resolve_device,
    save_model,
    sliding_window_settings,
)
from medseg.config import save_config
from medseg.data.datasets import SegmentationData, SegmentationDataset
from medseg.data.transforms import build_train_transform
from medseg.errors import ConfigError
from medseg.inference.sliding_window import sliding_window_logits
from medseg.losses import build_loss
from medseg.metrics import SegmentationMetrics
from medseg.models import build_model
from medseg.progress import Progress
from medseg.threads import init_worker, num_workers_for, refresh_threads
from medseg.training import distributed
from medseg.training.budget import TrainingBudget
from medseg.training.early_stopping import EarlyStopping
from medseg.training.parallel import ParallelSteps
from medseg.training.records import RunRecords
from medseg.training.sampling import class_balanced_sampler
from medseg.training.schedules import build_scheduler
from medseg.training.seeding import seed_everything
from medseg.training.speed import (
    CPU_CHANNELS_LAST_AUTO,
    compiler_missing,
    cpu_bf16_native,
    resolve_channels_last,
)
from medseg.training.weight_average import WeightAverage

__all__ = [
    "CPU_CHANNELS_LAST_AUTO",
    "Trainer",
    "compiler_missing",
    "cpu_bf16_native",
    "resolve_channels_last",
    "seed_everything",
]


class Trainer(TrainingBudget, RunRecords, ParallelSteps):
    """Train one fold. ``run_dir`` receives config, history, best model and the resumable state."""

    def __init__(
        self,
        cfg: dict,
        run_dir: Path,
        data: SegmentationData,
        train_idx,
        val_idx,
        *,
        fold: int = 0,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data = data
        self.fold = fold
        tr = cfg["train"]
        self.dist = distributed.info()  # rank 0 of 1 unless torchrun started this process as one of several
        self.progress = progress and self.dist.is_main  # bars and lines on rank 0 only
        self.device = distributed.rank_device(resolve_device(tr["device"]))
        self.mode = cfg["task"]["mode"]
        self.class_names = list(cfg["task"]["class_names"])
        # the same seed on every rank: identical initial weights (DDP broadcasts rank 0's besides)
        seed_everything(int(tr["seed"]) + fold, bool(tr["deterministic"]))

        self.model = self.build_model().to(self.device)
        if self.dist.active and bool(tr["distributed"]["sync_batchnorm"]):
            self.model = self.sync_batchnorm(self.model)
        self.channels_last = resolve_channels_last(tr["channels_last"], self.device, int(cfg["task"]["spatial_dims"]))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(cfg["loss"], self.mode).to(self.device)
        self.optimizers = self.build_optimizers()
        self.optimizer = self.optimizers["model"]
        # train.ema_decay: validation, selection and the saved model use the weights' moving average
        decay = tr.get("ema_decay")
        self.weight_average = None if decay is None else WeightAverage(self.model, float(decay)).to(self.device)
        self.per_rank_batch = distributed.per_rank_batch(int(tr["batch_size"]), self.dist.world_size)
        self._ddp: dict[str, nn.Module] | None = self.wrap_distributed() if self.dist.active else None
        # train.compile: the network's forward compiled, used inside train_epoch only (see compiled_forward)
        self._compile_pending = False  # set by compile_forward: the first compiled step may fall back
        self._compiled_call = self.compile_forward() if bool(tr["compile"]) else None
        self.num_workers = num_workers_for(tr["num_workers"], self.device.type)

        # Validation (and model selection) like inference: MONAI sliding windows when `evaluate.sliding_window`
        # names a roi — 2D [H, W] or 3D [D, H, W] —, so images larger than the training patches (or the device
        # memory) are validated whole.
        self.sliding_window = sliding_window_settings(cfg["evaluate"].get("sliding_window"))
        spatial_dims = int(cfg["task"].get("spatial_dims", 2))
        # 2D input normalisation (data.normalize), per whole image, exactly as the predictor applies it.
        normalize = str(cfg["data"].get("normalize") or "range") if spatial_dims == 2 else "range"
        self.train_set = SegmentationDataset(data, train_idx, build_train_transform(cfg), normalize=normalize)
        self.val_set = SegmentationDataset(data, val_idx, normalize=normalize)
        self.has_validation = len(self.val_set) > 0
        self._check_batchable(spatial_dims)
        self._plan_budget()
        self.scheduler = build_scheduler(self.optimizer, tr["scheduler"], self.epochs)
        # per-epoch validation on a fixed seeded subset (train.validation.images), the whole set at the end
        vcfg = tr["validation"]
        self.val_subset = None
        if vcfg["images"] is not None and int(vcfg["images"]) < len(self.val_set):
            rng = np.random.default_rng(int(vcfg["seed"]) + fold)
            self.val_subset = sorted(int(i) for i in rng.choice(len(self.val_set), int(vcfg["images"]), replace=False))
        es = tr["early_stopping"]
        self.early = EarlyStopping(patience=int(es["patience"]), min_delta=float(es["min_delta"]))
        self.amp_dtype = None
        if bool(tr["amp"]) and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif bool(tr["amp"]) and self.device.type == "cpu" and cpu_bf16_native():
            self.amp_dtype = torch.bfloat16  # emulated bf16 (no native support) is much slower: off there
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.global_step = 0
        self.elapsed_before = 0.0  # wall seconds of training before a resume (the time limit counts them)
        self.fit_start = time.perf_counter()
        self.stopped_by_time = False
        self.deadline: float | None = None  # train.time_limit_minutes as a perf_counter time, set by fit
        self.wall_s: float | None = None  # this call of fit's wall time, once it has trained
        self.final_val: dict | None = None  # the selected model on every validation image (train.validation.final)

    def _check_batchable(self, spatial_dims: int) -> None:
        """Training images of different sizes (``data.size: null``) only stack into batches as patches."""
        boxes = self.data.boxes_of(self.train_set.indices) if spatial_dims == 2 else None
        sizes = {tuple(b[2:]) for b in boxes} if boxes else set()
        if len(sizes) > 1 and not self.cfg["data"].get("patch_size") and int(self.cfg["train"]["batch_size"]) > 1:
            raise ConfigError(
                f"the training images have {len(sizes)} different sizes (data.size: null) and cannot be "
                f"stacked into batches of {self.cfg['train']['batch_size']}: set data.patch_size: [H, W] to "
                "train on random patches (or train.batch_size: 1, or a data.size)"
            )

    # -- pieces a variant may override -------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return build_model(
            self.cfg["model"]["name"], trust_code=True, **model_kwargs(self.cfg)
        )  # the user's own config

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        tr = self.cfg["train"]
        return {
            "model": torch.optim.Adam(
                self.model.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"])
            )
        }

    def extra_modules(self) -> dict[str, nn.Module]:
        """Further networks trained alongside (a discriminator, a quality-awareness module)."""
        return {}

    def state_modules(self) -> dict[str, nn.Module]:
        """What the resumable state keeps besides the network and its optimizers: the extra networks and the
        weights' moving average."""
        extra = dict(self.extra_modules())
        if self.weight_average is not None:
            extra["weight_average"] = self.weight_average
        return extra

    def evaluated_weights(self):
        """The network as validated and saved: its weights' moving average inside the block when
        ``train.ema_decay`` is set, else the weights as trained."""
        if self.weight_average is None:
            return nullcontext()
        return self.weight_average.applied(self.model)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        image = batch["image"].to(self.device, non_blocking=True)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, batch["label"].to(self.device, non_blocking=True)

    def train_step(self, batch: dict) -> dict[str, float]:
        image, label = self.to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            # The model's own training loss (every refinement pass of a recurrent CTV model, §2.2).
            loss, _ = self.model_loss(self.loss_fn, image, label)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": float(loss.detach())}

    def eval_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for validation: the whole input, or MONAI sliding windows (a roi in evaluate.sliding_window)."""
        if self.sliding_window is None:
            return self.model(image)
        return sliding_window_logits(self.model, image, self.sliding_window)

    def predict_labels(self, logits: torch.Tensor) -> torch.Tensor:
        if self.mode == "multiclass":
            return logits.argmax(1)
        return logits > 0

    # -- the loop -----------------------------------------------------------------------------------------
    def loader(self, dataset, shuffle: bool, epoch: int = 0) -> DataLoader:
        tr = self.cfg["train"]
        gen = torch.Generator().manual_seed(int(tr["seed"]) * 100_003 + self.fold * 1009 + epoch)
        batch = (
            int(tr["batch_size"]) if shuffle else max(int(tr["batch_size"]), int(self.cfg["evaluate"]["batch_size"]))
        )
        if not shuffle and self.data.boxes is not None:
            batch = 1  # images of different sizes: validated one by one, each at its own size
        workers = {
            "num_workers": self.num_workers,
            "worker_init_fn": init_worker if self.num_workers else None,
            "pin_memory": self.device.type == "cuda",
            "drop_last": False,
        }
        if shuffle and (self.dist.active or self.fixed_epoch or self.sample_weights is not None):
            # train.steps_per_epoch: that many global batches drawn with replacement, whatever the set's size;
            # train.sampling: class_balanced draws by class (medseg.training.sampling), with replacement too
            n = self.steps_per_epoch * batch if self.fixed_epoch else len(dataset)
            if self.sample_weights is not None:
                base = class_balanced_sampler(self.sample_weights, n, gen)
            else:
                base = (
                    RandomSampler(dataset, replacement=True, num_samples=n, generator=gen)
                    if self.fixed_epoch
                    else RandomSampler(dataset, generator=gen)
                )
            if not self.dist.active:
                return DataLoader(dataset, batch_size=batch, sampler=base, **workers)
            # this rank's slice of each of the one-process run's batches
            sampler = distributed.RankShard(base, self.dist.rank, self.dist.world_size, self.per_rank_batch)
            return DataLoader(dataset, batch_size=self.per_rank_batch, sampler=sampler, generator=gen, **workers)
        return DataLoader(dataset, batch_size=batch, shuffle=shuffle, generator=gen, **workers)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        for m in self.extra_modules().values():
            m.train()
        loader = self.loader(self.train_set, shuffle=True, epoch=epoch)
        total = min(len(loader), self.batches_in_epoch(epoch))
        sums: dict[str, float] = {}
        n = 0
        bar = Progress(
            loader, total=total, desc=f"fold {self.fold} epoch {epoch + 1}", leave=False, disable=not self.progress
        )
        timed = self.deadline is not None
        for i, batch in enumerate(bar):
            if i >= total or (distributed.any_rank(self.out_of_time()) if timed else False):
                break
            refresh_threads()  # this process's share of the cores, as other medseg jobs come and go
            self.follow_budget()
            with self.compiled_forward():
                out = self.train_step(batch)
            self.global_step += 1
            if self.weight_average is not None:
                self.weight_average.update(self.model)
            if not math.isfinite(out["loss"]):
                raise FloatingPointError(f"training loss became {out['loss']} at epoch {epoch + 1}, batch {i}")
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            bar.set_postfix(loss=f"{sums['loss'] / n:.4f}")
        self.epoch_steps = n
        return distributed.mean_over_ranks({f"train_{k}": v / max(n, 1) for k, v in sums.items()})

    @torch.inference_mode()
    def validate(self, full: bool = False) -> dict[str, float]:
        """Validation scores: on the per-epoch subset (``train.validation.images``), or on every validation
        image with ``full`` (and where there is no subset)."""
        self.model.eval()
        metrics = SegmentationMetrics.from_task(self.cfg["task"], hausdorff=False)  # scores all but task.background
        limit = self.cfg["train"]["val_max_batches"]
        val_set = self.val_set
        if self.val_subset is not None and not full:
            val_set = Subset(val_set, self.val_subset)
        if self.dist.active:  # this rank's share of the images the one-process run validates
            loader = self.loader(val_set, shuffle=False)
            n = min(len(val_set), int(limit) * loader.batch_size) if limit else len(val_set)
            val_set, limit = (
                Subset(val_set, distributed.shard(list(range(n)), self.dist.rank, self.dist.world_size)),
                None,
            )
        loss_sum, count = 0.0, 0
        for i, batch in enumerate(self.loader(val_set, shuffle=False)):
            if limit and i >= int(limit):
                break
            image, label = self.to_device(batch)
            with self.autocast():
                logits = self.eval_logits(image)
            loss_sum += float(self.loss_fn(logits, label)) * len(image)
            count += len(image)
            metrics.update(self.predict_labels(logits).cpu(), label.cpu())
        if self.dist.active:  # every rank's raw counts, joined in rank order = the images in one-process order
            parts = distributed.all_gather_objects((metrics, loss_sum, count))
            metrics = parts[0][0]
            for other, _, _ in parts[1:]:
                metrics.merge(other)
            loss_sum, count = sum(p[1] for p in parts), sum(p[2] for p in parts)
        agg = metrics.aggregate()
        row = {"val_loss": loss_sum / max(count, 1)}
        for name, vals in agg["per_class"].items():
            row[f"val_iou/{name}"] = vals["iou"]
            row[f"val_dice/{name}"] = vals["dice"]
            if self.mode == "multilabel":
                # pooled over the validation images (the GI paper's Keras metrics are batch-pooled; most of its
                # slices are empty, where the per-image mean counts two empty masks as a perfect score)
                row[f"val_dice_pooled/{name}"] = vals.get("dice_pooled")
                row[f"val_iou_pooled/{name}"] = vals.get("iou_pooled")
        return row

    def monitor_key(self) -> str:
        """The history column early stopping watches: ``train.early_stopping.monitor``, or the training loss
        in its place when there is no validation set to give a ``val_*`` value."""
        monitor = self.cfg["train"]["early_stopping"].get("monitor", "val_loss")
        return "train_loss" if not self.has_validation and monitor.startswith("val_") else monitor

    def fit(self, *, restart: bool = False) -> dict:
        main = self.dist.is_main
        epochs = self.epochs
        if not restart and self.resume():
            if self.early.should_stop or self.start_epoch >= epochs or self.stopped_by_time:
                if main:  # nothing trains: the fold's files stay as they are
                    tqdm.write(f"fold {self.fold}: already finished ({self.run_dir}); pass --restart to train again")
                return self.summary(write=False)
            if main:
                tqdm.write(f"fold {self.fold}: resuming after epoch {self.start_epoch} from {self.run_dir}")
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        if self.iterations is not None and self.progress:
            tqdm.write(
                f"fold {self.fold}: train.iterations {self.iterations} = {epochs} epoch(s) of up to "
                f"{self.steps_per_epoch} step(s), the last one cut at the budget"
            )
        monitor = self.monitor_key()
        if not self.has_validation and main:
            tqdm.write(
                f"fold {self.fold}: no validation set: nothing is validated, the learning-rate schedule and "
                f"early stopping follow {monitor}, and the model is saved after every epoch — the last one "
                "is the model kept"
            )
        primary = self.cfg["task"]["primary_metric"]
        limit = self.cfg["train"].get("time_limit_minutes")
        self.fit_start = time.perf_counter()
        self.deadline = None if limit is None else self.fit_start + 60.0 * float(limit) - self.elapsed_before
        if self.val_subset is not None and main:
            tqdm.write(
                f"fold {self.fold}: validating {len(self.val_subset)} of {len(self.val_set)} validation images "
                "each epoch (train.validation.images)"
                + (", all of them once training ends" if self.cfg["train"]["validation"]["final"] else "")
            )
        full_every = int(self.cfg["train"]["validation"]["full_every"])
        for epoch in range(self.start_epoch, epochs):
            if distributed.any_rank(self.out_of_time()):  # the limit fell on validation or saving: end here
                self.stop_for_time(epoch)
                break
            # each rank its own random stream (augmentation); rank 0's is the one-process run's
            seed_everything(
                int(self.cfg["train"]["seed"]) * 1000 + self.fold * 100 + epoch + 1_000_003 * self.dist.rank
            )
            t0 = time.perf_counter()
            self.follow_budget()
            row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
            self.epoch_steps = 0
            row.update(self.train_epoch(epoch))
            if self.epoch_steps == 0:  # out of time before this epoch's first step: nothing new to record
                self.stop_for_time(epoch)
                break
            t_val = time.perf_counter()
            if self.has_validation:
                with self.evaluated_weights():
                    row.update(self.validate())
                    if self.val_subset is not None and full_every and (epoch + 1) % full_every == 0:
                        row.update({f"full_{k}": v for k, v in self.validate(full=True).items()})
            row["steps"] = self.global_step
            row["progress"] = round(self.budget_progress(), 4)
            row["lr_end"] = self.optimizer.param_groups[0]["lr"]
            # several processes: rank 0's row (and time limit) decide for all, so the ranks never diverge
            row, timed_out = distributed.broadcast_object((row, self.out_of_time()))
            improved = self.early.step(row[monitor], epoch + 1)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(row["val_loss" if self.has_validation else "train_loss"])
            self.history.append(row)
            if main:  # rank 0 alone writes, from the unwrapped network
                with self.evaluated_weights():
                    self._save_epoch_model(row, epoch, improved)
            row["training_time_s"] = round(t_val - t0, 3)
            row["validation_time_s"] = round(time.perf_counter() - t_val, 3)  # validating and saving the model
            row["time_s"] = round(time.perf_counter() - t0, 3)
            stop = self.early.should_stop or epoch + 1 == epochs or timed_out
            self.stopped_by_time = bool(timed_out)
            self.save_state(epoch, finished=stop)
            self.write_history()
            if self.progress:
                self._print_epoch(row, epoch, epochs, primary, improved)
            if self.early.should_stop:
                if main:
                    tqdm.write(f"fold {self.fold}: early stop after epoch {epoch + 1} (best {self.early.best_epoch})")
                break
            if timed_out:
                break
        if self.stopped_by_time and main:
            tqdm.write(f"fold {self.fold}: train.time_limit_minutes ({limit}) reached at step {self.global_step}")
        self.wall_s = self.elapsed()
        if self.history:
            self.final_validation()
        return self.summary()

    def _save_epoch_model(self, row: dict, epoch: int, improved: bool) -> None:
        """The model after epoch ``epoch``, saved when it is the best so far, or after every epoch without a
        validation set (nothing to select by: the latest weights are the model)."""
        if self.has_validation and improved:
            save_model(
                self.run_dir,
                self.model,
                model_meta(self.cfg, self.data, fold=self.fold, best_epoch=epoch + 1, best_val_loss=row["val_loss"]),
            )
        elif not self.has_validation:
            save_model(
                self.run_dir,
                self.model,
                model_meta(
                    self.cfg,
                    self.data,
                    fold=self.fold,
                    best_epoch=epoch + 1,
                    selected="last epoch (no validation set)",
                ),
            )

    def _print_epoch(self, row: dict, epoch: int, epochs: int, primary: str, improved: bool) -> None:
        scores = (
            f"val {row['val_loss']:.4f}  IoU[{primary}] {100 * row.get(f'val_iou/{primary}', float('nan')):.2f}"
            if self.has_validation
            else "no validation"
        )
        tqdm.write(
            f"fold {self.fold} epoch {epoch + 1}/{epochs}  step {row['steps']}  train {row['train_loss']:.4f}  "
            f"{scores}  lr {row['lr']:.1e}  {row['time_s']:.1f}s (validation {row['validation_time_s']:.1f}s)"
            f"{'  *best' if improved and self.has_validation else ''}"
        )

    def final_validation(self) -> None:
        """``train.validation.final``: the selected model (``model.safetensors``) validated on every validation
        image once, when epochs validated a subset; into summary.json as ``final_validation``."""
        if self.val_subset is None or not self.has_validation or not self.cfg["train"]["validation"]["final"]:
            return
        t0 = time.perf_counter()
        weights = self.run_dir / "model.safetensors"
        if self.dist.is_main and weights.is_file():
            self.model.load_state_dict(load_file(str(weights), device=str(self.device)))
        if self.dist.active:  # every rank validates rank 0's selected weights
            for p in self.model.state_dict().values():
                torch.distributed.broadcast(p, src=0)
        row = self.validate(full=True)
        self.final_val = {
            "epoch": self.selected_epoch(),
            "images": len(self.val_set),
            **row,
            "time_s": round(time.perf_counter() - t0, 3),
        }
        self.wall_s += self.final_val["time_s"]
        if self.progress:
            primary = self.cfg["task"]["primary_metric"]
            tqdm.write(
                f"fold {self.fold}: the selected model (epoch {self.final_val['epoch']}) on all "
                f"{len(self.val_set)} validation images: val {row['val_loss']:.4f}  IoU[{primary}] "
                f"{100 * row.get(f'val_iou/{primary}', float('nan')):.2f}  ({self.final_val['time_s']:.1f}s)"
            )
