"""The control cycle without ROS: stale handling, fallback, errors, the final guard, warm starts.

Toy models keep these fast and exact: the latent is the joint vector and one action moves it by
``0.1 * a`` (clamped to the model's bounds, which are deliberately asymmetric).
"""
from __future__ import annotations

import math
import threading
import time
import traceback

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from grasp_ros.control.runner import SLOW_CLOCK_TIMEOUTS
from grasp_ros.control import (ControlConfig, ControlLoop, CycleResult, CycleRunner, CycleStats, Status,
                               StatusLog, build_control_loop, resolve_device)
from grasp_ros.control.replayed import ReplayedCycles
from grasp_ros.models import WorldModel, model_spec, parse_options
from grasp_ros.planning import Plan, make_planner

H = 8
PERIOD = 0.1
LOW, HIGH = [-0.5, -1.0], [1.0, 0.25]


class LinearModel(WorldModel):
    """z' = z + 0.1 a. ``nan`` poisons encode or predict; ``delay`` slows predict (seconds);
    a ``gate`` (threading.Event) holds every predict until it is set."""

    latent_dim, action_dim, joint_dim = 2, 2, 2

    def __init__(self):
        super().__init__(LOW, HIGH)
        self.nan, self.delay, self.fail, self.gate = None, 0.0, None, None

    def encode(self, observation):
        if self.fail == "encode":
            raise RuntimeError("camera driver exploded")
        z = observation["joints"].to(torch.float32)
        return z * math.nan if self.nan == "encode" else z

    def predict(self, latent, action):
        if self.gate is not None:
            assert self.gate.wait(120.0), "the test never opened the gate"
        if self.delay:
            time.sleep(self.delay)
        nxt = latent + 0.1 * action
        return nxt * math.nan if self.nan == "predict" else nxt

    def position(self, latent):
        return latent


def make_loop(**config) -> ControlLoop:
    model = LinearModel()
    planner = make_planner("grasp", model, H, {"iterations": 15, "chains": 2})
    # Iteration caps, not wall-clock budgets: the same result on a busy machine; an hour's
    # clock_timeout, so that a runner's watchdog thread stays quiet between a test's ticks.
    options = dict(period=PERIOD, max_observation_age=0.25, timing="fixed_iterations",
                   clock_timeout=3600.0)
    options.update(config)
    loop = ControlLoop(model, planner, ControlConfig(**options))
    loop.warm_up()     # as build_control_loop does: torch's first autograd call is slow
    return loop


def ready_loop(**config) -> ControlLoop:
    loop = make_loop(**config)
    loop.set_goal({"joints": np.array([0.6, -0.4])})
    loop.observe({"joints": np.array([0.0, 0.0])}, stamp=0.0)
    return loop


def in_bounds(command) -> bool:
    command = np.asarray(command)
    return bool(np.isfinite(command).all() and (command >= LOW).all() and (command <= HIGH).all())


# -- stale ------------------------------------------------------------------------------------

def test_no_observation_or_no_goal_is_stale_with_zero():
    loop = make_loop()
    result = loop.step(0.0)
    assert result.status == Status.STALE and "no observation" in result.message
    assert result.command.tolist() == [0.0, 0.0] and result.plan is None
    loop.observe({"joints": np.zeros(2)}, stamp=0.0)
    result = loop.step(0.0)
    assert result.status == Status.STALE and "no goal" in result.message
    assert result.observation_age == 0.0


@pytest.mark.parametrize("on_stale", ["hold", "zero"])
def test_old_observation_is_stale_and_holds_or_zeroes(on_stale):
    loop = ready_loop(on_stale=on_stale)
    first = loop.step(0.0)
    assert first.status == Status.OK and np.abs(first.command).max() > 0.1
    within = loop.step(0.25)                         # age == max_observation_age: still fresh
    assert within.status == Status.OK
    stale = loop.step(0.3)
    assert stale.status == Status.STALE and "newest observation (joint_states) is 0.300 s old" in stale.message
    assert stale.observation_age == pytest.approx(0.3)
    expected = within.command if on_stale == "hold" else np.zeros(2)
    assert stale.command == pytest.approx(expected)
    assert loop.step(0.4).command == pytest.approx(expected)     # held again, not drifting
    loop.observe({"joints": np.zeros(2)}, stamp=0.5)              # fresh data: controls again
    assert loop.step(0.5).status == Status.OK


def test_stamps_on_another_time_base_are_named():
    """A robot on sim time and a node on the wall clock (use_sim_time forgotten), or the
    reverse: the age is decades, and the reason says what to set."""
    loop = ready_loop()
    loop.observe({"joints": np.zeros(2)}, stamp=12.0)
    wall = loop.step(1.8e9)
    assert wall.status == Status.STALE and "different time bases" in wall.message and "use_sim_time" in wall.message
    loop = ready_loop()
    loop.observe({"joints": np.zeros(2)}, stamp=1.8e9)
    sim = loop.step(12.0)
    assert sim.status == Status.ERROR and "ahead of the clock" in sim.message and "use_sim_time" in sim.message
    assert "time bases" not in ready_loop(max_observation_age=0.25).step(1.0).message     # merely old


# -- planning, fallback ----------------------------------------------------------------------

def test_ok_cycle_sends_the_plans_first_action():
    loop = ready_loop()
    result = loop.step(0.0)
    assert result.status == Status.OK and not result.deadline_missed and not result.warm_started
    assert result.plan is not None and result.iterations > 0
    plan_actions = result.plan.actions.numpy()
    assert result.command == pytest.approx(np.clip(plan_actions[0], LOW, HIGH))
    assert result.actions.shape == (H, 2) and result.path.shape == (H + 1, 2)
    assert result.goal_distance == pytest.approx(math.hypot(0.6, -0.4), rel=1e-5)
    assert math.isfinite(result.cost) and math.isfinite(result.residual)
    assert loop.step(PERIOD).warm_started


class Published:
    """A runner's publish callback that keeps what it got and wakes a waiting test."""

    def __init__(self):
        self.results, self.event = [], threading.Event()

    def __call__(self, result):
        self.results.append(result)
        self.event.set()

    def next(self, timeout: float = 30.0):
        assert self.event.wait(timeout), "nothing was published"
        self.event.clear()
        return self.results[-1]


def run_ticks(loop, ticks, on_late=lambda result: None) -> list:
    """Each (t, before) of ``ticks``: ``before()``, then tick at t through a fresh runner; what
    each tick published."""
    published = Published()
    runner = CycleRunner(loop, published, on_late)
    runner.start()
    try:
        out = []
        for t, before in ticks:
            before()
            runner.tick(t)
            out.append(published.next())
    finally:
        runner.stop()
    return out


def runner_for(loop, **options):
    """A started runner of ``loop`` (``options``: CycleRunner's) and what it publishes."""
    published = Published()
    runner = CycleRunner(loop, published, **options)
    runner.start()
    return runner, published


def test_a_late_solve_cannot_delay_the_command_and_still_warm_starts_the_next_cycle():
    loop = ready_loop(period=1.0, max_observation_age=100.0)
    first = loop.step(0.0)
    assert first.status == Status.OK
    previous = first.plan.actions.numpy()
    loop.model.delay = 0.05                   # every model call now takes far longer than the budget
    loop.update_config(timing="realtime", solve_budget=0.01)
    runner, published = runner_for(loop)
    try:
        runner.tick(2.0)                      # two periods after the first plan was made
        late = published.next()
        # Sent at the deadline, before the solve (dozens of 0.05 s model calls) could end.
        assert late.status == Status.FALLBACK and late.deadline_missed
        assert "no plan by the deadline" in late.message and "previous plan" in late.message
        assert late.command == pytest.approx(np.clip(previous[2], LOW, HIGH))
        assert late.actions == pytest.approx(np.clip(previous[2:], LOW, HIGH))
        runner.tick(3.0)                      # the late solve still runs: fallback at once
        busy = published.next()
        assert busy.status == Status.FALLBACK and "still on the cycle" in busy.message
    finally:
        runner.stop()                         # waits for the late solve
    loop.model.delay = 0.0
    loop.update_config(timing="fixed_iterations")
    seen = []
    loop.planner.plan = spy(loop.planner.plan, seen)
    loop.step(4.0)
    # The late plan (made for t=2) is the warm start at t=4, shifted by the 2 periods since.
    assert seen[-1] is not None and seen[-1].actions.shape == (H, 2)
    assert loop._plan_time == 4.0


def test_a_planner_that_stays_busy_gets_zero_once_the_previous_plan_is_too_old():
    """FALLBACK follows the previous plan open loop only while it is at most
    max_observation_age + one period old: then zero, however fresh the observations."""
    loop = ready_loop(period=1.0, max_observation_age=1.5)
    first = loop.step(0.0)
    assert first.status == Status.OK
    previous = first.plan.actions.numpy()
    loop.model.gate = threading.Event()        # every solve from now on waits for the test
    loop.update_config(timing="realtime", solve_budget=0.01)
    runner, published = runner_for(loop)
    try:
        loop.observe({"joints": np.zeros(2)}, stamp=1.0)
        runner.tick(1.0)
        late = published.next()               # the previous plan is one period old: followed
        assert late.status == Status.FALLBACK and "no plan by the deadline" in late.message
        assert late.command == pytest.approx(np.clip(previous[1], LOW, HIGH))
        assert np.abs(late.command).max() > 0
        loop.observe({"joints": np.zeros(2)}, stamp=3.0)
        runner.tick(3.0)
        busy = published.next()                # still busy, and the plan is 3 s old: zero
        assert busy.status == Status.FALLBACK and "still on the cycle" in busy.message
        assert "the previous plan is 3.000 s old" in busy.message and "2.5 s" in busy.message
        assert busy.message.endswith("2.5 s): zero"), busy.message       # said once
        assert busy.command.tolist() == [0.0, 0.0] and busy.deadline_missed
    finally:
        loop.model.gate.set()
        runner.stop()


