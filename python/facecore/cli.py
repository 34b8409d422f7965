"""The ``facecore`` command line.

``facecore info`` prints what this build contains (``facecore.build_info()``). Pipelines add their
commands here (one function each, calling into the pipeline module; no logic of their own).
"""

from __future__ import annotations

import json

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="facecore: fast differentiable kernels and pipelines for ARKit facial animation.")


@app.callback()
def _root() -> None:
    """facecore: fast differentiable kernels and pipelines for ARKit facial animation."""


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Print the build: version, CUDA kernels and architectures, Triton, CPU threads, compiler."""
    import facecore

    build = facecore.build_info()
    if as_json:
        typer.echo(json.dumps(build, indent=2))
        return
    width = max(map(len, build))
    for key, value in build.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        typer.echo(f"{key:<{width}}  {value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
