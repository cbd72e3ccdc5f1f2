"""Linux's parent-death signal: a process that asks is SIGKILLed when its parent dies.

The daemon's stage processes ask it, and so does the trainer a train stage starts: a SIGKILLed
daemon then leaves nothing running unsupervised that would write beside the rerun a restarted
daemon starts.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask for SIGKILL when the parent dies; False where this platform cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return False
    return True
