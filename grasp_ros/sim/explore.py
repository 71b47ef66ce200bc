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

    Shapes: bounds [A]; ``__call__(position [A]) -> command [A]`` (one joint per command).
    """

    def __init__(self, action_low, action_high, joint_low, joint_high, dt: float, seed: int = 0,
                 time_constant: float = 1.0, scale: float = 0.7, margin: float = 0.1):
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
        self.rho = float(np.exp(-dt / time_constant))
        self.sigma = scale * np.maximum(np.abs(self.low), np.abs(self.high))
        self.margin = float(margin)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Start from a fresh draw of the stationary distribution."""
        self._state = self.sigma * self.rng.standard_normal(self.low.size)

    def __call__(self, position) -> np.ndarray:
        noise = self.rng.standard_normal(self.low.size)
        self._state = self.rho * self._state + np.sqrt(1 - self.rho**2) * self.sigma * noise
        q = np.asarray(position, dtype=np.float64).reshape(-1)
        into_low = (q < self.joint_low + self.margin) & (self._state < 0)
        into_high = (q > self.joint_high - self.margin) & (self._state > 0)
        self._state = np.where(into_low | into_high, -self._state, self._state)
        return np.clip(self._state, self.low, self.high)
