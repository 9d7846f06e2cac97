"""The one test budget: each method's "tiny" preset (its Options.presets), with what a test changes.

Engine, wire and add-on tests send TINY, the preset by name, as a user would; tests that call a
method's prepare directly take the parsed options from `tiny`.
"""

from __future__ import annotations

from typing import Any

from segany.methods import get_method
from segany.options import Options, parse_options
from segany.scene import Scene

TINY = {"preset": "tiny"}


def tiny(method: str, scene: Scene | None = None, **changes: Any) -> Options:
    """`method`'s tiny preset with `changes`, checked like any options (a bad change is a bad_request)."""
    return parse_options(get_method(method).Options, {**TINY, **changes}, scene=scene)
