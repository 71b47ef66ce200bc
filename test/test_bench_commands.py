"""Short end-to-end runs of the benchmark and demo commands that need no ROS."""
import json

from grasp_ros.cli import main


def test_bench_writes_rows_table_and_figures(tmp_path):
    assert main(["bench", "--envs", "open", "--horizons", "25", "--planners", "grasp", "cem",
                 "--episodes", "2", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "bench_planners.json").read_text())
    assert set(document["machine"]) >= {"cpu", "cores", "gpu", "torch", "python", "date"}
    planners = [r for r in document["rows"] if r["bench"] == "planners"]
    assert [r["planner"] for r in planners] == ["grasp", "cem"]
    assert all(r["episodes"] == 2 and r["success_rate"] == 1.0 for r in planners), planners
    timing = [r for r in document["rows"] if r["bench"] == "iteration_cost"]
    assert timing and all(r["batched_s"] > 0 and r["per_step_loop_s"] > 0 for r in timing)
    assert "| open | 25 | grasp |" in (tmp_path / "bench_planners.md").read_text()
    assert (tmp_path / "success_vs_horizon.png").stat().st_size > 0
    assert not (tmp_path / "bench_planners.partial.json").exists()


def test_bench_merges_result_files(tmp_path):
    for planner in ("cem", "mppi"):
        assert main(["bench", "--envs", "open", "--horizons", "25", "--planners", planner,
                     "--episodes", "1", "--out", str(tmp_path / planner), "--no-figures"]) == 0
    assert main(["bench", "--from-json", str(tmp_path / "cem" / "bench_planners.json"),
                 str(tmp_path / "mppi" / "bench_planners.json"), "--out", str(tmp_path / "all"),
                 "--no-figures"]) == 0
    rows = json.loads((tmp_path / "all" / "bench_planners.json").read_text())["rows"]
    assert sorted(r["planner"] for r in rows if r["bench"] == "planners") == ["cem", "mppi"]
    timing = [(r["model"], r["device"], r["chains"]) for r in rows if r["bench"] != "planners"]
    assert timing and len(timing) == len(set(timing))     # both files timed them: the later wins


def test_model_accuracy_grows_with_rollout_length(tmp_path):
    assert main(["bench-model", "--quick", "--steps", "6", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "model_accuracy.json").read_text())["rows"]
    assert [r["rollout_steps"] for r in rows] == list(range(1, 7))
    assert rows[-1]["position_err"] > rows[0]["position_err"] > 0
    assert (tmp_path / "model_accuracy.png").stat().st_size > 0


def test_plan_demo_saves_a_figure(tmp_path):
    out = tmp_path / "plan.png"
    assert main(["plan-demo", "--env", "open", "--horizon", "25", "--planners", "grasp", "cem",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 0
