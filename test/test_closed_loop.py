"""Closing the loop over real DDS: the sim node and the controller node reach the goal in sim time.

Both nodes run in this process on one single-threaded executor (the command-line tools run them
as separate processes: see test_demo.py), with the parameters and remaps the demo uses. The
domain comes from the environment (`make test` picks a private one per run).
"""
from __future__ import annotations

import json
import threading
import time

import pytest

try:  # ImportError too: e.g. rclpy without an RMW library
    import rclpy
except ImportError as exc:
    pytest.skip(f"rclpy (ROS 2) is not importable: {exc}", allow_module_level=True)

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from grasp_ros.msg import PlanDiagnostics  # noqa: E402
from grasp_ros.sim.closed_loop import LoopSpec, controller_parameters, sim_parameters  # noqa: E402
from grasp_ros.ros.controller_node import GraspController  # noqa: E402
from grasp_ros.sim.node import SimNode  # noqa: E402

TIMEOUT_S = 600.0   # wall seconds: only a hang should ever reach it


def overrides(values: dict) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in values.items()]


# Lock-step: the sim steps once per command and the controller plans a fixed iteration count,
# so the run is the same discrete-time loop however busy the machine is.
@pytest.mark.parametrize("spec", [
    # the loop itself: open world, joints, the analytic model
    LoopSpec(env="open", model="analytic", observation="joints", seed=4, episodes=1, rate_hz=10.0,
             max_episode_time=20.0, lockstep=True, controller_params={"planner.iterations": 20}),
    # the default path: camera images -> the shipped learned model -> GRASP, through the door
    LoopSpec(env="wall_door", seed=2, episodes=1, rate_hz=10.0, max_episode_time=25.0,
             lockstep=True, controller_params={"planner.iterations": 12}),
], ids=["open-analytic-joints", "wall_door-learned-pixels"])
def test_sim_and_controller_reach_the_goal_in_sim_time(spec):
    context = Context()
    rclpy.init(context=context)
    nodes, executor, spinner = [], None, None
    try:
        # No watcher here (the harness's sim waits for its own).
        sim = SimNode(context=context, parameter_overrides=overrides(
            {**sim_parameters(spec), "wait_for_subscribers": ""}))
        controller = GraspController(
            context=context, parameter_overrides=overrides(controller_parameters(spec)),
            cli_args=["--ros-args", "-r", "~/goal_state:=/goal_state",
                      "-r", "~/goal_image:=/goal_image"])
        probe = rclpy.create_node("closed_loop_probe", context=context)
        nodes += [sim, controller, probe]
        reports, cycles = [], []
        probe.create_subscription(
            String, "/grasp_sim/episode", lambda m: reports.append(json.loads(m.data)),
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        probe.create_subscription(PlanDiagnostics, "/grasp_controller/plan_diagnostics",
                                  cycles.append, 100)

        executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            executor.add_node(node)
        assert controller.start(), "the controller failed to configure or activate"
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()

        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not any(r["event"] == "done" for r in reports):
            time.sleep(0.1)

        ends = [r for r in reports if r["event"] == "end"]
        assert ends, f"no episode ended within {TIMEOUT_S} s (sim time {sim.core.now_ns / 1e9:.1f} s)"
        assert ends[0]["success"], f"the agent did not reach the goal: {ends[0]}"
        # Sim time: the episode lasted its env steps' periods (its clock starts with the first
        # command, within the first step).
        assert ends[0]["time_to_goal"] == pytest.approx(ends[0]["steps"] / spec.rate_hz,
                                                        abs=1 / spec.rate_hz)
        assert controller.get_clock().ros_time_is_active
        planned = [c for c in cycles if c.status == PlanDiagnostics.STATUS_OK]
        assert planned, "no control cycle planned"
        assert all(len(c.command) == 2 and all(-1.0 <= v <= 1.0 for v in c.command) for c in cycles)
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        if spinner is not None:
            spinner.join(timeout=5.0)
        rclpy.try_shutdown(context=context)
        for node in nodes:
            node.destroy_node()
