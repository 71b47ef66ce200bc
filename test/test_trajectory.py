"""What a joint-trajectory command starts from and how far it runs (``control.trajectory``),
without ROS. The node's tests drive it over DDS (test_controller_node)."""
from __future__ import annotations

import math

import numpy as np

from grasp_ros.control.trajectory import MeasuredPositions, SentPositions, trajectory_steps


def test_a_trajectory_starts_from_the_positions_measured_at_its_cycle():
    """A measurement that came while the cycle planned is not where the robot was at the
    trajectory's first point (a stall audit: 0.14-0.22 rad off on the arm, 1.47 m after a stall
    across a new episode)."""
    measured = MeasuredPositions()
    for stamp, x in ((9.9, 0.0), (10.0, 0.1), (10.04, 0.15), (10.3, 0.5)):
        measured.add(np.array([x]), stamp)
    positions, age = measured.at(10.0, max_age=0.5, lead=0.05)
    assert positions.tolist() == [0.15] and math.isclose(age, -0.04)
    positions, age = measured.at(10.3, max_age=0.5, lead=0.05)              # a stop: the newest
    assert positions.tolist() == [0.5] and age == 0.0


def test_a_measurement_that_came_while_the_cycle_planned_is_not_its_start():
    """Stamped within max_stamp_lead of the cycle, but received after the cycle began: the plan
    never saw it (a glitch of 5 m there moved a whole trajectory 5 m, an adversarial audit)."""
    measured = MeasuredPositions()
    measured.add(np.array([0.0]), 10.0, received=10.0)
    measured.add(np.array([5.0]), 10.02, received=10.03)       # during the cycle at 10.0
    assert measured.at(10.0, max_age=0.5, lead=0.05, received_by=10.0)[0].tolist() == [0.0]
    assert measured.at(10.0, max_age=0.5, lead=0.05)[0].tolist() == [5.0]   # a stop: the newest


def test_a_stop_never_holds_a_single_glitch():
    """A run of stops holds where its first one measured, and a position-tracking controller
    drives the robot there: a glitch of 5 m among the newest measurements would be held (an
    adversarial audit), their median is not. A measurement older than max_age is not counted."""
    measured = MeasuredPositions()
    for stamp, x, q in ((9.9, 0.0, 1.0), (9.95, 0.01, 1.0), (10.0, 5.0, 1e308)):
        measured.add(np.array([x, q]), stamp)
    positions, age = measured.steady(10.0, max_age=0.5, lead=0.05)
    assert positions.tolist() == [0.01, 1.0] and age == 0.0
    measured.add(np.array([0.03, 1.0]), 10.01)              # the robot moving on: the middle one
    assert measured.steady(10.01, max_age=0.5, lead=0.05)[0].tolist() == [0.03, 1.0]
    assert measured.steady(10.44, max_age=0.5, lead=0.05)[0].tolist() == [0.03, 1.0]  # 3 within 0.5 s
    # fewer than three fresh ones: the newest, as at() gives it
    assert measured.steady(10.48, max_age=0.5, lead=0.05)[0].tolist() == [0.03, 1.0]
    assert measured.steady(10.52, max_age=0.5, lead=0.05)[0] is None


def test_measurements_after_a_jump_back_are_dropped():
    measured = MeasuredPositions()
    for stamp in (100.0, 100.1, 1.0):
        measured.add(np.array([stamp]), stamp)
    measured.drop_after(1.05)
    assert measured.at(1.0, max_age=0.5, lead=0.05)[0].tolist() == [1.0]
    assert measured.at(100.1, max_age=0.5, lead=0.05)[0] is None