def test_late_and_busy_cycles_are_reported_and_repeat_exactly_when_named():
    """A realtime run: a late cycle (FALLBACK), a cycle that finds the planner still busy
    (FALLBACK), the late plan's report, then a cycle warm-started from it. The same inputs
    through a fresh loop that names the two cycles (how a replay repeats them, at the late plan's
    iteration count): the same four commands, and the same late plan."""
    def realtime():
        loop.model.delay = 0.05               # far over the budget: the solve comes late
        loop.update_config(timing="realtime", solve_budget=0.01)

    def in_time():
        assert late_seen.wait(30.0)           # the late plan is done before the next cycle
        loop.model.delay = 0.0
        loop.update_config(timing="fixed_iterations")

    loop = ready_loop(period=1.0, max_observation_age=100.0)
    late_seen, recorded_late = threading.Event(), []
    nothing = lambda: None                    # noqa: E731
    recorded = run_ticks(loop, [(0.0, nothing), (1.0, realtime), (2.0, nothing), (3.0, in_time)],
                   _Notify(recorded_late, late_seen))
    assert [r.status for r in recorded] == [Status.OK, Status.FALLBACK, Status.FALLBACK, Status.OK]
    assert "still on the cycle" in recorded[2].message and recorded[3].warm_started
    (report,) = recorded_late
    assert report.time == 1.0 and report.status == Status.FALLBACK and "late plan" in report.message
    assert report.iterations == 0 and math.isfinite(report.cost)   # its budget had run out at once

    again = make_loop(period=1.0, max_observation_age=100.0, replayed=ReplayedCycles(late=(1.0,), busy=(2.0,)))
    again.set_goal({"joints": np.array([0.6, -0.4])})
    again.observe({"joints": np.array([0.0, 0.0])}, stamp=0.0)
    counts = lambda n: (lambda: again.request_planner_settings(iterations=n))   # noqa: E731
    replayed_late = []
    replayed = run_ticks(again, [(0.0, nothing), (1.0, counts(report.iterations)), (2.0, nothing),
                           (3.0, counts(15))], replayed_late.append)
    assert [r.status for r in replayed] == [r.status for r in recorded]
    for a, b in zip(recorded, replayed):
        np.testing.assert_array_equal(a.command, b.command)
    np.testing.assert_array_equal(replayed_late[0].command, report.command)
    assert replayed_late[0].iterations == report.iterations


def test_plan_ahead_starts_from_the_command_held_when_the_cycle_began():
    """With ``plan_ahead`` a plan starts where the held command takes the robot. A replayed late
    cycle sends its FALLBACK before it plans (a real one sends it while planning): the plan must
    start from the command held when the cycle began, not from that FALLBACK."""
    loop = ready_loop(period=1.0, max_observation_age=100.0, plan_ahead=1)
    loop.request_planner_settings(running_weight=1.0)          # a plan whose actions vary along it
    first = loop.prepare(0.0)
    sent = loop.conclude(first, loop.solve(first, None, True))
    job = loop.prepare(5.0)
    loop.planner.reset()
    planned = loop.solve(job, None, False).plan.actions
    fallback = loop.late(job, "late")                  # the robot now holds another command
    assert not np.allclose(fallback.command, sent.command)
    loop.planner.reset()
    again = loop.solve(job, None, False).plan.actions
    assert torch.equal(planned, again)


def test_a_goal_on_a_continuous_joint_is_taken_at_its_nearest_turn():
    """A base's yaw wraps at +-pi: standing at 3.0 rad, a goal of -3.0 is 0.28 rad away (across
    the wrap), not 6. The goal moves by whole turns to the measured side, and back when the
    robot has crossed."""
    from grasp_ros.models.card import ActionOutput, JointInput, ModelCard
    model = LinearModel()
    model.card = ModelCard(ActionOutput(("vx", "wz"), tuple(LOW), tuple(HIGH)),
                           joints=JointInput(("x", "yaw"), continuous=("yaw",)))
    planner = make_planner("grasp", model, H, {"iterations": 15, "chains": 2})
    loop = ControlLoop(model, planner, ControlConfig(period=PERIOD, max_observation_age=0.25,
                                                     timing="fixed_iterations"))
    loop.set_goal({"joints": np.array([0.0, -3.0])})
    loop.observe({"joints": np.array([0.0, 3.0])}, stamp=0.0)
    near = loop.step(0.0)
    assert near.status == Status.OK and near.goal_distance == pytest.approx(2 * math.pi - 6.0, abs=1e-5)
    loop.observe({"joints": np.array([0.0, -3.1])}, stamp=0.1)     # crossed: the goal as given
    assert loop.step(0.1).goal_distance == pytest.approx(0.1, abs=1e-5)
    plain = ready_loop()                       # x, y: no continuous joint, no wrapping
    plain.set_goal({"joints": np.array([0.0, -3.0])})
    plain.observe({"joints": np.array([0.0, 3.0])}, stamp=0.0)
    assert plain.step(0.0).goal_distance == pytest.approx(6.0, abs=1e-5)


def test_a_non_finite_command_in_robot_units_is_replaced_by_zero(monkeypatch):
    """The last check is on what is sent: a conversion to robot units that overflowed (a card's
    range beyond float) gives ERROR and the stop, never NaN."""
    loop = ready_loop()
    monkeypatch.setattr(loop, "_robot_actions", lambda actions: np.full((len(actions), 2), np.nan))
    result = loop.step(0.0)
    assert result.status == Status.ERROR and "non-finite command in robot units" in result.message
    assert result.command.tolist() == [0.0, 0.0] and result.stop


class _Notify:
    """A late-plan callback: keeps the reports in ``into`` and sets ``event``."""

    def __init__(self, into, event):
        self.into, self.event = into, event

    def __call__(self, result):
        self.into.append(result)
        self.event.set()


def test_a_busy_planner_still_checks_the_inputs_every_cycle():
    """While a late solve runs on, each cycle sends the previous plan's action only while the
    inputs would let a plan be made: a dead sensor or the clock jumping back sends zero at once
    (not the old plan for up to a horizon), and a late plan from before the jump is dropped."""
    loop = ready_loop(period=1.0, max_observation_age=1.5, on_stale="zero")
    assert np.abs(loop.step(0.0).command).max() > 0.1
    loop.model.gate = threading.Event()       # every model call now waits for the test
    loop.update_config(timing="realtime", solve_budget=0.01)
    runner, published = runner_for(loop)
    try:
        runner.tick(1.0)
        assert published.next().status == Status.FALLBACK          # late: the solve is held
        runner.tick(1.5)                       # the sample is 1.5 s old: still fresh
        busy = published.next()
        assert busy.status == Status.FALLBACK and "still on the cycle" in busy.message
        assert np.abs(busy.command).max() > 0.1
        runner.tick(2.0)                       # 2.0 s old: the sensor is dead
        dead = published.next()
        assert dead.status == Status.STALE and "2.000 s old" in dead.message
        assert dead.command.tolist() == [0.0, 0.0]
        loop.observe({"joints": np.array([0.1, 0.0])}, stamp=2.0)
        runner.tick(2.5)
        assert published.next().status == Status.FALLBACK          # fresh again, still busy
        runner.tick(0.5)                       # the clock jumps back (a sim reset)
        jumped = published.next()
        assert jumped.status == Status.CLOCK and jumped.command.tolist() == [0.0, 0.0]
    finally:
        loop.model.gate.set()
        runner.stop()
    assert loop._plan is None                  # the late plan, made for t=1, is not adopted


def test_a_busy_cycle_stopped_by_its_inputs_says_so_and_replays_as_busy():
    """The first planning cycle comes late (no previous plan: zero), the next finds the planner
    still busy and its observation refused (ERROR), the next busy (zero); then the late plan
    warm-starts the next. The ERROR cycle's text says the planner was busy, so the replay names
    it busy too: named only late and busy by FALLBACK, the replay would adopt the late plan at
    the ERROR cycle and send its action at the busy one, where the live run sent zero."""
    from grasp_ros.control.reasons import BUSY
    from grasp_ros.replay.bag import Cycle
    from grasp_ros.replay.schedule import fallback_kind

    def fresh(**config):
        loop = make_loop(period=1.0, max_observation_age=100.0, **config)
        loop.set_goal({"joints": np.array([0.6, -0.4])})
        loop.observe({"joints": np.zeros(2)}, stamp=0.0)
        return loop

    loop = fresh(timing="realtime", solve_budget=0.01)
    loop.model.gate = threading.Event()        # the first solve waits for the test: late
    late_seen, reports = threading.Event(), []

    def refused():
        loop.reject_observation("image: a frame it cannot read", 2.0, received=2.0)

    def good():
        loop.observe({"joints": np.zeros(2)}, stamp=3.0)

    def in_time():
        loop.model.gate.set()
        assert late_seen.wait(30.0)
        loop.update_config(timing="fixed_iterations")
    recorded = run_ticks(loop, [(1.0, lambda: None), (2.0, refused), (3.0, good), (4.0, in_time)],
                   _Notify(reports, late_seen))
    assert [r.status for r in recorded] == [Status.FALLBACK, Status.ERROR, Status.FALLBACK, Status.OK]
    assert BUSY in recorded[1].message and "a frame it cannot read" in recorded[1].message
    assert recorded[2].command.tolist() == [0.0, 0.0] and recorded[3].warm_started
    kinds = [fallback_kind(Cycle(0, 0, int(r.status), f"{r.status.name}: {r.message}", "grasp", 0,
                                 *[math.nan] * 8, np.zeros(2)), reports[0] if t == 1.0 else None)
             for t, r in zip((1.0, 2.0, 3.0, 4.0), recorded)]
    assert kinds == ["late", "busy", "busy", ""]

    def replay(busy_cycles):
        again = fresh(replayed=ReplayedCycles(late=(1.0,), busy=busy_cycles))
        again.request_planner_settings(iterations=reports[0].iterations)
        return run_ticks(again, [(1.0, lambda: None),
                           (2.0, lambda: again.reject_observation("image: a frame it cannot read", 2.0, received=2.0)),
                           (3.0, lambda: again.observe({"joints": np.zeros(2)}, stamp=3.0)),
                           (4.0, lambda: again.request_planner_settings(iterations=15))])
    replayed = replay((2.0, 3.0))
    assert [r.status for r in replayed] == [r.status for r in recorded]
    for a, b in zip(recorded, replayed):
        np.testing.assert_array_equal(a.command, b.command)
    adopted_early = replay((3.0,))             # the ERROR cycle not named busy: not the run
    assert np.abs(adopted_early[2].command).max() > 0


def test_a_tick_whose_cycle_starts_late_is_no_clock_jump():
    """The timer reads the clock; the cycle thread gets to that tick only later (a first, cold
    plan holding the CPU), after observations received meanwhile moved the clock on. That is
    no jump back: a spurious CLOCK would clear the observations and warm start, and stop."""
    loop = ready_loop(max_observation_age=1.0)             # fixed iterations: no deadline
    loop.model.gate = threading.Event()
    runner, published = runner_for(loop)
    try:
        runner.tick(0.9)
        give_up = time.monotonic() + 30.0
        while not runner._in_cycle:                        # its cycle waits on the model
            assert time.monotonic() < give_up, "the cycle thread never took the tick"
            time.sleep(0.01)
        runner.tick(1.0)                                   # read now, its cycle comes later
        loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.95, received=1.16)
        loop.model.gate.set()
        while len(published.results) < 2:
            assert time.monotonic() < give_up, f"published {published.results}"
            time.sleep(0.01)
    finally:
        loop.model.gate.set()
        runner.stop()
    late = published.results[1]
    assert late.status != Status.CLOCK, late.message
    assert late.status == Status.OK and late.time == 1.0
    runner, published = runner_for(loop)                   # a real jump back is still one
    try:
        runner.tick(0.5)
        assert published.next().status == Status.CLOCK
    finally:
        runner.stop()


