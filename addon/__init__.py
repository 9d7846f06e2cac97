"""SegAny Blender extension: click parts of meshes, Gaussian splats and point clouds to select them.

This file must import WITHOUT bpy: the backend imports `segany.addon.client` (and wire) from here.
Everything that needs bpy is imported inside register() / unregister(). Scripts use `.api`.
"""


def register() -> None:
    from . import registration

    registration.register()


def unregister() -> None:
    from . import registration

    registration.unregister()
