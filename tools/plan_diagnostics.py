"""What a controller's cycles got, from a bag of its PlanDiagnostics: statuses, iterations a
cycle, start samples, solve time.

A planner under a wall-clock budget runs as many iterations as the CPU leaves it, which no
setting says; a run recorded with ``grasp-ros record`` (or ``ros2 bag record``) of
``/grasp_controller/plan_diagnostics`` does. Prints a summary and, with ``--json``, writes it as
one ``"bench": "plan_diagnostics"`` row (docs/benchmarks/FORMAT.md; the machine is this one, where
the bag is read: say where it was recorded).

    grasp-ros record run_bag --topics /grasp_controller/plan_diagnostics --controller ''
    python tools/plan_diagnostics.py run_bag --json run_cycles.json
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

TOPIC = "/grasp_controller/plan_diagnostics"


def summary(bag: Path, topic: str = TOPIC) -> dict:
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from grasp_ros.msg import PlanDiagnostics

    rows = []
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise ValueError(f"{bag}: no {topic} in the bag")
        for _, _, raw in reader.messages(connections=connections):
            m = deserialize_message(raw, PlanDiagnostics)
            rows.append((m.status, m.iterations, m.start_samples, m.solve_time))
    cycles = np.array(rows, dtype=float).reshape(-1, 4)
    # OK and TRUNCATED: the cycles whose command came from their own plan
    planned = cycles[np.isin(cycles[:, 0], (PlanDiagnostics.STATUS_OK, PlanDiagnostics.STATUS_TRUNCATED))]
    return {
        "bench": "plan_diagnostics", "bag": str(bag), "cycles": len(cycles), "planned_cycles": len(planned),
        "status_counts": _counts(cycles[:, 0]),
        "iterations_counts": _counts(planned[:, 1]),
        "start_samples_p10_p50_p90": np.percentile(planned[:, 2], [10, 50, 90]).tolist() if len(planned) else [],
        "solve_ms_p50_p90_max": (1000 * np.percentile(planned[:, 3], [50, 90, 100])).tolist() if len(planned) else [],
    }


def _counts(values: np.ndarray) -> dict[int, int]:
    return {int(k): n for k, n in sorted(collections.Counter(values.astype(int)).items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--topic", default=TOPIC)
    parser.add_argument("--json", type=Path, help="write the summary here too")
    args = parser.parse_args(argv)
    try:
        result = summary(args.bag, args.topic)
    except ValueError as exc:
        print(f"plan_diagnostics: {exc}", file=sys.stderr)
        return 2
    n = max(1, result["planned_cycles"])
    print(f"{result['cycles']} cycles, statuses {result['status_counts']} (0 OK, 2 FALLBACK, 5 TRUNCATED)")
    print("iterations a planned cycle: " + ", ".join(
        f"{k}: {100 * v / n:.0f}%" for k, v in result["iterations_counts"].items()))
    if result["planned_cycles"]:
        print("start samples p10/p50/p90: {:.0f}/{:.0f}/{:.0f}".format(*result["start_samples_p10_p50_p90"]))
        print("solve ms p50/p90/max: {:.1f}/{:.1f}/{:.1f}".format(*result["solve_ms_p50_p90_max"]))
    if args.json:
        from grasp_ros.bench.results import write_bench_json
        write_bench_json(args.json, [result])
    return 0


if __name__ == "__main__":
    sys.exit(main())
