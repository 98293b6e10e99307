"""The `enhance` command line: a thin typer layer over the library API.

Each command parses its arguments, calls one library function and prints the result.
Errors the user can act on (`enhance.errors.EnhanceError`) print one line and exit 2.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from . import __version__
from .errors import EnhanceError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Make decoded images look real again.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"enhance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Make images decoded by standard and neural codecs look real again."""


def fail(message: str) -> None:
    typer.echo(f"enhance: {message}", err=True)
    raise typer.Exit(2)


# Commands are registered below, one section per area of the library.


def main() -> None:
    try:
        app()
    except EnhanceError as error:
        typer.echo(f"enhance: {error}", err=True)
        sys.exit(2)
