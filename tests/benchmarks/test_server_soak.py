"""The soak's memory probe (benchmarks/server_soak.py): a process tree's pids and resident memory from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from server_soak import tree_pids, tree_rss_mb  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux /proc")


def test_the_tree_holds_the_children_and_their_memory_counts():
    # a child that allocates ~64 MB and waits: the tree's resident memory must grow by about that much
    code = (
        "import time; b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "print(1, flush=True); time.sleep(30)"
    )
    alone = tree_rss_mb(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "1"
        pids = tree_pids(os.getpid())
        assert child.pid in pids and pids[0] == os.getpid()
        assert tree_rss_mb(os.getpid()) - alone > 50
        assert tree_pids(child.pid) == [child.pid]  # a leaf: itself only
    finally:
        child.kill()
        child.wait()
    assert tree_pids(child.pid) == []  # gone


def test_the_soak_figure_is_drawn(tmp_path):
    from server_soak import soak_figure

    samples = [{"t_s": 30.0 * k, "rss_mb": 500.0 + k} for k in range(10)]
    result = {"samples": samples, "rss_mb_after_warm_up": 504.0, "users": 10, "requests": 1234, "growth": 0.01}
    out = soak_figure(result, tmp_path / "soak.png")
    assert out.stat().st_size > 5000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
