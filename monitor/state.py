"""The watcher's checkpoint: reader offsets, analyzer state and the alerts already raised.

Saved so a restarted ``tbmon watch`` resumes where it stopped (no re-reading of gigabytes) and
never raises an alert twice (Fluent Bit's ``db``, Vector's checkpoints, filebeat's registry).
Written atomically (temp file, fsync, rename, fsync of the directory), so a crash or SIGKILL
leaves either the old or the new checkpoint, never a torn one (the temp file such a kill leaves
is removed by the next watcher, see ``remove_stale_temp_files``). A missing, corrupt or foreign
file is not an error: the watcher starts fresh and says why. A file that does not match the
schema (truncated, hand-edited, nested a million deep) is set aside as ``STATE.bad`` with one
notice, and the watcher rebuilds its state from the event files.

The file is JSON (inspectable, no code execution on load, unlike pickle). numpy arrays and
tuples, which reader and engine states may hold, are tagged so they load back as they were.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from tbmon.analyzers.alerts import SEVERITIES
from tbmon.monitor.storage import normalize_logdir

STATE_VERSION = 1


@dataclass
class WatchState:
    """Per absolute logdir: the reader's and the engine's ``state_dict()``, the alerts raised, and
    the dashboard's last values per run (so a restarted dashboard shows what it showed)."""

    logdirs: list[str]
    readers: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dashboard: dict[str, Any] = field(default_factory=dict)


def default_state_path(logdirs: list[str]) -> Path:
    """A file in the user cache dir named by the set of absolute logdirs being watched."""
    key = "\n".join(sorted(normalize_logdir(d) for d in logdirs))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("tbmon")) / "watch" / f"{digest}.json"


def load_state(path: Path, logdirs: list[str]) -> tuple[WatchState | None, str | None]:
    """``(state, None)``, or ``(None, reason)`` when the file cannot be used (then start fresh).

    A file that cannot be parsed or does not match the schema is renamed to ``STATE.bad`` (kept
    for a look, out of the way of the next save) and the reason says so.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read state file {path}: {getattr(exc, 'strerror', None) or exc}"
    try:
        data = json.loads(text, object_hook=_decode)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        return None, _set_aside(path, type(exc).__name__)
    if isinstance(data, dict) and "version" in data and data["version"] != STATE_VERSION:
        version = data["version"] if isinstance(data["version"], int) else "?"
        return None, f"state file {path} has format version {version}, expected {STATE_VERSION}; starting fresh"
    problem = schema_problem(data)
    if problem:
        return None, _set_aside(path, problem)
    state = WatchState(
        logdirs=data["logdirs"], readers=data["readers"], engines=data["engines"], alerts=data["alerts"],
        dashboard=_dict_or_empty(data.get("dashboard")),  # absent in older files; damaged: values come with new points
    )
    wanted = sorted(normalize_logdir(d) for d in logdirs)
    if sorted(state.logdirs) != wanted:
        return None, f"state file {path} belongs to other logdirs ({', '.join(state.logdirs)}); starting fresh"
    return state, None


MAX_DEPTH = 32
"""Deepest nesting a reader or engine state may have (theirs is under 10); deeper is damage."""

ALERT_FIELDS = {
    "run": str, "kind": str, "severity": str, "step": int, "wall_time": (int, float, str), "tag": str,
    "message": str, "evidence": dict,
}
"""A saved alert: ``Alert.to_dict()`` plus ``pending`` (the sinks that have not confirmed it)."""


def schema_problem(data: Any) -> str | None:
    """Why ``data`` (a parsed state file) is not a valid checkpoint, or ``None`` when it is."""
    if not isinstance(data, dict):
        return f"top level is {type(data).__name__}, not an object"
    missing = {"logdirs", "readers", "engines", "alerts"} - set(data)
    if missing:
        return f"no {', '.join(sorted(missing))}"
    if not _is_list_of(data["logdirs"], str):
        return "logdirs is not a list of paths"
    for part in ("readers", "engines"):
        if not isinstance(data[part], dict) or not all(isinstance(v, dict) for v in data[part].values()):
            return f"{part} is not an object of objects"
        if any(_depth(v) > MAX_DEPTH for v in data[part].values()):
            return f"{part} nested deeper than {MAX_DEPTH}"
    if not isinstance(data["alerts"], dict) or not all(isinstance(v, list) for v in data["alerts"].values()):
        return "alerts is not an object of lists"
    for records in data["alerts"].values():
        for record in records:
            problem = _alert_problem(record)
            if problem:
                return f"an alert {problem}"
    return None


def _alert_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"is {type(record).__name__}, not an object"
    extra = set(record) - set(ALERT_FIELDS) - {"pending"}
    if extra:
        return f"has unknown fields ({', '.join(sorted(map(str, extra)))[:80]})"
    for name, kind in ALERT_FIELDS.items():
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"has {name} of type {type(value).__name__}"
    if record["severity"] not in SEVERITIES:
        return f"has unknown severity {record['severity'][:20]!r}"
    if isinstance(record["wall_time"], str) and record["wall_time"] not in ("nan", "inf", "-inf"):
        return "has a wall_time that is not a number"
    if _depth(record["evidence"]) > MAX_DEPTH:
        return f"has evidence nested deeper than {MAX_DEPTH}"
    if not _is_list_of(record.get("pending", []), str):
        return "has pending that is not a list of sink names"
    return None


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _depth(value: Any) -> int:
    """Nesting depth of lists/dicts/tuples, without recursion (the value may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in item)
    return deepest


def _set_aside(path: Path, why: str) -> str:
    """Move a damaged state file out of the way (kept as ``STATE.bad``); the notice that says so."""
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)
    except OSError as exc:
        return f"state file {path} is corrupt ({why}) and cannot be moved aside ({exc.strerror}); starting fresh"
    return f"state file {path} is corrupt ({why}); set aside as {bad}; rebuilding from the event files"


def remove_stale_temp_files(path: Path) -> int:
    """Delete the temp files of saves that a kill interrupted; call only while holding the state lock."""
    removed = 0
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            stale.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def save_state(path: Path, state: WatchState) -> None:
    """Write ``state`` to ``path`` atomically; raises ``OSError`` (the caller decides how loud)."""
    payload = {
        "version": STATE_VERSION,
        "logdirs": state.logdirs,
        "readers": state.readers,
        "engines": state.engines,
        "alerts": state.alerts,
        "dashboard": state.dashboard,
    }
    text = json.dumps(_encode(payload), separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _dict_or_empty(value: Any) -> dict[str, Any]:
    """The dashboard's saved values, or none: losing them must not cost the offsets and alerts."""
    return value if isinstance(value, dict) else {}


def _encode(value: Any) -> Any:
    """JSON-ready copy: ndarrays and tuples tagged, non-finite floats as tagged strings, numpy scalars unwrapped."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _encode(value.tolist()), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return _encode(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return {"__items__": [[_encode(k), _encode(v)] for k, v in value.items()]}
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(obj: dict[str, Any]) -> Any:
    if "__ndarray__" in obj:
        dtype = np.dtype(obj["dtype"])
        if dtype.kind not in "biuf":  # what the engines save; never object or void dtypes from a file
            raise TypeError(f"array dtype {dtype.str}")
        return np.array(obj["__ndarray__"], dtype=dtype).reshape(obj["shape"])
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__tuple__" in obj:
        return tuple(obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(k): v for k, v in obj["__items__"]}
    return obj


def _hashable(key: Any) -> Any:
    """Dict keys that were tuples come back as tuples (lists cannot be keys)."""
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key
