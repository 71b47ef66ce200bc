"""The controller follows the model card: it subscribes to what the card names (camera and
joints together, paired by stamp), refuses at configure what it cannot serve, and commands in
the card's robot units on the interface asked for (Float64MultiArray, JointTrajectory, Twist)."""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not importable")
pytest.importorskip("grasp_ros.msg", reason="grasp_ros messages are not built (colcon)", exc_type=ImportError)

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.context import Context  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from sensor_msgs.msg import CompressedImage, JointState  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from grasp_ros.data import TransitionData  # noqa: E402
from grasp_ros.msg import JointGoal, PlanDiagnostics  # noqa: E402
from grasp_ros.ros import wiring  # noqa: E402
from grasp_ros.ros.conversions import rgb_to_image  # noqa: E402
from grasp_ros.training import TrainSettings, train  # noqa: E402
from test_controller_node import PLANNED, Rig, ns_time, rig, ros  # noqa: E402,F401
from test_model_sources import configure_failure  # noqa: E402

ARM = ("shoulder", "elbow", "wrist")
LOW, HIGH = [-2.0, -1.0, 0.0], [2.0, 3.0, 5.0]


def tiny_model(path, action_names, low, high, joint_names=ARM, seed=0, topics=None, kind=None,
               command_type=None, units="SI"):
    """A small camera + joints (positions, velocities) model, trained for a few steps on random
    data described the way a rosbag import describes it (names, units, bounds, 10 Hz)."""
    rng = np.random.default_rng(seed)
    N, T, A, J = 4, 8, len(action_names), len(joint_names)
    actions = rng.uniform(low, high, (N, T, A)).astype(np.float32)
    joints = rng.normal(0, 1, (N, T + 1, 2 * J)).astype(np.float32)
    images = rng.integers(0, 255, (N, T + 1, 16, 16, 3), dtype=np.uint8)
    meta = {"env": "", "image_size": 16, "max_step": 0.0, "seed": 0, "source": "test",
            "joint_names": list(joint_names), "joint_fields": ["position", "velocity"],
            "action_names": list(action_names), "action_low": list(low), "action_high": list(high),
            "action_units": units, "period": 0.1, **({"topics": topics} if topics else {}),
            **({"action_kind": kind} if kind else {}), **({"command_type": command_type} if command_type else {})}
    settings = TrainSettings(epochs=1, batch_size=2, segment_steps=4, rollout_steps=2, dynamics_steps=1,
                             dynamics_batch_size=2, val_fraction=0.25, statistics_frames=0, seed=0)
    train(TransitionData(images, joints, actions, meta), str(path), settings,
          {"latent_dim": 8, "hidden": 16, "channels": [4, 4, 4], "joint_dim": 2 * J},
          progress=False, log=lambda _: None)
    return str(path)


@pytest.fixture(scope="module")
def arm_model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("arm") / "arm.pt", ARM, LOW, HIGH)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("base") / "base.pt", ("linear.x", "angular.z"),
                      [-0.5, -1.5], [1.0, 1.5], joint_names=("left_wheel", "right_wheel"))


def arm_rig(rig, model, **overrides):
    values = {"model": "learned", "model_options": f"{{checkpoint: {model}}}", "control_rate_hz": 10.0,
              "timing": "fixed_iterations", "planner.iterations": 3, "novelty_threshold": 0.0,
              "horizon": 5}
    values.update(overrides)
    return rig(**values)


