"""The worlds the sim node runs, behind one small interface: the point-mass navigation envs and
the planar arm.

A ``World`` has named joints (what ``joint_states`` reports and the commands drive), action and
joint bounds, and five verbs: ``reset(seed)`` to a seeded task, ``step(action)`` over one control
period, ``render_at(joints)`` for the camera, ``distance_to_goal()`` and ``succeeded()``. The
simulator itself is ``world.env`` (a ``NavEnv`` or an ``ArmEnv``).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .nav import ENV_NAMES, NavEnv, make_env

ARM = "arm"
WORLD_NAMES = (*ENV_NAMES, ARM)


class World(Protocol):
    name: str
    joint_names: tuple[str, ...]
    action_low: np.ndarray     # [A] command bounds, one command per joint
    action_high: np.ndarray
    joint_low: np.ndarray      # [A] joint position bounds
    joint_high: np.ndarray
    dt: float                  # control period (s)

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Start the task of ``seed``; returns its (start, goal) joint positions."""

    def step(self, action: np.ndarray) -> None:
        """Hold ``action`` (within the bounds) for one control period."""

    @property
    def position(self) -> np.ndarray: ...

    @property
    def velocity(self) -> np.ndarray: ...

    @property
    def goal(self) -> np.ndarray: ...

    def distance_to_goal(self) -> float: ...

    def succeeded(self) -> bool: ...

    def render_at(self, joints) -> np.ndarray:
        """RGB uint8 [H, W, 3] camera image of the robot at ``joints``."""

    def summary(self) -> str:
        """One line for the log: what runs at which rate."""


class PointMassWorld:
    """A ``NavEnv``: joints x, y (m); commands in [-1, 1]^2 move at most ``max_step`` per step;
    velocity is the displacement over the last step / dt."""

    joint_names = ("x", "y")
    action_low, action_high = -np.ones(2), np.ones(2)
    joint_low, joint_high = -np.ones(2), np.ones(2)

    def __init__(self, env: NavEnv, dt: float):
        self.env, self.dt, self.name = env, float(dt), env.name
        self.velocity = np.zeros(2)

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        episode = self.env.sample_episode(seed)
        self.env.reset(episode)
        self.velocity = np.zeros(2)
        return episode.start, episode.goal

    def step(self, action) -> None:
        before = self.env.position.copy()
        self.env.step(action)
        self.velocity = (self.env.position - before) / self.dt

    @property
    def position(self) -> np.ndarray:
        return self.env.position.copy()

    @property
    def goal(self) -> np.ndarray:
        return self.env.goal.copy()

    def distance_to_goal(self) -> float:
        return self.env.distance_to_goal()

    def succeeded(self) -> bool:
        return self.env.success()

    def render_at(self, joints) -> np.ndarray:
        return self.env.render(np.asarray(joints, dtype=np.float64))

    def summary(self) -> str:
        return f"{self.name} (step {self.env.max_step:.3f} m every {self.dt:g} s)"


class ArmWorld:
    """An ``ArmEnv``: joints joint1..3 (rad), joint velocity commands (rad/s); the distance to
    the goal is the end effector's, in metres."""

    def __init__(self, env):
        from .arm import env as arm
        self.env, self.dt, self.name = env, env.dt, ARM
        self.joint_names = arm.JOINT_NAMES
        self.action_low, self.action_high = arm.ACTION_LOW, arm.ACTION_HIGH
        self.joint_low, self.joint_high = arm.JOINT_LOW, arm.JOINT_HIGH

    def reset(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        task = self.env.reset(seed)
        return task.start, task.goal

    def step(self, action) -> None:
        self.env.step(action)

    @property
    def position(self) -> np.ndarray:
        return self.env.position

    @property
    def velocity(self) -> np.ndarray:
        return self.env.velocity

    @property
    def goal(self) -> np.ndarray:
        return self.env.goal

    def distance_to_goal(self) -> float:
        return self.env.distance_to_goal()

    def succeeded(self) -> bool:
        return self.env.succeeded()

    def render_at(self, joints) -> np.ndarray:
        return self.env.render_at(joints)

    def summary(self) -> str:
        return (f"the planar arm (joint velocity commands up to {self.action_high.tolist()} rad/s, "
                f"control period {self.dt:g} s)")


def make_world(name: str, dt: float, horizon: int, success_radius: float,
               image_size: int) -> World:
    """The world called ``name`` (one of ``WORLD_NAMES``). ``horizon`` and ``image_size`` set
    the point-mass envs' step and square camera; the arm's camera is always 96 x 72."""
    if name == ARM:
        from .arm import ArmEnv   # MuJoCo only where the arm runs
        return ArmWorld(ArmEnv(dt=dt, success_radius=success_radius))
    if name not in ENV_NAMES:
        raise ValueError(f"unknown env {name!r}; choose one of {list(WORLD_NAMES)}")
    return PointMassWorld(make_env(name, horizon, success_radius=success_radius,
                                   image_size=image_size), dt)
