"""Progress that counts items (drugs, cell lines, folds): a bar on a terminal, periodic plain lines in a log file.

A tqdm bar redraws itself with carriage returns, which a SLURM log or ``| tee`` keeps as one ever-growing line; when
stderr is not a terminal, ``progress`` prints a complete line every ``interval`` seconds and one at the end instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

INTERVAL = 30.0
"""Seconds between plain progress lines."""


class PlainProgress:
    """The part of tqdm's interface the project uses, writing whole lines: 'desc: 12/223 drugs (5%), 0:40, ...'."""

    def __init__(self, total: int, desc: str, unit: str, interval: float = INTERVAL, file: TextIO | None = None,
                 initial: int = 0) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.file = file or sys.stderr
        self.n, self.postfix = initial, ""
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._line()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        self._line()

    def _line(self) -> None:
        self.last = now = time.monotonic()
        elapsed = now - self.start
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        eta = f", about {_clock((self.total - self.n) / rate)} left" if rate > 0 and self.total > self.n else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}{share}, {_clock(elapsed)} elapsed{eta}{extra}",
              file=self.file, flush=True)  # fmt: skip


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def progress(total: int, desc: str, unit: str, quiet: bool = False, initial: int = 0) -> Any:
    """A progress counter of ``total`` items (``unit``: 'drugs', 'cell lines', 'folds')."""
    if not quiet and not sys.stderr.isatty():
        return PlainProgress(total, desc, unit, initial=initial)
    return tqdm(total=total, desc=desc, unit=f" {unit}", disable=quiet, initial=initial)
