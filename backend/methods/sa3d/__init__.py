"""SA3D: training-free lifting of a 2D prior's masks onto splat and point scenes."""

from .method import SA3D

__all__ = ["SA3D"]
