"""The package list, derived from the folders: `segany` is three folders (backend/, kernels/, addon/), a layout
`[tool.setuptools.packages.find]` cannot express, and a hand-kept list ships a wheel without any subpackage
someone forgets to add (an editable install hides the gap). Everything else lives in pyproject.toml."""

from setuptools import find_packages, setup

# addon/ stays a folder of its own because Blender installs it alone, as the extension.
PACKAGE_DIR = {"segany": "backend", "segany.kernels": "kernels", "segany.addon": "addon"}

packages = [pkg for top, folder in PACKAGE_DIR.items() for pkg in [top, *(f"{top}.{s}" for s in find_packages(folder))]]
setup(package_dir=PACKAGE_DIR, packages=packages)
