"""`facecore prefer ...`: preference-optimisation rounds."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Preference optimisation rounds (simulated or human judgments).")
