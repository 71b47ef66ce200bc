"""Closed loop through the ROS-free control core: simulator -> ControlLoop -> simulator."""
from grasp_ros.bench.closed_loop_core import run


def test_grasp_closes_the_loop_through_the_door():
    # An iteration cap and a budget that never binds: the same result on any machine.
    row = run("wall_door", "grasp", horizon=50, rate_hz=10.0, episodes=2, first_seed=1,
              settings={"running_weight": 0.1, "iterations": 30}, solve_budget=10.0)
    assert row["success_rate"] == 1.0, row
    assert row["median_steps"] < 100, row   # a direct route, not a random walk
    assert row["fallback_rate"] == 0.0, row
