"""Load beside a benchmark, and ``grasp-ros soak``: busy processes always stop; a short soak
through the ROS nodes writes a sane "soak" row.

The soak run is short and asserts no timing: only that the fields exist and are consistent,
that nothing crashed and that every command was finite and in bounds.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from grasp_ros.bench.load import busy_processes, load_fields


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_busy_processes_start_and_stop():
    with busy_processes(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        pids = [p.pid for p in procs]
    assert all(p.returncode is not None for p in procs)
    assert not any(_alive(pid) for pid in pids)
    with busy_processes(0) as none:
        assert none == []
    with pytest.raises(ValueError):
        with busy_processes(-1):
            pass


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_busy_processes_stop_when_the_body_raises(error):
    with pytest.raises(error):
        with busy_processes(2) as procs:
            assert all(p.poll() is None for p in procs)
            raise error("the benchmark failed")
    assert all(p.returncode is not None for p in procs)
    assert not any(_alive(p.pid) for p in procs)


def test_load_fields_name_the_load():
    assert load_fields(0, [1.0, 1.0, 1.0], [2.0, 1.5, 1.0]) == {
        "load": "idle", "busy_processes": 0, "loadavg": [[1.0, 1.0, 1.0], [2.0, 1.5, 1.0]]}
    assert load_fields(2, None, None)["load"] == "busy_processes"


def test_soak_writes_a_sane_row(tmp_path):
    pytest.importorskip("rclpy", exc_type=ImportError)
    out = tmp_path / "soak"
    result = subprocess.run(
        [sys.executable, "-m", "grasp_ros.cli", "soak", "--model", "analytic", "--env", "open",
         "--duration", "8", "--sample-period", "1", "--warmup", "2", "--no-progress",
         "--out", str(out)],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    document = json.loads((out / "soak.json").read_text())
    assert set(document["machine"]) >= {"cpu", "cores", "gpu", "torch", "python", "date"}
    (row,) = document["rows"]
    assert {k: row[k] for k in ("bench", "model", "observation", "planner", "rate_hz", "through",
                                "load", "busy_processes", "crashes", "nonfinite_commands",
                                "out_of_bounds_commands")} == {
        "bench": "soak", "model": "analytic", "observation": "joints", "planner": "grasp",
        "rate_hz": 20.0, "through": "ros", "load": "idle", "busy_processes": 0, "crashes": 0,
        "nonfinite_commands": 0, "out_of_bounds_commands": 0}
    assert row["duration_s"] >= 8 and row["run_ok"] and row["cycles"] > 0 and row["commands"] > 0
    assert row["rss_samples"] >= 2 and 0 < row["rss_start_mb"] <= row["rss_max_mb"]
    assert 0 < row["rss_end_mb"] <= row["rss_max_mb"] and math.isfinite(row["rss_growth"])
    assert 0 <= row["deadline_miss_rate"] <= 1 and row["episodes"] >= 0
    assert row["success_rate"] is None or 0 <= row["success_rate"] <= 1
    assert len(row["loadavg"]) == 2
    assert "| 20 | analytic | grasp | 0 |" in (out / "soak.md").read_text()
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "controller.log").is_file() and (out / "sim.log").is_file()
