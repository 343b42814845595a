"""The planner's patch and network rules (:func:`medseg.planning.planner.plan`): the patch from the median
image and the memory budget (:func:`estimate_memory`), the U-Net's depth and widths, the batch size.

A CPU plan caps the patch and the batch (step time, not memory, limits training there) and, in 2D, picks
MONAI's residual UNet; see the module docstring of :mod:`medseg.planning.planner` for the whole rule set.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from medseg.errors import ConfigError
from medseg.planning.task_plan import Decision, _pct

# A CPU plan is 4x narrower than nnU-Net's 32: at equal wall-clock time more steps beat more width there
# (benchmarks/bench_own_data.py, real M-FISH metaphases, 3 min on 2 cores: 16 channels 155 steps, Dice
# chromosome 68.0 / overlap 11.7 %; 8 channels 483 steps, 72.8 / 23.4 %).
BASE_CHANNELS = {"cuda": 32, "cpu": 8}
MAX_CHANNELS = {2: 512, 3: 320}
# 2D on a CPU: MONAI's residual UNet (strided from its first layer, little work at full resolution) at 16…256.
# One step of it cost 144.6 ms on 2 × 224 × 256 patches against 193.7 ms for medseg's U-Net at 8 channels, one
# thread (benchmarks/results/peer_cpu.json step_cost_ms), and with it medseg's plan is ahead of a plain MONAI loop
# on the real metaphases at 1, 2 and 4 CPU minutes (mean foreground Dice 58.6 vs 52.9 % at 4; with the U-Net at 8
# channels it was behind: peer_cpu_unet8.json).
CPU_2D_NETWORK = {"name": "monai_unet", "base_channels": 16, "max_channels": 256, "act": "prelu"}
MAX_DEPTH = {2: 6, 3: 5}
MIN_BOTTLENECK = 4  # px at the deepest stage (nnU-Net stops pooling an axis below 8, i.e. 4..8 px remain)
MIN_BATCH = 2
BATCH_DATASET_FRACTION = 0.05
POS_FRACTION = 0.33
# On a CPU the step time, not the memory, limits training: a patch of the median image (nnU-Net's GPU rule)
# takes seconds a step there (517×645 M-FISH metaphases: 6.7 s for a batch of 2 on 2 cores), so a CPU plan caps
# the patch at this many voxels (256² px, 64³ voxels) and buys more steps per minute; the sliding window
# still predicts whole images.
CPU_MAX_PATCH_VOXELS = {2: 256 * 256, 3: 64**3}
CPU_MAX_BATCH = 4  # likewise: on a CPU a step's time grows with the batch; more, smaller steps learn faster
# Feature-map memory of a U-Net training step: 13 float32 maps per output channel and voxel are saved for
# the backward pass (measured on medseg's U-Net, 2D and 3D, with torch.autograd.graph.saved_tensors_hooks),
# about 18 with the gradients alive at the peak of the backward pass; AMP (CUDA) stores most in 16 bits.
MAPS_PER_CHANNEL = 18
AMP_FACTOR = 0.6
BYTES_PER_PARAMETER = 16  # float32 weights, gradients and Adam's two moments


# --- memory -----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def unet_parameters(
    spatial_dims: int, depth: int, base_channels: int, max_channels: int | None, out_channels: int = 2
) -> int:
    """Parameters of medseg's U-Net with these settings, counted on PyTorch's meta device (nothing allocated)."""
    import torch

    from medseg.models import build_model

    with torch.device("meta"):
        model = build_model(
            "unet",
            in_channels=1,
            out_channels=out_channels,
            spatial_dims=spatial_dims,
            depth=depth,
            base_channels=base_channels,
            max_channels=max_channels,
            norm="instance",
            act="leakyrelu",
        )
    return int(sum(p.numel() for p in model.parameters()))


def estimate_memory(
    patch: Sequence[int],
    *,
    depth: int,
    base_channels: int,
    max_channels: int | None,
    batch: int,
    amp: bool,
    out_channels: int = 2,
) -> int:
    """Rough bytes of one U-Net training step on ``batch`` patches: the feature maps of every stage
    (``MAPS_PER_CHANNEL`` float32 maps per channel and voxel, ×``AMP_FACTOR`` with AMP) plus the weights,
    their gradients and Adam's moments. A planning estimate (within tens of percent), not a guarantee."""
    from medseg.models.blocks import stage_channels

    dims = len(patch)
    voxels = math.prod(int(p) for p in patch)
    channels = stage_channels(base_channels, depth, max_channels=max_channels)
    per_voxel = sum(c / 2 ** (dims * level) for level, c in enumerate(channels))
    activations = batch * voxels * per_voxel * MAPS_PER_CHANNEL * 4 * (AMP_FACTOR if amp else 1.0)
    params = unet_parameters(dims, depth, base_channels, max_channels, out_channels)
    return int(activations + params * BYTES_PER_PARAMETER)


