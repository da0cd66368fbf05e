"""Command-line options shared by every stage's CLI (one definition, one help text).

Stage CLIs (``supernet/cli.py``, ``search/cli.py``, ``distill/cli.py``) and the application
CLI (``salnas/cli.py``) annotate their parameters with these types, so ``--set`` and
``--progress`` read and behave the same in every command.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["ProgressOpt", "SetOpt"]

ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress",
                 help="progress bars (default: on when stderr is a terminal)"),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="KEY=VALUE",
                 help="override a config setting by its dotted key, typed by the schema; "
                 "repeatable, e.g. --set supernet.epochs=3 --set data.resolution=[96,128]"),
]
