"""tbmon.monitor: reading event files, `tbmon watch`, `tbmon report` and the CLI.

Public API: :func:`read` (a whole logdir at once, as pandas frames), :class:`ReadResult`,
and :class:`LogdirReader` (incremental). They are imported on first use so that the CLI,
which imports this package, does not pay for numpy/pandas/protobuf before it needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tbmon.monitor.reader import LogdirReader, ReadResult, read

__all__ = ["LogdirReader", "ReadResult", "read"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tbmon.monitor import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