def test_stopping_the_runner_ends_a_long_solve_at_its_next_iteration():
    loop = ready_loop()
    loop.request_planner_settings(iterations=10**7)   # hours of planning, without a wall-clock limit
    runner, published = runner_for(loop)
    runner.tick(0.0)
    give_up = time.monotonic() + 120.0
    while not runner.solving:
        assert time.monotonic() < give_up, "the solve never started"
        time.sleep(0.01)
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    stopper.join(120.0)                       # a hang guard: the stop takes one iteration
    assert not stopper.is_alive(), "stop() waited for the whole solve"
    result = published.next()
    assert result.iterations < 10**7 and in_bounds(result.command)     # none, under load
    loop.request_planner_settings(iterations=15)
    assert loop.step(0.1).iterations == 15    # stopped, not halted for good


def test_named_replay_cycles_need_fixed_iterations():
    with pytest.raises(ValueError, match="fixed_iterations"):
        ControlConfig(timing="realtime", replayed=ReplayedCycles(late=(1.0,))).validate()


def test_a_replayed_cycle_is_named_by_its_time_through_a_float():
    replayed = ReplayedCycles(late=(0.1 + 0.2,), overdue=(1.0,))
    assert replayed.named("late", 0.3) and not replayed.named("busy", 0.3)
    assert replayed.named("overdue", 1.0 + 5e-7) and not replayed.named("overdue", 1.0 + 5e-6)
    assert replayed and not ReplayedCycles()


def spy(plan, seen):
    def wrapped(z0, goal, warm=None, budget=None):
        seen.append(warm)
        return plan(z0, goal, warm, budget)
    return wrapped


def test_a_late_solve_without_a_previous_plan_sends_zero():
    loop = ready_loop(period=1.0, timing="realtime", solve_budget=0.01)
    loop.model.delay = 0.05
    runner, published = runner_for(loop)
    try:
        runner.tick(0.0)
        result = published.next()
    finally:
        runner.stop()
    assert result.status == Status.FALLBACK and result.command.tolist() == [0.0, 0.0]
    assert "no previous plan" in result.message


def test_no_cycle_reports_ok_without_planning():
    # A budget used up before the first iteration: the plan is the warm start, flagged.
    loop = ready_loop(period=1.0, max_observation_age=100.0)
    assert loop.step(0.0).status == Status.OK
    loop.update_config(timing="realtime", solve_budget=1e-6)
    for t in (1.0, 2.0, 3.0):
        result = loop.step(t)
        assert result.iterations == 0 and result.status == Status.TRUNCATED
        assert "cut short: 0 iteration(s)" in result.message and in_bounds(result.command)
    loop.update_config(timing="fixed_iterations")
    assert loop.step(4.0).status == Status.OK     # no memory of the slow cycles


def test_min_iterations_names_a_short_cycle():
    loop = ready_loop(min_iterations=20)          # the planner's cap is 15
    result = loop.step(0.0)
    assert result.status == Status.TRUNCATED and "15 iteration(s)" in result.message


def test_fixed_iterations_runs_the_cap_whatever_the_wall_clock():
    loop = ready_loop(solve_budget=1e-6)          # a budget that would leave no time at all
    loop.model.delay = 0.002
    result = loop.step(0.0)
    assert result.status == Status.OK and result.iterations == 15


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["encode", "predict"])
def test_nan_from_the_model_is_an_error_with_zero_and_the_loop_recovers(where):
    loop = ready_loop(on_stale="hold")
    assert np.abs(loop.step(0.0).command).max() > 0
    loop.model.nan = where
    result = loop.step(0.1)
    assert result.status == Status.ERROR and result.command.tolist() == [0.0, 0.0]
    assert "NaN" in result.message and result.plan is None
    loop.model.nan = None
    assert loop.step(0.2).status == Status.OK


def test_model_exception_is_an_error_with_zero():
    loop = ready_loop()
    loop.model.fail = "encode"
    result = loop.step(0.0)
    assert result.status == Status.ERROR and "camera driver exploded" in result.message
    assert result.command.tolist() == [0.0, 0.0]


def test_refused_observation_and_goal_are_errors_until_replaced():
    loop = ready_loop()
    loop.reject_observation("unsupported image encoding '16UC1'", stamp=0.0)
    result = loop.step(0.0)
    assert result.status == Status.ERROR and "16UC1" in result.message
    loop.observe({"joints": np.zeros(2)}, stamp=0.1)
    loop.reject_goal("goal_state lacks joint(s) ['y']")
    assert loop.step(0.1).status == Status.ERROR
    loop.set_goal_latent([0.2, 0.1])
    assert loop.step(0.1).status == Status.OK
    with pytest.raises(ValueError):
        loop.set_goal_latent([0.0, math.nan])


def test_a_goal_the_model_cannot_encode_is_an_error():
    loop = ready_loop()
    loop.set_goal({"image": np.zeros((8, 8, 3), np.uint8)})    # the toy model takes no images
    result = loop.step(0.0)
    assert result.status == Status.ERROR and "does not take 'image'" in result.message


class RoguePlanner:
    """A planner that breaks its contract: out-of-bounds or non-finite actions."""

    name, horizon = "rogue", H

    def __init__(self, action):
        self.action, self.device, self.settings = action, torch.device("cpu"), None

    def reset(self):
        pass

    def plan(self, z0, goal, warm_start=None, budget=None):
        actions = torch.tensor([self.action] * H, dtype=torch.float32)
        return Plan(actions=actions, states=torch.zeros(H + 1, 2), cost=0.0, iterations=1,
                    solve_time=0.0, model_calls=0, planner=self.name)


@pytest.mark.parametrize("action,status", [([5.0, -7.0], Status.OK),
                                           ([math.nan, 0.1], Status.ERROR),
                                           ([math.inf, 0.1], Status.ERROR)])
def test_final_guard_clips_and_zeroes_non_finite_commands(action, status):
    loop = ControlLoop(LinearModel(), RoguePlanner(action),
                       ControlConfig(period=PERIOD, solve_budget=1.0))
    loop.set_goal_latent([0.0, 0.0])
    loop.observe({"joints": np.zeros(2)}, 0.0)
    result = loop.step(0.0)
    assert result.status == status and in_bounds(result.command) and in_bounds(result.actions)
    if status == Status.OK:
        assert result.command.tolist() == [1.0, -1.0]
    else:
        assert result.command.tolist() == [0.0, 0.0] and "non-finite" in result.message


def test_commands_are_always_finite_and_within_bounds():
    rng = np.random.default_rng(0)
    loop = make_loop(on_stale="hold", max_observation_age=0.15)
    loop.set_goal({"joints": np.array([3.0, -3.0])})    # far away: the plan saturates the bounds
    for k in range(30):
        now = k * PERIOD
        if rng.random() < 0.7:
            loop.observe({"joints": rng.uniform(-2, 2, 2)}, stamp=now)
        loop.model.nan = "predict" if rng.random() < 0.2 else None
        result = loop.step(now)
        assert in_bounds(result.command) and in_bounds(result.actions), (k, result)


# -- warm start, reset, settings --------------------------------------------------------------

class Recording:
    """Wraps a planner and records the warm start of each call."""

    def __init__(self, planner):
        self.inner, self.warm_starts = planner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def plan(self, z0, goal, warm_start=None, budget=None):
        self.warm_starts.append(warm_start)
        self.starts = getattr(self, "starts", []) + [z0.clone()]
        return self.inner.plan(z0, goal, warm_start, budget)


def recording_loop(**config):
    loop = ready_loop(max_observation_age=100.0, **config)
    loop.planner = Recording(loop.planner)
    return loop


@pytest.mark.parametrize("periods", [1, 3])
def test_warm_start_is_the_previous_plan_shifted_by_the_elapsed_periods(periods):
    loop = recording_loop()
    first = loop.step(0.0)
    second = loop.step(periods * PERIOD)
    assert loop.planner.warm_starts[0] is None and second.warm_started
    expected = first.plan.shifted(periods)
    warm = loop.planner.warm_starts[1]
    assert torch.equal(warm.actions, expected.actions) and torch.equal(warm.states, expected.states)
    assert warm.actions[-periods:].abs().sum() == 0          # the tail holds still


def test_plan_ahead_starts_from_the_next_state_under_the_command_held():
    """plan_ahead 1: the plan starts where the model says the held command takes the robot by
    the time this cycle's command acts (z + 0.1 a here); 0: at the observation."""
    loop = recording_loop(plan_ahead=1)
    first = loop.step(0.0)                  # nothing sent yet: the held command is zero
    assert torch.equal(loop.planner.starts[0], torch.zeros(2))
    loop.observe({"joints": np.array([0.2, -0.1])}, stamp=PERIOD)
    loop.step(PERIOD)
    held = torch.as_tensor(first.command, dtype=torch.float32)
    torch.testing.assert_close(loop.planner.starts[1], torch.tensor([0.2, -0.1]) + 0.1 * held)
    assert held.abs().sum() > 0
    plain = recording_loop(plan_ahead=0)
    plain.step(0.0)
    plain.observe({"joints": np.array([0.2, -0.1])}, stamp=PERIOD)
    plain.step(PERIOD)
    assert torch.equal(plain.planner.starts[1], torch.tensor([0.2, -0.1]))
    with pytest.raises(ValueError, match="plan_ahead"):
        loop.update_config(plan_ahead=2)


def test_no_warm_start_once_the_previous_plan_is_over():
    loop = recording_loop()
    loop.step(0.0)
    result = loop.step(H * PERIOD)
    assert not result.warm_started and loop.planner.warm_starts[1] is None


def test_reset_clears_the_warm_start():
    loop = recording_loop()
    loop.step(0.0)
    assert loop.step(PERIOD).warm_started
    loop.reset()
    assert not loop.step(2 * PERIOD).warm_started
    assert loop.planner.warm_starts[2] is None
    assert loop.step(3 * PERIOD).warm_started


def test_planner_settings_are_checked_now_and_applied_next_cycle():
    loop = ready_loop()
    loop.request_planner_settings(iterations=3, lr_actions=0.2)
    assert loop.planner.settings.iterations == 15               # not yet
    result = loop.step(0.0)
    assert loop.planner.settings.iterations == 3 and loop.planner.settings.lr_actions == 0.2
    assert result.iterations <= 3
    with pytest.raises(ValueError, match="chains"):
        loop.request_planner_settings(chains=0)
    with pytest.raises(ValueError, match="no setting samples"):
        loop.request_planner_settings(samples=10)


