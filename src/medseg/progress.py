"""Progress of long work, on a terminal and in a log alike.

On a terminal, a tqdm bar redrawn in place. In a log or a pipe (no TTY: a CI job, ``nohup``, ``| tee``)
tqdm's carriage-return redraws make one unreadable line, and ``disable=None`` makes it silent for minutes
between epochs; here the same bar is printed as a plain line of its own, at most every
:data:`PLAIN_INTERVAL_S` seconds (``MEDSEG_PROGRESS_SECONDS`` to change), so a log shows that work goes on.

Use :class:`Progress` wherever medseg would use ``tqdm`` (same arguments); ``tqdm.write`` stays for lines
that are printed whatever the terminal.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

PLAIN_INTERVAL_S = 30.0


def _plain_interval() -> float:
    try:
        return float(os.environ.get("MEDSEG_PROGRESS_SECONDS", PLAIN_INTERVAL_S))
    except ValueError:
        return PLAIN_INTERVAL_S


class _LinesOnly:
    """A stream that drops tqdm's bare carriage returns (its way of clearing a bar): in a log they are noise."""

    def __init__(self, fp):
        self._fp = fp

    def write(self, s):
        if s.strip("\r"):
            self._fp.write(s)

    def __getattr__(self, name):
        return getattr(self._fp, name)


class Progress(tqdm):
    """tqdm on a terminal; without one, a plain progress line at most every 30 s (and at the end)."""

    def __init__(self, *args, **kwargs):
        stream = kwargs.get("file") or sys.stderr
        self._plain = not (hasattr(stream, "isatty") and stream.isatty())
        if self._plain:
            if kwargs.get("disable") is None:  # tqdm's "off without a TTY": here, plain lines instead
                kwargs["disable"] = False
            kwargs["mininterval"] = kwargs["maxinterval"] = _plain_interval()
            kwargs.setdefault("ncols", 100)
            kwargs["leave"] = False  # the final state is printed once by close(), without tqdm's extra newline
        self._printed_n = None
        super().__init__(*args, **kwargs)
        if self._plain and not self.disable:
            self.fp = _LinesOnly(self.fp)

    def display(self, msg=None, pos=None):
        if not self._plain:
            return super().display(msg, pos)
        text = self.__str__() if msg is None else msg
        if text.strip():  # tqdm clears a finished bar with an empty message: nothing to print in a log
            self.fp.write(text.strip() + "\n")
            self.fp.flush()
            self._printed_n = self.n
        return True

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        # In a log, a postfix change (the running loss, every batch) must not print a line of its own: it
        # shows in the next periodic line.
        super().set_postfix(ordered_dict, refresh=refresh and not self._plain, **kwargs)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=refresh and not self._plain)

    def close(self):
        if self._plain and not self.disable and self._printed_n != self.n:
            self.display()  # the last state, once
        super().close()


__all__ = ["PLAIN_INTERVAL_S", "Progress"]
