"""Memory figures of the current process from ``/proc/self/status`` (Linux), for the benches.

``VmHWM`` is the peak resident set size: a bench child reads it after its work, because the
rusage of a forked child would inherit the parent's peak.
"""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ...) in MB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024
