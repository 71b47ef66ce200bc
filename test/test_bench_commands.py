"""Short end-to-end runs of the benchmark and demo commands that need no ROS."""
import json

import numpy as np

from grasp_ros.bench import frame_cost
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


def test_bench_set_overrides_one_planners_settings_and_refuses_bad_ones(tmp_path, capsys):
    assert main(["bench", "--envs", "open", "--horizons", "25", "--planners", "grasp", "cem",
                 "--episodes", "1", "--out", str(tmp_path), "--no-figures",
                 "--set", "grasp.chains=3", "--set", "grasp.route_spread=0"]) == 0
    rows = json.loads((tmp_path / "bench_planners.json").read_text())["rows"]
    settings = {r["planner"]: r["settings"] for r in rows if r["bench"] == "planners"}
    assert (settings["grasp"]["chains"], settings["grasp"]["route_spread"]) == (3, 0.0)
    assert settings["cem"]["samples"] == 300                            # the others keep theirs
    for bad, says in (("grasp.nope=1", "no settings ['nope']"), ("grasp.route_spread=-1", "route_spread"),
                      ("chains=3", "PLANNER.NAME=VALUE")):
        assert main(["bench", "--episodes", "1", "--out", str(tmp_path / "bad"), "--set", bad]) == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


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


def test_bench_effort_runs_each_variant_at_each_iteration_count_and_repeats_exactly(tmp_path):
    def effort(out):
        assert main(["bench-effort", "--env", "open", "--model", "analytic", "--horizon", "20",
                     "--iterations", "1", "4", "--episodes", "2", "--max-episode-time", "3",
                     "--variant", "zero-init:init_actions=zero,chains=3", "--out", str(out)]) == 0
        return json.loads((out / "bench_effort.json").read_text())["rows"]
    rows = effort(tmp_path / "one")
    assert [(r["variant"], r["iterations_per_cycle"]) for r in rows] == [
        ("default", 1), ("default", 4), ("zero-init", 1), ("zero-init", 4)]
    assert all(r["bench"] == "closed_loop" and r["through"] == "core" and r["lockstep"] for r in rows)
    assert rows[0]["settings"]["chains"] == 12 and rows[0]["settings"]["running_weight"] == 0.1
    assert rows[2]["settings"]["init_actions"] == "zero" and rows[2]["settings"]["chains"] == 3
    assert all(len(r["successes"]) == 2 and r["max_episode_steps"] == 30 for r in rows)
    # Lock step: the same episodes again, the same outcome, whatever the CPU gave.
    again = effort(tmp_path / "two")
    assert [(r["successes"], r["median_steps"]) for r in rows] == \
        [(r["successes"], r["median_steps"]) for r in again]
    assert "| zero-init | 4 |" in (tmp_path / "one" / "bench_effort.md").read_text()
    assert (tmp_path / "one" / "success_vs_effort.png").stat().st_size > 0
    assert all(r["command_delay_steps"] == 0 and r["plan_ahead"] == 0 for r in rows)


def test_bench_effort_delays_commands_and_runs_each_plan_ahead(tmp_path):
    assert main(["bench-effort", "--env", "open", "--model", "analytic", "--horizon", "20",
                 "--iterations", "2", "--episodes", "1", "--max-episode-time", "3",
                 "--command-delay", "1", "--plan-ahead", "0", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "bench_effort.json").read_text())["rows"]
    assert [(r["plan_ahead"], r["command_delay_steps"]) for r in rows] == [(0, 1), (1, 1)]
    report = (tmp_path / "bench_effort.md").read_text()
    assert "each command acting 1 step late" in report and "plan ahead" in report


def test_frame_cost_bench_converts_every_camera_format_to_one_model_input(tmp_path):
    """The frame-cost benchmark's messages are the same picture in each format: the node's
    conversion gives the one model input from each colour format (the PNG bit for bit, the
    JPEG near it), and its quick run writes a row per format."""
    rgb = frame_cost.camera_frame(96, 72)
    inputs = {fmt: frame_cost.convert(*frame_cost.camera_message(rgb, fmt))
              for fmt in ("rgb8", "bgr8", "bgra8", "png", "jpeg")}
    for fmt in ("bgr8", "bgra8", "png"):
        assert np.array_equal(inputs[fmt], inputs["rgb8"]), fmt
    assert np.abs(inputs["jpeg"].astype(int) - inputs["rgb8"]).mean() < 4
    assert inputs["rgb8"].shape == (frame_cost.INPUT_SIZE, frame_cost.INPUT_SIZE, 3)
    assert frame_cost.main(["--quick", "--json", str(tmp_path / "frames.json")]) == 0
    rows = json.loads((tmp_path / "frames.json").read_text())["rows"]
    assert [r["format"] for r in rows] == [*frame_cost.RAW, *frame_cost.COMPRESSED]
    assert all(r["bench"] == "frame_cost" and r["ms_p50"] > 0 for r in rows)
    assert "| yuyv | 640 | 480 |" in (tmp_path / "frames.md").read_text()
