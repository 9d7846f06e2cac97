"""SegAny backend: click-to-segment and open-vocabulary labels for meshes, splats and point clouds."""

__version__ = "0.1.0"
