"""Shared by the GLB tests: the stylised built-in rig, loaded once per module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def rig():
    from facecore.rig import default_rig

    return default_rig()
