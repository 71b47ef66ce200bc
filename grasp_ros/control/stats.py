"""Rolling statistics of the control cycle, for a health report such as ROS /diagnostics, and
which cycles are worth a log line."""
from __future__ import annotations

import math
import re
import time
from collections import Counter, deque

import numpy as np

from . import reasons
from .cycle import CycleResult, Status


class CycleStats:
    """The last ``window`` cycles (rate, solve times, misses) and totals since construction.

    ``record`` is called once per cycle with the cycle's time ``now`` (s, the caller's clock: the
    rate is in cycles per second of that clock). ``summary`` gives flat name -> text pairs and
    ``health`` a level ("ok", "warn", "error") with a one-line reason.
    """

    MISS_WARN_FRACTION = 0.01
    """Deadline misses above this fraction of the window's cycles raise a warning."""

    RATE_MIN_CYCLES = 10
    """Cycles since the last clock jump before the rate is judged against ``period``."""

    def __init__(self, window: int = 200, period: float = math.nan, tolerance: float = 0.25):
        """``period``: the control period (s) the cycles should come at (NaN: not judged);
        a rate below 1 / (period x (1 + ``tolerance``)) is a warning."""
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.period, self.tolerance = float(period), float(tolerance)
        self._times: deque[float] = deque(maxlen=window)
        self._solve_times: deque[float] = deque(maxlen=window)
        self._missed: deque[bool] = deque(maxlen=window)
        self._overdue: deque[bool] = deque(maxlen=window)
        self.overdue = 0
        """Commands replaced by the stop because they were overdue (``reasons.OVERDUE``)."""
        self.counts: Counter[Status] = Counter()
        self.cycles = 0
        self.deadline_misses = 0
        self.last: CycleResult | None = None

    JUMP_STEPS = 10.0
    """A step this many times the window's median step is a clock jump forward."""

    def record(self, result: CycleResult, now: float) -> None:
        self.cycles += 1
        self.counts[result.status] += 1
        self.deadline_misses += int(result.deadline_missed)
        if math.isfinite(result.time):       # a timer cycle (not the clock watchdog's report)
            self._note_time(float(now))
        self._missed.append(bool(result.deadline_missed))
        overdue = reasons.OVERDUE in result.message
        self.overdue += overdue
        self._overdue.append(overdue)
        if result.plan is not None:
            self._solve_times.append(result.solve_time)
        self.last = result

    def _note_time(self, now: float) -> None:
        """The rate counts the cycles since the clock last jumped (back, or forward by more than
        ``JUMP_STEPS`` steps): across a jump it would say nothing of the timer."""
        times = self._times
        if times and (now <= times[-1] or len(times) > 2 and
                      now - times[-1] > self.JUMP_STEPS * float(np.median(np.diff(times)))):
            times.clear()
        times.append(now)

    @property
    def rate(self) -> float:
        """Cycles per second over the window (NaN before two cycles or if time stood still)."""
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return math.nan
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def solve_time_quantile(self, q: float) -> float:
        return float(np.quantile(self._solve_times, q)) if self._solve_times else math.nan

    def summary(self) -> dict[str, str]:
        last = self.last
        pairs = {
            "cycles": self.cycles,
            "rate_hz": f"{self.rate:.2f}",
            "solve_time_p50_ms": f"{1e3 * self.solve_time_quantile(0.5):.2f}",
            "solve_time_p99_ms": f"{1e3 * self.solve_time_quantile(0.99):.2f}",
            "solve_time_max_ms": f"{1e3 * max(self._solve_times, default=math.nan):.2f}",
            "deadline_misses": self.deadline_misses,
            "deadline_misses_window": sum(self._missed),
            "overdue_commands": self.overdue,
            "window_cycles": len(self._missed),
        }
        pairs.update({f"cycles_{s.name.lower()}": self.counts[s] for s in Status})
        pairs["last_status"] = last.status.name if last else "none"
        pairs["last_message"] = last.message if last else ""
        return {name: str(value) for name, value in pairs.items()}

    def health(self) -> tuple[str, str]:
        last = self.last
        if last is None:
            return "ok", "no control cycles yet"
        overdue = sum(self._overdue)
        if overdue:    # seconds of a stopped or starved process: said while in the window
            return "error", (f"{overdue} overdue command(s) in the last {len(self._overdue)} cycles, sent "
                             f"as the stop: {reasons.OVERDUE} (stopped, or starved of CPU)")
        if last.severity != "ok":
            return last.severity, f"{last.status.name.lower()}: {last.message}"
        misses = sum(self._missed)
        if misses > self.MISS_WARN_FRACTION * len(self._missed):
            return "warn", f"{misses} deadline misses in the last {len(self._missed)} cycles"
        if last.status == Status.INACTIVE:
            return "ok", "inactive"
        if last.status == Status.ARRIVED:
            return "ok", f"arrived: {last.message}"
        rate = self.rate
        if not math.isfinite(rate):
            return "ok", "controlling"
        if len(self._times) >= self.RATE_MIN_CYCLES and rate * self.period * (1 + self.tolerance) < 1:
            # Each command stood 1 / rate, longer than the step the model predicts (a bad-clock
            # audit: a /clock in 0.45 s steps ran a 10 Hz controller at 2.2 Hz, "ok").
            return "warn", (f"controlling at {rate:.1f} Hz of the node's clock, below control_rate_hz "
                            f"{1 / self.period:g} by more than period_tolerance ({self.tolerance:g}): each "
                            f"command stands {1 / (rate * self.period):.1f} periods (a /clock that advances "
                            "in steps coarser than the period, or a simulator faster than the controller "
                            "keeps up with)")
        return "ok", f"controlling at {rate:.1f} Hz"


class StatusLog:
    """Which cycle results are worth a log line (``PlanDiagnostics`` keeps every cycle's): a
    status or reason that changed, numbers aside (an age counting up is the same reason), at
    most one a second (two clocks can flip the status every cycle); a reason held back so is
    logged once the second is over. FALLBACK and TRUNCATED (deadline misses) at most every 5 s,
    and OK after them is no news."""

    MIN_GAP_S = 1.0
    MISS_GAP_S = 5.0

    def __init__(self, wall=time.monotonic):
        self._wall = wall
        self._logged: tuple = (None, None)       # (status, reason's shape) last logged
        self._logged_at = -math.inf
        self._miss_logged_at = -math.inf

    def worth_logging(self, status: Status, message: str) -> bool:
        now = self._wall()
        if reasons.OVERDUE in message:       # rare, and the robot was stopped: always told
            self._logged = (status, None)
            return True
        if status in (Status.FALLBACK, Status.TRUNCATED):
            if now - self._miss_logged_at < self.MISS_GAP_S:
                return False
            self._miss_logged_at, self._logged = now, (status, None)
            return True
        key = (status, _NUMBERS.sub("#", message))
        after_miss = status == Status.OK and self._logged[0] in (Status.FALLBACK, Status.TRUNCATED)
        if key == self._logged or after_miss:
            self._logged = key
            return False
        if now - self._logged_at < self.MIN_GAP_S:
            return False
        self._logged, self._logged_at = key, now
        return True


_NUMBERS = re.compile(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?")
