"""Build and validate the Blender extension zip with Blender's OWN extension code.

Blender ships its extension packager as a stand-alone module (`addons_core/bl_pkg/cli/blender_ext.py`, the
code behind `blender --command extension build / validate`). We load that exact file from the installed bpy
(or a Blender install given with --blender-scripts) so the zip is built and checked the way Blender and
extensions.blender.org do, tags included. Usage: `python -m segany.addon_build --out dist`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from segany import addon

from .errors import SegAnyError

# The add-on as this environment has it: the installed package, or addon/ in an editable checkout.
ADDON_DIR = Path(addon.__file__).resolve().parent


def blender_scripts_dir() -> Path:
    """The `scripts` folder of the bpy module in this environment (bpy/<version>/scripts)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SegAnyError("not_found", "bpy is not installed; install the dev extra or pass --blender-scripts")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SegAnyError("not_found", f"no bl_pkg/cli/blender_ext.py under {Path(spec.origin).parent}")
    return found[-1].parents[3]


def load_blender_ext(scripts_dir: Path | None = None) -> tuple[ModuleType, Path]:
    """Import Blender's extension CLI module and return it with the path of Blender's valid-tags list."""
    scripts = Path(scripts_dir) if scripts_dir else blender_scripts_dir()
    path = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    if not path.is_file():
        raise SegAnyError("not_found", f"Blender's extension packager is missing: {path}")
    name = "_segany_blender_ext"
    if name in sys.modules:
        return sys.modules[name], tags
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module, tags


def _logger(ext: ModuleType, messages: list[str]) -> object:
    def collect(kind: str, text: object) -> bool:
        messages.append(f"{kind}: {text}")
        return False

    return ext.MessageLogger(collect)


def build(out_dir: Path, source_dir: Path = ADDON_DIR, scripts_dir: Path | None = None) -> Path:
    """Build `segany-<version>.zip` in out_dir and validate it; raises with Blender's messages on failure."""
    ext, tags = load_blender_ext(scripts_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    messages: list[str] = []
    ok = ext.subcmd_author.build(
        _logger(ext, messages),
        pkg_source_dir=str(source_dir),
        pkg_output_dir=str(out_dir),
        pkg_output_filepath="",
        split_platforms=False,
        valid_tags_filepath=str(tags),
        verbose=False,
    )
    if not ok:
        raise SegAnyError("corrupt_file", "Blender refused to build the extension:\n" + "\n".join(messages))
    zips = [Path(m.split(": ", 1)[1]) for m in messages if m.startswith("PATH: ")]
    zip_path = zips[-1] if zips else max(out_dir.glob("segany-*.zip"), key=lambda p: p.stat().st_mtime)
    validate(zip_path, scripts_dir)
    return zip_path


def validate(path: Path, scripts_dir: Path | None = None) -> list[str]:
    """Run Blender's `extension validate` on a directory or zip; returns its messages, raises on failure."""
    ext, tags = load_blender_ext(scripts_dir)
    messages: list[str] = []
    ok = ext.subcmd_author.validate(_logger(ext, messages), source_path=str(path), valid_tags_filepath=str(tags))
    if not ok:
        raise SegAnyError("corrupt_file", f"Blender's validation of {path} failed:\n" + "\n".join(messages))
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segany.addon_build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"), help="folder for the zip (default: dist)")
    parser.add_argument("--blender-scripts", type=Path, default=None, help="a Blender install's scripts folder")
    args = parser.parse_args(argv)
    print(build(args.out, scripts_dir=args.blender_scripts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
