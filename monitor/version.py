"""The installed tbmon version, as reports and `--version` print it."""

from __future__ import annotations


def tbmon_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tbmon")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