def test_a_settings_request_checked_while_the_cycle_applies_others_is_judged_with_them():
    """The cycle took the pending settings, then applied them outside the lock: a request
    checked in between was judged without them, accepted, and failed when the node applied it
    (rclpy's post-set callback raised and the node ended: an audit's two peers setting
    planner.chains and planner.sync_search). Here the cycle's configure is held open: the
    check waits for it and refuses 16 sync steps at 10,000 chains."""
    loop = ready_loop()
    loop.request_planner_settings(chains=10_000)       # 4 sync steps x 10,000 x H 8: allowed
    entered, release = threading.Event(), threading.Event()
    configure = loop.planner.configure

    def held_configure(**changes):
        entered.set()
        assert release.wait(60.0), "never released"
        configure(**changes)
    loop.planner.configure = held_configure
    cycle = threading.Thread(target=lambda: loop.prepare(0.0), daemon=True)
    cycle.start()
    assert entered.wait(60.0)
    outcome: list = []

    def check() -> None:
        try:
            loop.check_planner_settings(sync_search=16)
            outcome.append("accepted")
        except ValueError as exc:
            outcome.append(str(exc))
    checking = threading.Thread(target=check, daemon=True)
    checking.start()
    checking.join(0.5)          # the old code answered at once, here; the fix waits for the cycle
    release.set()
    cycle.join(60.0)
    checking.join(60.0)
    assert loop.planner.settings.chains == 10_000
    assert outcome and "model steps" in outcome[0], outcome


@pytest.mark.parametrize("change", [{"on_stale": "sideways"}, {"period": 0.0},
                                    {"max_observation_age": -1.0}, {"solve_budget": math.nan}])
def test_config_changes_are_validated(change):
    loop = make_loop()
    with pytest.raises(ValueError):
        loop.update_config(**change)


def test_idle_is_inactive_with_zero_and_resets_hold():
    loop = ready_loop(on_stale="hold")
    loop.step(0.0)
    idle = loop.idle("deactivated")
    assert idle.status == Status.INACTIVE and idle.command.tolist() == [0.0, 0.0]
    assert loop.step(10.0).command.tolist() == [0.0, 0.0]      # stale, holding the zero


# -- statistics, building ----------------------------------------------------------------------

def test_cycle_stats_rate_quantiles_counts_and_health():
    stats = CycleStats(window=50)
    assert stats.health() == ("ok", "no control cycles yet")
    loop = ready_loop(max_observation_age=100.0)
    for k in range(10):
        stats.record(loop.step(k * PERIOD), k * PERIOD)
    assert stats.rate == pytest.approx(1 / PERIOD)
    assert 0 < stats.solve_time_quantile(0.5) <= stats.solve_time_quantile(0.99)
    summary = stats.summary()
    assert summary["cycles"] == "10" and summary["cycles_ok"] == "10"
    assert summary["deadline_misses"] == "0" and summary["last_status"] == "OK"
    assert stats.health()[0] == "ok"
    loop.model.nan = "predict"
    stats.record(loop.step(1.0), 1.0)
    assert stats.health()[0] == "error" and stats.summary()["cycles_error"] == "1"
    stats.record(make_loop().step(1.1), 1.1)
    level, message = stats.health()
    assert level == "warn" and message.startswith("stale")


def test_an_overdue_command_is_an_error_in_the_health_report_and_always_logged():
    """A stall audit found the overdue stop nearly invisible: /diagnostics sampled once a second
    and warned at most, and the log throttled it like any deadline miss."""
    loop = ready_loop()
    ok = loop.step(0.0)
    stopped = loop.overdue(ok, 0.0, "ready 5.000 s after the cycle began")
    assert stopped.status == Status.FALLBACK and stopped.stop and stopped.command.tolist() == [0.0, 0.0]
    stats = CycleStats()
    stats.record(stopped, 0.0)
    stats.record(loop.step(0.1), 0.1)                     # the next cycle is fine again
    level, message = stats.health()
    assert level == "error" and "1 overdue command(s)" in message and "held up" in message
    assert stats.summary()["overdue_commands"] == "1"
    wall = [0.0]
    log = StatusLog(wall=lambda: wall[0])
    assert log.worth_logging(Status.FALLBACK, "no plan by the deadline")
    wall[0] = 0.1                                         # within the 5 s of deadline misses
    assert log.worth_logging(Status.FALLBACK, stopped.message)


def test_the_log_tells_a_changed_reason_at_most_once_a_second():
    """A newcomer's console said "STALE: no observation yet" while every cycle was STALE for "no
    goal yet": only a change of status was logged, and the second reason, a tenth of a second
    later, fell to the one-second throttle for good. A changed reason (numbers aside) is logged,
    late if need be; the same one with an age counting up is not; two clocks flipping the
    status every cycle give at most a line a second."""
    wall = [0.0]
    log = StatusLog(wall=lambda: wall[0])
    assert log.worth_logging(Status.STALE, "no observation yet: zero")
    wall[0] = 0.1
    assert not log.worth_logging(Status.STALE, "no goal yet: zero")       # within the second
    wall[0] = 0.2
    assert not log.worth_logging(Status.STALE, "no goal yet: zero")
    wall[0] = 1.1
    assert log.worth_logging(Status.STALE, "no goal yet: zero")           # held back, now told
    wall[0] = 2.5
    assert log.worth_logging(Status.STALE, "newest observation is 0.512 s old: zero")
    wall[0] = 4.0
    assert not log.worth_logging(Status.STALE, "newest observation is 2.012 s old: zero")  # same reason
    told = 0
    for i in range(30):                        # two clocks: CLOCK and OK in turn, a tenth apart
        wall[0] = 10.0 + 0.1 * i
        told += log.worth_logging(Status.CLOCK if i % 2 else Status.OK, "clock jumped back" if i % 2 else "")
    assert 2 <= told <= 4
    wall[0] = 20.0
    assert log.worth_logging(Status.FALLBACK, "no plan by the deadline")
    wall[0] = 20.1
    assert not log.worth_logging(Status.OK, "")                            # OK after a miss: no news
    assert not log.worth_logging(Status.FALLBACK, "no plan by the deadline")   # misses: every 5 s
    wall[0] = 25.2
    assert log.worth_logging(Status.TRUNCATED, "planning cut short")


def test_cycle_stats_rate_restarts_at_a_clock_jump_and_ignores_the_watchdog():
    """/diagnostics said "controlling at 0.0 Hz" after a jump forward, "nan Hz" after one back,
    and under 1 Hz for a window after watchdog reports: the rate is the timer's since the jump."""
    stats = CycleStats(window=50)
    loop = ready_loop(max_observation_age=1e6)
    for t in [k * PERIOD for k in range(5)] + [3600 + k * PERIOD for k in range(5)]:
        stats.record(loop.step(t), t)                     # a jump forward of an hour
    assert stats.rate == pytest.approx(1 / PERIOD)
    loop.step(0.95)                                       # and back: the loop starts afresh
    loop.observe({"joints": np.array([0.0, 0.0])}, stamp=0.95)
    for t in (1.0, 1.1, 1.2):
        stats.record(loop.step(t), t)
    assert stats.rate == pytest.approx(1 / PERIOD) and stats.health() == ("ok", "controlling at 10.0 Hz")
    for _ in range(5):
        stats.record(loop.clock_stalled(2.0), 1.2)        # the watchdog's reports: not cycles
    stats.record(loop.step(1.3), 1.3)
    assert stats.rate == pytest.approx(1 / PERIOD)
    fresh = CycleStats()
    fresh.record(loop.step(2.0), 2.0)
    assert fresh.health() == ("ok", "controlling")        # one cycle: no rate yet


def test_cycle_stats_warn_when_the_cycles_come_slower_than_the_control_rate():
    """A /clock that advances in 0.45 s steps ran a 10 Hz controller at 2.2 Hz, each command
    standing 4.5 model steps, and /diagnostics said ok (an audit of bad clocks). Within
    period_tolerance it stays ok; the rate is judged after RATE_MIN_CYCLES cycles."""
    def ok(t):     # (the loop itself stops at such a pace: test_cycles_far_apart_...)
        return CycleResult(Status.OK, time=t)
    coarse = CycleStats(window=50, period=PERIOD, tolerance=0.25)
    for k in range(CycleStats.RATE_MIN_CYCLES):
        assert coarse.health()[0] == "ok"
        coarse.record(ok(0.45 * k), 0.45 * k)
    level, message = coarse.health()
    assert level == "warn" and "controlling at 2.2 Hz" in message and "4.5 periods" in message, message
    slightly = CycleStats(window=50, period=PERIOD, tolerance=0.25)
    for k in range(30):
        slightly.record(ok(1.2 * PERIOD * k), 1.2 * PERIOD * k)
    assert slightly.health() == ("ok", "controlling at 8.3 Hz")


def test_cycles_far_apart_cycle_after_cycle_stop_the_robot_and_one_gap_does_not():
    """A /clock in 0.45 s steps ran a 10 Hz controller every 0.45 s, OK, each command standing
    4.5 model steps (an audit of bad clocks). Three gaps of more than 2.5 periods among the last
    six intervals stop the robot (CLOCK) until they have left that window; one skipped tick (two
    periods) or one hiccup does not; control restarting (reset) starts the count afresh."""
    loop = ready_loop(max_observation_age=1e6)
    coarse = [loop.step(0.45 * k) for k in range(6)]
    assert [r.status for r in coarse] == [Status.OK] * 3 + [Status.CLOCK] * 3
    assert "3 of the last 3 cycles came more than 2.5 control periods after the one before (up to " \
           "0.450 s, 4.5 periods)" in coarse[3].message
    assert all(r.command.tolist() == [0.0, 0.0] for r in coarse[3:])
    t = 2.25
    statuses = []
    for _ in range(4):                                                    # at the period again
        t += PERIOD
        statuses.append(loop.step(t).status)
    assert statuses == [Status.CLOCK] * 3 + [Status.OK]                  # 5, 4, 3 gaps left, then 2
    times = [3.0, 3.2, 3.4, 3.5, 3.8, 3.9, 4.0, 4.1, 4.2, 4.3, 4.6, 4.7]   # skipped ticks, hiccups
    assert [loop.step(t).status for t in times][1:] == [Status.OK] * (len(times) - 1)
    for t in (5.0, 5.5, 6.0):
        loop.step(t)
    loop.reset()                                                          # an activation
    assert [loop.step(t).status for t in (7.0, 7.5, 8.0)] == [Status.OK] * 3


