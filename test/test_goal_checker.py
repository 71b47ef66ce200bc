"""The goal checker (``goal_tolerance``): at the goal the cycle stops the robot instead of
planning (ARRIVED), with hysteresis, per joint, the short way round an angle, from decoded
joints where none are measured."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grasp_ros.control import ControlConfig, ControlLoop, Status
from grasp_ros.control.arrival import RESUME_FACTOR
from grasp_ros.models.card import ActionOutput, ImageInput, JointInput, ModelCard
from grasp_ros.planning import make_planner

from test_control_cycle import HIGH, LOW, PERIOD, H, JointHeadImageModel, LinearModel

GOAL = np.array([0.6, -0.4])


class CountingPlanner:
    """The real planner, its plans counted: an ARRIVED cycle must not plan."""

    def __init__(self, planner):
        self.inner, self.plans = planner, 0

    def plan(self, *args, **kwargs):
        self.plans += 1
        return self.inner.plan(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def checked_loop(tolerance, model=None) -> ControlLoop:
    model = model or LinearModel()
    planner = CountingPlanner(make_planner("grasp", model, H, {"iterations": 5, "chains": 2}))
    config = ControlConfig(period=PERIOD, max_observation_age=0.25, timing="fixed_iterations",
                           goal_tolerance=tuple(tolerance))
    return ControlLoop(model, planner, config)


def at(loop, joints, t):
    loop.observe({"joints": np.asarray(joints, dtype=np.float64)}, stamp=t)
    return loop.step(t)


def test_within_the_tolerance_the_robot_is_stopped_unplanned_and_the_goal_far_off_is_planned():
    loop = checked_loop([0.05])
    loop.set_goal({"joints": GOAL})
    far = at(loop, [0.0, 0.0], 0.0)
    assert far.status == Status.OK and loop.planner.plans == 1
    near = at(loop, GOAL + [0.03, -0.04], 0.1)
    assert near.status == Status.ARRIVED and near.stop
    assert loop.planner.plans == 1                    # no plan this cycle
    np.testing.assert_array_equal(near.command, np.zeros(2))
    assert near.message.startswith("at the goal: every goal joint within goal_tolerance (furthest j1 0.04, "
                                   "tolerance 0.05)")
    assert near.goal_distance == pytest.approx(0.05, abs=1e-6)     # still reported


def test_arrived_it_stays_stopped_until_twice_the_tolerance_then_plans_again():
    loop = checked_loop([0.05])
    loop.set_goal({"joints": GOAL})
    assert at(loop, GOAL + [0.04, 0.0], 0.0).status == Status.ARRIVED
    coasted = at(loop, GOAL + [0.05 * RESUME_FACTOR - 0.01, 0.0], 0.1)
    assert coasted.status == Status.ARRIVED        # it says what holds: twice the tolerance
    assert "stopped there, every goal joint within 2x goal_tolerance (furthest j0 0.09," in coasted.message
    pushed = at(loop, GOAL + [0.05 * RESUME_FACTOR + 0.01, 0.0], 0.2)
    assert pushed.status == Status.OK
    # no longer arrived: back within twice the tolerance is not enough, within it is
    assert at(loop, GOAL + [0.08, 0.0], 0.3).status == Status.OK
    assert at(loop, GOAL + [0.02, 0.0], 0.4).status == Status.ARRIVED


def test_a_new_goal_or_a_reset_ends_the_stay_and_the_same_goal_again_does_not():
    loop = checked_loop([0.05])
    loop.set_goal({"joints": GOAL})
    assert at(loop, GOAL, 0.0).status == Status.ARRIVED
    loop.set_goal({"joints": GOAL.copy()})      # re-published: the same goal, still arrived
    assert at(loop, GOAL + [0.08, 0.0], 0.05).status == Status.ARRIVED
    loop.set_goal({"joints": GOAL + [0.08, 0.0]})       # 0.08 away: within 2x, but a new goal
    assert at(loop, GOAL, 0.1).status == Status.OK
    loop.set_goal({"joints": GOAL})
    assert at(loop, GOAL + [0.04, 0.0], 0.2).status == Status.ARRIVED
    loop.reset()
    assert at(loop, GOAL + [0.08, 0.0], 0.3).status == Status.OK


def test_one_tolerance_per_goal_joint_and_the_furthest_is_named():
    loop = checked_loop([0.01, 1.0])
    loop.set_goal({"joints": GOAL})
    assert at(loop, GOAL + [0.02, 0.0], 0.0).status == Status.OK       # j0: 0.02 > 0.01
    arrived = at(loop, GOAL + [0.005, 0.9], 0.1)
    assert arrived.status == Status.ARRIVED and "furthest j1 0.9, tolerance 1)" in arrived.message


def test_an_angle_is_compared_the_short_way_round():
    model = LinearModel()
    model.card = ModelCard(ActionOutput(("vx", "wz"), tuple(LOW), tuple(HIGH)),
                           joints=JointInput(("x", "yaw"), continuous=("yaw",)))
    loop = checked_loop([0.1], model)
    loop.set_goal({"joints": np.array([0.0, -3.1])})
    assert at(loop, [0.0, 3.1], 0.0).status == Status.ARRIVED      # 0.08 rad across the wrap
    plain = checked_loop([0.1])                                     # no continuous joint: 6.2 apart
    plain.set_goal({"joints": np.array([0.0, -3.1])})
    assert at(plain, [0.0, 3.1], 0.0).status == Status.OK


def test_a_camera_model_is_checked_on_its_decoded_joints():
    model = JointHeadImageModel()
    model.card = ModelCard(ActionOutput(("a", "b"), tuple(LOW), tuple(HIGH)), image=ImageInput(8),
                           goal_joints=JointInput(("x", "y")))
    loop = checked_loop([0.05], model)
    loop.set_goal({"joints": np.array([0.2, 0.4])})

    def frame(x, y):      # what the model encodes: the first pixels' red channel / 255
        image = np.zeros((8, 8, 3), dtype=np.uint8)
        image[0, :2, 0] = [round(x * 255), round(y * 255)]
        return image
    loop.observe({"image": frame(0.2, 0.4)}, stamp=0.0)
    assert loop.step(0.0).status == Status.ARRIVED
    loop.observe({"image": frame(0.2, 0.6)}, stamp=0.1)
    assert loop.step(0.1).status == Status.OK


def test_unmeasured_joints_are_not_at_the_goal():
    """A model that observes the goal joints, in a cycle without their measurement (NaN, or
    none): not arrived, and no guess from elsewhere (this model has no joint head anyway)."""
    from grasp_ros.control.arrival import GoalChecker
    model = LinearModel()
    checker = GoalChecker(checked_loop([0.05]).card, model, [0.05])
    assert checker.check(GOAL, np.array([math.nan, GOAL[1]]), torch.zeros(2)) is None
    assert checker.check(GOAL, None, torch.zeros(2)) is None
    assert checker.check(GOAL, GOAL, torch.zeros(2)).startswith("at the goal")
    assert checker.describe().startswith("goal checker: a joint goal is reached when j0 is within 0.05, "
                                         "j1 is within 0.05")


def test_a_goal_without_joints_is_never_arrived_at():
    loop = checked_loop([0.05])
    loop.set_goal_latent(torch.tensor(GOAL, dtype=torch.float32))
    assert at(loop, GOAL, 0.0).status == Status.OK


@pytest.mark.parametrize("tolerance, words", [
    ([0.1, 0.1, 0.1], "3 values: give one for every goal joint or one per goal joint (2: j0, j1)"),
    ([0.0], "goal_tolerance must hold values > 0"),
    ([math.nan], "goal_tolerance must hold values > 0"),
])
def test_a_tolerance_that_does_not_fit_is_refused_with_the_reason(tolerance, words):
    with pytest.raises(ValueError, match="goal_tolerance") as refused:
        checked_loop(tolerance)
    assert words in str(refused.value)


class BlindCameraModel(LinearModel):
    """A camera-only model without a joint head: nothing measures a goal's joints."""

    joint_dim, image_size = 0, 8
    encode = JointHeadImageModel.encode


def test_a_model_that_cannot_measure_the_goal_joints_is_refused():
    model = BlindCameraModel()
    model.card = ModelCard(ActionOutput(("a", "b"), tuple(LOW), tuple(HIGH)), image=ImageInput(8),
                           goal_joints=JointInput(("x", "y")))
    with pytest.raises(ValueError, match="no decode_state joint head"):
        checked_loop([0.05], model)
