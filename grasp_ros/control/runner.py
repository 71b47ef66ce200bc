"""``CycleRunner``: control cycles off the caller's thread, each command out by its deadline.

The caller (a ROS timer) only calls ``tick(now)``, which returns at once. A cycle thread takes
the tick, prepares the cycle and hands the solve to a planner thread, then waits for it until the
cycle's wall-clock deadline at most: a plan that came in time gives the command; otherwise the
command is the previous plan's action for now (FALLBACK) and goes out *at* the deadline, while
the late plan still finishes and warm-starts the next cycle. While a late solve is still
running, further ticks get FALLBACK at once (never two solves at a time), after the input
checks every cycle makes (``ControlLoop.busy``: a dead sensor still stops the robot). When the
late plan is done, ``publish_late`` gets a report of it (``ControlLoop.late_plan``), so that a
recording says what warm-started the next cycle. Plans are adopted on the cycle thread only (a
late one at the first cycle that finds it done), so a replay can name where each took over.
``stop`` ends a solve in progress at its next iteration (``ControlLoop.halt``).

A command ready more than ``max_observation_age`` past its deadline (the process was stopped
or starved meanwhile) is overdue: the stop goes out instead (``ControlLoop.overdue``). So is one
whose observation is older than ``max_observation_age`` on the caller's clock when it is ready:
a simulator faster than real time, or a long ``solve_budget`` on sim time, moves that clock on
while the wall-clock budget runs, and a command sent on time can be planned from a world that
old (an audit: OK commands from 4.5 s old observations, sent after the sensor had died).

With ``timing`` "fixed_iterations" there is no deadline: the command goes out when the planner's
iteration cap is done (lock-step simulation, replay), except at the cycles a replay names
(``ControlConfig.replayed``): those repeat a recorded late cycle (plan, send the previous plan's
action), a cycle that found the planner still busy (send it without planning) or an overdue one
(the cycle, then the stop).

The watchdog is a thread of the runner's own, on the wall clock: when no cycle ran for
``clock_timeout`` wall seconds (in real time: none ended; a lock-step cycle may take longer), it
sends a zero command with status CLOCK, and again every ``clock_timeout`` while it lasts (it
notes the clock at every pass, so a stop is seen ``clock_timeout`` after it, to within a pass).
No cycle means no tick: the caller's clock stopped (/clock under sim time), or the caller could
not tick (a ROS executor held up by a long callback, such as a compressed image that takes
seconds to decode); either way the last command must not stand, so the watchdog must not depend
on the caller's thread.

``publish(result)`` is called from the cycle thread or the watchdog thread; it must be
thread-safe. ``result.command_delay`` is the wall time from the tick to the call.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Optional

from .cycle import ControlLoop, CycleResult, Job, Outcome
from .reasons import BUSY, LATE

SLOW_CLOCK_TIMEOUTS = 3.0
"""A simulator slower than real time is followed while its cycles come at most this many
``clock_timeout`` apart in wall time (3 s by default: a 10 Hz controller down to 1/30 of real
time). Slower, the robot is stopped as for a stalled clock: a clock that creeps (an audit's, 1 us
of sim time a message) always reached a new high, never two periods, and a moving command stood
for as long as it crept."""


class CycleRunner:
    """Runs ``ControlLoop`` cycles on its own threads; see the module docstring."""

    def __init__(self, loop: ControlLoop, publish: Callable[[CycleResult], None],
                 publish_late: Callable[[CycleResult], None] = lambda result: None,
                 sim_time: bool = False, clock: Optional[Callable[[], float]] = None,
                 wall: Callable[[], float] = time.perf_counter):
        """``sim_time``: the caller's clock is a published one (/clock), which can stall; else
        only the caller can (what the CLOCK report says). ``clock``: reads that clock (s), so
        that the watchdog tells a slow simulator from a stopped one. ``wall``: the wall clock
        of deadlines and the watchdog (s on perf_counter's timeline, which the planner's budget
        reads too; a test's own, shifted)."""
        self.loop, self._publish, self._publish_late = loop, publish, publish_late
        self.sim_time, self._clock, self._wall = bool(sim_time), clock, wall
        # The caller's clock: its highest reading since the last cycle and the wall time it was
        # first read, and whether a reading since then was lower (see ``_slow_clock``).
        self._clock_high = (math.nan, wall())
        self._clock_went_back = False
        self._last_cycle_time = math.nan
        self._wake = threading.Condition()
        self._tick: Optional[tuple[float, float]] = None      # (now, wall) of the pending tick
        self._running = False
        self._in_cycle = False
        self._thread: Optional[threading.Thread] = None
        self._watcher: Optional[threading.Thread] = None
        self._watching = threading.Event()     # set: the watchdog thread stops
        self._planner: Optional[ThreadPoolExecutor] = None
        self._solving: Optional[Future] = None
        self._solving_since = math.nan
        self._held: Optional[tuple] = None     # a late plan (or its solve) and its cycle's time
        self._last_cycle_wall = wall()
        self._last_alarm_wall = -math.inf
        self._cycled = False        # a cycle has run since start
        self.last_error = ""
        """The last exception of a cycle (a publish to a destroyed publisher...); cycles go on."""
        self.skipped_ticks = 0
        """Ticks that arrived while the previous one was still waiting (the cycle fell behind)."""

    def start(self) -> None:
        with self._wake:
            if self._running:
                return
            self._running = True
            self._last_cycle_wall = self._wall()
            self._last_alarm_wall = -math.inf
            self._cycled = False
        self._planner = ThreadPoolExecutor(1, thread_name_prefix="grasp-planner")
        self._thread = threading.Thread(target=self._run, name="grasp-cycle", daemon=True)
        self._thread.start()
        self._watching.clear()
        self._watcher = threading.Thread(target=self._watch, name="grasp-watchdog", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop taking ticks; wait for the cycle in progress and for any late solve, which ends
        at its planner's next iteration."""
        with self._wake:
            self._running = False
            self._tick = None
            self._wake.notify_all()
        self._watching.set()
        self.loop.halt()
        try:
            if self._watcher is not None:
                self._watcher.join()
                self._watcher = None
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            if self._planner is not None:
                self._planner.shutdown(wait=True)
                self._planner = None
        finally:
            self.loop.resume()
        self._adopt_late_plan()
        self._solving = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def solving(self) -> bool:
        """Whether the planner thread is on a solve now (the executor stays free meanwhile)."""
        solving = self._solving
        return solving is not None and not solving.done()

    def tick(self, now: float) -> None:
        """A control period began at ``now`` (caller's clock). Returns at once."""
        # Noted now, not when the cycle thread gets to it: observations received meanwhile
        # (a first cold plan holding the CPU) must not make the tick look like a jump back.
        self.loop.note_clock(now)
        with self._wake:
            if not self._running:
                return
            if self._tick is not None:
                self.skipped_ticks += 1
            self._tick = (now, self._wall())
            self._note_clock(now, self._tick[1])
            self._wake.notify()

    def watchdog(self) -> Optional[CycleResult]:
        """Zero and CLOCK (published, and returned) when no cycle ran for ``clock_timeout``.
        The watchdog thread calls it every tenth of a second at most (a quarter of a shorter
        ``clock_timeout``)."""
        timeout = self.loop.config.clock_timeout
        with self._wake:
            wall = self._wall()
            if self.sim_time and self._clock is not None:
                # Every pass, not only once the cycles stopped: a clock first seen then would
                # count as just moved, and the stop would come a second clock_timeout late.
                self._note_clock(self._clock(), wall)
            quiet = wall - self._last_cycle_wall
            # A lock-step cycle takes as long as its plan; a real-time one ends by its deadline,
            # so one still running (or a tick not taken) after clock_timeout is held up. A lock-step
            # cycle is waited for only while the clock waits too: one that ran on by clock_timeout
            # meanwhile (a simulator that stopped waiting; planner.iterations set to 100,000 by a
            # peer) left the last moving command standing, /diagnostics OK (an audit).
            cycling = self._in_cycle or self._tick is not None
            ran_on = self._ran_on(quiet)
            waited_for = cycling and self.loop.config.fixed_iterations and not ran_on > timeout
            if (not self._running or waited_for or quiet <= timeout
                    or wall - self._last_alarm_wall < timeout or self._slow_clock(wall, timeout)):
                return None
            self._last_alarm_wall = wall
            started, wavering = not self._cycled, self.sim_time and self._clock_went_back
            crawled = self._crawled(wall, timeout)      # a slow sim's pace, past SLOW_CLOCK_TIMEOUTS
        result = self.loop.clock_stalled(quiet, started, self.sim_time, in_cycle=cycling, wavering=wavering,
                                         crawled=crawled, ran_on=ran_on if cycling else math.nan)
        result.command_delay = 0.0
        self._publish(result)
        return result

    def _ran_on(self, quiet: float) -> float:
        """How far the caller's published clock went since the last cycle began (s): its highest
        reading on sim time (0 before any). 0 on the wall clock, where no lock step has a clock
        to wait with it, and a cycle of a busy machine's length is what the caller asked for
        (a 0.05 s clock_timeout test stopped its first wall-clock cycle under load)."""
        if not self.sim_time:
            return 0.0
        high = self._clock_high[0] - self._last_cycle_time
        return high if math.isfinite(high) else 0.0

    def _slow_clock(self, wall: float, timeout: float) -> bool:
        """A simulator slower than real time, not a stall: since the last cycle its clock only
        went forward, to a new high within ``timeout`` (wall), and by at most two periods, and
        that cycle was at most ``SLOW_CLOCK_TIMEOUTS`` timeouts ago (a sim at 0.1x takes 1.3 s
        of wall time for a 7.5 Hz period: CLOCK and a stop every cycle). A
        clock that runs on while no cycle comes, or went back behind the last cycle (a timer
        then waits for the old time), still stops the robot; so does one that went back at all
        since the last cycle: two paused sims' clocks a few ms apart, or a bag looping over less
        than a period, change value forever without advancing (an audit: a moving command stood
        12 s while "moving" counted any change)."""
        return (wall - self._last_cycle_wall <= SLOW_CLOCK_TIMEOUTS * timeout
                and self._crawled(wall, timeout) >= 0.0)

    def _crawled(self, wall: float, timeout: float) -> float:
        """How far the caller's clock went since the last cycle as a slow simulator's does: only
        forward, to a new high within ``timeout`` (wall), by at most two periods; NaN when it did
        not (stood, went back, ran on with no cycle, or is not watched)."""
        if not self.sim_time or self._clock is None or self._clock_went_back:
            return math.nan
        high, reached_at = self._clock_high
        crawled = high - self._last_cycle_time
        return crawled if wall - reached_at <= timeout and crawled <= 2 * self.loop.config.period else math.nan

    def _note_clock(self, value: float, wall: float) -> None:
        """The caller's clock read ``value`` at ``wall`` (to within a watchdog pass). Called
        with ``_wake`` held."""
        high = self._clock_high[0]
        if not value <= high:          # higher, or the first reading (high NaN)
            self._clock_high = (value, wall)
        elif value < high:
            self._clock_went_back = True

    # -- the threads ------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._watching.wait(min(0.1, self.loop.config.clock_timeout / 4)):
            try:
                self.watchdog()
            except Exception as exc:  # noqa: BLE001 -- the watchdog must outlive a failed publish
                self.last_error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._running and self._tick is None:
                    self._wake.wait()
                if not self._running:
                    return
                (now, wall), self._tick = self._tick, None
                self._in_cycle = True
                self._last_cycle_time = now
                self._clock_high, self._clock_went_back = (now, wall), False
            try:
                result = self._cycle(now, wall)
                result.command_delay = self._wall() - wall
                self._publish(self._overdue(result, now))
            except Exception as exc:  # noqa: BLE001 -- the thread must outlive a failed publish
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                with self._wake:
                    self._in_cycle = False
                    self._cycled = True
                    self._last_cycle_wall = self._wall()

    def _cycle(self, now: float, wall: float) -> CycleResult:
        loop, config = self.loop, self.loop.config
        if self._solving is not None and not self._solving.done():
            return loop.busy(now, f"{BUSY} {wall - self._solving_since:.3f} s ago")
        if config.replayed.named("busy", now):
            return loop.busy(now, f"{BUSY} (a recorded busy cycle, replayed)")
        self._adopt_late_plan()
        job = loop.prepare(now)
        if not isinstance(job, Job):
            return job
        if config.replayed.named("late", now):
            return self._replay_late_cycle(job)
        deadline = None if config.fixed_iterations else wall + config.deadline
        # Plans are adopted here, on the cycle thread: a late one at the first cycle that finds
        # it done, never between a cycle's "still busy" and the action that cycle sends.
        self._solving = self._planner.submit(loop.solve, job, deadline, False)
        self._solving_since = wall
        try:
            timeout = None if deadline is None else max(deadline - self._wall(), 0.0)
            outcome = self._solving.result(timeout=timeout)
        except FutureTimeout:
            self._held = (self._solving, job.now)
            self._solving.add_done_callback(
                lambda done: self._report_late(job, done.result(), deadline, self._wall()))
            return loop.late(job, f"{LATE} ({config.deadline:.3f} s after the cycle began)")
        if outcome.plan is not None:
            loop.adopt(outcome.plan, job.now)
        return loop.conclude(job, outcome)

    def _replay_late_cycle(self, job: Job) -> CycleResult:
        """A recorded late cycle, replayed: the previous plan's action goes out, and the plan of
        the iteration cap replaces it only when the recorded planner was free again, after the
        busy cycles that follow. Its report says 0 s late: a replay has no deadline to miss."""
        loop = self.loop
        result = loop.late(job, f"{LATE} (a recorded late cycle, replayed)")
        outcome = self._planner.submit(loop.solve, job, None, False).result()
        if outcome.plan is not None:
            self._held = (outcome.plan, job.now)
        self._report_late(job, outcome, deadline=0.0, finished=0.0)
        return result

    def _overdue(self, result: CycleResult, now: float) -> CycleResult:
        """A command ready more than ``max_observation_age`` wall seconds past its deadline came
        from a process that was held up (stopped, starved of CPU): the stop goes out instead of
        what was decided from the world as it was then. A replay repeats the cycles it names
        (``ControlConfig.replayed``)."""
        config = self.loop.config
        if result.stop:
            return result
        if config.fixed_iterations and config.replayed.named("overdue", now):
            why = "a recorded overdue cycle, replayed"
        else:
            why = self._why_overdue(result, now)
            if why is None:
                return result
        stopped = self.loop.overdue(result, now, why)
        stopped.command_delay = result.command_delay
        return stopped

    def _why_overdue(self, result: CycleResult, now: float) -> Optional[str]:
        """Why ``result`` (the cycle at ``now``), ready now, is overdue (module docstring), or
        None. The wall clock's rule needs a deadline; the caller's clock does not move during a
        lock-step cycle, nor a replay's."""
        config = self.loop.config
        limit = config.deadline + config.max_observation_age
        if not config.fixed_iterations and result.command_delay > limit:
            return (f"ready {result.command_delay:.3f} s after the cycle began, more than the solve "
                    f"budget + max_observation_age ({limit:g} s)")
        moved = math.nan if self._clock is None else self._clock() - now
        age = result.observation_age + moved
        # (an observation already too old at the cycle's start made it STALE: on_stale's rule)
        if moved > 0 and result.observation_age <= config.max_observation_age < age:
            return (f"its observation was {age:.3f} s old when it was ready: the clock moved "
                    f"{moved:.3f} s during the cycle, and more than max_observation_age "
                    f"({config.max_observation_age:g} s) is too old to act on")
        return None

    def _adopt_late_plan(self) -> None:
        """The late plan (a finished solve, or a replayed one's plan) warm-starts from now on."""
        if self._held is None:
            return
        plan, made_at = self._held
        self._held = None
        if isinstance(plan, Future):
            plan = plan.result().plan
        if plan is not None:
            self.loop.adopt(plan, made_at)

    def _report_late(self, job: Job, outcome: Outcome, deadline: float, finished: float) -> None:
        """Publish the report of a late plan (from whichever thread finished it)."""
        try:
            self._publish_late(self.loop.late_plan(job, outcome, finished - deadline))
        except Exception as exc:  # noqa: BLE001 -- a failed report must not end the planner thread
            self.last_error = f"{type(exc).__name__}: {exc}"

