"""Deliberate CPU load beside a benchmark, and how busy the machine was.

``busy_processes(n)`` starts ``n`` processes that spin a core each (``while True: pass``), for
measuring the control loop on a machine that is not idle, and stops them when the block ends,
however it ends (an exception, Ctrl-C). On Linux they also get SIGKILL from the kernel if the
process that started them dies first, so even a killed benchmark leaves none behind.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator, Optional

from ..ros.interrupts import parent_environment

# The kernel kills a spinner when its parent exits (``exit_with_parent``); a spinner whose parent
# exited before it asked stops at once. Done in the child, not in a preexec_fn, which is unsafe
# in a process with threads (rclpy, torch).
SPIN = """
import os, signal, sys
from grasp_ros.ros.interrupts import exit_with_parent
exit_with_parent(signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
while True:
    pass
"""


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` CPU-spinning processes for the duration of the block (none for ``n`` 0)."""
    if n < 0:
        raise ValueError(f"busy processes must be >= 0, got {n}")
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", SPIN, str(os.getpid())], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=dict(os.environ, **parent_environment())))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()


def load_average() -> Optional[list[float]]:
    """The 1, 5 and 15 minute load averages, where the OS tells them."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def load_fields(busy: int, loadavg_start, loadavg_end) -> dict:
    """The row fields that say what ran beside a measurement.

    ``loadavg``: [at the start, at the end], each the 1/5/15 minute triple. The start is taken
    before the busy processes can show in it (it is other work's load); the end includes them.
    """
    return {"load": "busy_processes" if busy else "idle", "busy_processes": busy,
            "loadavg": [loadavg_start, loadavg_end]}