def test_configure_names_the_robots_topics_the_node_does_not_read(rig, arm_model, tmp_path):
    """A model from a robot's bag was trained on its topics; the node reads its own names until
    they are remapped, and says which remap would read the robot's."""
    plain = arm_rig(rig, arm_model)
    plain.start()
    assert plain.node.topic_mismatches() == []           # the card's own names: no remap needed
    bagged = tiny_model(tmp_path / "bagged.pt", ARM, LOW, HIGH, topics={
        "image": "/my_robot/camera/image_raw", "joints": "/my_robot/joint_states",
        "command": "/my_robot/commands"})
    r = arm_rig(rig, bagged)
    r.start()
    image, joints, command = r.node.topic_mismatches()
    assert f"trained on /my_robot/camera/image_raw, and this node reads image from {r.ns}/image" in image
    assert "-r image:=/my_robot/camera/image_raw" in image
    assert "-r joint_states:=/my_robot/joint_states" in joints
    assert f"recorded on /my_robot/commands, and this node commands on {r.ns}/command" in command
    # a trajectory goes to a trajectory controller's topic, not the bag's array topic
    trajectory = arm_rig(rig, bagged, command_interface="joint_trajectory")
    trajectory.start()
    assert len(trajectory.node.topic_mismatches()) == 2


def test_twist_fields_no_base_controller_reads_are_warned_of():
    """A model commanding angular.x configured with an INFO line only, and a diff_drive_controller
    or Nav2 would drop those commands (an audit of their source)."""
    from grasp_ros.models.card import ActionOutput, ModelCard
    rolling = ModelCard(ActionOutput(("linear.y", "angular.x"), (-1.0, -1.0), (1.0, 1.0), kind="twist"))
    assert any("['angular.x']" in text and "would be lost" in text for text in wiring.action_range_warnings(rolling))
    planar = ModelCard(ActionOutput(("linear.x", "linear.y", "angular.z"), (-1.0,) * 3, (1.0,) * 3, kind="twist"))
    assert not any("would be lost" in text for text in wiring.action_range_warnings(planar))


def test_position_commands_are_refused_and_effort_is_warned_of(rig, tmp_path):
    """The stop is a zero command: for a position-commanded robot that is "go to 0", so such a
    model is refused at configure; for effort, zero lets gravity act, which configure says (and
    refuses the goal checker, whose every arrival would be that stop)."""
    positions = tiny_model(tmp_path / "positions.pt", ARM, LOW, HIGH, kind="position")
    assert "would send the robot to position 0" in configure_failure(arm_rig(rig, positions))
    effort = tiny_model(tmp_path / "effort.pt", ARM, LOW, HIGH, kind="effort")
    r = arm_rig(rig, effort)
    r.start()
    assert any("zero effort" in text for text in r.node.action_range_warnings())
    # the goal checker would drop the arm at every arrival: refused with the reason
    assert "goal_tolerance stops the robot at its goal with the stop, zero effort" in configure_failure(
        arm_rig(rig, effort, goal_tolerance=[0.05]))


def test_a_model_from_compressed_images_names_the_base_topic_and_the_transport(rig, tmp_path):
    """image_transport's naming: a bag records base/compressed; the node remaps the base topic
    and, with compressed transport, reads base/compressed. Remapping image to the bag's topic
    itself reads nothing (raw: wrong type; compressed: base/compressed/compressed)."""
    bagged = tiny_model(tmp_path / "jpeg.pt", ARM, LOW, HIGH,
                        topics={"image": "/base/camera/image_raw/compressed"})
    for transport in ("raw", "compressed"):
        r = arm_rig(rig, bagged, image_transport=transport)
        r.start()
        (image,) = r.node.topic_mismatches()
        assert "-r image:=/base/camera/image_raw" in image and "image:=/base/camera/image_raw/compressed" not in image
        assert ("-p image_transport:=compressed" in image) == (transport == "raw"), image
    # the base topic read already, raw: only the transport is wrong
    r = arm_rig(rig, str(tmp_path / "own.pt"))
    tiny_model(tmp_path / "own.pt", ARM, LOW, HIGH, topics={"image": f"{r.ns}/image/compressed"})
    r.start()
    (image,) = r.node.topic_mismatches()
    assert "compressed images" in image and "set -p image_transport:=compressed" in image
    compressed = arm_rig(rig, str(tmp_path / "own2.pt"), image_transport="compressed")
    tiny_model(tmp_path / "own2.pt", ARM, LOW, HIGH, topics={"image": f"{compressed.ns}/image/compressed"})
    compressed.start()
    assert compressed.node.topic_mismatches() == []


