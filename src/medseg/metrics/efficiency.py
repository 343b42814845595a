"""Model size and inference speed, as AMFL Table IV reports them (parameters, ms per 128 x 128 image)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["count_parameters", "time_inference"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``), each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already de-duplicates shared tensors
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return int(total)


def time_inference(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    runs: int = 20,
    batch_size: int = 1,
) -> dict:
    """Time forward passes on random input of ``(batch_size, *input_shape)``, e.g. ``input_shape=(1, 128, 128)``.

    Runs in ``eval`` mode under ``torch.inference_mode``; on CUDA every run is bracketed by
    ``torch.cuda.synchronize`` so the time covers the kernels, not just their launch. The model is put back
    on its original device and in its original train/eval mode afterwards. Returns milliseconds per image
    (median and mean over ``runs``), images per second (from the median), and the settings used.
    """
    if runs < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, batch_size >= 1; got {runs}, {warmup}, {batch_size}")
    device = torch.device(device)
    first = next(iter(model.parameters()), None)
    original_device = first.device if first is not None else None
    was_training = model.training
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    model.to(device).eval()
    x = torch.randn((batch_size, *input_shape), device=device)
    times_ms: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                sync()
                times_ms.append((time.perf_counter() - start) * 1000.0 / batch_size)
    finally:
        model.train(was_training)
        if original_device is not None:
            model.to(original_device)
    median = statistics.median(times_ms)
    return {
        "ms_per_image_median": median,
        "ms_per_image_mean": statistics.fmean(times_ms),
        "images_per_s": 1000.0 / median if median > 0 else float("inf"),
        "device": str(device),
        "batch_size": batch_size,
        "runs": runs,
        "warmup": warmup,
        "input_shape": list(input_shape),
        "torch_threads": torch.get_num_threads(),
    }
