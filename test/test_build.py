"""Checks of the colcon build: the generated messages import, and travel over real DDS.

Skipped where rclpy is not importable (e.g. the library pip-installed alone, without ROS 2).
Where rclpy is there, the messages must have been built (`make setup`), or these tests fail.
"""
from __future__ import annotations

import math
import os
import time
import uuid

import pytest

try:  # ImportError too, not only ModuleNotFoundError: e.g. rclpy without an RMW library
    import rclpy
except ImportError as exc:
    pytest.skip(f"rclpy (ROS 2) is not importable: {exc}", allow_module_level=True)

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

TIMEOUT_S = 10.0


def _import_msgs():
    try:
        from grasp_ros.msg import JointGoal, Plan, PlanDiagnostics
    except ImportError as exc:  # pragma: no cover - message only
        pytest.fail(
            "grasp_ros.msg is not importable: build the messages with `make setup` "
            f"(colcon build into install/), or source install/setup.bash. ({exc!r})"
        )
    return PlanDiagnostics, Plan, JointGoal


def test_messages_import_with_fields_and_constants():
    PlanDiagnostics, Plan, JointGoal = _import_msgs()

    assert PlanDiagnostics.STATUS_OK == 0
    assert PlanDiagnostics.STATUS_STALE == 1
    assert PlanDiagnostics.STATUS_FALLBACK == 2
    assert PlanDiagnostics.STATUS_ERROR == 3
    assert PlanDiagnostics.STATUS_INACTIVE == 4
    # One name per status, the same numbers as the control loop's.
    from grasp_ros.control import Status
    assert {s.name: int(s) for s in Status} == {
        name[len("STATUS_"):]: getattr(PlanDiagnostics, name)
        for name in dir(PlanDiagnostics) if name.startswith("STATUS_")}

    fields = PlanDiagnostics.get_fields_and_field_types()
    assert fields == {
        "header": "std_msgs/Header",
        "status": "uint8",
        "status_text": "string",
        "planner": "string",
        "solve_time": "double",
        "iterations": "uint32", "syncs": "uint32",
        "plan_cost": "double",
        "dynamics_residual": "double",
        "observation_age": "double",
        "deadline_missed": "boolean",
        "warm_started": "boolean",
        "start_samples": "uint32",
        "goal_distance": "double",
        "observation_novelty": "double",
        "goal_novelty": "double",
        "command_delay": "double",
        "command": "sequence<double>",
    }
    # where the two bools left padding before a double: bags recorded before it still decode
    names = list(fields)
    assert names.index("start_samples") == names.index("warm_started") + 1
    assert Plan.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "planner": "string",
        "horizon": "uint32",
        "action_dim": "uint32",
        "latent_dim": "uint32",
        "actions": "sequence<double>",
        "states": "sequence<double>",
        "cost": "double",
    }
    assert JointGoal.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "name": "sequence<string>",
        "position": "sequence<double>",
    }

    plan = Plan(horizon=2, action_dim=3, latent_dim=1,
                actions=[float(i) for i in range(6)], states=[0.0, 1.0, 2.0])
    assert list(plan.actions) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    goal = JointGoal(name=["j1", "j2"], position=[0.1, -0.2])
    assert list(goal.name) == ["j1", "j2"]


def test_package_is_installed_for_ros2_run():
    """The ament index finds the package, its executables and its share folder."""
    ament_index_python = pytest.importorskip("ament_index_python")
    try:
        prefix = ament_index_python.get_package_prefix("grasp_ros")
    except ament_index_python.PackageNotFoundError:
        pytest.fail("grasp_ros is not in the ament index: AMENT_PREFIX_PATH lacks "
                    "install/grasp_ros (run `make setup`, or source install/setup.bash)")
    share = ament_index_python.get_package_share_directory("grasp_ros")
    assert os.path.isfile(os.path.join(share, "package.xml"))
    for exe in ("grasp_controller", "grasp_sim", "odometry_relay"):
        path = os.path.join(prefix, "lib", "grasp_ros", exe)
        assert os.path.isfile(path), path
        assert os.access(path, os.X_OK), path