def test_a_peer_of_another_type_on_an_input_or_the_command_topic_is_named(rig, arm_model):
    """DDS never matches a CompressedImage publisher to the node's Image subscription, nor the
    node's Float64MultiArray command to a trajectory controller's subscription: the input stays
    silent, or the robot never gets a command (and holds the last one it had). /diagnostics and
    the log say why, with the fix."""
    r = arm_rig(rig, arm_model)
    r.start()
    assert r.node.type_mismatches() == []
    # another participant, as a camera driver or a robot's controller is (one participant
    # refuses a second type)
    robot_context = Context()
    rclpy.init(context=robot_context)
    try:
        robot = rclpy.create_node("robot", namespace=r.ns, context=robot_context)
        robot.create_publisher(CompressedImage, "image", 10)
        robot.create_subscription(JointTrajectory, "command", lambda _: None, 10)
        r.wait_until(lambda: len(r.node.type_mismatches()) == 2, what="the peers discovered")
        image, command = r.node.type_mismatches()
        assert f"{r.ns}/image is published as sensor_msgs/msg/CompressedImage" in image
        assert "image_transport:=compressed" in image
        assert f"{r.ns}/command is read as trajectory_msgs/msg/JointTrajectory" in command
        assert f"set -p command_interface:=joint_trajectory and remap its topic (--ros-args -r " \
               f"joint_trajectory:={r.ns}/command)" in command
        r.wait_until(lambda: any(s.level == DiagnosticStatus.WARN and "CompressedImage" in s.message
                                 and any(kv.key == "type_mismatches" and "JointTrajectory" in kv.value
                                         for kv in s.values) for s in r.health),
                     what="a warning on /diagnostics")
        # With no image ever read, each cycle's STALE names the cause too, and so does the
        # STALE on /diagnostics (an audit: both said only "no observation yet").
        stale = r.cycle()
        assert stale.status == PlanDiagnostics.STATUS_STALE, stale.status_text
        assert "no observation yet" in stale.status_text and "is published as sensor_msgs/msg/CompressedImage" in stale.status_text
        r.wait_until(lambda: any(s.level == DiagnosticStatus.WARN and s.message.startswith("stale: ")
                                 and "CompressedImage" in s.message for s in r.health),
                     what="the cause beside STALE on /diagnostics")
        robot.destroy_node()
    finally:
        rclpy.try_shutdown(context=robot_context)


def test_commands_recorded_as_a_trajectory_are_not_remapped_to_as_an_array(rig, tmp_path):
    """A model from a trajectory bag, run with the default array output: remapping the array
    to the bag's trajectory topic would reach nothing; configure says to switch the interface."""
    from grasp_ros.models.card import TRAJECTORY_UNITS
    bagged = tiny_model(tmp_path / "traj.pt", ARM, LOW, HIGH, topics={"command": "/arm_controller/joint_trajectory"},
                        command_type="trajectory_msgs/msg/JointTrajectory")
    # a card from before collect recorded the type: its units say trajectory velocities
    older = tiny_model(tmp_path / "older.pt", ARM, LOW, HIGH, topics={"command": "/arm_controller/joint_trajectory"},
                       units=TRAJECTORY_UNITS)
    for model in (bagged, older):
        r = arm_rig(rig, model)
        r.start()
        (command,) = r.node.topic_mismatches()
        assert "recorded as trajectory_msgs/msg/JointTrajectory on /arm_controller/joint_trajectory" in command
        assert "-p command_interface:=joint_trajectory" in command
        assert "-r joint_trajectory:=/arm_controller/joint_trajectory" in command and "-r command:=" not in command
    trajectory = arm_rig(rig, bagged, command_interface="joint_trajectory", joint_names=["wrist", "elbow", "shoulder"])
    trajectory.start()
    (command,) = trajectory.node.topic_mismatches()     # the same type: only the remap
    assert f"this node commands on {trajectory.ns}/joint_trajectory" in command
    assert "-r joint_trajectory:=/arm_controller/joint_trajectory" in command


