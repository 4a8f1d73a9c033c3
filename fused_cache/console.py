"""What both command-line tools share: turning known errors into one clear line and an exit code.

Kept apart from ``fused_cache/cli.py`` so that ``fused-train`` can use it without importing the other tool's commands.
"""

from __future__ import annotations

import sys

import click

from fused_cache.encoders.registry import ENCODERS
from fused_cache.stores import StoreNotFound


def explain(err: Exception) -> str:
    """The message of a known error, with advice that needs the encoder registry (which the stores do not import)."""
    if isinstance(err, StoreNotFound) and err.encoder is not None and err.encoder not in ENCODERS:
        return f"{err.encoder!r} is not an encoder (known: {', '.join(ENCODERS)})"
    return str(err)


def run_cli(group: click.Group, known: tuple[type[Exception], ...]) -> None:
    """Run a console command: ``known`` errors (bad input, missing stores) become one clear line and exit code 2,
    without a traceback; anything else is a bug and keeps its traceback."""
    try:
        group(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except known as err:
        click.echo(f"error: {explain(err)}", err=True)
        sys.exit(2)
