"""``grasp-ros bench-loop``: the control loop's timing, measured through the real nodes over DDS.

The sim node and the controller run as separate processes (as in ``grasp-ros demo``) for at
least ``--cycles`` control cycles, episode after episode, and the run stops at the end of the
episode in progress. Measured:

* deadline miss rate: cycles whose PlanDiagnostics say ``deadline_missed``, over all cycles;
* solve time: PlanDiagnostics ``solve_time`` (wall clock) of the cycles that planned;
* observation-to-command latency: wall clock from the sim publishing the observation a cycle
  planned from to that cycle's command arriving in another process (DDS source and reception
  timestamps on this host's clock; see ``grasp_ros.sim.closed_loop``);
* success: every episode reached its goal (and the success rate).

Prints a Markdown table, writes the JSON of docs/benchmarks/FORMAT.md (a "loop" row and a
"closed_loop" row per planner) with ``--json``, and a plot of the solve-time and latency
distributions. ``--planners grasp cem mppi`` runs the same loop (seeds, episodes) once per
planner, one after the other, each with its logs and plot in ``--out``/<planner>.

``--env arm`` runs the MuJoCo arm with its learned camera + joints model (grasp_ros/assets/
arm_latent.pt, or ``--checkpoint``); the control rate defaults to the model card's period. A
learned model's rows say where its training data came from (``"data"``: "rosbag" or
"simulator", the card's provenance).

``--busy N`` runs N CPU-spinning processes beside the loop (``grasp_ros.bench.load``); both rows
say so (``load``, ``busy_processes``) and carry the load average at the start and the end.
Targets (issue 3): deadline misses <= 0.5% of cycles, p99 latency <= one period.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from ..bench.load import busy_processes, load_average, load_fields
from ..sim.world import WORLD_NAMES
from ..bench.results import machine_info, markdown_table, write_bench_json
from ._bench_common import (add_checkpoint_argument, add_model_arguments, add_param_argument,
                            controller_overrides, card_inputs, card_rate,
                            data_source, learned_card, resolve_observation)

MISS_RATE_TARGET = 0.005
DEFAULT_RATE_HZ = 20.0
QUICK_CYCLES = 200

LOOP_COLUMNS = [("rate_hz", "rate (Hz)", "g"), ("horizon", "H"), ("planner", "planner"),
                ("cycles", "cycles"), ("deadline_miss_rate", "deadline misses", ".2%"),
                ("solve_ms_p50", "solve p50 (ms)", ".1f"), ("solve_ms_p99", "solve p99 (ms)", ".1f"),
                ("latency_ms_p50", "latency p50 (ms)", ".1f"),
                ("latency_ms_p99", "latency p99 (ms)", ".1f"), ("period_ms", "period (ms)", ".0f"),
                ("success", "success")]
CLOSED_LOOP_COLUMNS = [("env", "env"), ("planner", "planner"), ("episodes", "episodes"),
                       ("success_rate", "success rate", ".0%"),
                       ("median_time_to_goal_s", "median time to goal (s)", ".2f")]


def add_arguments(parser) -> None:
    parser.add_argument("--rate", type=float, default=None,
                        help=f"control rate in Hz (default: the model card's period, else {DEFAULT_RATE_HZ:g})")
    parser.add_argument("--horizon", type=int, default=50, help="planning horizon H (default: %(default)s)")
    parser.add_argument("--planner", "--planners", dest="planners", nargs="+", default=["grasp"],
                        metavar="PLANNER", help="controller planner; several: one run each (default: grasp)")
    parser.add_argument("--env", default="wall_door", choices=WORLD_NAMES,
                        help="world: a point-mass layout or arm (default: %(default)s)")
    add_model_arguments(parser)
    add_checkpoint_argument(parser)
    parser.add_argument("--cycles", type=int, default=1000,
                        help="at least this many control cycles (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=0,
                        help="run exactly this many episodes instead of --cycles (default: by cycles)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CYCLES} cycles instead")
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed (default: %(default)s)")
    parser.add_argument("--rate-factor", type=float, default=1.0,
                        help="sim seconds per wall second (default: %(default)s)")
    parser.add_argument("--max-episode-time", type=float, default=30.0,
                        help="sim seconds before an episode fails (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="write the results here (docs/benchmarks/FORMAT.md)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/loop"),
                        help="folder for the plot and the nodes' logs (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="wall seconds for the run (default: 3 x the cycles' duration + 120)")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="run N CPU-spinning processes beside the loop (default: %(default)s)")
    add_param_argument(parser)


def run(args) -> int:
    from ..models import WorldModelError
    from ..sim.closed_loop import LoopSpec, run_closed_loop   # rclpy only when it runs

    if args.episodes < 0 or args.busy < 0:
        raise SystemExit("grasp-ros bench-loop: --episodes and --busy must be >= 0")
    if args.checkpoint is not None and args.model != "learned":
        raise SystemExit("grasp-ros bench-loop: --checkpoint is a learned model's: use it with --model learned")
    spec = LoopSpec(env=args.env, model=args.model, checkpoint=args.checkpoint, horizon=args.horizon,
                    seed=args.seed, episodes=args.episodes, max_episode_time=args.max_episode_time,
                    rate_factor=args.rate_factor, controller_params=controller_overrides(args.params, "bench-loop"))
    try:   # a missing or bad model fails here, with its reason, not in the controller's log
        card = learned_card(spec.model_checkpoint) if spec.model == "learned" else None
    except WorldModelError as exc:
        print(f"grasp-ros bench-loop: {exc}", file=sys.stderr)
        return 2
    spec.observation = args.observation or (card_inputs(card) if card else resolve_observation(args))
    spec.rate_hz = args.rate or card_rate(card, DEFAULT_RATE_HZ)
    spec.min_cycles = 0 if args.episodes else QUICK_CYCLES if args.quick else args.cycles
    duration = (args.episodes * args.max_episode_time if args.episodes
                else spec.min_cycles / spec.rate_hz) / args.rate_factor
    spec.timeout = args.timeout or 3 * duration + 120
    amount = f"{args.episodes} episodes" if args.episodes else f">= {spec.min_cycles} cycles (~{duration:.0f} s)"
    machine = machine_info()           # before the runs: its load average is other work's
    rows = []
    for planner in args.planners:
        spec = dataclasses.replace(spec, planner=planner, log_dir=args.out / planner
                                   if len(args.planners) > 1 else args.out)
        print(f"grasp-ros bench-loop: {spec.env}, {spec.planner} + {spec.model} model "
              f"(observation: {spec.observation}), {spec.rate_hz:g} Hz, H={spec.horizon}, {amount}"
              + (f", {args.busy} busy processes beside it" if args.busy else ""))
        rows += _bench_one(spec, card, args.busy, run_closed_loop)
    if not rows:
        return 1
    loop_rows = [r for r in rows if r["bench"] == "loop"]
    closed_rows = [r for r in rows if r["bench"] == "closed_loop"]
    print()
    print(markdown_table(loop_rows, LOOP_COLUMNS))
    print()
    print(markdown_table(closed_rows, CLOSED_LOOP_COLUMNS))
    print()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, gpu {machine['gpu']}, "
          f"torch {machine['torch']}, python {machine['python']}")
    for row in loop_rows:
        print(f"{row['planner']}: load average before the run {row['loadavg'][0]}, after it "
              f"{row['loadavg'][1]}" + (f" (busy processes: {args.busy})" if args.busy else "")
              + f"; targets: deadline misses <= {MISS_RATE_TARGET:.1%}: "
              f"{_verdict(row['deadline_miss_rate'] <= MISS_RATE_TARGET)}; "
              f"p99 latency <= one period ({row['period_ms']:.0f} ms): "
              f"{_verdict(row['latency_ms_p99'] is not None and row['latency_ms_p99'] <= row['period_ms'])}")
    if args.json:
        print(f"json: {write_bench_json(args.json, rows, machine)}")
    return 0 if len(loop_rows) == len(args.planners) else 1


def _bench_one(spec, card, busy: int, run_closed_loop) -> list[dict]:
    """One run of ``spec``: its "loop" and "closed_loop" rows and its plot; [] if no cycle ran."""
    loadavg_start = load_average()
    with busy_processes(busy):
        result = run_closed_loop(spec, progress_period=10.0)
        load = load_fields(busy, loadavg_start, load_average())
    if not result.diagnostics:
        print(f"bench-loop FAILED ({spec.planner}): no control cycle observed ({result.reason})")
        return []
    if not result.ok:
        print(f"warning: the run did not end cleanly ({result.reason}); reporting what was measured")
    rows = summarise(result, spec, card)
    for row in rows:
        row.update(load)
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    print(f"plot: {plot_distributions(result, spec, spec.log_dir / 'bench_loop.png')}")
    return list(rows)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _percentile_ms(values, q: float):
    values = np.asarray(values, dtype=np.float64)
    return float(np.percentile(values, q) * 1e3) if values.size else None


def summarise(result, spec, card=None) -> tuple[dict, dict]:
    """The "loop" and "closed_loop" rows of docs/benchmarks/FORMAT.md; ``card``: the learned model's, whose
    provenance says where its training data came from."""
    from ..sim.closed_loop import world_controller_values, world_params_file
    cycles, solve = result.cycles, result.solve_times()
    statuses = {}
    for d in result.diagnostics:
        name = d["status_text"].split(":")[0] or str(d["status"])
        statuses[name] = statuses.get(name, 0) + 1
    ages = [d["observation_age"] for d in result.diagnostics if np.isfinite(d["observation_age"])]
    ends = result.ends
    loop = {
        "bench": "loop", "rate_hz": spec.rate_hz, "horizon": spec.horizon,
        "planner": spec.planner, "model": spec.model, "cycles": cycles,
        "deadline_miss_rate": result.deadline_misses / cycles if cycles else None,
        "solve_ms_p50": _percentile_ms(solve, 50), "solve_ms_p99": _percentile_ms(solve, 99),
        "latency_ms_p50": _percentile_ms(result.latencies, 50),
        "latency_ms_p99": _percentile_ms(result.latencies, 99),
        "period_ms": 1e3 / spec.rate_hz,
        "success": bool(ends) and all(e["success"] for e in ends),
        "latency_p99_over_period": (_percentile_ms(result.latencies, 99) * spec.rate_hz / 1e3
                                    if len(result.latencies) else None),
        # Beyond the format's fields:
        "env": spec.env, "through": "ros", "data": data_source(card),
        "deadline_misses": result.deadline_misses,
        "solve_ms_max": float(solve.max() * 1e3) if solve.size else None,
        "latency_ms_max": float(result.latencies.max() * 1e3) if len(result.latencies) else None,
        "latency_samples": int(len(result.latencies)),
        "observation_age_ms_p50": _percentile_ms(ages, 50),
        "observation_age_ms_p99": _percentile_ms(ages, 99),
        "status_counts": statuses, "rate_factor": spec.rate_factor,
        "wall_time_s": result.wall_time, "run_ok": result.ok,
        "latency_definition": "wall clock from the sim publishing the observation a cycle used "
                              "(DDS source timestamp) to its command arriving in another process "
                              "(DDS reception timestamp)",
    }
    times = [e["time_to_goal"] for e in ends if e["success"]]
    closed = {
        "bench": "closed_loop", "env": spec.env, "model": spec.model, "planner": spec.planner,
        "rate_hz": spec.rate_hz, "horizon": spec.horizon, "episodes": len(ends),
        "success_rate": result.successes / len(ends) if ends else None, "through": "ros",
        "median_time_to_goal_s": float(np.median(times)) if times else None,
        "seed": spec.seed, "max_episode_time_s": spec.max_episode_time,
        "observation": spec.observation, "data": data_source(card),
        "checkpoint": spec.model_checkpoint.name if spec.model_checkpoint else None,
    }
    world = world_params_file(spec.env)
    for row in (loop, closed):
        row["controller_params"] = dict(spec.controller_params)   # what -p changed ({}: defaults)
        if world is not None:   # the world's parameter file, under -p
            row["world_params"] = {"file": f"config/{world.name}", **world_controller_values(spec.env)}
    return loop, closed


def plot_distributions(result, spec, path: Path) -> Path:
    """Histogram and CDF of the solve times, CDF of the latencies, against budget and period."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    period_ms = 1e3 / spec.rate_hz
    solve = result.solve_times() * 1e3
    latency = np.asarray(result.latencies) * 1e3
    limit = 4 * period_ms            # the interesting part; outliers beyond are counted in words
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    if solve.size:
        hist.hist(np.minimum(solve, limit), bins=np.linspace(0, limit, 61), color="tab:blue", alpha=0.8)
    for ax in (hist, cdf):
        ax.axvline(0.8 * period_ms, color="tab:orange", ls="--", label="default solve budget (0.8 period)")
        ax.axvline(period_ms, color="tab:red", ls=":", label="period")
        ax.set_xlim(0, limit)
    beyond = int((solve > limit).sum())
    hist.set_xlabel("solve time (ms)" + (f"; {beyond} beyond {limit:.0f} ms (in the last bin), "
                                         f"max {solve.max():.0f} ms" if beyond else ""))
    hist.set_ylabel("cycles")
    hist.set_title(f"solve time, {len(solve)} planning cycles")
    for values, label in ((solve, "solve time"), (latency, "observation-to-command latency")):
        if values.size:
            x = np.sort(values)
            cdf.plot(x, np.arange(1, x.size + 1) / x.size,
                     label=f"{label} (n={x.size}, p99 {np.percentile(x, 99):.0f} ms)")
    cdf.set_xlabel("ms")
    cdf.set_ylabel("fraction of cycles")
    cdf.set_ylim(0, 1.01)
    cdf.set_title("CDF")
    cdf.legend(fontsize=8, loc="lower right")
    hist.legend(fontsize=8)
    fig.suptitle(f"bench-loop: {spec.env}, {spec.planner} + {spec.model}, {spec.rate_hz:g} Hz, "
                 f"H={spec.horizon}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