@pytest.mark.parametrize("overrides, reason", [
    ({"control_rate_hz": 2.0}, "far from the model's period 0.1 s"),
    ({"joint_names": ["shoulder", "elbow"]}, "the model encodes joints ['wrist'] that joint_names"),
    ({"command_interface": "twist"}, "needs actions named as Twist fields"),
    ({"command_interface": "joint_trajectory", "joint_names": ["shoulder", "elbow", "wrist", "gripper"]},
     "one joint per action"),
    ({"command_interface": "joint_trajectory", "joint_names": ["shoulder", "elbow", "gripper"]},
     "are not the joints the model's actions command"),
])
def test_configure_refuses_what_the_card_cannot_serve(rig, arm_model, overrides, reason):
    r = arm_rig(rig, arm_model, **overrides)
    assert reason in configure_failure(r)


def test_trajectory_joints_are_the_commanded_ones_and_must_be_named(rig, tmp_path):
    """A model that also encodes a joint it does not command (a gripper) drives the others by
    trajectory; a model whose actions have no names (a MultiArray bag collected without
    --action-names) cannot name a trajectory's joints unless joint_names does."""
    gripper = tiny_model(tmp_path / "gripper.pt", ARM, LOW, HIGH, joint_names=ARM + ("gripper",))
    arm_rig(rig, gripper, command_interface="joint_trajectory", joint_names=list(ARM)).start()
    unnamed = tiny_model(tmp_path / "unnamed.pt", ("data[0]", "data[1]", "data[2]"), LOW, HIGH)
    reason = configure_failure(arm_rig(rig, unnamed, command_interface="joint_trajectory"))
    assert "needs joint names, and the model's actions have none" in reason
    arm_rig(rig, unnamed, command_interface="joint_trajectory", joint_names=list(ARM)).start()


def feed_arm(r: Rig, position, velocity, frame):
    """One sample of each sensor, stamped now: a wide camera frame and joint_states (shuffled order)."""
    state = JointState(name=["wrist", "shoulder", "elbow", "gripper"],
                       position=[position[2], position[0], position[1], 0.0],
                       velocity=[velocity[2], velocity[0], velocity[1], 0.0])
    state.header.stamp = ns_time(r.t_ns)
    r.joints_pub.publish(state)
    r.send_image(rgb_to_image(frame))


def test_a_camera_and_joints_goal_changes_when_both_halves_have_come(rig, arm_model):
    """A sim publishes the goal image and the goal joints at once, and either may arrive first:
    the goal that stands is never the new image with the old joints. A part pairs with a new
    other part (on any clock) or with one of its stamp (or unstamped); goal joints alone are a
    joint-space goal; an image alone waits for its joints."""
    r = arm_rig(rig, arm_model)
    r.start()
    loop, node = r.node._loop, r.node
    frames = np.random.default_rng(3).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)

    def send(kind, stamp_s, i):
        header = Header(stamp=ns_time(int(stamp_s * 1e9)))
        before = node._goals.parts.get(kind)     # each arrival makes a new part
        if kind == "image":
            r.goal_image_pub.publish(rgb_to_image(frames[i], header=header))
        else:
            r.goal_pub.publish(JointGoal(header=header, name=list(ARM), position=[0.1 * i, 0.2, 0.3]))
        r.wait_until(lambda: node._goals.parts.get(kind) is not before
                     and node._goals.parts[kind].stamp == int(stamp_s * 1e9),
                     what=f"the goal {kind} at {stamp_s} s")

    def standing():
        return {k: v.tolist() for k, v in loop._goal.value.items()}

    send("image", 10.0, 0)
    assert loop._goal is None                                   # an image alone waits
    send("joints", 10.0, 0)
    first = standing()
    assert first["image"] == frames[0].tolist() and first["joints"][:2] == [0.0, 0.0]
    send("image", 20.0, 1)                                      # the next goal, image first
    assert standing() == first
    send("joints", 20.0, 1)
    second = standing()
    assert second["image"] == frames[1].tolist() and second["joints"][0] == pytest.approx(0.1)
    send("joints", 30.0, 2)                                     # joints first: a joint-space goal
    assert set(standing()) == {"joints"} and standing()["joints"][0] == pytest.approx(0.2)
    send("image", 30.0, 2)
    assert standing()["image"] == frames[2].tolist()
    send("joints", 35.0, 2)               # the standing goal's joints again (republished): no change
    assert standing()["image"] == frames[2].tolist()
    send("image", 35.0, 2)
    assert standing()["image"] == frames[2].tolist() and standing()["joints"][0] == pytest.approx(0.2)
    send("joints", 1000.0, 1)             # a sim stamping its goal image on another clock
    assert set(standing()) == {"joints"}
    send("image", 40.0, 1)                # pairs: the joints are new
    assert standing()["image"] == frames[1].tolist() and standing()["joints"][0] == pytest.approx(0.1)
    send("image", 41.0, 0)                # the joints are used and of another stamp: it waits
    assert standing()["image"] == frames[1].tolist()
    send("joints", 0.0, 0)                # unstamped (ros2 topic pub): pairs with the new image
    assert standing()["image"] == frames[0].tolist() and standing()["joints"][0] == pytest.approx(0.0)
    send("image", 0.0, 2)                 # unstamped too, and the joints are used: it waits,
    assert standing()["image"] == frames[0].tolist()     # not paired with them as "one stamp"
    send("joints", 0.0, 1)
    assert standing()["image"] == frames[2].tolist() and standing()["joints"][0] == pytest.approx(0.1)


