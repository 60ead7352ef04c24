"""Load tbmon's analyzer configuration from TOML (``--config FILE`` and ``[tool.tbmon]``).

Precedence, lowest first (the ruff/pytest habit): built-in defaults, then ``[tool.tbmon]``
in ``./pyproject.toml``, then the ``--config`` file. Tables merge key by key, so a
``--config`` file that sets one threshold keeps the rest of ``[tool.tbmon]``; a list
(e.g. tag patterns) is replaced as a whole. Every problem is a one-line ``UsageError``
naming the file, so ``tbmon`` exits 2 instead of running with a config the user did not mean.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tbmon.analyzers.config import AnalyzerConfig
from tbmon.monitor.exit_codes import UsageError

PYPROJECT = "pyproject.toml"


def load_config(path: str | None, *, cwd: str | Path | None = None) -> AnalyzerConfig:
    """The configuration the analyzers run with, from ``path`` and ``<cwd>/pyproject.toml``."""
    base = Path.cwd() if cwd is None else Path(cwd)
    merged: dict[str, Any] = {}
    sources: list[str] = []
    pyproject = base / PYPROJECT
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("tbmon")
        if table is not None:
            merged = _merge(merged, _as_table(table, f"{pyproject}: [tool.tbmon]"))
            sources.append(f"{pyproject} [tool.tbmon]")
    if path is not None:
        file = Path(path)
        if not file.is_absolute():
            file = base / file
        data = _read_toml(file)
        if "tool" in data:  # a pyproject.toml-shaped file: only its [tool.tbmon] table is ours
            tool = _as_table(data["tool"], f"{file}: [tool]")
            if "tbmon" not in tool:
                raise UsageError(f"{file}: has a [tool] table but no [tool.tbmon] table")
            data = _as_table(tool["tbmon"], f"{file}: [tool.tbmon]")
        merged = _merge(merged, data)
        sources.append(str(file))
    try:
        return AnalyzerConfig.from_mapping(merged)
    except (ValueError, TypeError) as exc:
        where = " + ".join(sources) if sources else "config"
        raise UsageError(f"{where}: {_one_line(exc)}") from None


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {file}") from None
    except IsADirectoryError:
        raise UsageError(f"config path is a directory, not a TOML file: {file}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{file}: invalid TOML: {_one_line(exc)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file}: invalid TOML: not UTF-8 text") from None


def _as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` wins; nested tables merge key by key, anything else is replaced."""
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
