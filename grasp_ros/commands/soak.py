"""``grasp-ros soak``: the closed loop through ROS for a long time, watched for leaks and faults.

The sim node and the controller run as separate processes over DDS (as in ``grasp-ros
bench-loop``), episode after episode, for ``--duration`` wall seconds counted from the first
control cycle (model loading excluded). Watched while it runs:

* the controller process's resident memory (VmRSS of /proc/PID/status) every
  ``--sample-period`` seconds; ``rss_growth`` is (end - after warm-up) / after warm-up, so lazy
  allocations of the first cycles (allocator pools, caches) do not count as a leak;
* crashes: a node process that exits before the end, or does not stop cleanly at the end
  (an exit status other than 0 or SIGINT's);
* every command the controller publishes: non-finite values, and values outside
  [-action_bound, action_bound] ([-1, 1] for the built-in models);
* deadline misses and solve times (PlanDiagnostics), and the episodes' success.

Writes one "soak" row (docs/benchmarks/FORMAT.md) to ``--json`` (default ``OUT/soak.json``),
a Markdown table (printed and ``OUT/soak.md``) and ``OUT/soak.png``: RSS and solve time over
time. Exit status 1 on a crash or a bad command. ``--busy N`` runs N CPU-spinning processes
beside the loop, as in bench-loop.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..bench.load import busy_processes, load_average, load_fields
from ..sim import ENV_NAMES
from ..bench.results import machine_info, markdown_table, write_bench_json
from ._bench_common import add_model_arguments, resolve_observation
from .bench_loop import _percentile_ms

QUICK_DURATION_S = 60.0
STARTUP_ALLOWANCE_S = 300.0       # wall seconds for the nodes to start and the first cycle to come
CLEAN_EXITS = (0, -signal.SIGINT, 130)

COLUMNS = [("duration_s", "duration (s)", ".0f"), ("rate_hz", "rate (Hz)", "g"), ("model", "model"),
           ("planner", "planner"), ("busy_processes", "busy"), ("cycles", "cycles"),
           ("crashes", "crashes"), ("nonfinite_commands", "non-finite cmds"),
           ("out_of_bounds_commands", "out-of-bounds cmds"),
           ("rss_start_mb", "RSS start (MB)", ".1f"), ("rss_end_mb", "RSS end (MB)", ".1f"),
           ("rss_growth", "RSS growth after warm-up", ".2%"),
           ("deadline_miss_rate", "deadline misses", ".2%"),
           ("solve_ms_p99", "solve p99 (ms)", ".1f"), ("episodes", "episodes"),
           ("success_rate", "success rate", ".0%")]


def add_arguments(parser) -> None:
    parser.add_argument("--duration", type=float, default=1800.0,
                        help="wall seconds of control, from the first cycle (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION_S:.0f} s instead")
    parser.add_argument("--rate", type=float, default=20.0, help="control rate in Hz (default: %(default)s)")
    parser.add_argument("--horizon", type=int, default=50, help="planning horizon H (default: %(default)s)")
    parser.add_argument("--planner", default="grasp", help="controller planner (default: %(default)s)")
    parser.add_argument("--env", default="wall_door", choices=ENV_NAMES, help="world (default: %(default)s)")
    add_model_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed (default: %(default)s)")
    parser.add_argument("--max-episode-time", type=float, default=30.0,
                        help="sim seconds before an episode fails (default: %(default)s)")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="run N CPU-spinning processes beside the loop (default: %(default)s)")
    parser.add_argument("--sample-period", type=float, default=5.0,
                        help="wall seconds between RSS samples (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="wall seconds before the RSS baseline of rss_growth; at most half the "
                             "duration (default: %(default)s)")
    parser.add_argument("--action-bound", type=float, default=1.0,
                        help="commands outside [-B, B] count as out of bounds (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="write the results here (default: OUT/soak.json)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/soak"),
                        help="folder for the table, plot and the nodes' logs (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..sim.closed_loop import LoopSpec, run_closed_loop   # rclpy only when it runs

    duration = QUICK_DURATION_S if args.quick else args.duration
    if duration <= 0 or args.rate <= 0 or args.busy < 0 or args.sample_period <= 0:
        raise SystemExit("grasp-ros soak: --duration, --rate and --sample-period must be > 0, "
                         "--busy >= 0")
    warmup = min(args.warmup, duration / 2)
    # Episodes 0 and a cycle count never reached: the sim starts episode after episode and only
    # the monitor's duration ends the run. The nodes run as two processes (no ros2 launch), so
    # the controller's PID is ours.
    spec = LoopSpec(env=args.env, planner=args.planner, model=args.model,
                    observation=resolve_observation(args), rate_hz=args.rate, horizon=args.horizon,
                    seed=args.seed, episodes=0, min_cycles=sys.maxsize,
                    max_episode_time=args.max_episode_time,
                    timeout=duration + STARTUP_ALLOWANCE_S, log_dir=args.out, launch="never")
    print(f"grasp-ros soak: {spec.env}, {spec.planner} + {spec.model} model "
          f"(observation: {spec.observation}), {spec.rate_hz:g} Hz, H={spec.horizon}, "
          f"{duration:.0f} s after the first cycle, RSS every {args.sample_period:g} s "
          f"(warm-up {warmup:.0f} s)" + (f", {args.busy} busy processes beside it" if args.busy else ""))
    machine = machine_info()
    loadavg_start = load_average()
    with busy_processes(args.busy), _progress_bar(duration, args.no_progress) as bar:
        monitor = SoakMonitor(duration=duration, sample_period=args.sample_period,
                              action_bound=args.action_bound, bar=bar)
        result = run_closed_loop(spec, progress=bar.write if bar else print,
                                 progress_period=max(60.0, duration / 10), monitor=monitor)
        load = load_fields(args.busy, loadavg_start, load_average())
    if not result.diagnostics:
        print(f"soak FAILED: no control cycle observed ({result.reason})")
        return 1

    row = summarise(result, monitor, spec, duration=duration, warmup=warmup)
    row.update(load)
    table = markdown_table([row], COLUMNS)
    print()
    print(table)
    print()
    if not result.ok:
        print(f"warning: the run did not end cleanly ({result.reason})")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, gpu {machine['gpu']}, "
          f"torch {machine['torch']}, load average before {load['loadavg'][0]}, "
          f"after {load['loadavg'][1]}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.md").write_text(table + "\n", encoding="utf-8")
    print(f"plot: {plot_soak(monitor, row, args.out / 'soak.png')}")
    print(f"json: {write_bench_json(args.json or args.out / 'soak.json', [row], machine)}")
    faults = row["crashes"] + row["nonfinite_commands"] + row["out_of_bounds_commands"]
    print("soak OK" if not faults else f"soak FAILED: {row['crashes']} crashes, "
          f"{row['nonfinite_commands']} non-finite and {row['out_of_bounds_commands']} "
          f"out-of-bounds commands")
    return 1 if faults else 0


def _progress_bar(duration: float, disabled: bool):
    if disabled:
        return contextlib.nullcontext()
    from tqdm import tqdm
    return tqdm(total=round(duration), desc="soak", dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}{postfix}]")


def read_rss_mb(pid: int) -> Optional[float]:
    """Resident memory of a process (VmRSS, MB), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