def test_old_or_missing_measurements_give_no_start():
    measured = MeasuredPositions()
    positions, age = measured.at(1.0, max_age=0.5, lead=0.05)
    assert positions is None and math.isnan(age)                             # nothing measured yet
    measured.add(np.array([1.0]), 1.0)
    positions, age = measured.at(2.0, max_age=0.5, lead=0.05)
    assert positions is None and math.isclose(age, 1.0)                      # a dead joint_states
    positions, age = measured.at(0.5, max_age=0.5, lead=0.05)                # all ahead (a jump back)
    assert positions is None and math.isclose(age, -0.5)
    measured.refuse(received=1.0)
    assert measured.at(1.0, 0.5, 0.05)[0] is None


def test_a_refused_measurement_strips_positions_from_later_cycles_only():
    """A NaN joint_states that arrives while a cycle plans: that cycle's trajectory keeps the
    positions measured by its start (clearing every measurement had sent it with velocities
    only, and then each stop held none: an adversarial audit); cycles after it, and a stop's
    hold, have none until a good measurement comes."""
    measured = MeasuredPositions()
    for stamp in (1.0, 1.1, 1.2):
        measured.add(np.array([stamp]), stamp, received=stamp)
    measured.refuse(received=1.25)                        # during the cycle that began at 1.2
    assert measured.at(1.2, max_age=0.5, lead=0.05, received_by=1.2)[0].tolist() == [1.2]
    assert measured.at(1.3, max_age=0.5, lead=0.05, received_by=1.3)[0] is None
    assert measured.steady(1.3, max_age=0.5, lead=0.05)[0] is None
    measured.add(np.array([1.35]), 1.35, received=1.35)
    assert measured.at(1.4, max_age=0.5, lead=0.05, received_by=1.4)[0].tolist() == [1.35]


def test_a_measurement_stamped_ahead_of_its_arrival_ages_as_the_loops_observation_does():
    """Stamped 0.5 s after it arrived (a sensor ahead of the clock; in the node's test, joints sent
    before the /clock that reached their stamp): the loop ages it from its arrival + lead
    (``Sample.aged_from``) and calls the cycle at 4.0 STALE, so a stop then must not hold its
    positions as fresh. Under load the stop held them while the loop said STALE (a clean-clone
    run beside two busy processes)."""
    from grasp_ros.control.inputs import Sample
    measured = MeasuredPositions()
    for stamp in (2.0, 2.5, 3.0):
        measured.add(np.array([stamp]), stamp, received=stamp - 0.5)
    loop_age = 4.0 - Sample({}, stamp=3.0, received=2.5).aged_from(0.05)
    assert math.isclose(loop_age, 1.45)
    for positions, age in (measured.at(4.0, max_age=1.0, lead=0.05), measured.steady(4.0, max_age=1.0, lead=0.05)):
        assert positions is None and math.isclose(age, loop_age)
    assert measured.at(3.5, max_age=1.0, lead=0.05)[0].tolist() == [3.0]   # 0.95 s old then: fresh


def test_a_trajectory_moves_no_longer_than_a_fallback_follows_a_plan():
    assert trajectory_steps(0.1, 0.5) == 6           # moving over [0, 0.6) s, at rest at 0.6 s
    assert trajectory_steps(0.5, 1.0) == 3
    assert trajectory_steps(1.0, 0.1) == 1           # at least the first action


def test_a_stop_without_a_fresh_measurement_holds_where_the_last_trajectory_takes_the_joints():
    """The trajectory controller's own reference: between points interpolated, before the
    stamp the first point, after the end the last (where the controller holds); a hold (stamped
    0, "start on receipt") its own positions at any time."""
    sent = SentPositions(10.0, [0.0, 0.5, 1.0, 1.5], [[0.0, 1.0], [0.5, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert sent.at(10.25).tolist() == [0.25, 1.0]
    assert sent.at(10.75).tolist() == [0.75, 0.5]
    assert sent.at(9.0).tolist() == [0.0, 1.0] and sent.at(30.0).tolist() == [1.0, 0.0]
    hold = SentPositions(None, [0.0, 0.5], [[0.3, -0.2], [0.3, -0.2]])
    assert hold.at(0.0).tolist() == [0.3, -0.2] == hold.at(1e9).tolist()
