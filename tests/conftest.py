"""Fixtures shared by the backend's test files (the Blender and server folders have their own)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny random CogVideoX + 3DTrajMaster model in the release's folder layout, built once
    for the whole run (tests only read it; one that needs to change it works on a copy)."""
    import tiny_models  # torch: imported here, not when Blender's pytest reads this file

    return tiny_models.build(tmp_path_factory.mktemp("tiny"))
