"""The end of a program run as its own process (a node, a ``grasp-ros`` command).

At exit CPython runs a last garbage collection over every object it still tracks. With torch
imported that took 0.3 to 0.9 s a process on a 2-core CPU, after the node had sent its last
command and closed DDS: seconds of every launch's, replay's and test suite's shutdown.
``gc.freeze()`` puts those objects out of the collector's reach first. Exit handlers, the
finalisers of what reference counting frees, and the flushing of stdout and stderr still run.
Only for a process's last step: a program calling ``main()`` in-process keeps its collector.
"""
from __future__ import annotations

import gc
import sys
from typing import NoReturn, Optional


def leave(status: Optional[int] = 0) -> NoReturn:
    """``sys.exit(status)`` without the interpreter's last collection."""
    gc.freeze()
    sys.exit(status)
