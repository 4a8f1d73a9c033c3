"""Progress that counts items (drugs, cell lines, folds): a bar on a terminal, periodic plain lines in a log file.

A tqdm bar redraws itself with carriage returns, which a SLURM log or ``| tee`` keeps as one ever-growing line; when
stderr is not a terminal, ``progress`` prints a complete line every ``INTERVAL`` seconds and one at the end instead.
Long work between two items (a fold trains for minutes) calls ``tick`` often (the engine: once per step), so that
the lines keep coming while no item finishes. The same lines go to the progress logger, which a run's ``run.log``
records (``fused_cache.logs.log_to``) whether stderr is a terminal or not.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

import click
from tqdm.auto import tqdm

from fused_cache.logs import PROGRESS_LOGGER

INTERVAL = 30.0
"""Seconds between plain progress lines, unless the environment sets ``INTERVAL_VARIABLE``."""
INTERVAL_VARIABLE = "FUSED_PROGRESS_INTERVAL"

log = logging.getLogger(PROGRESS_LOGGER)


class PlainProgress:
    """The part of tqdm's interface the project uses, writing whole lines: 'desc: 12/223 drugs (5%), 0:40, ...'.

    ``echo=False`` keeps the lines in the progress log only (a terminal shows a bar instead; ``--quiet``)."""

    def __init__(self, total: int, desc: str, unit: str, interval: float = INTERVAL, file: TextIO | None = None,
                 initial: int = 0, echo: bool = True) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.interval, self.echo = total, desc, unit, interval, echo
        self.file = file or sys.stderr
        self.n, self.postfix = initial, ""
        self.start = self.last = self.ticked = time.monotonic()
        self.shown: tuple[int, str] | None = None
        """What the last line said (items done, postfix), so that ``close`` does not repeat it."""

    def update(self, n: int = 1) -> None:
        self.n += n
        self.tick()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def tick(self) -> None:
        """Print a line unless the next tick, as far after this one as this one after the last, still comes within
        ``interval`` seconds of the last line: so lines keep at most ``interval`` apart while the ticks come at a
        steady pace (one clock read: cheap per step)."""
        now = time.monotonic()
        step, self.ticked = now - self.ticked, now
        if now - self.last + step >= self.interval:
            self._line(now)

    def close(self) -> None:
        if self.shown != (self.n, self.postfix):
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self.last = now
        self.shown = (self.n, self.postfix)
        elapsed = now - self.start
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        eta = f", about {clock((self.total - self.n) / rate)} left" if rate > 0 and self.total > self.n else ""
        extra = f", {self.postfix}" if self.postfix else ""
        line = f"{self.desc}: {self.n}/{self.total} {self.unit}{share}, {clock(elapsed)} elapsed{eta}{extra}"
        log.info(line)
        if self.echo:
            print(line, file=self.file, flush=True)


class BarProgress(PlainProgress):
    """On a terminal: a tqdm bar showing the postfix (redrawn at most once a second by ``tick``); the plain lines
    go to the progress log only."""

    def __init__(self, total: int, desc: str, unit: str, interval: float = INTERVAL, initial: int = 0) -> None:
        super().__init__(total, desc, unit, interval, initial=initial, echo=False)
        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", initial=initial)
        self.drawn = self.start

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        super().update(n)

    def set_postfix_str(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)
        super().set_postfix_str(text)

    def tick(self) -> None:
        super().tick()
        now = time.monotonic()
        if now - self.drawn >= 1.0:
            self.drawn = now
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
        super().close()


def clock(seconds: float) -> str:
    """H:MM:SS."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def interval() -> float:
    """Seconds between plain lines: $FUSED_PROGRESS_INTERVAL, else ``INTERVAL``."""
    text = os.environ.get(INTERVAL_VARIABLE, "")
    if not text:
        return INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise click.UsageError(f"{INTERVAL_VARIABLE}={text!r}: give the seconds between progress lines, a number > 0")
    return seconds


def progress(total: int, desc: str, unit: str, quiet: bool = False, initial: int = 0) -> PlainProgress:
    """A progress counter of ``total`` items (``unit``: 'drugs', 'cell lines', 'folds'). ``quiet`` shows nothing,
    but still writes the lines to the progress log."""
    every = interval()
    if quiet:
        return PlainProgress(total, desc, unit, every, initial=initial, echo=False)
    if not sys.stderr.isatty():
        return PlainProgress(total, desc, unit, every, initial=initial)
    return BarProgress(total, desc, unit, every, initial=initial)
