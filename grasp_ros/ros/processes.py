"""Child processes of a harness (the demo, the closed-loop benchmarks, the replay): started with
their output in log files and ending with the harness, on a DDS domain of their own."""
from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import interrupts

STOP_GRACE_S = 30.0   # a busy machine may take a while to finish the in-flight cycle and shut down


def isolate_dds(environ=os.environ) -> dict:
    """A private DDS domain on this host, unless the environment already chose; returns the choice."""
    environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 230)))
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return {k: environ[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}


def launch_available(launch_file: str) -> bool:
    """``ros2 launch`` can start grasp_ros's ``launch_file`` here: a ROS 2 install with the
    package built, not only the wheels."""
    if shutil.which("ros2") is None or any(importlib.util.find_spec(m) is None
                                           for m in ("launch", "launch_ros")):
        return False
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory("grasp_ros"))
    except (ImportError, LookupError):
        return False
    return (share / "launch" / launch_file).is_file()


class Processes:
    """Child processes with their output in log files; ``stop`` asks with SIGINT, then kills."""

    def __init__(self, commands: dict[str, list[str]], log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        # The children end with this process, even a killed one: this package's nodes ask for
        # it themselves (``interrupts.exit_with_parent``), other programs (``ros2 launch``, which
        # then stops its nodes) are started asking for it (``interrupts.ending_with_parent``).
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0",
                   **interrupts.parent_environment())
        self.logs = {name: log_dir / f"{name}.log" for name in commands}
        self.procs: dict[str, subprocess.Popen] = {}
        for name, cmd in commands.items():
            with open(self.logs[name], "w", encoding="utf-8") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                started = cmd if cmd[0] == sys.executable else interrupts.ending_with_parent(cmd)
                self.procs[name] = subprocess.Popen(started, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, env=env)

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.exited()) < len(self.procs):
            time.sleep(0.05)
        return len(self.exited()) == len(self.procs)

    def stop(self) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        if not self.wait(STOP_GRACE_S):
            for p in self.procs.values():
                if p.poll() is None:
                    p.kill()
            self.wait(STOP_GRACE_S)
        return self.exited()

    def tail(self, name: str, lines: int = 15) -> str:
        text = self.logs[name].read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])
