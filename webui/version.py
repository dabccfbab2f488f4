"""The app's version, from the installed package metadata (pyproject.toml), without importing anything heavy."""

from __future__ import annotations

from importlib import metadata

PACKAGE = "sd-talking-studio"


def version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # running from a checkout that was never pip-installed
        return "0.1.0"
