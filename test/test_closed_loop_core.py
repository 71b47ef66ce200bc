"""Closed loop through the ROS-free control core: simulator -> ControlLoop -> simulator."""
import pytest

from grasp_ros.bench.closed_loop_core import run
from grasp_ros.commands.bench_effort import controller_defaults


def test_grasp_closes_the_loop_through_the_door():
    # An iteration cap and a budget that never binds: the same result on any machine.
    row = run("wall_door", "grasp", horizon=50, rate_hz=10.0, episodes=2, first_seed=1,
              settings={"running_weight": 0.1, "iterations": 30}, solve_budget=10.0)
    assert row["success_rate"] == 1.0, row
    assert row["median_steps"] < 100, row   # a direct route, not a random walk
    assert row["fallback_rate"] == 0.0, row


def test_the_arm_closes_the_loop_from_camera_and_joints():
    # The MuJoCo arm through the same core: its model card asks for the 96 x 72 camera (made
    # 64 x 64) and the joints (positions, velocities); lock step, iteration cap, the arm's own
    # controller parameters (config/arm_controller.yaml). Seed 1 is a greedy reach.
    pytest.importorskip("grasp_ros.sim.arm")   # it picks MuJoCo's GL backend before importing it
    settings = {**controller_defaults("grasp", "arm"), "iterations": 10}
    row = run("arm", "grasp", horizon=50, rate_hz=10.0, episodes=1, first_seed=1,
              settings=settings, solve_budget=10.0, model="learned", max_steps=100)
    assert row["success_rate"] == 1.0, row
    assert row["fallback_rate"] == 0.0, row
    assert settings["sync_every"] == 0 and settings["start_samples"] == 300
    assert settings["start_colour"] == 2.0


def test_the_arm_has_only_a_learned_model():
    with pytest.raises(ValueError, match="only a learned model"):
        run("arm", "grasp", horizon=50, rate_hz=10.0, episodes=1, model="analytic")
