"""walk: the concavity-aware random walker on every scene kind; no 2D model, nothing to prepare."""

from .method import Walk

__all__ = ["Walk"]
