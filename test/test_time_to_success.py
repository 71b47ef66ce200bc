"""Time to success in the planner benchmark: the planners' observer and the bench's use of it."""
import json
import time
import types

import numpy as np
import pytest
import torch

from grasp_ros.bench import planners as bench
from grasp_ros.bench.peer_mppi import PeerMppi
from grasp_ros.bench.settings import PLANNER_SETTINGS, early_exit_tolerance
from grasp_ros.cli import main
from grasp_ros.planning import Budget, base, make_planner
from grasp_ros.sim import make_env

H = 25
# Small budgets that still offer several bests (GRASP: rankings, two syncs and the final rollout;
# few chains, so that the first ranking does not already find the plan it returns).
SMALL = {"grasp": {"iterations": 20, "chains": 4}, "cem": {"iterations": 3, "samples": 50, "elites": 5},
         "mppi": {"iterations": 3, "samples": 50}, "gd": {"iterations": 4, "chains": 2}}
NAMES = (*SMALL, "pytorch_mppi")


def _planner(name, model):
    if name == "pytorch_mppi":
        pytest.importorskip("pytorch_mppi")
        return PeerMppi(model, H, iterations=3, samples=50, lambda_=0.01, noise_sigma=0.5)
    return make_planner(name, model, H, SMALL[name])


def _task(seed=1):
    env = make_env("wall_door", H)
    model = bench.load_model("analytic", "wall_door", H, "cpu")
    return model, bench.encode_task(env, env.sample_episode(seed), model, "cpu")


def _plan(planner, task, seed=1, budget=None):
    planner.reset(seed)
    return planner.plan(*task) if budget is None else planner.plan(*task, budget=budget)


@pytest.mark.parametrize("name", NAMES)
def test_observer_sees_the_bests_and_leaves_the_plan_unchanged(name):
    model, task = _task()
    planner = _planner(name, model)
    plain = _plan(planner, task)
    seen = []
    planner.observer = lambda actions, seconds: seen.append((actions.clone(), seconds))
    watched = _plan(planner, task)
    assert torch.equal(watched.actions, plain.actions) and watched.iterations == plain.iterations
    assert len(seen) >= 2
    assert torch.equal(seen[-1][0], watched.actions)       # the returned plan was reported last
    times = [s for _, s in seen]
    assert times == sorted(times) and 0 < times[0] and times[-1] <= watched.solve_time


@pytest.mark.parametrize("name", NAMES)
def test_observer_time_is_not_the_planners(name, monkeypatch):
    """Each observation moves the planner's clock 1000 s on: none of it may show in its times or
    stop it early under a 500 s budget."""
    model, task = _task()
    planner = _planner(name, model)
    budget = Budget(max_iterations=SMALL.get(name, {"iterations": 3})["iterations"], max_seconds=500.0)
    plain = _plan(planner, task, budget=budget)
    jump = [0.0]
    monkeypatch.setattr(base, "time", types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + jump[0]))
    seen = []

    def slow_observer(actions, seconds):
        seen.append(seconds)
        jump[0] += 1000.0
    planner.observer = slow_observer
    watched = _plan(planner, task, budget=budget)
    assert len(seen) >= 2 and jump[0] >= 2000.0
    assert watched.iterations == plain.iterations and torch.equal(watched.actions, plain.actions)
    assert watched.solve_time < 500.0 and max(seen) < 500.0


def test_bench_cell_records_time_to_success_of_the_episodes_that_succeed(monkeypatch):
    # A small MPPI budget: on these seeds some episodes succeed and some fail.
    monkeypatch.setitem(PLANNER_SETTINGS, "mppi", {"iterations": 5, "samples": 100})
    cell = bench.Cell("wall_door", H, "mppi", episodes=6)
    records = bench.run_cell(cell)["records"]
    succeeded = [r for r in records if r["success"]]
    assert succeeded and len(succeeded) < len(records)
    for r in records:
        if r["success"]:
            assert np.isfinite(r["time_to_success_s"]) and 0 < r["time_to_success_s"] <= r["solve_s"]
        else:
            assert r["time_to_success_s"] is None
    # The observer's simulator is its own: the episodes end as without it.
    env, model = make_env("wall_door", H), bench.load_model("analytic", "wall_door", H, "cpu")
    planner = bench.build_planner(cell, model, early_exit_tolerance(env.success_radius))
    for seed, r in enumerate(records):
        ok, _, path = bench.run_episode(env, planner, model, seed, "cpu")
        assert (ok, env.distance_to_goal(path[-1])) == (r["success"], r["final_error"])
    row = bench.summarise(cell, records, {})
    assert row["median_time_to_success_s"] == pytest.approx(np.median([r["time_to_success_s"] for r in succeeded]))
    assert row["time_to_success_episodes"] == len(succeeded)
    assert row["success_rate"] == pytest.approx(len(succeeded) / len(records))


def test_summary_without_successes_has_no_time_to_success():
    records = [{"success": False, "solve_s": 0.1, "calls": 10, "iterations": 3, "final_error": 0.5,
                "time_to_success_s": None}] * 2
    row = bench.summarise(bench.Cell("open", H, "cem", 2), records, {})
    assert row["median_time_to_success_s"] is None and row["time_to_success_episodes"] == 0


def test_report_merges_results_written_before_time_to_success(tmp_path):
    row = {"bench": "planners", "env": "open", "horizon": 25, "planner": "cem", "model": "analytic",
           "episodes": 2, "success_rate": 1.0, "median_solve_s": 0.05, "median_model_calls": 100,
           "median_iterations": 3.0, "median_final_error": 0.01}
    older = tmp_path / "older.json"
    older.write_text(json.dumps({"machine": {"cpu": "x", "cores": 2, "gpu": None, "torch": "2",
                                             "python": "3", "date": "today"}, "rows": [row]}))
    newer = dict(row, planner="mppi", median_time_to_success_s=0.0123, time_to_success_episodes=2)
    (tmp_path / "newer.json").write_text(json.dumps({"machine": None, "rows": [newer]}))
    assert main(["bench", "--from-json", str(older), str(tmp_path / "newer.json"),
                 "--out", str(tmp_path / "out"), "--no-figures"]) == 0
    table = (tmp_path / "out" / "bench_planners.md").read_text()
    assert "median time to success (s)" in table
    assert "| open | 25 | cem | 100% | 0.050 | - |" in table
    assert "| open | 25 | mppi | 100% | 0.050 | 0.012 |" in table


def test_targets_compare_time_to_success_with_cem():
    """H=50: GRASP's median time to success <= CEM's; H=100: <= half of CEM's."""
    from grasp_ros.commands.bench import targets

    def row(horizon, planner, seconds):
        return {"env": "wall_door", "horizon": horizon, "planner": planner, "model": "analytic",
                "success_rate": 0.9, "median_solve_s": 1.0, "median_time_to_success_s": seconds}
    rows = [row(50, "grasp", 0.04), row(50, "cem", 0.05), row(100, "grasp", 0.06), row(100, "cem", 0.1)]
    verdicts = {text: ok for text, ok, _ in targets(rows, [])}
    assert verdicts["wall_door H=50: GRASP median time to success <= CEM's"] is True
    assert verdicts["wall_door H=100: GRASP median time to success <= 0.5x CEM's"] is False
    rows[3]["median_time_to_success_s"] = None        # CEM never succeeded: no verdict
    assert not any("H=100" in text for text, _, _ in targets(rows, []))
