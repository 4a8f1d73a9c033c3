"""What both command-line tools log: ``-v/--verbose`` on every command shows the project's INFO messages on stderr.

Runs also write their messages to ``run.log`` in the run directory whatever the verbosity (``fused_train.runs``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

LOGGERS = ("fused_cache", "fused_train")
PROGRESS_LOGGER = "fused.progress"
"""Progress lines (``fused_cache.progress``): recorded in run.log, never shown by ``-v``, since progress prints them
itself when stderr is not a terminal."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Stderr(logging.Handler):
    """Writes to whatever stderr is when a message comes (click's test runner swaps it per command)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _enable(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not any(getattr(h, "fused_verbose", False) for h in logger.handlers):
            handler.fused_verbose = True  # type: ignore[attr-defined]
            logger.addHandler(handler)


def add_verbose(group: click.Group) -> Any:
    """Give every command of ``group`` a ``-v/--verbose`` flag (no change to the commands' signatures)."""
    for command in group.commands.values():
        command.params.append(
            click.Option(
                ["-v", "--verbose"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_enable,
                help="Show progress messages (INFO log) on stderr.",
            )  # fmt: skip
        )
    return group


@contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Append the project's INFO messages and progress lines to ``path`` while the block runs (e.g. a run's run.log).

    Warnings also go to stderr (without ``-v``): a file handler would otherwise keep them out of Python's last-resort
    stderr handler."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    warnings = _Stderr(logging.WARNING)
    warnings.setFormatter(logging.Formatter("warning: %(message)s"))
    loggers = [logging.getLogger(name) for name in (*LOGGERS, PROGRESS_LOGGER)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        if logger.name in LOGGERS and not any(getattr(h, "fused_verbose", False) for h in logger.handlers):
            logger.addHandler(warnings)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.removeHandler(warnings)
            logger.setLevel(level)
        handler.close()