def depth_for(patch: Sequence[int], spatial_dims: int) -> int:
    """Poolings for a patch: as many as keep the thinnest axis at >= 4 px (so 4–8 px at the bottleneck),
    between 1 and 6 (2D) / 5 (3D)."""
    smallest = min(int(p) for p in patch)
    depth = math.floor(math.log2(max(smallest, 1) / MIN_BOTTLENECK)) if smallest >= 2 * MIN_BOTTLENECK else 1
    return max(1, min(MAX_DEPTH[spatial_dims], depth))


def cpu_patch_start(median: Sequence[int], spacing: Sequence[float] | None) -> tuple[list[int], bool]:
    """The median shape shrunk until it holds at most :data:`CPU_MAX_PATCH_VOXELS` (largest physical extent
    first, 16 px at a time, never below 16); whether it was shrunk."""
    dims = len(median)
    spacing = list(spacing) if spacing is not None else [1.0] * dims
    patch = [int(v) for v in median]
    capped = False
    while math.prod(patch) > CPU_MAX_PATCH_VOXELS[dims]:
        axes = [i for i in range(dims) if patch[i] > 16]
        if not axes:
            break
        axis = max(axes, key=lambda i: (patch[i] * spacing[i], patch[i]))
        patch[axis] = max(16, patch[axis] - 16)
        capped = True
    return patch, capped


