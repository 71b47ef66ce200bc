"""Closed loop through the ROS-free control core: simulator -> ControlLoop -> simulator."""
from grasp_ros.bench.closed_loop_core import run


def test_grasp_closes_the_loop_through_the_door():
    row = run("wall_door", "grasp", horizon=50, rate_hz=10.0, episodes=2, first_seed=1,
              settings={"running_weight": 0.5, "chains": 8})
    assert row["success_rate"] == 1.0, row
    assert row["median_steps"] < 100, row   # a direct route, not a random walk
