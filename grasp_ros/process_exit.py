"""The end of a program run as its own process (a node, a ``grasp-ros`` command).

At exit CPython runs a last garbage collection over every object it still tracks. With torch
imported that took 0.3 to 0.9 s a process on a 2-core CPU, after the node had sent its last
command and closed DDS: seconds of every launch's, replay's and test suite's shutdown.
``gc.freeze()`` puts those objects out of the collector's reach first. Exit handlers, the
finalisers of what reference counting frees, and the flushing of stdout and stderr still run.
Only for a process's last step: a program calling ``main()`` in-process keeps its collector.

Its first steps: ``end_at_once_on_stop_signals`` while a node's process still imports.
"""
from __future__ import annotations

import gc
import os
import signal
import sys
from typing import NoReturn, Optional


def leave(status: Optional[int] = 0) -> NoReturn:
    """``sys.exit(status)`` without the interpreter's last collection."""
    gc.freeze()
    sys.exit(status)


def end_at_once_on_stop_signals() -> None:
    """Until the node's main takes them over, SIGINT and SIGTERM end the process at once, status 0.

    For a node's process while it imports torch and rclpy: seconds on a loaded machine, and a
    launch or harness stopped just after it started signals its nodes then. Nothing is made yet
    that a stop must undo; a KeyboardInterrupt raised inside an extension module's import comes
    out as an ImportError with a traceback, and a flag would leave the process importing on until
    launch escalates to SIGTERM. The scripts in ``scripts/`` do the same in their first lines,
    before this package is imported."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _end_at_once)


def _end_at_once(signum, frame) -> None:
    os._exit(0)
