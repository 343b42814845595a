"""Progress in a log or pipe: plain lines, never carriage-return redraws, never silent for minutes."""

from __future__ import annotations

import io

from medseg.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_progress_is_plain_lines(monkeypatch):
    monkeypatch.setenv("MEDSEG_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    for _ in Progress(range(3), desc="fold 0 epoch 1", file=out, disable=None):
        pass
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) >= 3 and all(line.startswith("fold 0 epoch 1") for line in lines)
    assert "3/3" in lines[-1]


def test_without_a_terminal_lines_are_spaced_by_the_interval(monkeypatch):
    monkeypatch.setenv("MEDSEG_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    bar = Progress(range(1000), desc="x", file=out)
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")  # the trainer's running loss, every batch
    assert len(out.getvalue().splitlines()) <= 2  # the start, and the end


def test_on_a_terminal_it_is_a_tqdm_bar():
    out = _Terminal()
    for _ in Progress(range(3), desc="bar", file=out, mininterval=0):
        pass
    assert "\r" in out.getvalue()


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    for _ in Progress(range(3), desc="x", file=out, disable=True):
        pass
    assert out.getvalue() == ""
