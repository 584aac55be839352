"""The package's version, from its installed metadata (pyproject.toml is the one place it is
written); kept apart so that any module can record it without importing the package root."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("affbench")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
