"""The render stage every method and prior shares: `render(scene, cameras, …) → Renders`."""

from .renders import Renders, Views, views_key
from .stage import render

__all__ = ["Renders", "Views", "render", "views_key"]
