"""The benchmark helpers shared by the bench commands (no ROS needed)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from grasp_ros.bench.results import machine_info, markdown_table, write_bench_json


def test_machine_info_has_the_fields_of_bench_format():
    info = machine_info()
    assert {"cpu", "cores", "gpu", "torch", "python", "date"} <= set(info)
    assert isinstance(info["cpu"], str) and info["cores"] >= 1
    assert info["gpu"] is None or isinstance(info["gpu"], str)


def test_write_bench_json_makes_valid_json_without_nan(tmp_path):
    machine = {"cpu": "test", "cores": 2, "gpu": None, "torch": "x", "python": "3", "date": "d"}
    rows = [{"bench": "loop", "solve_ms_p99": math.nan, "cycles": np.int64(1200),
             "rate": np.float32(2.5), "nested": {"x": math.inf, "ok": True}}]
    path = write_bench_json(tmp_path / "sub" / "out.json", rows, machine)
    document = json.loads(path.read_text())     # strict JSON: NaN/Inf would not parse back
    assert document == {"machine": machine, "rows": [
        {"bench": "loop", "solve_ms_p99": None, "cycles": 1200, "rate": 2.5,
         "nested": {"x": None, "ok": True}}]}


def test_markdown_table_formats_columns():
    rows = [{"name": "a|b", "rate": 0.1234, "ok": True, "ms": 12.345}, {"name": "c", "rate": math.nan}]
    table = markdown_table(rows, ["name", ("rate", "rate", ".1%"), ("ok", "OK"), ("ms", "ms", ".1f")])
    assert table.splitlines() == [
        "| name | rate | OK | ms |",
        "|---|---|---|---|",
        "| a\\|b | 12.3% | yes | 12.3 |",
        "| c | - | - | - |",
    ]


def test_bench_loop_rows_follow_bench_format():
    closed_loop = pytest.importorskip("grasp_ros.sim.closed_loop", exc_type=ImportError)  # rclpy
    from grasp_ros.commands.bench_loop import summarise

    ok, fallback = 0, 2
    diagnostics = ([{"status": ok, "status_text": "OK", "solve_time": 0.010, "observation_age": 0.0,
                     "deadline_missed": False}] * 98
                   + [{"status": fallback, "status_text": "FALLBACK: late", "solve_time": 0.090,
                       "observation_age": 0.0, "deadline_missed": True}] * 2)
    ends = [{"success": True, "time_to_goal": 4.0}, {"success": True, "time_to_goal": 6.0}]
    result = closed_loop.LoopResult(ok=True, reason="ok", starts=[], ends=ends,
                                    samples=np.zeros((0, 6)), diagnostics=diagnostics,
                                    latencies=np.full(100, 0.012), wall_time=5.0, logs={})
    loop, closed = summarise(result, closed_loop.LoopSpec(env="open", model="analytic", rate_hz=20.0, horizon=50))
    assert {k: loop[k] for k in ("bench", "rate_hz", "horizon", "planner", "model", "cycles",
                                 "deadline_miss_rate", "period_ms", "success")} == {
        "bench": "loop", "rate_hz": 20.0, "horizon": 50, "planner": "grasp", "model": "analytic",
        "cycles": 100, "deadline_miss_rate": 0.02, "period_ms": 50.0, "success": True}
    assert loop["solve_ms_p50"] == np.float64(10.0) and 10.0 < loop["solve_ms_p99"] <= 90.0
    assert loop["latency_ms_p50"] == loop["latency_ms_p99"] == np.float64(12.0)
    assert loop["latency_p99_over_period"] == pytest.approx(12.0 / 50.0)
    assert loop["status_counts"] == {"OK": 98, "FALLBACK": 2}
    assert closed == {**closed, "bench": "closed_loop", "env": "open", "episodes": 2,
                      "success_rate": 1.0, "through": "ros", "median_time_to_goal_s": 5.0}


def test_arm_rows_name_the_world_the_checkpoint_and_where_its_data_came_from(tmp_path):
    closed_loop = pytest.importorskip("grasp_ros.sim.closed_loop", exc_type=ImportError)  # rclpy
    from grasp_ros.commands.bench_loop import summarise
    from grasp_ros.models.card import ActionOutput, JointInput, ModelCard

    card = ModelCard(ActionOutput(("a0", "a1", "a2"), (-1.5, -2.0, -2.5), (1.5, 2.0, 2.5)),
                     joints=JointInput(("joint1", "joint2", "joint3")), period=0.1,
                     provenance={"source": "rosbag:arm_bag"})
    spec = closed_loop.LoopSpec(env="arm", checkpoint=tmp_path / "arm.pt", observation="image+joints")
    assert spec.model_options.startswith(f'{{checkpoint: "{tmp_path / "arm.pt"}", env: arm,')
    assert closed_loop.LoopSpec(env="arm").model_checkpoint == closed_loop.ARM_CHECKPOINT
    assert closed_loop.LoopSpec(env="wall_door").model_checkpoint is None   # the built-in default
    result = closed_loop.LoopResult(ok=True, reason="ok", starts=[], ends=[{"success": False}],
                                    samples=np.zeros((0, 8)), diagnostics=[], latencies=np.zeros(0),
                                    wall_time=1.0, logs={})
    loop, closed = summarise(result, spec, card)
    for row in (loop, closed):
        assert {k: row[k] for k in ("env", "through", "data")} == {"env": "arm", "through": "ros",
                                                                    "data": "rosbag"}
    assert closed["checkpoint"] == "arm.pt" and closed["success_rate"] == 0.0
    # The arm's parameter file is in the rows and on the controller's command line, after the main one.
    assert closed["world_params"] == {"file": "config/arm_controller.yaml", "planner.sync_every": 0,
                                      "planner.warm_states": "reset", "planner.route_spread": 0.0, "planner.start_samples": 300,
                                      "planner.start_colour": 2.0, "planner.start_std_spread": 10.0,
                                      "planner.lr_actions": 0.03, "planner.iterations": 5,
                                      "plan_ahead": 1,
                                      "cost.joint_limits_low": [-2.8, -1.5, -2.5, -2.0, -2.5, -2.5],
                                      "cost.joint_limits_high": [2.8, 1.5, 2.5, 2.0, 2.5, 2.5]}
    files = [a for i, a in enumerate(closed_loop.node_commands(spec)["controller"][1:])
             if closed_loop.node_commands(spec)["controller"][i] == "--params-file"]
    assert [Path(f).name for f in files] == ["grasp_controller.yaml", "arm_controller.yaml"]
    # In lock step a command acts at once: the run plans from the observation whatever the file says.
    lockstep = closed_loop.node_commands(closed_loop.LoopSpec(env="arm", lockstep=True))["controller"]
    assert "plan_ahead:=0" in lockstep[lockstep.index("--params-file", lockstep.index("--params-file") + 1):]
    assert "plan_ahead:=0" not in closed_loop.node_commands(spec)["controller"]
    point_mass = summarise(result, closed_loop.LoopSpec(env="open", model="analytic"))[1]
    assert point_mass["data"] is None and "world_params" not in point_mass


def test_bench_loop_takes_controller_parameters_checked_by_the_node_table():
    """-p NAME:=VALUE reaches the controller's parameters and the rows, typed by the node's own
    table; a bad value, an unknown name or one the harness sets is refused with the reason."""
    closed_loop = pytest.importorskip("grasp_ros.sim.closed_loop", exc_type=ImportError)  # rclpy
    from grasp_ros.commands._bench_common import controller_overrides
    from grasp_ros.commands.bench_loop import summarise

    overrides = controller_overrides(["planner.chains:=24", "planner.running_weight=0.2",
                                      "planner.init_actions:=zero"], "bench-loop")
    assert overrides == {"planner.chains": 24, "planner.running_weight": 0.2, "planner.init_actions": "zero"}
    spec = closed_loop.LoopSpec(env="open", model="analytic", controller_params=overrides)
    assert closed_loop.controller_parameters(spec)["planner.chains"] == 24
    result = closed_loop.LoopResult(ok=True, reason="ok", starts=[], ends=[], samples=np.zeros((0, 6)),
                                    diagnostics=[], latencies=np.zeros(0), wall_time=1.0, logs={})
    assert all(row["controller_params"] == overrides for row in summarise(result, spec))
    for bad, reason in (["planner.chains:=0", "planner.chains"], ["no_such:=1", "unknown"],
                        ["planner.init_actions:=sideways", "init_actions"],
                        ["planner:=cem", "--planner"], ["use_sim_time:=false", "harness"],
                        ["planner.chains", "NAME:=VALUE"]):
        with pytest.raises(SystemExit, match=reason):
            controller_overrides([bad], "bench-loop")


def test_the_loop_watcher_takes_reports_and_commands_from_one_sim_and_one_controller_only():
    """Another node on the domain (a second demo, a stray sim, a peer): its commands drove the
    robot to a goal the demo called reached, and its reports were printed as the run's (an
    adversarial audit). Each kind from more than one publisher, or a report not the sim's,
    makes the run disturbed, with the reason; one of each is the run itself."""
    closed_loop = pytest.importorskip("grasp_ros.sim.closed_loop", exc_type=ImportError)  # rclpy
    import rclpy
    from rclpy.context import Context
    from std_msgs.msg import Float64MultiArray, String
    context = Context()
    rclpy.init(context=context)
    watcher = closed_loop.LoopWatcher(context, closed_loop.LoopSpec(env="open", model="analytic"))
    try:
        good = {"event": "done", "episodes": 1, "successes": 1, "t": 1.0}
        watcher._on_report(String(data=json.dumps(good)), {"publisher_gid": "sim"})
        watcher._on_command(Float64MultiArray(data=[0.1, 0.2]), {"publisher_gid": "controller",
                                                                 "source_timestamp": 1, "received_timestamp": 2})
        assert watcher.disturbed() == "" and watcher.reports == [good]
        watcher._on_command(Float64MultiArray(data=[1.0, 1.0]), {"publisher_gid": "peer",
                                                                 "source_timestamp": 3, "received_timestamp": 4})
        assert watcher.disturbed().startswith("2 publishers of commands")
        end = {"event": "end", "episode": 0, "seed": 2, "t": 5.0, "success": True, "time_to_goal": 4.0,
               "duration": 4.0, "steps": 40, "final_distance": 0.05, "goal": [0.5, 0.5]}
        watcher._on_report(String(data=json.dumps(end)), {"publisher_gid": "sim"})
        assert watcher.reports == [good, end]
        bad = ("[1, 2, 3]", "not json", "[" * 100_000, json.dumps({"event": "end", "episode": 0}),
               json.dumps({**end, "time_to_goal": "soon"}), json.dumps({**end, "success": 1}),
               json.dumps({"event": ["end"]}))
        for text in bad:
            watcher._on_report(String(data=text), {"publisher_gid": "sim"})     # some were tracebacks
        assert watcher.reports == [good, end] and len(watcher.refused_reports) == len(bad)
        assert f"{len(bad)} episode report(s) that are not the sim's" in watcher.disturbed()
    finally:
        watcher.destroy_node()
        rclpy.try_shutdown(context=context)
