"""Signal state of a child process started the way a user's interactive shell starts it."""

from __future__ import annotations

import signal


def as_from_a_shell() -> None:
    """``preexec_fn`` for a CLI test that presses Ctrl-C: SIGINT at its default and not blocked in the child.

    An ignored or blocked signal survives ``exec``, so a child inherits whatever the pytest process was left
    with by libraries earlier in the run; in a clean-clone CI run the full suite (never one test alone) left
    the CLI deaf to SIGINT (it ran to completion, every try). A shell starts commands with SIGINT at default.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
