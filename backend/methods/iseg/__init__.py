"""iSeg: interactive 3D segmentation of meshes via interactive attention (Lang et al., SIGGRAPH Asia 2024)."""

from .method import ISeg

__all__ = ["ISeg"]