def test_a_clock_stepping_unevenly_stops_the_robot_though_every_other_interval_is_short():
    """An adversarial audit: each second the clock stepped 0.85 s then 0.15 s. Every other
    interval was short, so three gaps never came in a row: 20 of 23 cycles OK, their moving
    commands standing 8.5 model steps each. Three gaps among the last six intervals stop it."""
    loop = ready_loop(max_observation_age=1e6)
    times = np.cumsum([0.0] + [0.85, 0.15] * 5)
    statuses = [loop.step(float(t)).status for t in times]
    assert statuses[:5] == [Status.OK] * 5                                # two gaps so far
    assert statuses[5:] == [Status.CLOCK] * (len(times) - 5)


def test_build_helpers():
    assert parse_options("") == {} and parse_options("{env: open, horizon: 20}") == {
        "env": "open", "horizon": 20}
    for bad in ("[1, 2]", "{env: [", "just text"):
        with pytest.raises(ValueError, match="model_options"):
            parse_options(bad)
    assert model_spec("analytic", "", {"env": "open"}) == {"name": "analytic", "options": {"env": "open"}}
    assert model_spec("pkg.mod:make", "w.pt") == {"factory": "pkg.mod:make", "options": {}, "weights": "w.pt"}
    assert model_spec("/models/m.ts") == {"torchscript": "/models/m.ts"}
    with pytest.raises(ValueError):
        model_spec("/models/m.ts", "w.pt")
    device, warning = resolve_device("auto")
    assert device.type in ("cpu", "cuda") and (warning is None) == (device.type == "cuda")
    assert resolve_device("cpu") == (torch.device("cpu"), None)
    for bad in ("tpu", "gpu0"):
        with pytest.raises(ValueError):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_build_control_loop_on_the_analytic_model():
    loop = build_control_loop(model_spec("analytic", "", {"env": "open", "horizon": 20}),
                              "grasp", 20, ControlConfig(period=0.5, solve_budget=0.4),
                              {"iterations": 10})
    loop.observe({"joints": np.array([-0.5, -0.5])}, 0.0)
    loop.set_goal({"joints": np.array([0.5, 0.5])})
    result = loop.step(0.0)
    assert result.status in (Status.OK, Status.FALLBACK)
    assert np.isfinite(result.command).all() and np.abs(result.command).max() <= 1.0
    assert loop.image_size == 64 and loop.joint_dim == 2


class _FactoriesWithoutDevice(TorchFunctionMode):
    """Tensor factories called from grasp_ros without a device (and not from a tensor): on a GPU
    each makes a CPU tensor that then meets the device's tensors in an op, an error there."""

    FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace,
                 torch.eye, torch.randn, torch.rand, torch.randint, torch.tensor, torch.as_tensor,
                 torch.from_numpy}

    def __init__(self):
        super().__init__()
        self.sites: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in self.FACTORIES and "device" not in kwargs
                and not (args and isinstance(args[0], torch.Tensor))):
            ours = [f for f in traceback.extract_stack() if "/grasp_ros/" in f.filename]
            if ours:
                self.sites.append(f"{ours[-1].filename}:{ours[-1].lineno} {ours[-1].line}")
        return func(*args, **kwargs)


@pytest.mark.parametrize("env, model, planner", [
    ("wall_door", "analytic", "grasp"), ("wall_door", "analytic", "cem"),
    ("wall_door", "analytic", "mppi"), ("wall_door", "analytic", "gd"),
    ("wall_door", "learned", "grasp"), ("arm", "learned", "grasp")])
def test_a_cycle_makes_its_tensors_on_the_planners_device(env, model, planner):
    """No GPU here: what a GPU run needs of the code is checked on the CPU. In control cycles of
    every planner, the analytic and both learned models (camera; camera + joints), from the
    observation to the command, no tensor is made without naming its device."""
    from grasp_ros.bench.closed_loop_core import make_core_world, model_spec_for, run_episode
    loop = build_control_loop(model_spec_for(env, model, 25), planner, 25,
                              ControlConfig(period=PERIOD, timing="fixed_iterations"), {"iterations": 2})
    world = make_core_world(env, 25, PERIOD)
    world.reset(0)
    with _FactoriesWithoutDevice() as factories:
        result = run_episode(loop, world, 0, 2)
    assert result["statuses"] == [Status.OK, Status.OK]
    assert factories.sites == []


# -- clocks and stamps --------------------------------------------------------------------------

class DecodingModel(LinearModel):
    """Joints decoded from the latent (a learned model's joint head), its calls counted."""

    def __init__(self):
        super().__init__()
        self.decoded = 0

    def decode_state(self, latent):
        self.decoded += 1
        return latent


def test_warm_up_goes_the_joint_goal_path_too_and_leaves_the_planner_as_new():
    """A first cycle towards a joint goal went through decode_state and the goal search cold (a
    second on the learned model): the warm-up takes that path too, and the plans after it are
    a fresh planner's."""
    def loop_of(model):
        planner = make_planner("grasp", model, H, {"iterations": 15, "chains": 2})
        return ControlLoop(model, planner, ControlConfig(period=PERIOD, timing="fixed_iterations"))
    warmed, cold = loop_of(DecodingModel()), loop_of(DecodingModel())
    assert warmed.card.goal_joint_input is not None
    warmed.warm_up()
    assert warmed.model.decoded > 0 and cold.model.decoded == 0
    for loop in (warmed, cold):
        loop.set_goal({"joints": np.array([0.6, -0.4])})
        loop.observe({"joints": np.zeros(2)}, stamp=0.0)
    a, b = warmed.step(0.0), cold.step(0.0)
    assert a.status == b.status == Status.OK
    np.testing.assert_array_equal(a.command, b.command)


def test_a_stamp_in_the_future_is_refused_until_a_good_observation():
    loop = ready_loop(max_stamp_lead=0.05)
    assert loop.step(0.0).status == Status.OK
    for k in range(3):                                      # stamped 100 s ahead
        loop.observe({"joints": np.zeros(2)}, stamp=100.0 + k, received=0.1)
    for t in (0.1, 1.0, 4.0):       # then silence: never OK; STALE once the refusal is old
        result = loop.step(t)
        assert result.status == (Status.ERROR if t < 0.6 else Status.STALE), result.message
        assert "ahead of the clock" in result.message and result.command.tolist() == [0.0, 0.0]
    loop.observe({"joints": np.zeros(2)}, stamp=4.1, received=4.1)
    assert loop.step(4.1).status == Status.OK


def test_a_sample_stamped_just_ahead_of_a_trailing_clock_leaves_the_cycle_the_one_before():
    """A sim publishes /clock and its sensors at once, and on a busy machine the node's clock
    trails: at the cycle the newest joint sample is stamped a tick or two ahead. The cycle then
    plans from the newest sample not ahead (what was measured by now), not an ERROR; a sample
    further ahead than twice max_stamp_lead (a sensor clock running fast: taken for fresh that
    much longer after it died) is refused as before, and an earlier one received longer ago
    than max_observation_age is no substitute."""
    loop = ready_loop(max_stamp_lead=0.05, max_observation_age=0.25)
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=1.0, received=1.0)
    loop.observe({"joints": np.array([0.2, 0.0])}, stamp=1.04, received=1.0)
    loop.observe({"joints": np.array([0.3, 0.0])}, stamp=1.08, received=1.0)   # 2 ticks ahead
    result = loop.step(1.0)
    assert result.status == Status.OK and result.observation_age == pytest.approx(-0.04)
    assert result.plan.states[0].tolist() == pytest.approx([0.2, 0.0])      # planned from 1.04
    loop.observe({"joints": np.array([0.4, 0.0])}, stamp=1.2, received=1.1)
    assert loop.step(1.1).observation_age == pytest.approx(0.02)             # the one at 1.08
    loop.observe({"joints": np.array([0.5, 0.0])}, stamp=1.45, received=1.15)   # 0.3 s fast
    skewed = loop.step(1.15)
    assert skewed.status == Status.ERROR and "0.300 s ahead of the clock" in skewed.message
    # either clock may be off: a starved node's own /clock lags (a stall audit)
    assert "or this node's clock lags" in skewed.message
    # Ahead, and every earlier sample received longer than max_observation_age ago: refused.
    loop.observe({"joints": np.zeros(2)}, stamp=2.0, received=1.9)
    refused = loop.step(1.9)
    assert refused.status == Status.ERROR and "0.100 s ahead of the clock" in refused.message
    assert refused.command.tolist() == [0.0, 0.0]


def test_out_of_order_observations_keep_the_newest_stamp():
    loop = ready_loop(max_observation_age=0.25)
    loop.observe({"joints": np.zeros(2)}, stamp=1.0, received=1.0)
    loop.observe({"joints": np.ones(2)}, stamp=0.5, received=1.0)     # older, arrives later
    assert loop.out_of_order == 1
    result = loop.step(1.1)
    assert result.status == Status.OK and result.observation_age == pytest.approx(0.1)


def test_a_sims_unstamped_first_frame_does_not_hide_its_sim_time_stamps_from_a_wall_clock_node():
    """A node on the wall clock started before a sim: the sim's first frame is stamped 0, which
    means "now" (1.8e9 s); its later frames, stamped 0.1 s..., were older than that and dropped
    as out of order, so the cycles planned from the first frame and then called the camera
    dead ("56 s old") without the use_sim_time hint (a README audit). Another time base is no
    reordering: the cycle sees it and names it."""
    wall_now = 1.8e9
    loop = ready_loop()
    loop.observe({"joints": np.zeros(2)}, stamp=wall_now, received=wall_now)      # stamped 0: "now"
    loop.observe({"joints": np.ones(2)}, stamp=0.1, received=wall_now + 0.1)      # the sim's own
    assert loop.out_of_order == 0
    result = loop.step(wall_now + 0.2)
    assert result.status == Status.STALE and result.command.tolist() == [0.0, 0.0]
    assert "different time bases" in result.message and "use_sim_time" in result.message


def test_a_sensor_stamping_ahead_is_stale_as_soon_after_it_dies_as_any():
    """Stamped 0.2 s ahead (refused while it lives), the sensor's last message counts from its
    arrival + max_stamp_lead, not from its stamp: STALE max_observation_age after it died."""
    loop = ready_loop()                              # max_observation_age 0.25, max_stamp_lead 0.05
    for t in (1.0, 1.1):
        loop.observe({"joints": np.zeros(2)}, stamp=t + 0.2, received=t)
        assert loop.step(t).status == Status.ERROR   # "ahead of the clock"
    # Once the clock has passed its stamp the refusal stands: the robot must not move only
    # after its sensor died (an audit: OK cycles from the dead sensor's last message).
    for t in (1.26, 1.3, 1.4):
        dying = loop.step(t)
        assert dying.status == Status.ERROR and "0.200 s ahead of the clock" in dying.message, dying.message
        assert dying.command.tolist() == [0.0, 0.0]
    dead = loop.step(1.1 + 0.05 + 0.26)              # the stamp itself would be 0.11 s old: fresh
    assert dead.status == Status.STALE and dead.command.tolist() == [0.0, 0.0], dead.message
    assert "it was refused: stamp 1.300 s is 0.200 s ahead" in dead.message
    loop.observe({"joints": np.zeros(2)}, stamp=1.5, received=1.5)       # back on time: plans
    assert loop.step(1.5).status == Status.OK


