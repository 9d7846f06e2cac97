"""Add-on preferences: where the backend comes from, checkpoints, device, cache; a status line that says
what is wrong and what to do."""

from __future__ import annotations

import weakref
from pathlib import Path

import bpy

from . import runtime
from .backend_process import BackendConfig

PACKAGE = __package__
RESTART_NOTE = "Changed settings apply when the backend restarts"
_started_with: dict[str, object] = {}  # the running backend's client (a weak reference) and its settings


def config_from(prefs: bpy.types.AddonPreferences) -> BackendConfig:
    """The backend configuration these preferences describe (state file in the extension's user dir)."""
    user_dir = Path(bpy.utils.extension_path_user(PACKAGE, create=True))
    return BackendConfig(
        mode=prefs.backend_mode.lower(),
        python=bpy.path.abspath(prefs.python_path) if prefs.python_path else "",
        state_file=user_dir / "server.json",
        log_file=user_dir / "server.log",
        host=prefs.host,
        port=prefs.port,
        token_file=bpy.path.abspath(prefs.token_file) if prefs.token_file else "",
        cache_dir=bpy.path.abspath(prefs.cache_dir) if prefs.cache_dir else "",
        device=prefs.device.lower(),
        checkpoints={
            k: bpy.path.abspath(v) for k, v in (("sam", prefs.sam_checkpoint), ("clip", prefs.clip_checkpoint)) if v
        },
    )


def get() -> bpy.types.AddonPreferences:
    return bpy.context.preferences.addons[PACKAGE].preferences


def _apply(self: bpy.types.AddonPreferences, _context: bpy.types.Context) -> None:
    """A changed setting applies to the next start; the running backend keeps going until restarted, and
    what it started with is kept so the preferences and the sidebar can say a restart is pending."""
    rt = runtime.current_or_none()
    if rt is None:
        return
    client = rt.backend.client
    known = _started_with.get("client")
    if rt.backend.status == "running" and client is not None and (known is None or known() is not client):
        _started_with.update(client=weakref.ref(client), config=rt.backend.config)
    rt.backend.config = config_from(self)


def restart_pending(rt: runtime.Runtime | None, prefs: bpy.types.AddonPreferences) -> bool:
    """Whether the settings differ from those the running backend started with (they apply on restart)."""
    if rt is None or rt.backend.status != "running" or rt.backend.client is None:
        return False
    known = _started_with.get("client")
    return known is not None and known() is rt.backend.client and _started_with["config"] != config_from(prefs)


def status_line(rt: runtime.Runtime | None, prefs: bpy.types.AddonPreferences) -> tuple[str, str]:
    """(text, icon) for the status line: a problem with the settings comes before the backend's own state."""
    if rt is None:
        return "The add-on is not registered", "ERROR"
    problem = config_from(prefs).problem()
    if problem and rt.backend.status != "running":
        return problem, "ERROR"
    icon = {"running": "CHECKMARK", "starting": "SORTTIME", "dead": "ERROR", "error": "ERROR"}.get(
        rt.backend.status, "INFO"
    )
    return rt.backend.message, icon


class SEGANY_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    backend_mode: bpy.props.EnumProperty(
        name="Backend",
        items=[
            ("START", "Start a Local Backend", "Run `python -m segany.server` with the interpreter below"),
            ("CONNECT", "Connect to a Running Backend", "Use a backend started elsewhere, e.g. through an SSH tunnel"),
        ],
        default="START",
        update=_apply,
    )
    python_path: bpy.props.StringProperty(
        name="Backend Python",
        description="Absolute path of the python of the venv where segany is installed (e.g. .../.venv/bin/python)",
        subtype="FILE_PATH",
        update=_apply,
    )
    host: bpy.props.StringProperty(name="Host", default="127.0.0.1", update=_apply)
    port: bpy.props.IntProperty(name="Port", default=0, min=0, max=65535, update=_apply)
    token_file: bpy.props.StringProperty(
        name="Token File",
        description="The backend's state file (JSON with the token) or a file holding only the token",
        subtype="FILE_PATH",
        update=_apply,
    )
    sam_checkpoint: bpy.props.StringProperty(
        name="SAM Checkpoint",
        description="segment-anything .pth (vit_b / vit_l / vit_h)",
        subtype="FILE_PATH",
        update=_apply,
    )
    clip_checkpoint: bpy.props.StringProperty(
        name="CLIP Checkpoint", description="open_clip weights for text labels", subtype="FILE_PATH", update=_apply
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=[("AUTO", "Auto", "CUDA when available, else CPU"), ("CPU", "CPU", ""), ("CUDA", "CUDA", "")],
        default="AUTO",
        update=_apply,
    )
    cache_dir: bpy.props.StringProperty(
        name="Cache Directory",
        description="Where prepared work is kept (empty: the backend's default)",
        subtype="DIR_PATH",
        update=_apply,
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(self, "backend_mode", expand=True)
        col = layout.column()
        if self.backend_mode == "START":
            col.prop(self, "python_path")
        else:
            row = col.row()
            row.prop(self, "host")
            row.prop(self, "port")
            col.prop(self, "token_file")
        col.prop(self, "device")
        col.prop(self, "cache_dir")
        col.prop(self, "sam_checkpoint")
        col.prop(self, "clip_checkpoint")
        rt = runtime.current_or_none()
        text, icon = status_line(rt, self)
        box = layout.box()
        box.label(text=text, icon=icon)
        if restart_pending(rt, self):
            box.label(text=RESTART_NOTE, icon="INFO")
        row = box.row()
        row.operator("segany.backend_start", icon="PLAY")
        row.operator("segany.backend_restart", icon="FILE_REFRESH")
        row.operator("segany.backend_stop", icon="CANCEL")