def test_plan_diagnostics_round_trip_over_dds():
    PlanDiagnostics, _, _ = _import_msgs()

    context = Context()
    rclpy.init(context=context)
    executor = None
    nodes = []
    try:
        pub_node = rclpy.create_node("test_build_pub", context=context)
        nodes.append(pub_node)
        sub_node = rclpy.create_node("test_build_sub", context=context)
        nodes.append(sub_node)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(pub_node)
        executor.add_node(sub_node)

        # A topic of its own, so that nothing else on the machine can answer.
        topic = f"/test_build_{uuid.uuid4().hex[:12]}/plan_diagnostics"
        qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE)
        received = []
        sub_node.create_subscription(PlanDiagnostics, topic, received.append, qos)
        pub = pub_node.create_publisher(PlanDiagnostics, topic, qos)

        msg = PlanDiagnostics()
        msg.header.stamp = pub_node.get_clock().now().to_msg()
        msg.header.frame_id = "base_link"
        msg.status = PlanDiagnostics.STATUS_FALLBACK
        msg.status_text = "deadline missed: previous plan"
        msg.planner = "grasp"
        msg.solve_time = 0.0123
        msg.iterations = 42
        msg.plan_cost = 1.5
        msg.dynamics_residual = float("nan")  # NaN must survive the wire
        msg.observation_age = 0.004
        msg.deadline_missed = True
        msg.warm_started = True
        msg.goal_distance = 2.25
        msg.command = [0.5, -1.25, 3.0]

        # Publish until received: the first messages can go out before discovery has matched.
        deadline = time.monotonic() + TIMEOUT_S
        next_pub = 0.0
        while not received and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_pub:
                pub.publish(msg)
                next_pub = now + 0.2
            executor.spin_once(timeout_sec=0.05)
        assert received, f"no PlanDiagnostics received over DDS within {TIMEOUT_S} s"

        got = received[0]
        assert isinstance(got, PlanDiagnostics)
        assert got.header == msg.header
        assert got.status == PlanDiagnostics.STATUS_FALLBACK == 2
        assert got.status_text == msg.status_text
        assert got.planner == "grasp"
        assert got.solve_time == msg.solve_time
        assert got.iterations == 42
        assert got.plan_cost == 1.5
        assert math.isnan(got.dynamics_residual)
        assert got.observation_age == msg.observation_age
        assert got.deadline_missed is True
        assert got.warm_started is True
        assert got.goal_distance == 2.25
        assert list(got.command) == [0.5, -1.25, 3.0]
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_make_test_runs_on_a_domain_no_other_node_uses():
    """``tools/free_ros_domain.py`` (the Makefile's choice of domain) passes over a domain on which
    a node is up, here this test's own."""
    import subprocess
    import sys
    from pathlib import Path

    own = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    other = 10 + (own + 1) % 220
    context = Context()
    rclpy.init(context=context, domain_id=own)
    try:
        node = rclpy.create_node(f"squatter_{uuid.uuid4().hex[:8]}", context=context)
        tool = Path(__file__).resolve().parents[1] / "tools" / "free_ros_domain.py"
        # Discovery takes longer on a busy machine (two busy loops: over the default second):
        # a long look, which the squatter's answer ends at once on its domain.
        chosen = subprocess.run([sys.executable, str(tool), "--candidates", str(own), str(other),
                                 "--probe", "15"],
                                capture_output=True, text=True, timeout=120, check=True).stdout.split()
        assert chosen == [str(other)]
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_plan_diagnostics_tool_counts_what_the_shipped_bags_cycles_got(tmp_path):
    """``tools/plan_diagnostics.py`` on the shipped bag (recorded in lock step at 20 iterations):
    every planned cycle ran 20, and the shutdown's INACTIVE report is counted apart."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cycles.json"
    subprocess.run([sys.executable, str(root / "tools" / "plan_diagnostics.py"),
                    str(root / "test" / "data" / "demo_lockstep"), "--json", str(out)],
                   capture_output=True, text=True, timeout=120, check=True)
    (result,) = json.loads(out.read_text())["rows"]
    assert result["status_counts"] == {"0": 54, "4": 1}
    assert result["iterations_counts"] == {"20": 54} and result["planned_cycles"] == 54
