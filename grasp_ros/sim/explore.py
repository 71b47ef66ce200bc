"""An exploration policy for data collection: smooth random joint velocities that bounce off the
joint limits (the arm's, or the point mass's walled square)."""
from __future__ import annotations

import numpy as np


class OUExplorer:
    """Ornstein-Uhlenbeck joint velocities, reflected at the joint limits; seeded.

    Each command component follows a_{t+1} = r a_t + sqrt(1 - r^2) sigma eps_t with
    r = exp(-dt / time_constant) and sigma = ``scale`` x the action bound, clipped to the bounds:
    commands wander smoothly, hold a direction for about ``time_constant`` seconds and keep a
    stationary spread of sigma. A joint within ``margin`` of a limit and driven into it has its
    component's sign flipped (in the process's state too), so it moves away: it bounces.

    Rest (off by default): with ``rest_probability`` > 0, each command not already in a rest starts
    one with that probability: the command is exactly zero for a stretch drawn uniformly from
    ``rest_duration`` (seconds, at least one step), so the data holds the robot at rest under a
    zero command, which the OU process alone almost never gives. The OU process goes on underneath
    and its command returns when the rest ends. Rests draw from a generator of their own (seeded
    from ``seed`` too): the OU commands are the same with or without them, and the default draws
    nothing extra. Expected share of commands at rest: p d / (1 + p d), with p the probability and
    d the mean rest length in steps (p = 0.02, 0.5-2 s at 10 Hz: about 20%).

    Shapes: bounds [A]; ``__call__(position [A]) -> command [A]`` (one joint per command).
    """

    def __init__(self, action_low, action_high, joint_low, joint_high, dt: float, seed: int = 0,
                 time_constant: float = 1.0, scale: float = 0.7, margin: float = 0.1,
                 rest_probability: float = 0.0, rest_duration: tuple[float, float] = (0.5, 2.0)):
        self.low, self.high = (np.asarray(v, dtype=np.float64).reshape(-1)
                               for v in (action_low, action_high))
        self.joint_low, self.joint_high = (np.asarray(v, dtype=np.float64).reshape(-1)
                                           for v in (joint_low, joint_high))
        sizes = {self.low.size, self.high.size, self.joint_low.size, self.joint_high.size}
        if len(sizes) != 1 or not (self.low < self.high).all():
            raise ValueError("action and joint bounds must have one entry per joint, low < high")
        if not (dt > 0 and time_constant > 0 and scale > 0 and margin >= 0):
            raise ValueError(f"dt, time_constant and scale must be > 0 and margin >= 0, got "
                             f"{dt}, {time_constant}, {scale}, {margin}")
        rest_low, rest_high = (float(v) for v in rest_duration)
        if not (0.0 <= rest_probability <= 1.0 and 0 < rest_low <= rest_high):
            raise ValueError(f"rest_probability must lie in [0, 1] and rest_duration be (low, high) "
                             f"with 0 < low <= high, got {rest_probability}, {rest_duration}")
        self.rest_probability = float(rest_probability)
        self.rest_steps = (max(1, round(rest_low / dt)), max(1, round(rest_high / dt)))
        self.rest_rng = np.random.default_rng([seed, 1])   # rests only: the OU stream is unchanged
        self.resting = 0                                    # zero commands of this rest still due
        self.rho = float(np.exp(-dt / time_constant))
        self.sigma = scale * np.maximum(np.abs(self.low), np.abs(self.high))
        self.margin = float(margin)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Start from a fresh draw of the stationary distribution (and out of any rest)."""
        self._state = self.sigma * self.rng.standard_normal(self.low.size)
        self.resting = 0

    def __call__(self, position) -> np.ndarray:
        noise = self.rng.standard_normal(self.low.size)
        self._state = self.rho * self._state + np.sqrt(1 - self.rho**2) * self.sigma * noise
        q = np.asarray(position, dtype=np.float64).reshape(-1)
        into_low = (q < self.joint_low + self.margin) & (self._state < 0)
        into_high = (q > self.joint_high - self.margin) & (self._state > 0)
        self._state = np.where(into_low | into_high, -self._state, self._state)
        if self.rest_probability > 0 and not self.resting \
                and self.rest_rng.random() < self.rest_probability:
            self.resting = int(self.rest_rng.integers(self.rest_steps[0], self.rest_steps[1] + 1))
        if self.resting:
            self.resting -= 1
            return np.zeros_like(self._state)
        return np.clip(self._state, self.low, self.high)
