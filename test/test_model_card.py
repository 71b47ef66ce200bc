"""The model card: written by the trainer, carried by checkpoints and exports, read by the control
loop (robot units, inputs paired by stamp) and printed by `grasp-ros info`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from grasp_ros.cli import main as cli
from grasp_ros.control import ControlConfig, ControlLoop, Status
from grasp_ros.data import TransitionData
from grasp_ros.models import WorldModel, WorldModelError, load_world_model
from grasp_ros.models.card import ActionOutput, ImageInput, JointInput, ModelCard, card_for
from grasp_ros.planning import make_planner
from grasp_ros.training import TrainSettings, export_torchscript, train

SMALL = {"latent_dim": 8, "hidden": 16, "channels": [4, 4, 4]}


def robot_card(**changes) -> ModelCard:
    card = ModelCard(ActionOutput(("shoulder", "elbow", "wrist"), (-2.0, -1.0, 0.0), (2.0, 3.0, 5.0), "rad/s"),
                     image=ImageInput(16), joints=JointInput(("shoulder", "elbow", "wrist"), ("position", "velocity")),
                     period=0.1, provenance={"bags": ["a.mcap"]}, metrics={"one_step_state_err": 0.01})
    return ModelCard(**{**card.__dict__, **changes})


def test_card_round_trips_through_plain_types():
    card = robot_card()
    text = json.dumps(card.to_dict())          # plain types only
    assert ModelCard.from_dict(json.loads(text)) == card
    assert "shoulder [-2, 2]" in card.describe() and "rad/s" in card.describe()
    assert "['position', 'velocity']" in card.describe()
    assert "RGB on 'image'" in card.describe() and "on 'joint_states'" in card.describe()   # the node's names
    bagged = robot_card(image=ImageInput(16, topic="arm/camera/image_raw"),
                        joints=JointInput(("shoulder",), ("position",), topic="/arm/joint_states"))
    assert "RGB on '/arm/camera/image_raw'" in bagged.describe()     # a bag's: absolute, as configure says
    assert "on '/arm/joint_states'" in bagged.describe()


@pytest.mark.parametrize("change, reason", [
    ({"actions": ActionOutput(("a",), (1.0,), (1.0,))}, "low < high"),
    # finite bounds whose range is not (hi - lo overflows): robot units would be NaN
    ({"actions": ActionOutput(("a",), (-1.7e308,), (1.7e308,))}, "finite range"),
    ({"joints": JointInput(("a",), continuous=("b",))}, "continuous joints"),
    ({"actions": ActionOutput(("a", "a"), (0.0, 0.0), (1.0, 1.0))}, "repeat"),
    ({"actions": ActionOutput(("a", "b"), (0.0,), (1.0,))}, "as many bounds"),
    ({"actions": ActionOutput(("forward",), (-1.0,), (1.0,), kind="twist")}, "twist actions"),
    ({"image": None, "joints": None}, "no input"),
    ({"joints": JointInput(("a",), ("torque",))}, "joint fields"),
    ({"image": ImageInput(16, "zoom")}, "crop"),
    ({"period": -1.0}, "period"),
])
def test_malformed_cards_are_refused_with_the_reason(change, reason):
    with pytest.raises(WorldModelError, match=reason):
        ModelCard.from_dict(robot_card(**change).to_dict())


def test_not_a_card_is_refused():
    with pytest.raises(WorldModelError, match="not a grasp_ros.model_card"):
        ModelCard.from_dict({"actions": {}})


def test_robot_units_map_affinely_and_exactly_when_the_boxes_agree():
    card = robot_card()
    low, high = -np.ones(3), np.ones(3)
    robot = card.to_robot(np.array([[-1.0, 0.0, 1.0]]), low, high)
    assert robot.tolist() == [[-2.0, 1.0, 5.0]]
    assert np.allclose(card.to_model(robot, low, high), [[-1.0, 0.0, 1.0]])
    same = ModelCard(ActionOutput(("a", "b"), (-1.0, -1.0), (1.0, 1.0)), joints=JointInput(("x",)))
    x = np.array([0.1234567891234, -0.3])
    assert same.to_robot(x, -np.ones(2), np.ones(2)).tolist() == x.tolist()


class CameraAndJoints(WorldModel):
    """Latent = the first two joint positions (checked to come with a frame); 3 actions move it."""
    latent_dim, action_dim, image_size, joint_dim = 2, 3, 16, 6

    def __init__(self):
        super().__init__([-1.0] * 3, [1.0] * 3)
        self.card = robot_card()
        self.seen = []

    def encode(self, observation):
        assert observation["image"].shape[1:] == (16, 16, 3)
        self.seen.append(observation["joints"].clone())
        return observation["joints"][:, :2].clone()

    def predict(self, latent, action):
        return latent + 0.1 * action[..., :2]


def camera_and_joints_loop(**config):
    model = CameraAndJoints()
    planner = make_planner("grasp", model, 5, {"chains": 2, "iterations": 3})
    return model, ControlLoop(model, planner, ControlConfig(timing="fixed_iterations", **config))


def test_commands_leave_in_robot_units_and_zero_is_robot_zero():
    model, loop = camera_and_joints_loop()
    loop.set_goal_latent([5.0, 5.0])     # far: the plan saturates towards +
    frame = np.zeros((16, 16, 3), np.uint8)
    loop.observe({"joints": np.zeros(6)}, 1.0)
    loop.observe({"image": frame}, 1.0)
    result = loop.step(1.0)
    assert result.status == Status.OK, result.message
    assert np.all(result.command >= [-2, -1, 0]) and np.all(result.command <= [2, 3, 5])
    planned = result.plan.actions[0].double().numpy()          # model units, in [-1, 1]
    assert np.allclose(result.command, [-2, -1, 0] + (planned + 1) / 2 * [4, 4, 5])
    idle = loop.idle()
    assert idle.command.tolist() == [0.0, 0.0, 0.0]   # robot zero (wrist's 0 is its lower bound)


def test_frames_pair_with_the_joint_sample_nearest_in_stamp():
    model, loop = camera_and_joints_loop(pair_tolerance=0.05)
    loop.set_goal_latent([0.5, 0.5])
    frame = np.zeros((16, 16, 3), np.uint8)
    for stamp, value in ((0.90, 1.0), (0.99, 2.0), (1.08, 3.0)):
        loop.observe({"joints": np.full(6, value)}, stamp)
    loop.observe({"image": frame}, 1.0)
    result = loop.step(1.02)
    assert result.status == Status.OK, result.message
    assert model.seen[-1][0, 0].item() == 2.0          # 0.99 is nearest to the frame at 1.0


def test_a_fast_joint_states_still_pairs_with_a_frame_as_old_as_the_freshness_limit():
    """A 1 kHz joint_states (a Franka's): a frame 0.4 s old, within max_observation_age 0.5 s,
    still finds the joint sample of its stamp (a count of samples kept covered only 0.256 s);
    samples older than the freshness limit are let go."""
    model, loop = camera_and_joints_loop(pair_tolerance=0.05, max_observation_age=0.5)
    loop.set_goal_latent([0.5, 0.5])
    loop.observe({"image": np.zeros((16, 16, 3), np.uint8)}, 1.0)
    for k in range(801):                                   # 0.6 s to 1.4 s at 1 kHz
        loop.observe({"joints": np.full(6, float(k))}, 0.6 + k / 1000)
    result = loop.step(1.4)
    assert result.status == Status.OK, result.message
    assert model.seen[-1][0, 0].item() == 400.0          # the sample stamped 1.0 s
    assert len(loop._inbox.recent.snapshot()[0]) == 551         # 0.55 s of them (age + pair_tolerance)


def test_a_slow_joint_beside_fast_ones_pairs_by_the_newest_and_still_goes_stale():
    """An arm's joints at 100 Hz and a gripper's at 10 Hz on one joint_states: each merged sample
    is as old as its gripper value (up to 0.1 s), too far from every frame by that stamp; it
    pairs by its newest joint's. A gripper that stops still makes the cycle STALE."""
    model, loop = camera_and_joints_loop(pair_tolerance=0.05, max_observation_age=0.5)
    loop.set_goal_latent([0.5, 0.5])
    gripper = 0.0
    for k in range(100, 200):                               # 1.00 s to 1.99 s at 100 Hz
        t = k / 100
        if k % 10 == 0:
            gripper = t
        loop.observe({"joints": np.full(6, float(k))}, stamp=gripper, newest=t)
    loop.observe({"image": np.zeros((16, 16, 3), np.uint8)}, 1.95)
    result = loop.step(1.96)
    assert result.status == Status.OK, result.message       # its oldest joint is 0.05 s back
    assert model.seen[-1][0, 0].item() == 195.0
    for k in range(200, 300):                               # the gripper's publisher stopped
        loop.observe({"joints": np.full(6, float(k))}, stamp=1.9, newest=k / 100)
    loop.observe({"image": np.zeros((16, 16, 3), np.uint8)}, 2.95)
    stale = loop.step(2.96)
    assert stale.status == Status.STALE and "a joint_states publisher stopped" in stale.message


def test_a_frame_without_joint_samples_near_it_is_stale_with_the_reason():
    model, loop = camera_and_joints_loop(pair_tolerance=0.05)
    loop.set_goal_latent([0.5, 0.5])
    loop.observe({"image": np.zeros((16, 16, 3), np.uint8)}, 1.0)
    first = loop.step(1.0)
    assert first.status == Status.STALE and "no joint_states yet" in first.message
    loop.observe({"joints": np.zeros(6)}, 0.5)
    second = loop.step(1.01)
    assert second.status == Status.STALE and "pair_tolerance" in second.message
    assert second.command.tolist() == [0.0, 0.0, 0.0]


def test_joint_states_stamped_behind_the_camera_pair_with_an_earlier_fresh_frame():
    """Joints stamped 0.2 s behind a 15 Hz camera (an audit's arm): the newest frame has no joint
    sample near it yet, and every cycle was STALE for good; the newest fresh frame that has one
    is planned from, with its age. Joints that stop still stop the robot once that frame is
    older than max_observation_age."""
    model, loop = camera_and_joints_loop(pair_tolerance=0.05, max_observation_age=0.5)
    loop.set_goal_latent([0.5, 0.5])
    for k in range(30):                                     # 1.0 s to 2.0 s
        t = 1.0 + k / 30
        if k % 2 == 0:
            loop.observe({"image": np.full((16, 16, 3), k, np.uint8)}, t)
        if t - 0.2 >= 1.0:
            loop.observe({"joints": np.full(6, t - 0.2)}, t - 0.2)
    result = loop.step(2.0)
    assert result.status == Status.OK, result.message
    frame_stamp = 1.0 + 24 / 30              # the newest frame within 0.05 s of a joint sample:
    assert model.seen[-1][0, 0].item() == pytest.approx(1.0 + 29 / 30 - 0.2)   # the newest one
    assert result.observation_age == pytest.approx(2.0 - frame_stamp)
    later = loop.step(frame_stamp + 0.51)      # no new input: that frame is older than 0.5 s
    assert later.status == Status.STALE and later.command.tolist() == [0.0, 0.0, 0.0]


def test_frames_whose_joint_states_keep_being_refused_are_an_error_not_stale():
    """A NaN velocity in every joint_states (an outside arm's): each refusal was ERROR and each
    frame between them STALE, the status flipping every cycle; the frames are refused for the
    joints' reason until a good joint_states comes."""
    model, loop = camera_and_joints_loop(pair_tolerance=0.05)
    loop.set_goal_latent([0.5, 0.5])
    frame = np.zeros((16, 16, 3), np.uint8)
    loop.observe({"joints": np.zeros(6)}, 0.9)
    for k in range(3):
        t = 1.0 + k / 10
        loop.reject_observation("joint_states: non-finite values for joint(s) ['elbow']", t, joints=True)
        loop.observe({"image": frame}, t + 0.01)
        result = loop.step(t + 0.02)
        assert result.status == Status.ERROR and "non-finite values" in result.message, result.message
        assert result.command.tolist() == [0.0, 0.0, 0.0]
    loop.observe({"joints": np.zeros(6)}, 1.30)
    loop.observe({"image": frame}, 1.31)
    assert loop.step(1.32).status == Status.OK


def test_joint_states_stamped_ahead_of_the_clock_are_refused_with_the_frames_they_would_pair():
    """Joints stamped 0.3 s ahead (a driver's clock running fast): a frame pairs with the joint
    sample of its stamp, measured 0.3 s before it, and 58 cycles of 60 were OK (an adversarial
    audit). Refused as a joints-only model's observation is, ERROR with the stop, also after
    the joints stop while the clock passes their stamps; then joints on time plan again."""
    model, loop = camera_and_joints_loop(pair_tolerance=0.05, max_observation_age=0.5)
    loop.set_goal_latent([0.5, 0.5])
    frame = np.zeros((16, 16, 3), np.uint8)
    for k in range(10):                                    # 1.0 s to 1.9 s at 10 Hz
        t = 1.0 + k / 10
        loop.observe({"joints": np.full(6, t)}, t + 0.3)
        loop.observe({"image": frame}, t)
        result = loop.step(t)
        assert result.status == Status.ERROR and "0.300 s ahead of the clock" in result.message, result.message
        assert result.command.tolist() == [0.0, 0.0, 0.0]
    for t in (2.0, 2.1, 2.2):                              # the joints stopped; frames go on
        loop.observe({"image": frame}, t)
        result = loop.step(t)
        assert result.status == Status.ERROR and result.command.tolist() == [0.0, 0.0, 0.0], result.message
    loop.observe({"joints": np.zeros(6)}, 2.3)
    loop.observe({"image": frame}, 2.3)
    assert loop.step(2.3).status == Status.OK


@pytest.fixture(scope="module")
def robot_checkpoint(tmp_path_factory):
    """A tiny model trained on robot-like data: 3 joint velocities in rad/s, positions and
    velocities of 3 joints, a 10 Hz period, as a rosbag import would describe them."""
    rng = np.random.default_rng(0)
    N, T = 6, 10
    actions = rng.uniform([-2, -1, 0], [2, 3, 5], (N, T, 3)).astype(np.float32)
    q = np.concatenate([np.zeros((N, 1, 3)), np.cumsum(actions * 0.1, axis=1)], axis=1)
    joints = np.concatenate([q, np.concatenate([actions, actions[:, -1:]], 1)], axis=2).astype(np.float32)
    images = rng.integers(0, 255, (N, T + 1, 16, 16, 3), dtype=np.uint8)
    meta = {"env": "", "image_size": 16, "max_step": 0.0, "seed": 0, "source": "rosbag:test",
            "joint_names": ["shoulder", "elbow", "wrist"], "joint_fields": ["position", "velocity"],
            "action_names": ["shoulder", "elbow", "wrist"], "action_units": "rad/s",
            "action_low": [-2.0, -1.0, 0.0], "action_high": [2.0, 3.0, 5.0], "period": 0.1,
            "bags": ["run1.mcap"], "topics": {"image": "/arm/camera/image_raw", "joints": "arm/joint_states"}}
    data = TransitionData(images, joints, actions, meta)
    path = tmp_path_factory.mktemp("robot") / "robot.pt"
    settings = TrainSettings(epochs=1, batch_size=2, segment_steps=6, rollout_steps=3, dynamics_steps=2,
                             dynamics_batch_size=2, val_fraction=0.34, statistics_frames=8, seed=0)
    result = train(data, str(path), settings, {**SMALL, "joint_dim": 6}, progress=False, log=lambda _: None)
    return path, result["model"]


def test_trainer_writes_the_card_of_the_data(robot_checkpoint):
    path, _ = robot_checkpoint
    checkpoint = torch.load(path, weights_only=True)
    card = ModelCard.from_dict(checkpoint["card"])
    assert card.actions.names == ("shoulder", "elbow", "wrist") and card.actions.units == "rad/s"
    assert card.actions.low == (-2.0, -1.0, 0.0) and card.actions.high == (2.0, 3.0, 5.0)
    assert card.joints.names == ("shoulder", "elbow", "wrist") and card.joints.fields == ("position", "velocity")
    assert card.image.size == 16 and card.period == 0.1
    assert card.provenance["bags"] == ["run1.mcap"] and math.isfinite(card.metrics["one_step_state_err"])
    assert checkpoint["config"]["action_dim"] == 3


def test_a_checkpoint_and_its_export_carry_the_card(robot_checkpoint, tmp_path):
    path, model = robot_checkpoint
    # The controller's default model_options name a sim horizon: a robot's model still loads.
    loaded = load_world_model({"name": "learned", "checkpoint": str(path), "horizon": 50})
    card = card_for(loaded)
    assert card.period == 0.1 and card.actions.count == 3 and int(loaded.action_dim) == 3
    export = tmp_path / "robot.ts"
    export_torchscript(model, str(export))
    assert card_for(load_world_model(str(export))) == card


def test_info_prints_the_card(robot_checkpoint, capsys):
    path, _ = robot_checkpoint
    assert cli(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "period: 0.1 s per step (control_rate_hz 10)" in out and "shoulder [-2, 2]" in out and "run1.mcap" in out
    assert cli(["info", str(path.with_name("missing.pt"))]) == 2
    assert "file not found" in capsys.readouterr().err
    # The JSON names the topics as the text does: a bag's topic absolute (an outside robot's audit
    # found "arm/joint_states" there beside '/arm/joint_states' in the text).
    assert "on '/arm/camera/image_raw'" in out and "on '/arm/joint_states'" in out, out
    assert cli(["info", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["image"]["topic"] == "/arm/camera/image_raw" and shown["joints"]["topic"] == "/arm/joint_states"
    stored = card_for(load_world_model({"name": "learned", "checkpoint": str(path)}))
    assert ModelCard.from_dict(shown).describe() == stored.describe()   # it reads back as the same card


def test_info_into_a_closed_pipe_ends_quietly():
    """``grasp-ros info MODEL | head``: the reader gone before the card is written ended in a
    BrokenPipeError traceback (a README audit)."""
    import subprocess
    import sys
    from pathlib import Path
    asset = Path(__file__).resolve().parents[1] / "grasp_ros" / "assets" / "arm_latent.pt"
    process = subprocess.Popen([sys.executable, "-m", "grasp_ros.cli", "info", str(asset)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()                  # no reader: every write fails (EPIPE)
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, err
    assert "BrokenPipeError" not in err and "Traceback" not in err


def test_a_card_shows_each_actions_unit_beside_it():
    """collect --action-units gives one unit per action: an outside arm's info read
    "actions (velocity, rad/s,rad/s,rad/s,rad/s,rad/s,m/s)", its gripper's m/s six places away."""
    arm = ModelCard(ActionOutput(("elbow", "finger"), (-1.2, -0.05), (1.2, 0.05), "rad/s,m/s"))
    assert "actions (velocity): elbow [-1.2, 1.2] rad/s, finger [-0.05, 0.05] m/s" in arm.describe()
    base = ModelCard(ActionOutput(("linear.x", "linear.y", "angular.z"), (-1, -1, -1), (1, 1, 1), "m/s, rad/s", "twist"))
    assert "actions (twist, m/s, rad/s): linear.x [-1, 1]" in base.describe()   # not one per action