@pytest.mark.parametrize("joint_names", [None, ["wrist", "shoulder", "elbow"]], ids=["card-order", "reordered"])
def test_camera_and_joints_drive_a_joint_trajectory_in_robot_units(rig, arm_model, joint_names):
    """Each joint gets its own velocity, by name, also when joint_names lists the model's
    action joints in another order (a name by place would send one joint's to another)."""
    r = arm_rig(rig, arm_model, command_interface="joint_trajectory",
                **({"joint_names": joint_names} if joint_names else {}))
    r.start()
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)          # not square: cropped, resized
    me = f"{r.ns}/grasp_controller"
    r.goal_image_pub.publish(rgb_to_image(frame))
    r.goal_pub.publish(JointGoal(name=list(ARM), position=[0.3, -0.2, 0.1]))
    position = [0.1, 0.2, 0.3]
    feed = lambda: feed_arm(r, position, [0.0, 0.5, -0.5], frame)   # noqa: E731
    for _ in range(3):
        r.cycle(feed)
    r.wait_until(lambda: r.cycle(feed).status in PLANNED, what=f"a planned cycle of {me}")
    d = r.diagnostics[-1]
    assert d.status == PlanDiagnostics.STATUS_OK, d.status_text
    assert len(d.command) == 3 and all(lo <= c <= hi for c, lo, hi in zip(d.command, LOW, HIGH))
    order, planned, measured = joint_names or list(ARM), dict(zip(ARM, d.command)), dict(zip(ARM, position))
    sent = [planned[j] for j in order]
    r.wait_until(lambda: any(len(t.points) == 5 + 1 and np.allclose(t.points[0].velocities, sent)
                             for t in r.trajectories), what="the planned cycle's trajectory")
    trajectory = next(t for t in r.trajectories if len(t.points) == 5 + 1 and np.allclose(t.points[0].velocities, sent))
    assert trajectory.joint_names == order
    first, second = trajectory.points[0], trajectory.points[1]
    assert list(first.positions) == [measured[j] for j in order]   # from the measured joints
    # each step the mean of its two points' velocities (the trajectory controller's spline)
    assert np.allclose(second.positions, np.add(first.positions,
                                                np.multiply(np.add(first.velocities, second.velocities), 0.05)))
    assert list(trajectory.points[-1].velocities) == [0.0, 0.0, 0.0]    # ends at rest


