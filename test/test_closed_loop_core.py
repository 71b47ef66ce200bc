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
    assert settings["start_std_spread"] == 10.0 and settings["lr_actions"] == 0.03


def test_the_arm_has_only_a_learned_model():
    with pytest.raises(ValueError, match="only a learned model"):
        run("arm", "grasp", horizon=50, rate_hz=10.0, episodes=1, model="analytic")


def test_a_command_delay_applies_each_command_one_step_late():
    """command_delay 1: the world steps with the previous cycle's command (zero first), as the
    sim does through ROS in real time; the row says so."""
    import numpy as np

    from grasp_ros.bench.closed_loop_core import make_core_world, model_spec_for, run_episode
    from grasp_ros.control import ControlConfig
    from grasp_ros.control.build import build_control_loop

    config = ControlConfig(period=0.1, solve_budget=10.0, plan_ahead=1)
    world = make_core_world("open", 50, config.period)
    loop = build_control_loop(model_spec_for("open", "analytic", 50), "grasp", 50, config,
                              {"iterations": 3})
    sent, applied = [], []
    step, world_step = loop.step, world.step

    def loop_step(now):
        result = step(now)
        sent.append(np.array(result.command))
        return result

    def stepped(command):
        applied.append(np.array(command))
        return world_step(command)
    loop.step, world.step = loop_step, stepped
    run_episode(loop, world, seed=2, max_steps=6, command_delay=1)
    assert len(applied) == len(sent) == 6
    assert not applied[0].any() and np.abs(sent[0]).sum() > 0
    for k in range(1, 6):
        np.testing.assert_array_equal(applied[k], sent[k - 1])
    row = run("open", "grasp", horizon=50, rate_hz=10.0, episodes=1, first_seed=2, model="analytic",
              settings={"iterations": 3}, solve_budget=10.0, max_steps=3, command_delay=1, plan_ahead=1)
    assert row["command_delay_steps"] == 1 and row["plan_ahead"] == 1
