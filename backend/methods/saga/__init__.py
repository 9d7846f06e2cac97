"""SAGA: scale-aware affinity features trained from a prior's masks; clicks select at a physical scale."""

from .method import SAGA

__all__ = ["SAGA"]