@dataclass
class SoakMonitor:
    """``run_closed_loop``'s monitor: ends the run after ``duration`` and records along the way.

    Called after every message the watcher takes, so each call only looks at what is new.
    Times (``t``) are wall seconds since the first control cycle.
    """

    duration: float
    sample_period: float
    action_bound: float
    bar: object = None                 # a tqdm bar, or None
    rss: list = field(default_factory=list)          # (t, MB) of the controller process
    solve: list = field(default_factory=list)        # (t, solve time s, deadline missed)
    exited_early: dict = field(default_factory=dict)  # name -> exit status, while the run went on
    commands: int = 0
    nonfinite_commands: int = 0
    out_of_bounds_commands: int = 0
    deadline_misses: int = 0
    started: Optional[float] = None
    elapsed: float = 0.0
    _next_sample: float = 0.0
    _seen_commands: int = 0
    _seen_diagnostics: int = 0

    def __post_init__(self):
        from grasp_ros.msg import PlanDiagnostics
        self._planned = (PlanDiagnostics.STATUS_OK, PlanDiagnostics.STATUS_FALLBACK)

    def __call__(self, processes, watcher) -> bool:
        now = time.monotonic()
        for name, code in processes.exited().items():
            self.exited_early.setdefault(name, code)
        self._check_commands(watcher.commands)
        new = [d for d in watcher.diagnostics[self._seen_diagnostics:] if d["status"] in self._planned]
        self._seen_diagnostics = len(watcher.diagnostics)
        if self.started is None:
            if not new:
                return False
            self.started = self._next_sample = now
        t = self.elapsed = now - self.started
        self.solve += [(t, d["solve_time"], d["deadline_missed"]) for d in new]
        self.deadline_misses += sum(bool(d["deadline_missed"]) for d in new)
        if now >= self._next_sample:
            self._next_sample = max(self._next_sample + self.sample_period, now)
            mb = read_rss_mb(processes.procs["controller"].pid)
            if mb is not None:
                self.rss.append((t, mb))
            if self.bar is not None:
                self.bar.n = min(round(t), self.bar.total)
                self.bar.set_postfix(rss_mb=f"{mb:.0f}" if mb else "-", cycles=len(self.solve),
                                     misses=self.deadline_misses, refresh=False)
                self.bar.refresh()
        if t >= self.duration:
            mb = read_rss_mb(processes.procs["controller"].pid)
            if mb is not None:
                self.rss.append((t, mb))
            if self.bar is not None:
                self.bar.n = self.bar.total
                self.bar.refresh()
            return True
        return False

    def _check_commands(self, commands: list) -> None:
        for values, *_ in commands[self._seen_commands:]:
            a = np.asarray(values, dtype=np.float64)
            finite = np.isfinite(a)
            self.nonfinite_commands += int(not finite.all())
            self.out_of_bounds_commands += int(bool((np.abs(a[finite]) > self.action_bound).any()))
        self.commands += len(commands) - self._seen_commands
        self._seen_commands = len(commands)


