"""The replay's outputs: what was replayed (``ReplayInfo``), the benchmark row, the Markdown report,
the per-cycle CSV, the plot."""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .compare import Comparison

OPEN_LOOP = ("Open loop: the recorded inputs were replayed as they were recorded. The robot's (or "
             "sim's) recorded future did not react to the replayed commands, so after the first "
             "cycle whose command differs, later differences say what this controller would have "
             "commanded in situations the original run led to, not where a changed controller "
             "would have taken the robot.")


@dataclass
class ReplayInfo:
    """What was replayed, how, and how fast: the report's facts besides the comparison. The
    fields, in this order, open the benchmark row."""

    bag: str
    storage: str                          # sqlite3 or mcap
    compression: Optional[str]            # e.g. "zstd per file" (None: not compressed)
    checksums: int                        # the bag's CRC-32s checked before reading (0: none)
    image_transport: Optional[str]        # raw or compressed (None: no camera topic)
    topics: dict[str, str]                # role -> the bag's topic
    window: Optional[list[float]]         # [start, end] s from the first cycle (None: the whole bag)
    bag_sim_s: float                      # recorded clock seconds replayed
    replay_wall_s: float                  # wall seconds the cycles took (start-up not counted)
    startup_s: float
    controller_solve_s: float             # the replayed cycles' solve time, summed
    speed_vs_real_time: float
    iterations: str                       # how each cycle's iteration count was set, in words
    iteration_mode: str                   # recorded or parameter
    parameters_from: str                  # where the controller's parameters came from, in words
    changed: dict[str, Any]               # values given other than the recorded ones
    settings: dict[str, Any]              # the replayed controller's parameters
    model: str
    planner: str
    messages_delivered: int
    subscribed: list[str]                 # the input roles the controller subscribes to
    cpu_capability: dict[str, Optional[str]]   # recorded, replayed: torch's CPU kernel sets
    late_cycles: int                      # FALLBACK cycles repeated as late, busy, overdue
    busy_cycles: int
    overdue_cycles: int
    notes: list[str]
    loadavg_start: Optional[list[float]]  # 1, 5, 15 min load averages before and after
    loadavg_end: Optional[list[float]]

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def bench_row(comparison: Comparison, info: ReplayInfo) -> dict[str, Any]:
    """The ``"bench": "replay"`` row (docs/benchmarks/FORMAT.md): ``info``, then the summary."""
    summary = dict(comparison.summary)
    notes = list(info.notes) + list(summary.get("notes") or [])
    return {"bench": "replay", **info.as_dict(), **summary, "notes": notes, "mode": "open_loop",
            "passed": comparison.passed, "failures": comparison.failures}