def test_a_refused_observation_then_silence_is_stale_and_says_what_was_refused():
    loop = ready_loop()
    loop.reject_observation("joint 'x' is NaN", stamp=1.0, received=1.0)
    assert loop.step(1.1).status == Status.ERROR
    later = loop.step(1.3)
    assert later.status == Status.STALE and "0.300 s old" in later.message
    assert "it was refused: joint 'x' is NaN" in later.message


def test_a_refused_observation_notes_the_clock_jumping_back():
    """A second /clock behind the first: the inputs stamped on the newer one are refused as
    ahead of the clock, and their arrival is the only sign that time went back."""
    loop = ready_loop(max_observation_age=100.0)
    loop.observe({"joints": np.zeros(2)}, stamp=50.0, received=50.0)
    assert loop.step(50.0).status == Status.OK
    loop.reject_observation("stamp ahead of the clock", stamp=50.1, received=20.0)
    assert loop.step(50.2).status == Status.CLOCK


def test_the_clock_jumping_back_clears_observations_and_warm_start():
    loop = ready_loop(max_observation_age=100.0)
    loop.observe({"joints": np.zeros(2)}, stamp=50.0, received=50.0)
    assert loop.step(50.0).status == Status.OK
    jumped = loop.step(1.0)                                 # a sim reset / bag loop
    assert jumped.status == Status.CLOCK and "jumped back from 50.000" in jumped.message
    assert jumped.command.tolist() == [0.0, 0.0]
    assert loop.step(1.1).status == Status.STALE            # the old observation is gone
    loop.observe({"joints": np.zeros(2)}, stamp=1.2, received=1.2)
    result = loop.step(1.2)
    assert result.status == Status.OK and not result.warm_started


def test_two_clocks_keep_the_robot_stopped_while_both_publish():
    """Two /clock publishers 0.3 s apart: the node's time goes back every cycle or two. Each
    jump back was CLOCK with zero, and the cycles between them OK with moving commands, for as
    long as both published (an adversarial audit: 77 moving commands among 78 stops in 6 s).
    From the second jump among the last cycles every cycle is CLOCK; once one clock is left,
    control resumes after the window. One jump alone (a sim reset) stops one cycle only."""
    loop = ready_loop(max_observation_age=100.0)
    t, seen = 10.0, []
    for k in range(30):
        t += 0.1
        now = t - 0.3 if k % 2 else t                        # the second clock, 0.3 s behind
        loop.observe({"joints": np.zeros(2)}, stamp=now, received=now)
        seen.append(loop.step(now))
    assert all(r.status == Status.CLOCK and r.command.tolist() == [0.0, 0.0] for r in seen[3:]), \
        [(r.status.name, r.message[:60]) for r in seen]
    assert "the clock went back before" in seen[-1].message and "two /clock publishers" in seen[-1].message
    resumed = []
    for k in range(8):                                      # the second clock stopped
        t += 0.1
        loop.observe({"joints": np.zeros(2)}, stamp=t, received=t)
        resumed.append(loop.step(t).status)
    assert resumed[-1] == Status.OK and Status.CLOCK in resumed, resumed


def test_hold_stops_holding_after_hold_timeout():
    loop = ready_loop(on_stale="hold", hold_timeout=0.3, max_observation_age=0.15)
    moving = loop.step(0.0).command
    assert np.abs(moving).max() > 0.1
    assert loop.step(0.2).command == pytest.approx(moving)          # stale, held
    late = loop.step(0.4)                                           # held 0.4 s > 0.3 s
    assert late.status == Status.STALE and "hold_timeout" in late.message
    assert late.command.tolist() == [0.0, 0.0]


def test_after_a_jump_back_hold_does_not_count_from_a_command_of_the_old_clock():
    """The last planned command was decided at 10 s; the clock jumps back to 5 s (a sim reset).
    Measured from 10 s, the hold lasted "negative" seconds and STALE said "hold" for seconds
    (its command the CLOCK cycle's zero: an audit of bad clocks). Now the stale cycles say zero."""
    loop = make_loop(on_stale="hold", hold_timeout=0.5, max_observation_age=0.15)
    loop.set_goal({"joints": np.array([0.6, -0.4])})
    loop.observe({"joints": np.array([0.0, 0.0])}, stamp=10.0)
    assert loop.step(10.0).status == Status.OK
    assert loop.step(5.0).status == Status.CLOCK
    stale = loop.step(5.1)                                          # no observation since the reset
    assert stale.status == Status.STALE and stale.message.endswith(": zero"), stale.message
    assert stale.command.tolist() == [0.0, 0.0]


def test_a_new_goal_retargets_the_warm_start():
    loop = ready_loop(max_observation_age=100.0)
    first = loop.step(0.0)
    warm = first.plan.shifted(1)
    new_goal = torch.tensor([-0.4, 0.2])
    moved = warm.retargeted(new_goal)
    assert torch.equal(moved.states[0], warm.states[0])             # the start stays
    assert moved.states[-1] == pytest.approx(new_goal.tolist())     # the end reaches the new goal
    assert moved.goal.tolist() == pytest.approx(new_goal.tolist())
    assert warm.retargeted(warm.goal) is warm


# -- novelty ------------------------------------------------------------------------------------

class KnownJointsModel(LinearModel):
    """The linear model with training statistics: joints around 0 with spread 0.5."""

    def __init__(self):
        super().__init__()
        from grasp_ros.models.novelty import compute_statistics
        joints = torch.randn(512, 2, generator=torch.Generator().manual_seed(0)) * 0.5
        self.input_statistics = compute_statistics(self, [{"joints": joints}]).to_dict()


def test_inputs_unlike_the_training_data_are_novel_with_zero():
    model = KnownJointsModel()
    loop = ControlLoop(model, make_planner("grasp", model, H, {"iterations": 5, "chains": 2}),
                       ControlConfig(period=PERIOD, timing="fixed_iterations", novelty_threshold=6.0))
    loop.set_goal({"joints": np.array([0.6, -0.4])})
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.0)
    ok = loop.step(0.0)
    assert ok.status == Status.OK and ok.novelty < 6.0 and ok.goal_novelty < 6.0
    loop.observe({"joints": np.array([40.0, 0.0])}, stamp=0.1)
    novel = loop.step(0.1)
    assert novel.status == Status.NOVEL and "observation unlike" in novel.message
    assert novel.novelty > 6.0 and novel.command.tolist() == [0.0, 0.0]
    loop.set_goal({"joints": np.array([0.0, 25.0])})
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.2)
    goal = loop.step(0.2)
    assert goal.status == Status.NOVEL and "goal unlike" in goal.message
    assert f"(furthest: {loop.card.goal_joint_input.labels[1]})" in goal.message, goal.message
    loop.update_config(novelty_threshold=0.0)                           # disabled
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.3)
    assert loop.step(0.3).status == Status.OK


class SweptJointsModel(LinearModel):
    """The linear model trained on joints that swept [-2, 2] to their hard stops (spread 1.15)."""

    def __init__(self):
        super().__init__()
        from grasp_ros.models.novelty import compute_statistics
        joints = torch.rand(512, 2, generator=torch.Generator().manual_seed(0)) * 4 - 2
        self.input_statistics = compute_statistics(self, [{"joints": joints}]).to_dict()


def test_a_joint_goal_beyond_the_training_range_is_novel_and_named():
    """Spreads do not bound a goal: 3 rad scores under 2 spreads where the training data stops
    at 2 rad (an arm's hard stop, which it then pressed into while the goal stood)."""
    model = SweptJointsModel()
    loop = ControlLoop(model, make_planner("grasp", model, H, {"iterations": 5, "chains": 2}),
                       ControlConfig(period=PERIOD, timing="fixed_iterations", novelty_threshold=6.0))
    joints = loop.card.goal_joint_input.labels
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.0)
    loop.set_goal({"joints": np.array([2.2, -1.0])})                   # within the 10% margin
    assert loop.step(0.0).status == Status.OK
    loop.set_goal({"joints": np.array([-1.0, 3.0])})
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.1)
    beyond = loop.step(0.1)
    assert beyond.goal_novelty < 6.0                                   # not novel by spread...
    assert beyond.status == Status.NOVEL and beyond.command.tolist() == [0.0, 0.0]   # ...by range
    assert f"{joints[1]} 3.000 beyond its training range [-1.99" in beyond.message, beyond.message
    assert joints[0] not in beyond.message
    loop.update_config(novelty_threshold=0.0)                              # disabled, as novelty is
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.2)
    assert loop.step(0.2).status == Status.OK
    assert loop.goal_target.range_warning() is None
    older = JointHeadImageModel()               # statistics made before ranges were kept: said
    warning = ControlLoop(older, make_planner("grasp", older, H, {"iterations": 1, "chains": 2}),
                          ControlConfig(period=PERIOD)).goal_target.range_warning()
    assert "keep no joint ranges" in warning


class JointHeadImageModel(LinearModel):
    """A camera-only model whose joint head decodes the latent, with training statistics of
    joints around 0 with spread 0.5."""

    joint_dim, image_size = 0, 8

    def __init__(self):
        super().__init__()
        from grasp_ros.models.novelty import InputStatistics
        self.input_statistics = InputStatistics({"latent": (torch.zeros(2), torch.eye(2)),
                                                 "joints": (torch.zeros(2), 0.25 * torch.eye(2))}).to_dict()

    def encode(self, observation):
        return observation["image"][..., 0, :2, 0].to(torch.float32) / 255.0    # [B, 2]

    def decode_state(self, latent):
        return latent


