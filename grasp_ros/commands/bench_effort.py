"""``grasp-ros bench-effort``: closed-loop success against planning effort per control cycle.

The loop runs through the ROS-free control core (simulator -> ControlLoop -> simulator) in lock
step, with the controller's planner defaults: every cycle plans exactly ``--iterations``
iterations, whatever the CPU. So the run says what a controller reaches when each period leaves
it that much planning (a busy CPU leaves GRASP a few iterations per cycle), and it repeats
exactly on any machine. ``--variant NAME:KEY=VALUE,...`` adds planner settings to compare in the
same run.

Writes ``bench_effort.json`` (docs/benchmarks/FORMAT.md "closed_loop" rows, ``"through": "core"``, with
``iterations_per_cycle`` and ``variant``), ``bench_effort.md`` and ``success_vs_effort.png`` into
``--out``.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm import tqdm

from ..bench import plots
from ..bench.closed_loop_core import run as run_core
from ..bench.results import machine_info, markdown_table, write_bench_json
from ..sim.world import ARM, WORLD_NAMES

COLUMNS = [("variant", "variant"), ("iterations_per_cycle", "iterations / cycle"),
           ("success_rate", "success", ".0%"), ("median_steps", "median steps (a failure counts the cap)", ".0f"),
           ("median_solve_s", "median solve (s)", ".3f")]


def add_arguments(parser) -> None:
    parser.add_argument("--env", default="wall_door", choices=WORLD_NAMES)
    parser.add_argument("--model", default="learned", choices=("learned", "analytic"),
                        help="learned: the world's shipped model (wall_door's from the camera, the "
                             "arm's from camera + joints); analytic: joints (point-mass worlds)")
    parser.add_argument("--planner", default="grasp")
    parser.add_argument("--iterations", nargs="+", type=int, default=[3, 12],
                        help="planner iterations per control cycle, one run each")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="planner settings over the controller's defaults (values as YAML), "
                             "e.g. zero-init:init_actions=zero; the defaults run as 'default'")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed")
    parser.add_argument("--rate", type=float, default=10.0, help="control rate (Hz)")
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--max-episode-time", type=float, default=30.0,
                        help="sim seconds before an episode fails")
    parser.add_argument("--command-delay", type=int, default=0, choices=(0, 1),
                        help="steps each command acts late: 1 as through ROS in real time (the "
                             "command reaches the sim after the step it was planned for began)")
    parser.add_argument("--plan-ahead", type=int, nargs="+", default=[0], choices=(0, 1),
                        help="the controller's plan_ahead, one run each")
    parser.add_argument("--workers", type=int, default=1, help="runs in this many processes")
    parser.add_argument("--out", type=Path, default=Path("bench_out/effort"))
    parser.add_argument("--json", type=Path, default=None, help="JSON path (default OUT/bench_effort.json)")


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME:KEY=VALUE,...`` -> (NAME, {KEY: VALUE}), each VALUE read as YAML."""
    import yaml

    name, _, body = text.partition(":")
    if not name or not body:
        raise SystemExit(f"--variant {text!r}: expected NAME:KEY=VALUE,...")
    settings = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"--variant {text!r}: {item!r} is not KEY=VALUE")
        settings[key.strip()] = yaml.safe_load(value)
    return name, settings


def controller_defaults(planner: str, env: str = "") -> dict:
    """The planner settings the controller node runs with when no planner.* is set: its
    parameter defaults, with the world's parameter file (``config/ENV_controller.yaml``) over them."""
    from ..ros import params
    from ..sim.closed_loop import world_controller_values

    values = {p.name: p.default for p in params.PARAMETERS}
    values.update(world_controller_values(env) if env else {})
    knobs, _ = params.knobs_for(planner, values)
    return knobs


def _run_one(job: dict) -> dict:
    torch.set_num_threads(1)     # as the controller's torch_threads default
    row = run_core(job["env"], job["planner"], job["horizon"], job["rate"], job["episodes"],
                   settings=job["settings"], first_seed=job["seed"], solve_budget=1e9,
                   model=job["model"], max_steps=job["max_steps"],
                   command_delay=job["command_delay"], plan_ahead=job["plan_ahead"])
    return {**row, "variant": job["variant"], "iterations_per_cycle": job["settings"]["iterations"],
            "lockstep": True}


def run(args) -> int:
    if args.env == ARM and args.model != "learned":
        raise SystemExit("bench-effort: the arm has only a learned model (--model learned)")
    base = controller_defaults(args.planner, args.env)
    variants = [("default", {})] + [parse_variant(v) for v in args.variant]
    max_steps = round(args.max_episode_time * args.rate)
    jobs = [{"env": args.env, "planner": args.planner, "horizon": args.horizon, "rate": args.rate,
             "episodes": args.episodes, "seed": args.seed, "model": args.model, "max_steps": max_steps,
             "variant": name, "settings": {**base, **settings, "iterations": n},
             "command_delay": args.command_delay, "plan_ahead": ahead}
            for name, settings in variants for n in args.iterations for ahead in args.plan_ahead]
    print(f"grasp-ros bench-effort: {args.env}, {args.planner} + {args.model} model, lock step at "
          f"{args.rate:g} Hz, H={args.horizon}, {args.episodes} episodes of {args.max_episode_time:g} s "
          f"per run; {len(jobs)} runs ({', '.join(n for n, _ in variants)} x iterations "
          f"{args.iterations} x plan_ahead {args.plan_ahead})"
          + (f"; each command acts {args.command_delay} step late" if args.command_delay else ""))
    machine = machine_info()
    rows = []
    with tqdm(total=len(jobs), desc="bench-effort", unit="run") as bar:
        if args.workers <= 1:
            for job in jobs:
                rows.append(_run_one(job))
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
                for future in as_completed([pool.submit(_run_one, job) for job in jobs]):
                    rows.append(future.result())
                    bar.update(1)
    order = {(j["variant"], j["settings"]["iterations"], j["plan_ahead"]): i for i, j in enumerate(jobs)}
    rows.sort(key=lambda r: order[(r["variant"], r["iterations_per_cycle"], r["plan_ahead"])])
    for row in rows:
        row["settings"] = json.loads(json.dumps(row["settings"], default=str))
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = write_bench_json(args.json or args.out / "bench_effort.json", rows, machine)
    report = (f"# Closed-loop success against planning iterations per cycle\n\n"
              f"{args.env}, {args.planner} + {args.model} model, lock step (exactly that many "
              f"iterations every cycle), {args.rate:g} Hz, H={args.horizon}, seeds {args.seed}-"
              f"{args.seed + args.episodes - 1}, {args.max_episode_time:g} s episodes"
              + (f", each command acting {args.command_delay} step late" if args.command_delay else "")
              + ".\n\n"
              + markdown_table(rows, COLUMNS + ([("plan_ahead", "plan ahead")] if len(args.plan_ahead) > 1 else []))
              + "\n")
    (args.out / "bench_effort.md").write_text(report, encoding="utf-8")
    plots.success_vs_effort(rows, args.out / "success_vs_effort.png")
    print(report)
    print(f"wrote {json_path}, {args.out / 'bench_effort.md'} and {args.out / 'success_vs_effort.png'}")
    return 0

