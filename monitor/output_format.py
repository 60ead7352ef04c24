"""Which output format a command writes: ``--format``, else what ``--output``'s extension says.

``report -o report.html`` must not write terminal box-drawing into an .html file, and
``--format json -o report.html`` is almost surely a slip, so a clash is refused (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tbmon.monitor.exit_codes import UsageError


def choose_format(explicit: str | None, output: str | None, by_extension: Mapping[str, str], default: str) -> str:
    """``explicit`` if given (it must agree with a known extension of ``output``), else the
    extension's format, else ``default``. Unknown extensions (``.txt``, ``.log``) imply nothing."""
    implied = by_extension.get(os.path.splitext(output)[1].lower()) if output else None
    if explicit is None:
        return implied or default
    if implied is not None and implied != explicit:
        raise UsageError(
            f"--format {explicit} but --output {output!r} looks like {implied}: "
            f"drop --format (the extension decides) or rename the output file"
        )
    return explicit
