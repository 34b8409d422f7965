"""`facecore video ...`: controllable face video diffusion and the synthetic-data study."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Controllable face video diffusion and the synthetic-data study.")
