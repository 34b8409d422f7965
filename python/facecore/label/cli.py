"""`facecore label ...`: the pairwise labeling web app's commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="The pairwise preference labeling web app.")