def summarise(result, monitor: SoakMonitor, spec, *, duration: float, warmup: float) -> dict:
    """The "soak" row of docs/benchmarks/FORMAT.md."""
    rss = np.asarray(monitor.rss, dtype=np.float64).reshape(-1, 2)
    after_warmup = rss[rss[:, 0] >= warmup]
    baseline = float(after_warmup[0, 1]) if len(after_warmup) else None
    end = float(rss[-1, 1]) if len(rss) else None
    unclean = {n: c for n, c in result.exit_codes.items() if c not in CLEAN_EXITS}
    crashed = {**unclean, **monitor.exited_early}
    solve, ends, cycles = result.solve_times(), result.ends, result.cycles
    return {
        "bench": "soak", "env": spec.env, "model": spec.model, "observation": spec.observation,
        "planner": spec.planner, "rate_hz": spec.rate_hz, "horizon": spec.horizon,
        "duration_s": round(monitor.elapsed, 1), "duration_requested_s": duration,
        "cycles": cycles, "crashes": len(crashed), "crashed": crashed,
        "commands": monitor.commands, "nonfinite_commands": monitor.nonfinite_commands,
        "out_of_bounds_commands": monitor.out_of_bounds_commands, "action_bound": monitor.action_bound,
        "rss_start_mb": float(rss[0, 1]) if len(rss) else None, "rss_end_mb": end,
        "rss_max_mb": float(rss[:, 1].max()) if len(rss) else None,
        "rss_warmup_mb": baseline, "warmup_s": warmup,
        "rss_growth": (end - baseline) / baseline if baseline else None,
        "rss_samples": int(len(rss)), "sample_period_s": monitor.sample_period,
        "deadline_miss_rate": result.deadline_misses / cycles if cycles else None,
        "deadline_misses": result.deadline_misses,
        "solve_ms_p50": _percentile_ms(solve, 50), "solve_ms_p99": _percentile_ms(solve, 99),
        "solve_ms_max": float(solve.max() * 1e3) if solve.size else None,
        "period_ms": 1e3 / spec.rate_hz,
        "episodes": len(ends), "success_rate": result.successes / len(ends) if ends else None,
        "through": "ros", "seed": spec.seed, "max_episode_time_s": spec.max_episode_time,
        "run_ok": result.ok, "reason": result.reason, "exit_codes": result.exit_codes,
        "wall_time_s": result.wall_time,
    }


def plot_soak(monitor: SoakMonitor, row: dict, path: Path) -> Path:
    """RSS of the controller and solve time of every planning cycle against wall time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = 60.0
    fig, (mem, solve_ax) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    rss = np.asarray(monitor.rss, dtype=np.float64).reshape(-1, 2)
    mem.plot(rss[:, 0] / minutes, rss[:, 1], ".-", ms=3, color="tab:purple")
    mem.axvline(row["warmup_s"] / minutes, color="gray", ls="--", label="end of warm-up")
    growth = row["rss_growth"]
    mem.set_ylabel("controller RSS (MB)")
    mem.set_title("controller resident memory" + (f": {growth:+.2%} after warm-up"
                                                   if growth is not None else ""))
    mem.legend(fontsize=8)
    solve = np.asarray(monitor.solve, dtype=np.float64).reshape(-1, 3)
    period_ms = row["period_ms"]
    if len(solve):
        missed = solve[:, 2] > 0
        solve_ax.plot(solve[~missed, 0] / minutes, solve[~missed, 1] * 1e3, ".", ms=2, alpha=0.3,
                      color="tab:blue", label="planning cycle")
        solve_ax.plot(solve[missed, 0] / minutes, solve[missed, 1] * 1e3, "x", ms=5,
                      color="tab:red", label=f"deadline missed ({int(missed.sum())})")
    solve_ax.axhline(0.8 * period_ms, color="tab:orange", ls="--", label="default solve budget (0.8 period)")
    solve_ax.axhline(period_ms, color="tab:red", ls=":", label="period")
    solve_ax.set_ylim(0, 2 * period_ms)
    solve_ax.set_ylabel("solve time (ms, axis cut at 2 periods)")
    solve_ax.set_xlabel("minutes since the first control cycle (wall clock)")
    solve_ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"soak: {row['env']}, {row['planner']} + {row['model']}, {row['rate_hz']:g} Hz, "
                 f"busy processes: {row['busy_processes']}; {row['cycles']} cycles, "
                 f"{row['crashes']} crashes", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