def _round_down(patch: Sequence[int], divisor: int) -> list[int]:
    return [max(divisor, (int(p) // divisor) * divisor) for p in patch]


def choose_patch(
    start: Sequence[int],
    spacing: Sequence[float] | None,
    *,
    base_channels: int,
    max_channels: int | None,
    budget_bytes: int,
    amp: bool,
    out_channels: int = 2,
) -> tuple[list[int], int, int, int]:
    """``(patch, depth, bytes at batch 2, times shrunk)``: the largest patch from ``start`` (the median image)
    whose batch of 2 fits ``budget_bytes``; shrinks the axis of the largest physical extent (pixels × spacing)
    by one pooling unit at a time, each side kept a multiple of 2^depth."""
    dims = len(start)
    spacing = list(spacing) if spacing is not None else [1.0] * dims
    patch = [int(p) for p in start]
    shrunk = 0
    while True:
        depth = depth_for(patch, dims)
        patch = _round_down(patch, 2**depth)
        need = estimate_memory(
            patch,
            depth=depth,
            base_channels=base_channels,
            max_channels=max_channels,
            batch=MIN_BATCH,
            amp=amp,
            out_channels=out_channels,
        )
        if need <= budget_bytes:
            return patch, depth, need, shrunk
        unit = 2**depth
        can_shrink = [i for i in range(dims) if patch[i] - unit >= 2 * MIN_BOTTLENECK]
        if not can_shrink:
            raise ConfigError(
                f"a memory budget of {budget_bytes / 2**30:.2f} GB does not hold a batch of {MIN_BATCH} "
                f"of even the smallest patch {patch} (about {need / 2**30:.2f} GB): give a larger "
                "budget (--budget-gb)"
            )
        axis = max(can_shrink, key=lambda i: (patch[i] * spacing[i], patch[i]))
        patch[axis] -= unit
        shrunk += 1


# --- the network decisions --------------------------------------------------------------------------------


def _fmt_shape(shape: Sequence[float]) -> str:
    return "×".join(f"{v:g}" for v in shape)


def _plan_network(
    median: Sequence[int],
    spacing: Sequence[float] | None,
    decisions: list[Decision],
    *,
    kind: str,
    dims: int,
    n_cases: int,
    budget_gb: float,
    out_channels: int,
) -> tuple[list[int], int]:
    """``data.patch_*``, ``model.*`` and ``train.batch_size`` (appended to ``decisions``); returns the patch
    and the batch size."""
    budget = int(budget_gb * 2**30)
    amp = kind == "cuda"
    monai_net = kind == "cpu" and dims == 2
    base = CPU_2D_NETWORK["base_channels"] if monai_net else BASE_CHANNELS[kind]
    max_ch = CPU_2D_NETWORK["max_channels"] if monai_net else MAX_CHANNELS[dims]
    start, cpu_capped = cpu_patch_start(median, spacing) if kind == "cpu" else (list(median), False)
    patch, depth, need, shrunk = choose_patch(
        start, spacing, base_channels=base, max_channels=max_ch, budget_bytes=budget, amp=amp, out_channels=out_channels
    )
    per_sample = estimate_memory(
        patch, depth=depth, base_channels=base, max_channels=max_ch, batch=1, amp=amp, out_channels=out_channels
    )
    fixed = estimate_memory(
        patch, depth=depth, base_channels=base, max_channels=max_ch, batch=0, amp=amp, out_channels=out_channels
    )
    by_memory = int((budget - fixed) // max(per_sample - fixed, 1))
    median_voxels = math.prod(median)
    by_data = int(BATCH_DATASET_FRACTION * n_cases * median_voxels // math.prod(patch))
    batch = max(MIN_BATCH, min(by_memory, by_data))
    cpu_batch_capped = kind == "cpu" and batch > CPU_MAX_BATCH
    if cpu_batch_capped:
        batch = CPU_MAX_BATCH
    need = estimate_memory(
        patch, depth=depth, base_channels=base, max_channels=max_ch, batch=batch, amp=amp, out_channels=out_channels
    )
    what = "preprocessed volume" if dims == 3 else "image"
    patch_why = f"median {what} {_fmt_shape(median)}"
    if cpu_capped:
        patch_why += (
            f", capped at {CPU_MAX_PATCH_VOXELS[dims]:,} voxels for a CPU (step time, not memory, limits "
            f"training there; --device cuda plans the GPU patch)"
        )
    if shrunk:
        patch_why += f", shrunk (largest physical extent first) to fit {budget_gb:g} GB"
    patch_why += f"; {depth} poolings; about {need / 2**30:.2f} GB at batch {batch}"
    decisions.append(Decision("data.patch_size", patch, patch_why))
    decisions.append(
        Decision(
            "data.patch_pos_fraction",
            POS_FRACTION,
            "a third of the patches centred on foreground (nnU-Net's oversampling)",
        )
    )
    _model_decisions(
        decisions,
        monai_net=monai_net,
        kind=kind,
        dims=dims,
        patch=patch,
        depth=depth,
        base=base,
        max_ch=max_ch,
        batch=batch,
    )
    if by_data < by_memory:
        batch_why = (
            f"a batch covers at most {_pct(BATCH_DATASET_FRACTION)} of the data set's voxels (nnU-Net); the "
            f"budget would hold {by_memory}"
        )
    else:
        batch_why = f"what {budget_gb:g} GB holds at this patch (about {(per_sample - fixed) / 2**20:.0f} MB a patch)"
    if cpu_batch_capped:
        batch_why = (
            f"a CPU: at most {CPU_MAX_BATCH} (step time grows with the batch; more, smaller steps a minute); "
            + batch_why
        )
    if batch == MIN_BATCH and min(by_memory, by_data) < MIN_BATCH:
        batch_why = f"the minimum of {MIN_BATCH}: " + batch_why
    decisions.append(Decision("train.batch_size", batch, batch_why))
    return patch, batch


def _model_decisions(
    decisions: list[Decision],
    *,
    monai_net: bool,
    kind: str,
    dims: int,
    patch: Sequence[int],
    depth: int,
    base: int,
    max_ch: int,
    batch: int,
) -> None:
    """``model.*``: the network, its depth (from the patch), widths, norm and activation."""
    bottleneck = [p // 2**depth for p in patch]
    if monai_net:
        decisions.append(
            Decision(
                "model.name",
                CPU_2D_NETWORK["name"],
                "2D on a CPU: MONAI's residual UNet, strided "
                "from its first layer: more capacity per CPU second than medseg's U-Net (--device "
                "cuda plans medseg's)",
            )
        )
    else:
        decisions.append(Decision("model.name", "unet", "medseg's U-Net, 2D and 3D from the same blocks"))
    thin = min(range(dims), key=lambda i: patch[i])
    decisions.append(
        Decision(
            "model.depth",
            depth,
            f"bottleneck {_fmt_shape(bottleneck)} px: the thinnest patch "
            f"axis ({patch[thin]}) pooled to {MIN_BOTTLENECK}-"
            f"{2 * MIN_BOTTLENECK} px",
        )
    )
    if monai_net:
        decisions.append(Decision("model.base_channels", base, "MONAI's CPU layout 16…256, 2 residual units a stage"))
        decisions.append(Decision("model.max_channels", max_ch, "the layout's cap"))
    else:
        decisions.append(
            Decision(
                "model.base_channels",
                base,
                f"{'CUDA' if kind == 'cuda' else 'a CPU'}: "
                f"{base} (nnU-Net's 32{', a quarter for CPU speed: more steps a minute' if kind == 'cpu' else ''})",
            )
        )
        decisions.append(Decision("model.max_channels", max_ch, f"nnU-Net's cap for {dims}D"))
    decisions.append(Decision("model.norm", "instance", f"batches of {batch} patches: instance norm (nnU-Net)"))
    decisions.append(
        Decision(
            "model.act",
            CPU_2D_NETWORK["act"] if monai_net else "leakyrelu",
            "MONAI's default activation" if monai_net else "nnU-Net's activation",
        )
    )
