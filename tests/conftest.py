"""Fixtures several test files share."""

from __future__ import annotations

import pytest

from segany.samples import sample_mesh
from segany.scene import MeshScene


@pytest.fixture(scope="module")
def stool() -> MeshScene:
    """The built-in sample mesh (seat, back, legs, ring as separate pieces), small enough for tiny runs."""
    return sample_mesh(max_edge=0.2)