def test_a_joint_space_goal_unlike_the_training_joints_is_novel_with_zero():
    """A goal in joint space, reached through the model's joint head: a value far outside the
    joints it was trained on (25 rad) would drive the robot as far as it goes."""
    model = JointHeadImageModel()
    loop = ControlLoop(model, make_planner("grasp", model, H, {"iterations": 5, "chains": 2}),
                       ControlConfig(period=PERIOD, timing="fixed_iterations", novelty_threshold=6.0))
    frame = np.zeros((8, 8, 3), np.uint8)
    loop.set_goal({"joints": np.array([0.6, -0.4])})
    loop.observe({"image": frame}, stamp=0.0)
    ok = loop.step(0.0)
    assert ok.status == Status.OK and 0.0 < ok.goal_novelty < 6.0
    loop.set_goal({"joints": np.array([25.0, 0.0])})
    loop.observe({"image": frame}, stamp=0.1)
    novel = loop.step(0.1)
    assert novel.status == Status.NOVEL and "goal unlike" in novel.message
    assert novel.goal_novelty == pytest.approx(50.0) and novel.command.tolist() == [0.0, 0.0]


# -- the clock watchdog -------------------------------------------------------------------------

def test_a_simulator_slower_than_real_time_is_no_stalled_clock():
    """A sim at 0.1x real time takes 1.3 s of wall time for a 7.5 Hz period: the watchdog sent
    CLOCK and a stop every cycle. A clock that moves, by at most two periods since the last
    cycle, is slow, not stopped; one that runs on with no cycle still stops the robot."""
    loop = ready_loop(clock_timeout=0.2)
    clock = [0.0]

    def read():                       # a slow sim: a little further at every look
        clock[0] += 1e-4
        return clock[0]
    runner, published = runner_for(loop, sim_time=True, clock=read)
    try:
        runner.tick(0.0)
        assert published.next().status == Status.OK
        assert not published.event.wait(0.3), published.results[-1].message     # no CLOCK
        clock[0] += 10 * loop.config.period           # the clock ran on, and no cycle came
        stalled = published.next()
        assert stalled.status == Status.CLOCK and stalled.command.tolist() == [0.0, 0.0]
        assert "the clock advances" not in stalled.message       # it ran on: no slow sim
        runner.tick(clock[0])
        assert published.next().status != Status.CLOCK
        clock[0] -= 5.0                               # went back (a sim reset): no tick comes
        assert published.next().status == Status.CLOCK
    finally:
        runner.stop()


def test_a_clock_that_creeps_stops_the_robot_three_clock_timeouts_after_the_last_cycle():
    """An adversarial audit: a /clock advancing 1 us a message always reached a new high and
    never two periods, so it counted as a slow simulator for ever: the last moving command stood
    12 s, no CLOCK. A slow sim is followed while its cycles come within SLOW_CLOCK_TIMEOUTS
    clock_timeouts of wall time; a sim at 1/20 of real time is (a cycle every 2 s). On clocks of
    the test's own: deterministic."""
    runner, published, wall, clock = runner_on_clocks_of_its_own()
    try:
        for k in range(1, 20):                         # 1/20 of real time, a pass every 0.1 s
            wall[0], clock[0] = 0.1 * k, 0.005 * k
            runner.watchdog()
        clock[0] = 0.1
        runner.tick(0.1)                               # the next period's cycle, 1.9 s on
        assert published.next().status == Status.OK
        while wall[0] < 1.9 + SLOW_CLOCK_TIMEOUTS * 1.0 - 1e-9:     # now it creeps
            wall[0], clock[0] = wall[0] + 0.1, clock[0] + 1e-6
            runner.watchdog()
        assert [r.status for r in published.results] == [Status.OK, Status.OK]
        wall[0], clock[0] = wall[0] + 0.1, clock[0] + 1e-6
        runner.watchdog()
        stop = published.results[-1]
        assert stop.status == Status.CLOCK and stop.command.tolist() == [0.0, 0.0]
        assert "the clock advances, but only 0.000031 s since the last cycle" in stop.message, stop.message
    finally:
        runner.stop()


def runner_on_clocks_of_its_own():
    """A sim-time runner whose wall clock and sim clock are the test's own ([seconds], set by
    hand: deterministic), clock_timeout 1 s, after one OK cycle at 0: (runner, published, wall,
    clock)."""
    wall, clock = [0.0], [0.0]
    runner, published = runner_for(ready_loop(clock_timeout=1.0), sim_time=True,
                                   clock=lambda: clock[0], wall=lambda: wall[0])
    runner.tick(0.0)
    assert published.next().status == Status.OK
    return runner, published, wall, clock


def test_the_watchdog_stops_the_robot_one_clock_timeout_after_a_clock_stops_not_two():
    """A sim paused just after a cycle (its last /clock a few ms past it): the clock moved
    then, and stood since. The watchdog noted the clock only once the cycles had stopped for
    clock_timeout, took that first look for a move and waited a second clock_timeout (a stall
    audit: the stop came 2.0 s after the last cycle with clock_timeout 1 s; a 1 s pause never
    stopped the robot). On a wall clock of the test's own: deterministic."""
    runner, published, wall, clock = runner_on_clocks_of_its_own()
    try:
        wall[0] = 0.1
        clock[0] = 0.005                       # the sim's last /clock; then it stands
        assert runner.watchdog() is None       # a pass: the clock moved within this tenth
        wall[0] = 1.05
        runner.watchdog()
        assert not any(r.status == Status.CLOCK for r in published.results)   # moved 0.95 s ago
        wall[0] = 1.15
        runner.watchdog()
        stops = [r for r in published.results if r.status == Status.CLOCK]
        assert stops and stops[0].command.tolist() == [0.0, 0.0]
        assert "no control cycle for 1.15 s" in stops[0].message
    finally:
        runner.stop()


@pytest.mark.parametrize("readings", [
    [0.020, 0.022],                                    # two paused sims' clocks, a few ms apart
    [0.01 * (k % 6) for k in range(12)],               # a bag looping over 0.05 s, less than a period
    list(np.random.default_rng(0).uniform(0.0, 1e-3, 12)),   # a clock jittering within 1 ms
], ids=["two-paused-clocks", "short-bag-loop", "jitter"])
def test_a_clock_that_changes_without_advancing_still_stops_the_robot(readings):
    """An adversarial audit: a /clock that went back and forth just after a cycle, never
    reaching the next, counted as a simulator slower than real time (any change of value was a
    move): the last moving command stood 12 s, with no CLOCK. Only a clock that goes forward
    since the last cycle is slow; the stop comes clock_timeout after the last cycle."""
    runner, published, wall, clock = runner_on_clocks_of_its_own()
    try:
        for k in range(12):                            # a watchdog pass every tenth of a second
            wall[0], clock[0] = 0.1 * (k + 1), float(readings[k % len(readings)])
            runner.watchdog()
        stops = [r for r in published.results if r.status == Status.CLOCK]
        assert stops and stops[0].command.tolist() == [0.0, 0.0]
        assert "changes but does not advance" in stops[0].message
        assert "no control cycle for 1.10 s" in stops[0].message
    finally:
        runner.stop()


def test_a_command_ready_long_after_its_deadline_is_the_stop():
    """A controller process stopped (SIGSTOP) or starved in the middle of a cycle resumes and
    sends what it decided before: a stall audit saw the pre-stall plan's moving action go out
    5 s late, reported as fresh. Ready more than max_observation_age past the deadline, the
    command is the stop (FALLBACK), on time or late alike. The test's wall clock jumps 100 s
    in the middle of the solve."""
    loop = ready_loop(period=1.0)
    assert loop.step(0.0).status == Status.OK          # a previous plan, for a late path
    loop.update_config(timing="realtime")
    offset = [0.0]
    model_predict = loop.model.predict

    def predict(latent, action):
        offset[0] = 100.0                     # the process stood still for 100 s here
        return model_predict(latent, action)
    loop.model.predict = predict
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=1.0)
    runner, published = runner_for(loop, wall=lambda: time.perf_counter() + offset[0])
    try:
        runner.tick(1.0)
        sent = published.next()
        assert sent.status == Status.FALLBACK and sent.command.tolist() == [0.0, 0.0] and sent.stop
        assert "this process was held up" in sent.message and sent.command_delay > 100.0
        assert sent.deadline_missed
    finally:
        runner.stop()


@pytest.mark.parametrize("moved, stopped", [(0.3, True), (0.2, False)])
def test_a_command_whose_observation_grew_too_old_during_its_cycle_is_the_stop(moved, stopped):
    """On sim time the clock runs on while a cycle spends its wall-clock budget (a simulator
    faster than real time, a peer's long solve_budget): an audit saw OK moving commands planned
    from observations 0.7-4.5 s old, sent after the sensor had died. Ready with its observation
    older than max_observation_age (0.25 s) on the caller's clock, the command is the stop;
    younger, it goes out."""
    loop = ready_loop(period=1.0)                  # the observation stamped 0
    clock = [0.0]
    model_predict = loop.model.predict

    def predict(latent, action):
        clock[0] = moved                           # the sim ran on during the solve
        return model_predict(latent, action)
    loop.model.predict = predict
    runner, published = runner_for(loop, clock=lambda: clock[0], sim_time=True)
    try:
        runner.tick(0.0)
        sent = published.next()
    finally:
        runner.stop()
    if stopped:
        assert sent.stop and sent.status == Status.FALLBACK and sent.command.tolist() == [0.0, 0.0]
        assert f"its observation was {moved:.3f} s old when it was ready" in sent.message, sent.message
    else:
        assert sent.status == Status.OK and not sent.stop and np.abs(sent.command).max() > 0


def test_a_stale_hold_is_on_stale_s_to_end_not_the_clock_s():
    """on_stale "hold" keeps the last command while the observation is already too old; that
    the clock moved during such a cycle makes it no overdue stop (it would make "hold" "zero"
    in real time, where the clock always moves)."""
    loop = ready_loop(on_stale="hold")
    tick = [0.0]
    runner, published = runner_for(loop, clock=lambda: tick[0] + 0.01)
    try:
        runner.tick(0.0)
        planned = published.next()
        tick[0] = 0.3                                    # the observation 0.3 s old: STALE
        runner.tick(0.3)
        held = published.next()
    finally:
        runner.stop()
    assert planned.status == Status.OK and held.status == Status.STALE and not held.stop
    assert held.command == pytest.approx(planned.command) and np.abs(held.command).max() > 0


def test_the_watchdog_stops_the_robot_while_a_real_time_cycle_is_held_up():
    """A real-time cycle ends by its deadline; one still running after clock_timeout is held up
    (a starved process, a model call that does not return). The watchdog kept quiet during any
    cycle (for lock step, whose cycles take as long as their plans), and under starvation a
    moving command stood 3 s (a stall audit). Here the cycle's own model call blocks."""
    loop = ready_loop(clock_timeout=0.05, period=1.0, max_observation_age=100.0)
    loop.update_config(timing="realtime")
    gate = threading.Event()
    model_position = loop.model.position
    loop.model.position = lambda latent: (gate.wait(120.0), model_position(latent))[1]
    runner, published = runner_for(loop, sim_time=True)
    try:
        runner.tick(0.0)                                  # the cycle blocks in its path (model.position)
        stop = published.next()
        assert stop.status == Status.CLOCK and stop.command.tolist() == [0.0, 0.0]
        assert "a cycle began and has not ended" in stop.message
        # on sim time with the clock standing, a paused simulator too (an audit read the
        # held-up thread alone for what a pause had done)
        assert "or the clock stopped meanwhile (a paused simulator" in stop.message
    finally:
        gate.set()
        runner.stop()


