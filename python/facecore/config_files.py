"""Config dataclasses from dicts and files, one way for every pipeline: unknown keys are errors that
list the known ones, files are ``.json`` or ``.yaml``/``.yml`` holding a mapping of fields, and a bad file
is a :class:`~facecore.io.errors.FormatError` naming it."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

__all__ = ["check_real", "check_whole", "config_from_dict", "read_config_file"]


def config_from_dict(cls: type[T], d: Any, source: str | None = None) -> T:
    """``cls(**d)`` for a dataclass ``cls``, refusing anything but a mapping and unknown keys (named in
    the message with the known ones; ``source`` prefixes it, default the class name)."""
    where = source or cls.__name__
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(names)}")
    return cls(**dict(d))


def read_config_file(path: str | os.PathLike, what: str, fields_of: str) -> dict[str, Any]:
    """The mapping in a ``.json`` or ``.yaml``/``.yml`` file (``what`` names it in errors, ``fields_of`` the
    dataclass whose fields it should hold)."""
    from .io.errors import FormatError, json_loads, read_text

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        obj = json_loads(text, path=path)
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise FormatError(f"not YAML ({str(e).splitlines()[0]})", path=path) from None
    else:
        raise ValueError(f"{what} must be .json, .yaml or .yml, got {path}")
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise FormatError(f"expected a mapping of {fields_of} fields", path=path)
    return dict(obj)


def check_whole(what: str, v: Any, lo: int, none_ok: bool = False) -> int | None:
    """``v`` as an int >= ``lo`` (None passes when ``none_ok``); ValueError naming ``what`` otherwise."""
    if v is None and none_ok:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}")
    return int(v)


def check_real(what: str, v: Any, lo: float, hi: float = math.inf) -> float:
    """``v`` as a float in ``[lo, hi]``; ValueError naming ``what`` otherwise (NaN fails)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not lo <= v <= hi:
        raise ValueError(f"{what} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)