def test_frames_without_joint_states_are_stale_and_the_command_is_zero(rig, arm_model):
    r = arm_rig(rig, arm_model)
    r.start()
    frame = np.zeros((16, 16, 3), np.uint8)
    r.goal_image_pub.publish(rgb_to_image(frame))
    r.goal_pub.publish(JointGoal(name=list(ARM), position=[0.0, 0.0, 0.0]))
    d = None
    for _ in range(4):
        d = r.cycle(lambda: r.send_image(rgb_to_image(frame)))
    assert d.status == PlanDiagnostics.STATUS_STALE and "joint_states" in d.status_text
    assert list(d.command) == [0.0, 0.0, 0.0]


def base_goal_and_feed(r):
    """Send a wheeled base's goal (image and wheel positions); the feed of one cycle's inputs."""
    frame = np.full((16, 16, 3), 90, np.uint8)
    r.goal_image_pub.publish(rgb_to_image(frame))
    r.goal_pub.publish(JointGoal(name=["left_wheel", "right_wheel"], position=[1.0, 1.0]))

    def feed():
        state = JointState(name=["left_wheel", "right_wheel"], position=[0.0, 0.0], velocity=[0.1, 0.1])
        state.header.stamp = ns_time(r.t_ns)
        r.joints_pub.publish(state)
        r.send_image(rgb_to_image(frame))
    return feed


def test_a_twist_model_commands_cmd_vel(rig, base_model):
    r = arm_rig(rig, base_model, command_interface="twist")
    twists = []
    r.probe.create_subscription(Twist, "cmd_vel", twists.append, 10)
    r.start()
    feed = base_goal_and_feed(r)
    for _ in range(3):
        r.cycle(feed)
    r.wait_until(lambda: r.cycle(feed).status in PLANNED, what="a planned cycle")
    d = r.diagnostics[-1]
    r.wait_until(lambda: twists, what="a Twist on cmd_vel")
    sent = twists[-1]
    assert sent.linear.y == sent.linear.z == sent.angular.x == sent.angular.y == 0.0
    assert -0.5 <= sent.linear.x <= 1.0 and -1.5 <= sent.angular.z <= 1.5
    r.wait_until(lambda: any([t.linear.x, t.angular.z] == list(d.command) for t in twists),
                 what="the planned command as a Twist")


def test_a_twist_stamped_command_is_in_the_robots_base_frame(rig, base_model):
    """Nav2 stamps cmd_vel with the base frame; it went out in frame_id, the predicted path's
    world frame."""
    from geometry_msgs.msg import TwistStamped
    r = arm_rig(rig, base_model, command_interface="twist_stamped")
    twists = []
    r.probe.create_subscription(TwistStamped, "cmd_vel", twists.append, 10)
    r.start()
    feed = base_goal_and_feed(r)
    r.wait_until(lambda: r.cycle(feed).status in PLANNED, what="a planned cycle")
    r.wait_until(lambda: twists, what="a TwistStamped on cmd_vel")
    assert {t.header.frame_id for t in twists} == {"base_link"}
    assert r.transition(Transition.TRANSITION_DEACTIVATE)
    r.wait_until(lambda: not twists[-1].twist.linear.x and not twists[-1].twist.angular.z, what="the stop")
    # moving commands carry their cycle's time; a stop carries 0, which diff_drive_controller
    # takes as "now": stamped on a node's clock other than the robot's (sim time against the
    # wall clock), every stop was dropped as too old (an audit of its source)
    moving = [t for t in twists if t.twist.linear.x or t.twist.angular.z]
    assert moving and all(t.header.stamp.sec > 0 or t.header.stamp.nanosec > 0 for t in moving)
    stops = [t for t in twists if not (t.twist.linear.x or t.twist.angular.z)]
    assert stops and all(t.header.stamp.sec == t.header.stamp.nanosec == 0 for t in stops)