def markdown(comparison: Comparison, info: ReplayInfo) -> str:
    s = comparison.summary
    verdict = "PASSED" if comparison.passed else "FAILED: " + "; ".join(comparison.failures)
    lines = [
        f"# Replay of `{info.bag}`", "",
        f"**{verdict}**", "",
        OPEN_LOOP, "",
        f"- bag: {info.storage}{f' ({info.compression} compressed)' if info.compression else ''}, "
        f"camera {info.image_transport or 'none'}, "
        f"{s['cycles']} cycles over {info.bag_sim_s:.2f} s of the recording's clock"
        + (f" (window {info.window[0]:g} s to {info.window[1]:g} s)" if info.window else "") + "; "
        + (f"{info.checksums} CRC-32s of the file checked" if info.checksums else
           "no checksums checked (a sqlite3 bag, or an MCAP written without them): a byte changed "
           "inside a message would replay as a changed input"),
        f"- controller parameters: {info.parameters_from}; changed for this replay: "
        + (", ".join(f"`{k}` = `{v}`" for k, v in info.changed.items()) or "nothing"),
        f"- planner iterations per cycle: {info.iterations}",
        f"- torch CPU kernels (cpu_capability): recorded {info.cpu_capability['recorded'] or 'unknown'}, "
        f"replayed {info.cpu_capability['replayed'] or 'unknown'}",
        f"- FALLBACK cycles repeated as recorded: {info.late_cycles} late (planned, the "
        f"previous plan's action sent), {info.busy_cycles} busy (the planner still on a "
        f"late plan: not planned), {info.overdue_cycles} overdue (the process held up: "
        "the stop sent instead)",
        f"- replay: {info.replay_wall_s:.2f} s wall for {info.bag_sim_s:.2f} s recorded: "
        f"**{info.speed_vs_real_time:.1f}x real time**, of which the controller planned "
        f"{info.controller_solve_s:.2f} s (its start-up, {info.startup_s:.1f} s, not counted; "
        f"load average {info.loadavg_start} at the start)",
        "",
        "| measure | value |", "|---|---|",
        f"| cycles compared | {s['compared']} of {s['cycles']} (missing {s['missing_cycles']}, extra {s['extra_cycles']}) |",
        f"| max command difference | {s['max_command_diff']:.3g} |",
        f"| RMS command difference | {s['rms_command_diff']:.3g} |",
        f"| cycles whose command differs | {s['cycles_with_command_diff']} (first at "
        + (f"{s['first_command_diff_t']:.2f} s)" if s["first_command_diff_t"] is not None else "none)") + " |",
        f"| status changes | {s['status_changes']} |",
        f"| max cost difference | {_num(s['max_cost_diff'])} |",
        f"| iteration count changes | {s['iteration_changes']} |",
        f"| max novelty difference | {_num(s['max_novelty_diff'])} |",
        f"| max residual difference | {_num(s['max_residual_diff'])} |",
        f"| cycles that saw another observation | {s['input_mismatches']} |",
        "",
        "Per action dimension:", "",
        "| dimension | max difference | RMS difference |", "|---|---|---|",
    ]
    for d in s["per_dimension"]:
        lines.append(f"| command[{d['dimension']}] | {d['max_diff']:.3g} | {d['rms_diff']:.3g} |")
    lines += ["", f"Statuses recorded {s['statuses_recorded']}, replayed {s['statuses_replayed']}."]
    if s["status_change_list"]:
        lines += ["", "Status changes (first 20):", "", "| t (s) | recorded | replayed |", "|---|---|---|"]
        lines += [f"| {c['t']:.2f} | {c['recorded']} | {c['replayed']} |" for c in s["status_change_list"][:20]]
    notes = list(info.notes) + list(s.get("notes") or [])
    if notes:
        lines += [""] + [f"Note: {n}" for n in notes]
    lines += ["", "![recorded vs replayed commands](replay.png)", ""]
    return "\n".join(lines)


def write_csv(comparison: Comparison, path: Path) -> None:
    """One row per compared cycle: time, statuses, each command dimension recorded and replayed,
    cost, iterations, novelty, residual, goal distance, whether the inputs matched."""
    A = comparison.recorded.shape[1]
    keys = ("cost", "iterations", "novelty", "residual", "goal_distance")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["cycle", "t", "status_recorded", "status_replayed",
                         *(f"command{a}_recorded" for a in range(A)), *(f"command{a}_replayed" for a in range(A)),
                         *(f"{k}_{side}" for k in keys for side in ("recorded", "replayed")), "inputs_match"])
        for r in comparison.rows:
            writer.writerow([r["cycle"], f"{r['t']:.6f}", r["status_recorded"], r["status_replayed"],
                             *r["command_recorded"], *r["command_replayed"],
                             *(r[f"{k}_{side}"] for k in keys for side in ("recorded", "replayed")),
                             "" if r["inputs_match"] is None else int(r["inputs_match"])])


def plot(comparison: Comparison, path: Path, title: str, names=()) -> None:
    """Recorded (solid) and replayed (dashed) commands over time, one panel per dimension, and
    their difference below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    A = comparison.recorded.shape[1]
    fig, axes = plt.subplots(A + 1, 1, figsize=(9, 2.2 * (A + 1)), sharex=True, squeeze=False)
    t = comparison.times
    for a in range(A):
        ax = axes[a, 0]
        ax.plot(t, comparison.recorded[:, a], "-", lw=1.8, label="recorded")
        ax.plot(t, comparison.replayed[:, a], "--", lw=1.4, label="replayed")
        ax.set_ylabel(names[a] if a < len(names) else f"command[{a}]")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    diff = np.abs(comparison.replayed - comparison.recorded)
    ax = axes[A, 0]
    for a in range(A):
        ax.plot(t, diff[:, a], ".-", ms=3, label=names[a] if a < len(names) else f"command[{a}]")
    ax.set_ylabel("|difference|")
    ax.set_xlabel("time from the first recorded cycle (s)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num(value) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.3g}"
