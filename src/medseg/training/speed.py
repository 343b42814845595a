"""The speed options of training (``train.amp``, ``train.channels_last``, ``train.compile``) as this machine
supports them; :class:`medseg.training.trainer.Trainer` applies them."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

#: ``train.channels_last: auto`` on the CPU: off. One step of the demo U-Net ran 1.11× faster channels-last, but
#: whole trainings did not (``benchmarks/bench_cpu_options.py``, 2-core AVX2 CPU, 1 thread): the demo config no
#: faster (CPU time ×1.00), ``configs/chromosomes/unet.yaml`` 1.11× slower.
CPU_CHANNELS_LAST_AUTO = False


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX on x86, the BF16 extension on Arm), the
    condition for ``train.amp`` on the CPU: elsewhere PyTorch emulates bf16 and autocast only slows training."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except Exception:  # noqa: BLE001 - a probe missing or failing in this build: fall back to the flags
            pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return bool({"avx512_bf16", "amx_bf16"} & flags) or (arm and "bf16" in flags)


def resolve_channels_last(setting, device: torch.device, spatial_dims: int) -> bool:
    """``train.channels_last`` for this run: 2D models only; ``auto`` = on CUDA, :data:`CPU_CHANNELS_LAST_AUTO`
    on the CPU (what the measurements support), ``true``/``false`` as said."""
    if int(spatial_dims) != 2 or setting is False:
        return False
    if setting == "auto":
        return device.type == "cuda" or (device.type == "cpu" and CPU_CHANNELS_LAST_AUTO)
    return bool(setting)


def compiler_missing(device: torch.device, backend: str) -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot work on ``device`` here (inductor on the CPU without a C++
    compiler), or None."""
    if backend != "inductor" or device.type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - InvalidCxxCompiler, or an inductor that cannot be imported
        return " ".join(str(exc).split())[:200] or type(exc).__name__
    return None