def test_a_lock_step_cycle_is_waited_for_only_while_the_clock_waits_too():
    """A fixed_iterations cycle takes as long as its plan, and the watchdog waited for it
    whatever the clock did: planner.iterations set to 100,000 by a peer while the simulator
    went on (its lock step timed out) left the last moving command standing 25 s, /diagnostics
    OK (an audit). Waited for while the clock stands; stopped once it ran on clock_timeout."""
    loop = ready_loop(clock_timeout=0.05, period=1.0, max_observation_age=100.0)
    clock = [0.0]
    gate = threading.Event()
    model_position = loop.model.position
    loop.model.position = lambda latent: (gate.wait(120.0), model_position(latent))[1]
    runner, published = runner_for(loop, sim_time=True, clock=lambda: clock[0])
    try:
        runner.tick(0.0)                                   # the cycle blocks in its path
        assert not published.event.wait(0.5), published.results[-1].message    # lock step: waited
        clock[0] = 0.5                                     # the simulator went on without it
        stop = published.next()
        assert stop.status == Status.CLOCK and stop.command.tolist() == [0.0, 0.0]
        assert "a fixed_iterations cycle is still planning, and the clock went 0.50 s on" in stop.message
    finally:
        gate.set()
        runner.stop()


def test_the_watchdog_thread_zeroes_the_command_when_no_cycle_runs():
    """Nobody calls the watchdog: its own thread sends zero and CLOCK when ticks stop coming
    (a stalled /clock, or a caller held up by a long callback), again every clock_timeout."""
    loop = ready_loop(clock_timeout=0.05)
    runner, published = runner_for(loop, sim_time=True)
    try:
        runner.tick(0.0)
        assert published.next().status == Status.OK
        first = published.next()               # no tick: the node's clock stopped
        assert first.status == Status.CLOCK and first.command.tolist() == [0.0, 0.0]
        assert "clock stopped (a paused simulator" in first.message
        again = published.next()
        assert again.status == Status.CLOCK and again is not first       # repeated while it lasts
        runner.tick(0.1)                       # the clock resumed: cycles again
        assert any(r.status in (Status.OK, Status.STALE) for r in (published.next(), published.next()))
    finally:
        runner.stop()


def test_the_watchdog_on_the_wall_clock_names_a_held_up_caller_not_a_clock():
    """A wall-clock node's clock cannot stall: no tick means its executor was held up."""
    loop = ready_loop(clock_timeout=0.05)
    runner, published = runner_for(loop)
    try:
        runner.tick(0.0)
        assert published.next().status == Status.OK
        result = published.next()
        assert result.status == Status.CLOCK and result.command.tolist() == [0.0, 0.0]
        assert "held up" in result.message and "/clock" not in result.message
    finally:
        runner.stop()


def test_the_watchdog_names_a_clock_that_jumped_back_rather_than_a_stall():
    """/clock runs backwards: the timer waits for it to catch up, the inputs' arrival times
    show the jump. The watchdog's zero says so, not that /clock stopped."""
    loop = ready_loop(clock_timeout=0.05)
    runner, published = runner_for(loop, sim_time=True)
    try:
        runner.tick(5.0)
        assert published.next().status in (Status.OK, Status.STALE)
        seen = len(published.results)
        loop.observe({"joints": np.zeros(2)}, stamp=2.0, received=2.0)     # /clock went back to 2 s
        give_up = time.monotonic() + 30.0      # (one report may still say stall: it raced the jump)
        while not any("jumped back" in r.message for r in published.results[seen:]):
            assert time.monotonic() < give_up, [r.message for r in published.results[seen:]]
            time.sleep(0.01)
        result = next(r for r in published.results[seen:] if "jumped back" in r.message)
        assert result.status == Status.CLOCK and result.command.tolist() == [0.0, 0.0]
        assert "jumped back from 5.000 s to 2.000 s" in result.message and "clock stopped" not in result.message
    finally:
        runner.stop()


def test_the_watchdog_thread_ends_with_the_runner():
    loop = ready_loop(clock_timeout=0.05)
    runner, published = runner_for(loop)
    runner.tick(0.0)
    assert published.next().status == Status.OK
    runner.stop()
    count = len(published.results)
    assert not any(t.name == "grasp-watchdog" and t.is_alive() for t in threading.enumerate())
    time.sleep(0.1)
    assert len(published.results) == count


def test_the_watchdog_says_when_the_clock_has_not_moved_since_control_began():
    """A sim's /clock not discovered yet (a busy machine): no cycle since activation is not a
    stall of a clock that ran, and the reason says so (the command is zero all the same). It
    weighs as a warning, in the log and /diagnostics: `make demo` in a fresh clone logged an
    ERROR when its sim's clock came 1 s after the controller's activation, with nothing
    commanded yet. A clock that stops after a cycle ran is an error, as before."""
    from grasp_ros.control.stats import CycleStats

    loop = ready_loop(clock_timeout=0.05)
    runner, published = runner_for(loop, sim_time=True)
    try:
        result = published.next()
        assert result.status == Status.CLOCK and result.command.tolist() == [0.0, 0.0]
        assert "the clock has not moved yet" in result.message and "clock stopped" not in result.message
        assert result.awaiting_clock and result.severity == "warn"
        stats = CycleStats()
        stats.record(result, 0.0)
        assert stats.health() == ("warn", f"clock: {result.message}")
        runner.tick(0.0)
        assert published.next().status == Status.OK
        stopped = published.next()
        assert stopped.status == Status.CLOCK and "the clock stopped" in stopped.message
        assert not stopped.awaiting_clock and stopped.severity == "error"
    finally:
        runner.stop()


def test_a_joint_goal_beyond_the_joint_limits_is_refused_with_the_stop():
    """A goal past a hard stop but within the training range's margin was planned for, and the
    arm pressed into its stop while the goal stood: the joint limits refuse it, by name."""
    model = SweptJointsModel()
    limits = {"weight": 0.0, "low": [-2.0, -1.5], "high": [2.0, 1.5]}
    loop = ControlLoop(model, make_planner("grasp", model, H, {"iterations": 2, "chains": 2,
                                                               "costs": {"joint_limits": limits}}),
                       ControlConfig(period=PERIOD, timing="fixed_iterations", novelty_threshold=6.0))
    joints = loop.card.goal_joint_input.labels
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.0)
    loop.set_goal({"joints": np.array([2.0, -1.5])})                   # at the limits: taken
    assert loop.step(0.0).status == Status.OK
    loop.set_goal({"joints": np.array([1.0, 1.6])})     # within the training range, past the stop
    for t in (0.1, 0.2):                                  # refused, and stays refused
        loop.observe({"joints": np.array([0.1, 0.0])}, stamp=t)
        refused = loop.step(t)
        assert refused.status == Status.ERROR and refused.command.tolist() == [0.0, 0.0]
        assert f"{joints[1]} 1.6 outside [-1.5, 1.5]" in refused.message, refused.message
        assert "cost.joint_limits_low/high" in refused.message and joints[0] not in refused.message
        assert refused.message.startswith("goal refused: ValueError: goal beyond the joint limits")
    loop.set_goal({"joints": np.array([1.0, 1.5 + 1e-12])})            # rounding at the limit
    loop.observe({"joints": np.array([0.1, 0.0])}, stamp=0.3)
    assert loop.step(0.3).status == Status.OK


def test_joint_limits_of_another_count_than_the_joint_vector_are_refused_at_construction():
    """An adversarial audit: 3 limits for a model of 2 joint values were taken (with no barrier
    weight nothing counted them), and the goal check they feed then checked nothing: a goal far
    past them was planned for, OK. Another robot's limits are refused, naming the joint values."""
    from grasp_ros.models.card import ActionOutput, ModelCard
    model = SweptJointsModel()
    for count in (3, 1):
        limits = {"weight": 0.0, "low": [-0.1] * count, "high": [0.1] * count}
        planner = make_planner("grasp", model, H, {"iterations": 2, "chains": 2, "costs": {"joint_limits": limits}})
        with pytest.raises(ValueError, match=rf"give {count} values; the model's joint vector has 2, one per "
                                             "joint and field: "):
            ControlLoop(model, planner, ControlConfig(period=PERIOD, timing="fixed_iterations"))
    unnamed = LinearModel()
    unnamed.card = ModelCard(ActionOutput(("x", "y"), (-1.0, -1.0), (1.0, 1.0)))     # names no joints
    planner = make_planner("grasp", unnamed, H, {"iterations": 2, "chains": 2,
                                                     "costs": {"joint_limits": {"weight": 0.0, "low": [0.0], "high": [1.0]}}})
    with pytest.raises(ValueError, match="the model's card names no joints for them to bound"):
        ControlLoop(unnamed, planner, ControlConfig(period=PERIOD, timing="fixed_iterations"))


def test_a_cards_float32_rounded_bounds_never_let_a_command_past_the_robots():
    """A model trained before its bounds were kept as decimals has 1.2000000476837158 for a robot
    commanded up to 1.2 (an outside arm's elbow: 461 commands 5e-8 past its bound): every command
    is clipped to the decimal. Bounds that are no float32 value, 1.5 and -0.7, stay as they are."""
    from grasp_ros.models.card import ActionOutput, ModelCard, decimal_bound
    high = float(np.float32(1.2))
    model = LinearModel()
    model.card = ModelCard(ActionOutput(("elbow", "finger"), (-high, -0.7), (high, 1.5)))
    loop = ControlLoop(model, make_planner("grasp", model, H, {"iterations": 3, "chains": 2}),
                       ControlConfig(period=PERIOD, timing="fixed_iterations"))
    assert loop.command_high.tolist() == [1.2, 1.5] and loop.command_low.tolist() == [-1.2, -0.7]
    loop.set_goal({"joints": np.array([5.0, -5.0])})                   # far: saturated commands
    for k in range(4):
        loop.observe({"joints": np.array([0.1 * k, 0.0])}, stamp=0.1 * k)
        result = loop.step(0.1 * k)
        assert np.all(result.command <= [1.2, 1.5]) and np.all(result.command >= [-1.2, -0.7]), result.command
    assert decimal_bound(float(np.float32(0.7)), upper=True) == float(np.float32(0.7))   # 0.699999988: inside
