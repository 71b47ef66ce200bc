"""launch/grasp_controller.launch.py under launch_pytest: lifecycle start-up, control, clean exit.

Needs a ROS 2 install with launch_pytest and this package built and sourced (the launch file
starts the installed `grasp_controller` with the installed parameter file); skipped elsewhere,
e.g. with ROS 2 from pip wheels, which have no launch packages.
"""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

launch_pytest = pytest.importorskip("launch_pytest")

from launch import LaunchDescription  # noqa: E402
from launch.actions import RegisterEventHandler, SetLaunchConfiguration  # noqa: E402
from launch.event_handlers import OnProcessExit  # noqa: E402

import rclpy  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
import numpy as np  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from grasp_ros.sim import make_env  # noqa: E402
from grasp_ros.msg import PlanDiagnostics  # noqa: E402
from grasp_ros.ros import qos  # noqa: E402
from grasp_ros.ros.conversions import rgb_to_image  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "grasp_controller.launch.py"
NAMESPACE = "/launch_test"
NODE = f"{NAMESPACE}/grasp_controller"
TIMEOUT_S = 60.0


def launch_description(**arguments) -> tuple[LaunchDescription, dict]:
    """The launch file's description with ``arguments`` set, and the exit status of each
    process it started, by name, filled in as they exit."""
    spec = importlib.util.spec_from_file_location("grasp_controller_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    exits = {}
    record = RegisterEventHandler(OnProcessExit(
        on_exit=lambda event, context: exits.__setitem__(event.process_name, event.returncode)))
    settings = [SetLaunchConfiguration(k, v) for k, v in {"namespace": NAMESPACE, **arguments}.items()]
    return LaunchDescription([*settings, record, module.generate_launch_description(),
                              launch_pytest.actions.ReadyToTest()]), exits


class Probe:
    """A node of its own (own context) beside the launched process, spinning in a thread."""

    def __init__(self):
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("launch_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)

    def call(self, srv_type, name, request):
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=TIMEOUT_S), f"no service {name}"
        future = client.call_async(request)
        deadline = time.monotonic() + TIMEOUT_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert future.done(), f"no answer from {name}"
        return future.result()

    def state(self) -> int:
        return self.call(GetState, f"{NODE}/get_state", GetState.Request()).current_state.id

    def wait_for_state(self, state_id: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.state() != state_id:
            assert time.monotonic() < deadline, f"the node never reached state {state_id}"
            time.sleep(0.2)


@pytest.fixture
def autostarted():
    # The camera remapped within the namespace and read reliably: the override must name the
    # topic as the node resolves it.
    return launch_description(image="camera/image_raw", camera_reliability="reliable")


@launch_pytest.fixture
def autostart_launch(autostarted):
    return autostarted[0]


@pytest.mark.launch(fixture=autostart_launch)
def test_launch_configures_activates_controls_and_exits_cleanly(autostarted):
    exits = autostarted[1]
    probe = Probe()
    try:
        probe.wait_for_state(State.PRIMARY_STATE_ACTIVE)
        commands, diagnostics = [], []
        probe.node.create_subscription(Float64MultiArray, f"{NAMESPACE}/command",
                                       lambda m: commands.append(list(m.data)), 10)
        probe.node.create_subscription(PlanDiagnostics, f"{NODE}/plan_diagnostics",
                                       diagnostics.append, 10)
        # The parameter file's defaults: the learned model plans from camera images.
        env = make_env("wall_door")
        goal = probe.node.create_publisher(Image, f"{NODE}/goal_image", qos.GOAL)
        camera = probe.node.create_publisher(Image, f"{NAMESPACE}/camera/image_raw", 10)
        goal.publish(rgb_to_image(env.render(np.array([0.5, 0.5]))))
        deadline = time.monotonic() + TIMEOUT_S
        planned = (PlanDiagnostics.STATUS_OK, PlanDiagnostics.STATUS_FALLBACK)
        while not any(d.status in planned for d in diagnostics) or not commands:
            assert time.monotonic() < deadline, f"never planned: {[d.status_text for d in diagnostics[-3:]]}"
            msg = rgb_to_image(env.render(np.array([-0.5, -0.5])))
            msg.header.stamp = probe.node.get_clock().now().to_msg()
            camera.publish(msg)
            time.sleep(0.05)
        assert all(abs(v) <= 1.0 for c in commands for v in c)
        (reader,) = probe.node.get_subscriptions_info_by_topic(f"{NAMESPACE}/camera/image_raw")
        assert reader.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        yield
        # After launch's shutdown (SIGINT): a last zero command went out, and the exit code is 0.
        assert list(exits.values()) == [0], exits
        deadline = time.monotonic() + 5.0
        while commands[-1] != [0.0, 0.0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert commands[-1] == [0.0, 0.0]
    finally:
        probe.close()


@pytest.fixture
def manual():
    return launch_description(autostart="false")


@launch_pytest.fixture
def manual_launch(manual):
    return manual[0]


@pytest.mark.launch(fixture=manual_launch)
def test_launch_without_autostart_waits_for_a_lifecycle_manager(manual):
    probe = Probe()
    try:
        assert probe.state() == State.PRIMARY_STATE_UNCONFIGURED
        time.sleep(1.0)
        assert probe.state() == State.PRIMARY_STATE_UNCONFIGURED
        answer = probe.call(ChangeState, f"{NODE}/change_state", ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        assert answer.success
        time.sleep(1.0)          # launch must not activate it behind the manager's back
        assert probe.state() == State.PRIMARY_STATE_INACTIVE
    finally:
        probe.close()


def _launch_module(name: str):
    path = LAUNCH_FILE.parent / f"{name}.launch.py"
    spec = importlib.util.spec_from_file_location(f"{name}_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["grasp_controller", "sim_demo", "gazebo"])
def test_a_missing_params_file_ends_the_launch(name, tmp_path):
    """launch_ros alone only warns, then starts the node on its defaults."""
    from launch import LaunchContext
    context = LaunchContext()
    context.launch_configurations["params_file"] = str(tmp_path / "typo.yaml")
    with pytest.raises(FileNotFoundError, match="typo.yaml' is not a file"):
        _launch_module(name).params_file_exists(context)
    (tmp_path / "typo.yaml").write_text("{}\n")
    assert _launch_module(name).params_file_exists(context) == []


@pytest.mark.parametrize("status", [0, 1])
def test_a_node_that_fails_ends_the_launch_with_a_failure(status):
    """``end_launch``: a failed autostart made ``ros2 launch`` exit 0, as if all went well."""
    import sys
    from launch import LaunchService
    from launch.actions import ExecuteProcess, RegisterEventHandler, TimerAction
    from launch.event_handlers import OnProcessExit
    from grasp_ros.ros.launch_actions import end_launch
    node = ExecuteProcess(cmd=[sys.executable, "-c", f"raise SystemExit({status})"])
    keeps_running = ExecuteProcess(cmd=[sys.executable, "-c", "import time; time.sleep(600)"])
    service = LaunchService()
    service.include_launch_description(LaunchDescription([
        keeps_running, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=end_launch)),
        TimerAction(period=0.5, actions=[node])]))
    assert service.run() == status        # and the other process was stopped: run() returned


def test_a_controller_that_fails_to_configure_ends_its_launch_with_status_1(tmp_path):
    """The package's controller launch file had no exit handler: a parameter file the node
    refused (a failed autostart, exit 1) left ``ros2 launch`` exiting 0 (an audit of the launch
    stack), though the README promised 1."""
    from launch import LaunchService
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    horizon: -5\n")
    service = LaunchService()
    service.include_launch_description(LaunchDescription([
        SetLaunchConfiguration("namespace", "/launch_fails"), SetLaunchConfiguration("params_file", str(bad)),
        _launch_module("grasp_controller").generate_launch_description()]))
    assert service.run() == 1


SIGNALLED_NODE = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(signum, frame):
    out.write_text(signal.Signals(signum).name)
    sys.exit(0)
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, stop)
Path(f"{out}.ready").touch()
while True:
    time.sleep(0.05)
"""

SIGNALLED_LAUNCH = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import ExecuteProcess
from grasp_ros.ros.launch_actions import interrupt_on_sigint
node = ExecuteProcess(cmd=[sys.executable, "-c", sys.argv[1], sys.argv[2]])
service = LaunchService()
service.include_launch_description(LaunchDescription([node, interrupt_on_sigint(node)]))
sys.exit(service.run())
"""


def test_a_sigint_to_launch_alone_reaches_its_nodes_at_once(tmp_path):
    """Launch, run interactively (the default), takes a SIGINT for a terminal's Ctrl-C, which
    the nodes got as well, and passes none on: a SIGINT to the launch process alone left them
    running until its SIGTERM 5 s later, the controller commanding all the while (an audit of
    the launch stack). The package's launch files pass it on (``interrupt_on_sigint``)."""
    import signal
    import subprocess
    import sys
    seen = tmp_path / "signal"
    launch = subprocess.Popen([sys.executable, "-c", SIGNALLED_LAUNCH, SIGNALLED_NODE, str(seen)],
                              start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not Path(f"{seen}.ready").exists():
            assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()[0]
            time.sleep(0.05)
        launch.send_signal(signal.SIGINT)            # the launch process alone, not its group
        output, _ = launch.communicate(timeout=TIMEOUT_S)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    assert launch.returncode == 0, output
    assert seen.read_text() == "SIGINT", output


def test_each_launch_file_passes_a_sigint_on_to_the_package_nodes():
    """``interrupt_on_sigint`` in every launch file of the package, for each of its own nodes."""
    from launch import LaunchContext
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnShutdown

    def interrupts_on_shutdown(entities) -> int:
        return sum(isinstance(e, RegisterEventHandler) and isinstance(e.event_handler, OnShutdown)
                   and "interrupt_on_sigint" in e.event_handler.describe()[0] for e in entities)
    entities = _launch_module("sim_demo").generate_launch_description().entities
    assert interrupts_on_shutdown(entities) == 1
    assert interrupts_on_shutdown(_launch_module("grasp_controller").controller(
        _default_context(_launch_module("grasp_controller")))) == 1
    context = LaunchContext()
    context.launch_configurations.update(joint_names="", model="learned", model_options="",
                                         model_weights="", allow_python_models="false",
                                         planner="grasp", horizon="50", rate="10.0",
                                         params_file="p.yaml", command_topic="command")
    assert interrupts_on_shutdown(_launch_module("gazebo").controller(context)) == 1


def test_gazebo_joint_names_reach_rcl_as_strings():
    """launch_ros writes a string list unquoted, and rcl reads a joint named y as a bool."""
    import yaml
    from launch import LaunchContext
    gazebo = _launch_module("gazebo")
    context = LaunchContext()
    context.launch_configurations["joint_names"] = "[x, y, 'on']"
    (path,) = gazebo.joint_names_file(context)
    text = Path(path).read_text()
    Path(path).unlink()              # a launch removes it at shutdown; this test made it by hand
    assert '"y"' in text and '"on"' in text
    assert yaml.safe_load(text) == {"/**": {"ros__parameters": {"joint_names": ["x", "y", "on"]}}}
    context.launch_configurations["joint_names"] = ""
    assert gazebo.joint_names_file(context) == []      # unset: the model card's joints


def test_gazebo_joint_names_file_goes_with_the_launch():
    """Each launch with joint_names left a /tmp/grasp_joint_names_*.yaml behind."""
    import tempfile
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnShutdown
    from launch.events import Shutdown
    gazebo = _launch_module("gazebo")
    context = _default_context(gazebo, joint_names="[x, y]")
    before = set(Path(tempfile.gettempdir()).glob("grasp_joint_names_*.yaml"))
    actions = gazebo.controller(context)
    (path,) = set(Path(tempfile.gettempdir()).glob("grasp_joint_names_*.yaml")) - before
    on_shutdown = [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)
                   and isinstance(a.event_handler, OnShutdown)]
    assert len(on_shutdown) == 2             # the removal and interrupt_on_sigint
    for handler in on_shutdown:
        handler.handle(Shutdown(), context)
    assert not Path(path).exists()


def test_use_sim_time_follows_the_argument_else_an_including_files_set_parameter():
    """A bringup's SetParameter(use_sim_time=True) around the include stands (the node locks
    use_sim_time once started: a default of the argument would have put it on the wall clock)."""
    from launch import LaunchContext
    from launch_ros.actions import SetParameter
    from grasp_ros.ros.launch_actions import UseSimTime
    context = LaunchContext()
    assert UseSimTime().perform(context) == "false"
    SetParameter(name="use_sim_time", value=True).execute(context)
    assert UseSimTime().perform(context) == "true"
    context.launch_configurations["use_sim_time"] = "false"          # the argument, given
    assert UseSimTime().perform(context) == "false"


def _default_context(module, **configurations):
    """A launch context with ``module``'s arguments at their defaults (a substitution's: empty)
    and ``configurations`` over them."""
    from launch import LaunchContext
    context = LaunchContext()
    for name, default, _ in module.ARGUMENTS:
        context.launch_configurations[name] = default if isinstance(default, str) else ""
    context.launch_configurations.update(configurations)
    return context


def _parameters_as_launched(node, context) -> dict:
    """The node's parameters from the parameter files launch_ros writes for it."""
    import yaml
    node._perform_substitutions(context)
    values = {}
    for path, is_file in node._Node__expanded_parameter_arguments:
        if is_file:
            for section in (yaml.safe_load(Path(path).read_text()) or {}).values():
                values.update(section.get("ros__parameters", {}))
    return values


@pytest.mark.parametrize("namespace", [None, "/robot1"])
def test_gazebo_reads_its_camera_reliably_at_both_ends_of_the_bridge(namespace, tmp_path):
    """A best-effort reader gets few of a large raw frame's fragments complete (README, "Large
    raw frames need a reliable reader"): the bridge publishes the camera reliably and the
    controller reads it so, by QoS overrides named for the topic as resolved, in the namespace
    an including launch pushes too. Read back from the parameter files launch_ros writes."""
    gazebo = _launch_module("gazebo")
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    context = _default_context(gazebo, params_file=str(params), camera_topic="/cam")
    if namespace:
        context.launch_configurations["ros_namespace"] = namespace
    topic = f"{namespace or ''}/image"
    (bridge,) = gazebo.bridge(context)
    controller = gazebo.controller(context)[0]
    for node, end in ((bridge, "publisher"), (controller, "subscription")):
        values = _parameters_as_launched(node, context)
        assert values.get(f"qos_overrides.{topic}.{end}.reliability") == "reliable", (end, values)


@pytest.mark.parametrize("pushed, namespace, image, resolved", [
    (None, "", "image", "/image"),
    (None, "/launch_test", "camera/image_raw", "/launch_test/camera/image_raw"),
    ("/robot1", "arm", "image", "/robot1/arm/image"),
    ("/robot1", "/arm", "image", "/arm/image"),
    ("/robot1", "arm", "/camera/image_raw", "/camera/image_raw"),
    (None, "/arm", "~/image", "/arm/grasp_controller/image"),
])
def test_camera_reliability_names_the_camera_topic_as_the_node_resolves_it(
        pushed, namespace, image, resolved, tmp_path):
    """``camera_reliability:=reliable`` is a QoS override, which rclpy looks up by the topic as
    resolved (namespace, remap, an including launch's pushed namespace): a wrong name is
    ignored without a word and the camera stays best effort. The live test above checks one
    case against the node itself; raw and compressed transports are both named."""
    module = _launch_module("grasp_controller")
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    context = _default_context(module, params_file=str(params), namespace=namespace, image=image,
                               camera_reliability="reliable")
    if pushed:
        context.launch_configurations["ros_namespace"] = pushed
    values = _parameters_as_launched(module.controller(context)[0], context)
    overrides = {k: v for k, v in values.items() if k.startswith("qos_overrides.")}
    assert overrides == {f"qos_overrides.{resolved}.subscription.reliability": "reliable",
                         f"qos_overrides.{resolved}/compressed.subscription.reliability": "reliable"}
    context.launch_configurations["camera_reliability"] = ""     # the default: the file's say
    values = _parameters_as_launched(module.controller(context)[0], context)
    assert not any(k.startswith("qos_overrides.") for k in values), values
    context.launch_configurations["camera_reliability"] = "reliabel"
    with pytest.raises(ValueError, match="camera_reliability must be one of reliable, best_effort"):
        module.controller(context)
