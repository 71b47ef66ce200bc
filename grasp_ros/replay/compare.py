"""Recorded against replayed, cycle by cycle, and the verdict against tolerances.

Symbols: ``N`` cycles compared, ``A`` action dimensions (the command's length).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..control import Status, reasons
from ..timebase import NS
from .bag import Cycle

AGE_TOLERANCE = 1e-6
"""Seconds: a replayed cycle whose observation age differs more used another observation."""
NOVELTY_TOLERANCE = 1e-6
"""Training spreads: a score computed again from the same observation by the same model."""


@dataclass
class Tolerances:
    """What a replay may differ by and still pass (None: not checked)."""

    max_command_diff: Optional[float] = 1e-6
    rms_command_diff: Optional[float] = None
    status_changes: Optional[int] = 0
    cost_diff: Optional[float] = None

    def validate(self) -> None:
        """ValueError for a negative tolerance (no replay could meet it)."""
        bad = {k: v for k, v in vars(self).items() if v is not None and not v >= 0}
        if bad:
            raise ValueError(f"tolerances must be >= 0, got {', '.join(f'{k} {v}' for k, v in bad.items())}")


@dataclass
class Comparison:
    """Per-cycle arrays and the summary; ``failures`` says which tolerance each miss broke."""

    times: np.ndarray              # [N] s, cycle times from the first recorded cycle
    recorded: np.ndarray           # [N, A] commands
    replayed: np.ndarray           # [N, A]
    rows: list[dict]               # one per compared cycle
    summary: dict
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def compare(cycles: Sequence[Cycle], indices: Sequence[int], replayed: dict[int, Cycle],
            tolerances: Tolerances, extra: int = 0, same_model: bool = False) -> Comparison:
    """Compare the recorded ``cycles[i]`` for ``i`` in ``indices`` with ``replayed[i]``.
    ``same_model``: the replay runs the recorded model, so an observation novelty that differs
    says the cycle encoded another observation (noted, not failed: other CPU kernels round
    differently too)."""
    rows = _rows(cycles, indices, replayed)
    missing = [i for i in indices if replayed.get(i) is None]
    A = len(cycles[0].command)
    recorded = np.asarray([r["command_recorded"] for r in rows], dtype=np.float64).reshape(-1, A)
    replayed_commands = np.asarray([r["command_replayed"] for r in rows], dtype=np.float64).reshape(-1, A)
    diff = _differences(replayed_commands, recorded)
    summary = {**_summary(rows, diff, len(indices), len(missing), extra),
               "notes": _notes(cycles, indices, replayed, rows, same_model)}
    times = np.asarray([r["t"] for r in rows], dtype=np.float64)
    return Comparison(times, recorded, replayed_commands, rows, summary,
                      _failures(summary, tolerances, len(missing)))


def _rows(cycles: Sequence[Cycle], indices: Sequence[int], replayed: dict[int, Cycle]) -> list[dict]:
    """One row per recorded cycle that has a replayed one: both sides of each compared field."""
    t0 = cycles[0].time
    rows = []
    for i in indices:
        rec, rep = cycles[i], replayed.get(i)
        if rep is None:
            continue
        diff = _differences(rep.command, rec.command)
        rows.append({
            "cycle": i, "t": (rec.time - t0) / NS,
            "status_recorded": _name(rec.status), "status_replayed": _name(rep.status),
            "command_recorded": rec.command.tolist(), "command_replayed": rep.command.tolist(),
            "command_max_diff": float(np.max(np.abs(diff))) if diff.size else 0.0,
            "cost_recorded": rec.cost, "cost_replayed": rep.cost,
            "iterations_recorded": rec.iterations, "iterations_replayed": rep.iterations,
            "novelty_recorded": rec.novelty, "novelty_replayed": rep.novelty,
            "residual_recorded": rec.residual, "residual_replayed": rep.residual,
            "goal_distance_recorded": rec.goal_distance, "goal_distance_replayed": rep.goal_distance,
            # None: the recorded cycle names no observation (it planned nothing of its own);
            # an infinite age: it had none yet, and the replayed one must not have one either
            "inputs_match": (_same(rec.observation_age, rep.observation_age, AGE_TOLERANCE)
                             if not math.isnan(rec.observation_age) else None),
        })
    return rows


def _summary(rows: list[dict], diff: np.ndarray, cycles: int, missing: int, extra: int) -> dict:
    """The summary's measures (its notes are ``_notes``); ``diff`` [N, A] the commands'."""
    changes = [r for r in rows if r["status_recorded"] != r["status_replayed"]]
    return {
        "cycles": cycles, "compared": len(rows), "missing_cycles": missing, "extra_cycles": extra,
        "max_command_diff": float(diff.max()) if diff.size else 0.0,
        "rms_command_diff": float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0,
        "per_dimension": [{"dimension": a, "max_diff": float(diff[:, a].max()) if len(diff) else 0.0,
                           "rms_diff": float(np.sqrt(np.mean(diff[:, a] ** 2))) if len(diff) else 0.0}
                          for a in range(diff.shape[1])],
        "cycles_with_command_diff": int(np.sum(diff.max(axis=1) > 0)) if diff.size else 0,
        "first_command_diff_t": next((r["t"] for r in rows if r["command_max_diff"] > 0), None),
        "status_changes": len(changes),
        "status_change_list": [{"t": r["t"], "recorded": r["status_recorded"],
                                "replayed": r["status_replayed"]} for r in changes],
        "max_cost_diff": _max_diff(rows, "cost"),
        "max_novelty_diff": _max_diff(rows, "novelty"),
        "max_residual_diff": _max_diff(rows, "residual"),
        "iteration_changes": sum(r["iterations_recorded"] != r["iterations_replayed"] for r in rows),
        "input_mismatches": sum(r["inputs_match"] is False for r in rows),
        "statuses_recorded": _counts(r["status_recorded"] for r in rows),
        "statuses_replayed": _counts(r["status_replayed"] for r in rows),
    }


def _failures(summary: dict, tolerances: Tolerances, missing: int) -> list[str]:
    """Each tolerance the replay broke, and each cycle it could not compare, in words."""
    failures = []
    checks = (("max_command_diff", summary["max_command_diff"], tolerances.max_command_diff),
              ("rms_command_diff", summary["rms_command_diff"], tolerances.rms_command_diff),
              ("status_changes", summary["status_changes"], tolerances.status_changes),
              ("cost_diff", summary["max_cost_diff"], tolerances.cost_diff))
    for name, value, limit in checks:
        if limit is not None and value is not None and value > limit:
            failures.append(f"{name} {value:.6g} > {limit:g}")
    if missing:
        failures.append(f"{missing} recorded cycle(s) got no replayed cycle")
    if summary["input_mismatches"]:
        failures.append(f"{summary['input_mismatches']} replayed cycle(s) saw another observation "
                        "than the recorded one (observation_age differs)")
    return failures


def _notes(cycles: Sequence[Cycle], indices: Sequence[int], replayed: dict[int, Cycle], rows: list[dict],
           same_model: bool) -> list[str]:
    """What the differences suggest went wrong in the recording, not in the controller."""
    t0 = cycles[0].time
    notes = []
    no_goal = [i for i in indices if i in replayed and reasons.NO_GOAL in replayed[i].status_text
               and reasons.NO_GOAL not in cycles[i].status_text]
    if no_goal:     # the bag's goal came to the recorder after the controller had used it
        notes.append(
            f"{len(no_goal)} replayed cycle(s) had no goal yet where the recorded ones had one "
            f"(from t = {(cycles[no_goal[0]].time - t0) / NS:.3f} s): the recorder received the "
            "goal after the controller used it (a recorder started late or short of CPU, or one that "
            "subscribed only when the goal's publisher appeared: a latched goal then comes at the "
            "publisher's next heartbeat, up to 3 s with Fast DDS; start the recorder, and the goal's "
            "publisher, a few seconds before the first goal); replay from after it with --start")
    encoded = [r for r in rows if same_model and r["inputs_match"]
               and not _same(r["novelty_recorded"], r["novelty_replayed"], NOVELTY_TOLERANCE)]
    if encoded:    # the frame's age matched, the observation did not (its joints, say)
        notes.append(
            f"{len(encoded)} replayed cycle(s) with the recorded model scored another observation "
            f"novelty than the recorded ones (from t = {encoded[0]['t']:.3f} s), though their frame's "
            "age matched: they encoded another observation, such as the frame paired with another "
            "joint_states sample (a live controller that dropped some of a fast joint_states)")
    return notes


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b|, a NaN on either side counting as an infinite difference (never within a tolerance)."""
    diff = np.abs(a - b)
    return np.where(np.isnan(diff), math.inf, diff)


def _name(status: int) -> str:
    try:
        return Status(status).name
    except ValueError:      # a status this version does not know (a bag from a newer one)
        return str(status)


def _same(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tolerance


def _max_diff(rows: list[dict], key: str) -> Optional[float]:
    """Largest |replayed - recorded| over cycles where both are finite; None if none is.
    One finite and the other not (a plan on one side only) counts as infinite."""
    worst = None
    for r in rows:
        a, b = r[f"{key}_recorded"], r[f"{key}_replayed"]
        if math.isfinite(a) and math.isfinite(b):
            d = abs(a - b)
        elif math.isfinite(a) != math.isfinite(b):
            d = math.inf
        else:
            continue
        worst = d if worst is None else max(worst, d)
    return worst


def _counts(names) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in names:
        out[name] = out.get(name, 0) + 1
    return out
