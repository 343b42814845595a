"""Run trained models on images: fold ensembles and optional test-time augmentation (TTA).

A "model" is a fold directory (``model.json`` + ``model.safetensors``) or a run directory holding
``fold_*``; with several folds the softmax/sigmoid probabilities are averaged (nnU-Net's ensembling).
TTA averages the probabilities over flips and 90° rotations (Saleh et al.'s U-Net + TTA).

The model is fed as in training, from what its ``model.json`` records: 2D images get the input
normalisation of ``preprocessing.normalize`` (``data.normalize``; :func:`medseg.data.transforms.normalize_input`,
per whole image), and 2D and 3D inputs alike go through the sliding window of ``evaluate.sliding_window``
when it names a roi (the one validation used during training), else whole. Every caller — ``medseg
predict``, ``medseg evaluate``, the web server — goes through :meth:`Predictor.predict_proba`, so none of them
can feed a model differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medseg.artifact import (
    MODEL_META,
    load_model,
    resolve_device,
    sliding_window_settings,
)
from medseg.artifact.meta import tta_setting
from medseg.data.datasets import crop_box
from medseg.data.transforms import normalize_input
from medseg.errors import DataValidationError
from medseg.inference.sliding_window import sliding_window_logits

# 2D images larger than this (either side) are segmented in tiles of this size (see Predictor._logits).
TILE_2D = (1024, 1024)


def model_dirs(path: str | Path, folds: Sequence[int] | None = None) -> list[Path]:
    path = Path(path)
    if (path / MODEL_META).is_file():
        return [path]
    found = sorted(p for p in path.glob("fold_*") if (p / MODEL_META).is_file())
    if folds is not None:
        found = [p for p in found if int(p.name.split("_")[1]) in set(folds)]
    if not found:
        raise DataValidationError(path, "no trained model here (expected model.json, or fold_*/model.json)")
    return found


def _tta_ops(spatial_dims: int, rotations: bool = True):
    """Pairs (forward, inverse) acting on the spatial axes of (B, C, *S) tensors: the identity, a flip along each
    axis and, in 2D with ``rotations``, the three 90° rotations."""
    ops = [(lambda x: x, lambda x: x)]
    axes = list(range(2, 2 + spatial_dims))
    for a in axes:
        ops.append((lambda x, a=a: x.flip(a), lambda x, a=a: x.flip(a)))
    if spatial_dims == 2 and rotations:
        for k in (1, 2, 3):
            ops.append((lambda x, k=k: torch.rot90(x, k, (2, 3)), lambda x, k=k: torch.rot90(x, -k, (2, 3))))
    return ops


def _probabilities_(logits: torch.Tensor, mode: str) -> torch.Tensor:
    """Softmax over classes (multiclass) or sigmoid (multilabel) of (N, C, *S) logits, in place: on a large
    image every full-size copy is C × H × W floats (2 GiB for 4 classes at the voxel budget)."""
    if mode == "multilabel":
        return logits.sigmoid_()
    logits.sub_(logits.amax(1, keepdim=True)).exp_()
    return logits.div_(logits.sum(1, keepdim=True))


class Predictor:
    def __init__(
        self,
        models: Sequence[nn.Module],
        meta: dict,
        *,
        device: str | torch.device = "auto",
        tta: bool | str | None = False,
        batch_size: int = 32,
        sliding_window: dict | None = None,
    ):
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        self.models = [m.to(self.device).eval() for m in models]
        self.meta = meta
        self.mode = meta["task"]["mode"]
        self.class_names = list(meta["task"]["class_names"])
        self.spatial_dims = int(meta["task"].get("spatial_dims", 2))
        # tta None: as recorded in model.json (evaluate.tta of the training config; off for older models); True:
        # flips and 90° rotations, "flips": flips only (True asks for flips only too where the model records it)
        self.tta: bool | str = tta_setting((meta.get("evaluate") or {}).get("tta", False), tta)
        if self.tta not in (True, False, "flips"):
            raise ValueError(f"tta is true, false or 'flips', got {tta!r}")
        self.batch_size = batch_size
        # Sliding-window inference (2D and 3D) when a roi size is given here or recorded in model.json (evaluate
        # or preprocessing section); None: whole images / volumes.
        pre = meta.get("preprocessing") or {}
        recorded = (meta.get("evaluate") or {}).get("sliding_window") or pre.get("sliding_window")
        self.sliding_window = sliding_window_settings(sliding_window if sliding_window is not None else recorded)
        # 2D input normalisation of training (model.json preprocessing.normalize; older models record none: range).
        # 3D volumes are normalised by their own preprocessing (medseg.inference.volume).
        self.normalize = str(pre.get("normalize") or "range") if self.spatial_dims == 2 else "range"

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        folds: Sequence[int] | None = None,
        device="auto",
        tta: bool | None = False,
        batch_size: int = 32,
        sliding_window: dict | None = None,
        trust_code: bool = False,
    ) -> Predictor:
        """Load a fold or run folder. ``trust_code``: allow a model.json naming code outside medseg's registry
        (importing it runs it); without it such a folder is refused with a ConfigError-like message."""
        loaded = [load_model(d, trust_code=trust_code) for d in model_dirs(path, folds)]
        return cls(
            [m for m, _ in loaded],
            loaded[0][1],
            device=device,
            tta=tta,
            batch_size=batch_size,
            sliding_window=sliding_window,
        )

    def _logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits of one model; with a roi (2D or 3D): MONAI sliding windows run on the model's device and are
        stitched on the CPU (blended by the recorded mode, Gaussian by default), so an image or volume larger
        than the device memory fits. Without a roi, a 2D image
        larger than :data:`TILE_2D` is segmented the same way in tiles of that size: a fully convolutional
        net on a whole 10,000² image would need tens of GB of activations, a tile needs a fixed amount."""
        settings = self.sliding_window
        if (
            settings is None
            and self.spatial_dims == 2
            and any(s > t for s, t in zip(x.shape[2:], TILE_2D, strict=False))
        ):
            settings = {"roi_size": list(TILE_2D), "overlap": 0.25, "sw_batch_size": 1, "mode": "gaussian"}
        if settings is None:
            return model(x.to(self.device))
        return sliding_window_logits(model, x.cpu(), settings, sw_device=self.device, device="cpu")

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A batch (B, *S) as the model was fed in training: normalised image by image (``self.normalize``)."""
        if self.normalize == "range":
            return images
        return torch.from_numpy(np.stack([normalize_input(im, self.normalize) for im in images.numpy()]))

    @torch.inference_mode()
    def predict_proba(
        self, images: np.ndarray | torch.Tensor, boxes: Sequence[tuple[int, int, int, int]] | None = None
    ) -> np.ndarray:
        """images (N, *S) — or (N, C_in, *S) for a model of several input channels (2.5D slices) — float in
        [0, 1] → probabilities (N, C, *S) float32.

        ``boxes`` (one (top, left, height, width) per image, :meth:`~medseg.data.datasets.SegmentationData.boxes_of`):
        images of different sizes held on one canvas; each is cropped to its box and predicted at its own size
        (normalised over its own pixels, windows over its own extent), and its probabilities are put back in
        the box of a canvas-sized output whose outside is 0 (score it with
        :func:`~medseg.data.datasets.update_metrics`, which crops it away again)."""
        if boxes is not None:
            return self._predict_boxes(images, boxes)
        x_all = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x_all.ndim not in (self.spatial_dims + 1, self.spatial_dims + 2):
            raise ValueError(
                f"expected (N, *spatial) images (or (N, C, *spatial) with C input channels, e.g. 2.5D "
                f"slices) with {self.spatial_dims} spatial axes, got {tuple(x_all.shape)}"
            )
        has_channels = x_all.ndim == self.spatial_dims + 2
        out = []
        ops = _tta_ops(self.spatial_dims, rotations=self.tta is True) if self.tta else _tta_ops(self.spatial_dims)[:1]
        for start in range(0, len(x_all), self.batch_size):
            x = self._inputs(x_all[start : start + self.batch_size])
            x = x if has_channels else x[:, None]
            acc = None
            for model in self.models:
                for fwd, inv in ops:
                    p = _probabilities_(inv(self._logits(model, fwd(x))).float(), self.mode)
                    acc = p if acc is None else acc.add_(p)
            out.append(acc.div_(len(self.models) * len(ops)).cpu().numpy())
        return np.concatenate(out, axis=0)

    def _predict_boxes(self, images, boxes) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if len(boxes) != len(images):
            raise ValueError(
                f"{len(boxes)} boxes for {len(images)} images; give one (top, left, height, width) per image"
            )
        out: np.ndarray | None = None
        spatial = images.shape[-self.spatial_dims :]  # (N, *S) or (N, C_in, *S)
        for k, box in enumerate(boxes):
            proba = self.predict_proba(crop_box(images[k], box)[None])[0]
            if out is None:
                out = np.zeros((len(images), proba.shape[0], *spatial), dtype=np.float32)
            crop_box(out[k], box)[...] = proba
        return out if out is not None else np.zeros((0, len(self.class_names), *spatial), np.float32)

    def labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        if self.mode == "multiclass":
            return proba.argmax(1).astype(np.uint8)
        return proba > 0.5

    def predict(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, *S) → label maps (N, *S) uint8 (multiclass) or masks (N, C, *S) bool (multilabel)."""
        return self.labels_from_proba(self.predict_proba(images))
