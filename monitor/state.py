"""The watcher's checkpoint: reader offsets, analyzer state and the alerts already raised.

Saved so a restarted ``tbmon watch`` resumes where it stopped (no re-reading of gigabytes) and
never raises an alert twice (Fluent Bit's ``db``, Vector's checkpoints, filebeat's registry).
Written atomically (temp file, fsync, rename, fsync of the directory), so a crash or SIGKILL
leaves either the old or the new checkpoint, never a torn one. A missing, corrupt or foreign
file is not an error: the watcher starts fresh and says why.

The file is JSON (inspectable, no code execution on load, unlike pickle). numpy arrays and
tuples, which reader and engine states may hold, are tagged so they load back as they were.
"""

from __future__ import annotations

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

from tbmon.monitor.storage import normalize_logdir

STATE_VERSION = 1


@dataclass
class WatchState:
    """Per absolute logdir: the reader's and the engine's ``state_dict()``, and the alerts raised."""

    logdirs: list[str]
    readers: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def default_state_path(logdirs: list[str]) -> Path:
    """A file in the user cache dir named by the set of absolute logdirs being watched."""
    key = "\n".join(sorted(normalize_logdir(d) for d in logdirs))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("tbmon")) / "watch" / f"{digest}.json"


def load_state(path: Path, logdirs: list[str]) -> tuple[WatchState | None, str | None]:
    """``(state, None)``, or ``(None, reason)`` when the file cannot be used (then start fresh)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read state file {path}: {exc.strerror or exc}"
    try:
        data = json.loads(text, object_hook=_decode)
        if data.get("version") != STATE_VERSION:
            return None, f"state file {path} has format version {data.get('version')!r}, expected {STATE_VERSION}"
        state = WatchState(
            logdirs=list(data["logdirs"]),
            readers=dict(data["readers"]),
            engines=dict(data["engines"]),
            alerts={k: list(v) for k, v in data["alerts"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"state file {path} is corrupt ({type(exc).__name__}); starting fresh"
    wanted = sorted(normalize_logdir(d) for d in logdirs)
    if sorted(state.logdirs) != wanted:
        return None, f"state file {path} belongs to other logdirs ({', '.join(state.logdirs)}); starting fresh"
    return state, None


def save_state(path: Path, state: WatchState) -> None:
    """Write ``state`` to ``path`` atomically; raises ``OSError`` (the caller decides how loud)."""
    payload = {
        "version": STATE_VERSION,
        "logdirs": state.logdirs,
        "readers": state.readers,
        "engines": state.engines,
        "alerts": state.alerts,
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
        return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
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