def test_the_stop_is_exact_zero_where_the_bags_commands_never_stopped(rig, tmp_path):
    """A bag that only ever drove forward (linear.x in [0.1, 0.5]): its lowest speed is not a
    stop. STALE, deactivation and shutdown send exactly zero on every field; planned commands
    stay within the bounds the bag saw; configure says the model never saw a stop."""
    forward = tiny_model(tmp_path / "forward.pt", ("linear.x", "angular.z"), [0.1, -1.5], [0.5, 1.5],
                         joint_names=("left_wheel", "right_wheel"))
    r = arm_rig(rig, forward, command_interface="twist")
    twists = []
    r.probe.create_subscription(Twist, "cmd_vel", twists.append, 10)
    r.start()
    assert any("linear.x" in text and "stop" in text for text in r.node.action_range_warnings())
    assert r.cycle().status == PlanDiagnostics.STATUS_STALE            # no observation yet
    r.wait_until(lambda: twists, what="the stop on cmd_vel")
    stop = twists[-1]
    assert [stop.linear.x, stop.linear.y, stop.linear.z, stop.angular.x, stop.angular.y, stop.angular.z] == [0.0] * 6
    feed = base_goal_and_feed(r)
    r.wait_until(lambda: r.cycle(feed).status in PLANNED, what="a planned cycle")
    planned = list(r.diagnostics[-1].command)
    assert 0.1 <= planned[0] <= 0.5 and -1.5 <= planned[1] <= 1.5
    count = len(twists)
    assert r.transition(Transition.TRANSITION_DEACTIVATE)
    r.wait_until(lambda: len(twists) > count and twists[-1].linear.x == 0.0, what="the stop at deactivation")
    assert twists[-1].angular.z == 0.0


@pytest.fixture(scope="module")
def camera_model(tmp_path_factory):
    """An image-only model whose data had named joints: its state head decodes them."""
    path = tmp_path_factory.mktemp("camera") / "camera.pt"
    rng = np.random.default_rng(3)
    N, T = 4, 8
    actions = rng.uniform(-1, 1, (N, T, 2)).astype(np.float32)
    joints = np.cumsum(np.concatenate([np.zeros((N, 1, 2)), actions * 0.1], 1), 1).astype(np.float32)
    meta = {"env": "", "image_size": 16, "max_step": 0.0, "seed": 0, "source": "test",
            "joint_names": ["x", "y"], "joint_fields": ["position"], "period": 0.1}
    settings = TrainSettings(epochs=1, batch_size=2, segment_steps=4, rollout_steps=2, dynamics_steps=1,
                             dynamics_batch_size=2, val_fraction=0.25, statistics_frames=0, seed=0)
    train(TransitionData(rng.integers(0, 255, (N, T + 1, 16, 16, 3), dtype=np.uint8), joints, actions, meta),
          str(path), settings, {"latent_dim": 8, "hidden": 16, "channels": [4, 4, 4]},
          progress=False, log=lambda _: None)
    return str(path)


@pytest.mark.parametrize("which", ["camera", "arm"])
def test_a_goal_in_joint_space_alone_is_planned_through_the_joint_head(rig, camera_model, arm_model, which):
    """No goal picture: a camera-only model, and a camera + joints model, take ~/goal_state."""
    model = camera_model if which == "camera" else arm_model
    r = arm_rig(rig, model)
    r.start()
    frame = np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    if which == "camera":
        r.goal_pub.publish(JointGoal(name=["y", "x"], position=[0.2, 0.4]))
        feed = lambda: r.send_image(rgb_to_image(frame))    # noqa: E731
    else:
        r.goal_pub.publish(JointGoal(name=list(ARM), position=[0.3, -0.2, 0.1]))
        feed = lambda: feed_arm(r, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], frame)   # noqa: E731
    for _ in range(3):
        r.cycle(feed)
    r.wait_until(lambda: r.cycle(feed).status in PLANNED, what="a planned cycle")
    d = r.diagnostics[-1]
    assert d.status == PlanDiagnostics.STATUS_OK, d.status_text
    assert np.isfinite(d.goal_distance) and d.goal_distance > 0      # measured in joint space
