"""``grasp-ros bench``: open-loop planner benchmark over env x horizon x planner.

Writes ``bench_planners.md`` (table + targets), ``bench_planners.json`` (docs/benchmarks/FORMAT.md),
``success_vs_horizon.png`` and ``example_plans.png`` into ``--out``.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ..bench import iteration_cost, plots
from ..bench.planners import Cell, example_plans, run_cell, summarise
from ..bench.settings import ENVS, HORIZONS, PLANNERS
from ..planning import PLANNERS as PLANNER_CLASSES
from ..bench.results import machine_info, markdown_table, write_bench_json

COLUMNS = [("env", "env"), ("horizon", "H"), ("planner", "planner"),
           ("success_rate", "success", ".0%"), ("median_solve_s", "median solve (s)", ".3f"),
           ("median_time_to_success_s", "median time to success (s)", ".3f"),
           ("median_model_calls", "median model calls"), ("median_iterations", "median iters", ".0f"),
           ("median_final_error", "median final error", ".3f")]


def add_arguments(parser) -> None:
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    parser.add_argument("--planners", nargs="+", default=list(PLANNERS), choices=PLANNERS)
    parser.add_argument("--episodes", type=int, default=100, help="seeded episodes per cell")
    parser.add_argument("--quick", action="store_true", help="20 episodes per cell")
    parser.add_argument("--workers", type=int, default=1, help="cells run in this many processes")
    parser.add_argument("--device", default="cpu", help="torch device for the planners")
    parser.add_argument("--model", default="analytic", choices=("analytic", "learned"),
                        help="analytic: plan on positions; learned: plan from camera images with "
                             "the shipped latent model (trained on wall_door)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="PLANNER.NAME=VALUE",
                        help="a planner setting over its benchmark default (value as YAML), e.g. "
                             "grasp.route_spread=0; repeat for more. The rows' settings record it")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--json", type=Path, default=None, help="JSON path (default OUT/bench_planners.json)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="do not run: merge these result files into one report and figures")


def run(args) -> int:
    torch.set_num_threads(1)   # like every worker: tiny batches, and a fair, comparable setting
    if args.from_json:
        rows, timing, machine = _merge(args.from_json)
        episodes = max(r["episodes"] for r in rows)
    else:
        episodes = 20 if args.quick else args.episodes
        try:
            overrides = parse_overrides(args.overrides)
        except ValueError as exc:
            print(f"grasp-ros bench: {exc}", file=sys.stderr)
            return 2
        cells = [Cell(e, h, p, episodes, device=args.device, model=args.model,
                      options=tuple(overrides.get(p, {}).items()))
                 for e in args.envs for h in args.horizons for p in args.planners]
        json_path = args.json or args.out / "bench_planners.json"
        rows = _run_cells(cells, args.workers, json_path.with_suffix(".partial.json"))
        timing = iteration_cost.measure_all(_analytic())
        machine = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = write_bench_json(args.json or args.out / "bench_planners.json", rows + timing, machine)
    json_path.with_suffix(".partial.json").unlink(missing_ok=True)
    report = _report(rows, timing, machine, episodes)
    (args.out / "bench_planners.md").write_text(report, encoding="utf-8")
    print(report)
    if not args.no_figures:
        plots.success_vs_horizon(rows, args.out / "success_vs_horizon.png")
        figures = {env: example_plans(env, h, range(4), args.device)
                   for env, h in (("wall_door", 50), ("u_maze", 100)) if env in args.envs}
        if figures:
            plots.example_plans_figure(figures, args.out / "example_plans.png")
    print(f"wrote {json_path} and {args.out}/")
    return 0


def parse_overrides(texts) -> dict[str, dict]:
    """``PLANNER.NAME=VALUE`` texts -> {planner: {name: value}}; ValueError names a bad one."""
    out: dict[str, dict] = {}
    for text in texts:
        target, sep, value = text.partition("=")
        planner, dot, name = target.partition(".")
        if not (sep and dot and name) or planner not in PLANNERS:
            raise ValueError(f"--set {text!r}: expected PLANNER.NAME=VALUE with PLANNER one of "
                             f"{', '.join(PLANNERS)}")
        out.setdefault(planner, {})[name] = yaml.safe_load(value)
    for planner, options in out.items():
        if planner in PLANNER_CLASSES:   # checked here, not in a worker half-way through a run
            PLANNER_CLASSES[planner].Settings().changed(**options)
    return out


def _run_cells(cells: list[Cell], workers: int, partial: Path, chunk: int = 10) -> list[dict]:
    """Rows for ``cells``; with workers, each cell is split into chunks of episodes.

    Finished cells are written to ``partial`` as they complete, so a long run that is cut
    short still leaves its results (merge them with ``--from-json``).
    """
    # Chunks of all cells interleave, so a change in machine load hits every planner alike.
    parts = {dataclasses.replace(cell, first_seed=cell.first_seed + s, episodes=min(chunk, cell.episodes - s)): cell
             for s in range(0, max(c.episodes for c in cells), chunk) for cell in cells if s < cell.episodes}
    done: dict[Cell, list] = {cell: [] for cell in cells}
    settings: dict[Cell, dict] = {}
    finished: dict[Cell, dict] = {}

    def collect(part: Cell, out: dict) -> None:
        cell = parts[part]
        done[cell].append((part.first_seed, out["records"]))
        settings[cell] = out["settings"]
        if sum(len(r) for _, r in done[cell]) == cell.episodes:
            records = [r for _, recs in sorted(done[cell], key=lambda x: x[0]) for r in recs]
            finished[cell] = summarise(cell, records, settings[cell])
            write_bench_json(partial, [finished[c] for c in cells if c in finished])

    with tqdm(total=sum(c.episodes for c in cells), desc="bench", unit="episode") as bar:
        if workers <= 1:
            for part in parts:
                bar.set_postfix_str(f"{part.env} H={part.horizon} {part.planner}")
                collect(part, run_cell(part, progress=lambda: bar.update(1)))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(run_cell, part): part for part in parts}
                for future in as_completed(futures):
                    collect(futures[future], future.result())
                    bar.update(futures[future].episodes)
    return [finished[cell] for cell in cells]


def _merge(paths):
    """Rows and timing of several result files (same machine); later files win per cell."""
    cells, timing, machine = {}, {}, None
    for path in paths:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        machine = machine or document["machine"]
        for row in document["rows"]:
            if row["bench"] == "planners":
                cells[(row["env"], row["horizon"], row["planner"])] = row
            else:
                timing[(row["bench"], row.get("model"), row.get("device"), row.get("chains"))] = row
    order = {name: i for i, name in enumerate(PLANNERS)}
    rows = sorted(cells.values(), key=lambda r: (ENVS.index(r["env"]), r["horizon"], order[r["planner"]]))
    return rows, list(timing.values()), machine


def _analytic():
    from ..models import load_world_model
    return load_world_model({"name": "analytic", "env": "wall_door", "horizon": 50})


def _models(rows) -> str:
    """The models the rows planned with ("analytic", "learned", or both)."""
    names = sorted({r.get("model", "analytic") for r in rows})
    return " and ".join(names) or "analytic"


def _report(rows, timing, machine, episodes) -> str:
    lines = ["# Planner benchmark", "",
             f"Machine: {machine['cpu']} ({machine['cores']} cores), GPU: {machine['gpu'] or 'none'}, "
             f"torch {machine['torch']}, Python {machine['python']}, {machine['date']}. "
             f"Up to {episodes} seeded episodes per row (see the episodes column in the JSON); open-loop plans with the "
             f"{_models(rows)} model, success judged by executing the plan in the simulator. Time to "
             "success: the planner's own time until its best plan so far first succeeded when executed, "
             "median over the episodes that succeed.", "",
             markdown_table(rows, COLUMNS), "", "## One GRASP iteration (H=50): batched vs per-step loop", "",
             markdown_table(timing, [("model", "model"), ("device", "device"), ("chains", "C"), ("batched_s", "batched (s)", ".2e"),
                                     ("per_step_loop_s", "per-step loop (s)", ".2e"), ("ratio", "ratio", ".3f")]),
             "", "## Targets", ""]
    lines += [f"- {text}: **{'met' if ok else 'missed'}** ({detail})" for text, ok, detail in targets(rows, timing)]
    return "\n".join(lines) + "\n"


def targets(rows, timing):
    """The issue's targets, evaluated on this run's rows (skipped when a row is absent)."""
    cell = {(r["env"], r["horizon"], r["planner"]): r for r in rows if r["model"] == "analytic"}
    out = []
    g, c, d = (cell.get(("wall_door", 50, p)) for p in ("grasp", "cem", "gd"))
    if g and c and d:
        out.append(("wall_door H=50: GRASP >= 90%", g["success_rate"] >= 0.9, f"{g['success_rate']:.0%}"))
        out.append(("wall_door H=50: GRASP >= CEM + 15 points", g["success_rate"] >= c["success_rate"] + 0.15,
                    f"GRASP {g['success_rate']:.0%}, CEM {c['success_rate']:.0%}"))
        out.append(("wall_door H=50: GRASP >= GD + 20 points", g["success_rate"] >= d["success_rate"] + 0.2,
                    f"GRASP {g['success_rate']:.0%}, GD {d['success_rate']:.0%}"))
        out.append(("wall_door H=50: GRASP median solve time <= CEM's", g["median_solve_s"] <= c["median_solve_s"],
                    f"GRASP {g['median_solve_s']:.3f} s, CEM {c['median_solve_s']:.3f} s"))
    for horizon, factor in ((50, 1.0), (100, 0.5)):     # issue 11: the paper's metric
        g, c = (cell.get(("wall_door", horizon, p)) for p in ("grasp", "cem"))
        if g and c and g.get("median_time_to_success_s") is not None and c.get("median_time_to_success_s"):
            ratio = g["median_time_to_success_s"] / c["median_time_to_success_s"]
            out.append((f"wall_door H={horizon}: GRASP median time to success <= "
                        f"{'' if factor == 1 else f'{factor:g}x '}CEM's", ratio <= factor,
                        f"GRASP {g['median_time_to_success_s']:.3f} s, CEM "
                        f"{c['median_time_to_success_s']:.3f} s: {ratio:.2f}x"))
    u = cell.get(("u_maze", 100, "grasp"))
    if u:
        out.append(("u_maze H=100: GRASP >= 75%", u["success_rate"] >= 0.75, f"{u['success_rate']:.0%}"))
    for t in timing:
        out.append((f"batched iteration <= 1/10 of the per-step loop ({t['model']}, {t['device']})", t["ratio"] <= 0.1,
                    f"ratio {t['ratio']:.3f}"))
    return out
