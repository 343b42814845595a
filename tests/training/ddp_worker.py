"""One rank of a tiny training, run by torchrun from test_distributed.py (a process of its own).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/training/ddp_worker.py ROOT plain,noisy

trains each named case (:func:`make_trainer`) into ``ROOT/ddp_<case>``; the test trains the same case in one
process into ``ROOT/one_<case>`` and compares the two.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's toy data

import torch  # noqa: E402
from conftest import make_toy_pairs  # noqa: E402

from medseg.config import load_config  # noqa: E402
from medseg.training import distributed  # noqa: E402
from medseg.training.run import trainer_class  # noqa: E402

N_TRAIN, N_VAL = 16, 8


def case_cfg(kind: str, root: Path) -> dict:
    """A U-Net without BatchNorm (norm: none): per-rank BatchNorm statistics would differ from one process's
    (SyncBatchNorm, which would make them equal, is CUDA-only in PyTorch)."""
    over = {
        "name": f"ddp_{kind}",
        "data": {"size": [32, 32]},
        "model": {"name": "unet", "depth": 2, "base_channels": 2, "norm": "none"},
        "loss": [{"name": "ce"}],
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "lr": 1e-2,
            "seed": 0,
            "deterministic": True,
            "distributed": {"timeout_minutes": 1.0},
        },
        "evaluate": {"batch_size": 8},
        "output": {"root": str(root)},
    }
    if kind == "noisy":
        over["noisy_labels"] = {"qam": {"enabled": True, "channels": [4, 8], "convs": [1, 1]}, "ocm": {"enabled": True}}
    if kind == "adversarial":
        over["adversarial"] = {"enabled": True, "discriminator": {"channels": [4, 8, 8, 8]}}
    return load_config(overrides=over)


def make_trainer(kind: str, root: Path, run_dir: Path):
    cfg = case_cfg(kind, root)
    data = make_toy_pairs(n=N_TRAIN + N_VAL, size=32, seed=0)
    return trainer_class(cfg)(
        cfg, run_dir, data, list(range(N_TRAIN)), list(range(N_TRAIN, N_TRAIN + N_VAL)), fold=0, progress=False
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    distributed.init(torch.device("cpu"), timeout_minutes=1.0)
    try:
        for kind in sys.argv[2].split(","):
            make_trainer(kind, root, root / f"ddp_{kind}").fit(restart=True)
    finally:
        distributed.cleanup()
