"""A three-joint planar arm in MuJoCo (``arm.xml``): seeded reaching tasks, velocity commands,
a 96 x 72 top-down camera.

Robot. Hinges ``joint1..3`` about z, links of 0.35, 0.30 and 0.20 m (1.0, 0.6, 0.3 kg, a 0.1 kg
end effector), joint limits ``JOINT_LOW..JOINT_HIGH``. Each joint is driven by a velocity servo
with a finite gain and torque limit, so the arm lags a command and coasts after it: from rest, a
full-scale command on joint1 of the stretched arm reaches about two thirds of its speed after one
0.1 s control period and over 90% after four; after the command drops to zero the joint still
turns at about a third of that speed one period later; accelerating one joint swings the others
(``test/test_arm.py`` pins these). Two posts stand 0.62 m from the base; every link collides with
them. The servos have no integral action, so a joint under a steady load yields (at load / kv): a
link pushed against a post slides along it and bends the joints beyond it. Joint limits are
MuJoCo's soft constraints: under a saturating command a joint passes its limit by at most
``LIMIT_TOLERANCE``.

Actions. Three joint velocity commands in rad/s, clipped to ``[ACTION_LOW, ACTION_HIGH]`` (NaN
counts as 0), held for one control period ``dt`` (default 0.1 s: 50 physics steps of 2 ms).

Tasks. ``sample_task(seed)`` draws a start and a goal configuration inside the joint limits, each
at least ``TASK_CLEARANCE`` away from the posts, with end effectors more than 4 success radii
apart, and solvable: the arm can fold (joints 2 and 3 to +-``FOLD``), turn joint1 and unfold
without touching a post. A fraction ``non_greedy_fraction`` of the seeds draw non-greedy tasks:
the straight joint-space line from start to goal runs into a post (by more than
``NON_GREEDY_DEPTH``), so reaching the goal needs a detour (fold, turn, unfold). The other tasks
have a straight line that stays clear. The same seed always gives the same task.

Success. The end effector (the tip of link3) within ``success_radius`` (default 0.05 m) of the
goal configuration's end effector, in the plane.

Camera. ``observe()`` and ``render_at(q)`` give RGB uint8 [72, 96, 3] images of the orthographic
top-down camera, which sees x in [-1.2, 1.2] m and y in [-0.9, 0.9] m (40 pixels per metre,
image up = +y): posts dark grey, links blue to green, the end effector red.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .gl import import_mujoco

mujoco = import_mujoco()

MODEL_PATH = Path(__file__).with_name("arm.xml")
JOINT_NAMES = ("joint1", "joint2", "joint3")
ACTION_HIGH = np.array([1.5, 2.0, 2.5])
"""Joint velocity command bounds (rad/s); the actuators' ctrlrange in arm.xml."""
ACTION_LOW = -ACTION_HIGH
JOINT_LOW = np.array([-2.8, -2.5, -2.5])
"""Joint limits (rad); the joints' range in arm.xml."""
JOINT_HIGH = -JOINT_LOW
LIMIT_TOLERANCE = 0.05
"""rad: how far a saturating command may push a joint past its (soft) limit."""
IMAGE_HEIGHT, IMAGE_WIDTH = 72, 96
CAMERA = "top"
DEFAULT_DT = 0.1
SUCCESS_RADIUS = 0.05
TASK_CLEARANCE = 0.03
"""m: start and goal configurations keep this distance from the posts."""
PATH_CLEARANCE = 0.005
"""m: the fold-turn-unfold path that proves a task solvable keeps this distance from the posts."""
NON_GREEDY_DEPTH = 0.02
"""m: a non-greedy task's straight joint-space line penetrates a post at least this deep."""
FOLD = 2.3
"""rad: joints 2 and 3 at +-FOLD fold the arm inside the posts' radius."""
PATH_STEP = 0.01
"""m: path checks sample the joint-space line so that no point of the arm moves further."""
REACH_FROM_JOINT = np.array([0.35 + 0.30 + 0.20, 0.30 + 0.20, 0.20]) + 0.055
"""m: the farthest any point of the arm lies from each joint's axis (bounds path-check steps)."""


@dataclass(frozen=True)
class ArmTask:
    """A reaching task: start and goal joint positions [3] (rad), the seed that drew them, and
    whether the straight joint-space line between them runs into a post."""

    start: np.ndarray
    goal: np.ndarray
    seed: int
    non_greedy: bool


class ArmObservation(NamedTuple):
    image: np.ndarray      # uint8 [72, 96, 3], RGB
    position: np.ndarray   # [3] joint positions (rad)
    velocity: np.ndarray   # [3] joint velocities (rad/s)


class ArmEnv:
    """The arm, its physics and its camera; ``reset`` a task, ``step`` commands, ``observe``.

    ``dt``: control period (s), split into physics steps of at most 2 ms.
    ``non_greedy_fraction``: share of seeds whose task needs a detour (see the module doc).
    Call ``close`` to free the renderer early (it is freed at exit otherwise).
    """

    def __init__(self, dt: float = DEFAULT_DT, success_radius: float = SUCCESS_RADIUS,
                 non_greedy_fraction: float = 0.5):
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if not success_radius > 0:
            raise ValueError(f"success_radius must be > 0, got {success_radius}")
        if not 0.0 <= non_greedy_fraction <= 1.0:
            raise ValueError(f"non_greedy_fraction must be in [0, 1], got {non_greedy_fraction}")
        self.model = mujoco.MjModel.from_xml_path(str(MODEL_PATH))
        self._check_model()
        # Physics steps of at most arm.xml's timestep that divide dt exactly.
        self.substeps = math.ceil(dt / self.model.opt.timestep - 1e-9)
        self.model.opt.timestep = dt / self.substeps
        self.dt = float(dt)
        self.success_radius = float(success_radius)
        self.non_greedy_fraction = float(non_greedy_fraction)
        self.data = mujoco.MjData(self.model)     # the simulated arm
        self._probe = mujoco.MjData(self.model)   # kinematics, collisions, rendering at any q
        self._renderer = None
        geom, site = mujoco.mjtObj.mjOBJ_GEOM, mujoco.mjtObj.mjOBJ_SITE
        self._pairs = [(mujoco.mj_name2id(self.model, geom, link),
                        mujoco.mj_name2id(self.model, geom, post))
                       for link in ("link1", "link2", "link3", "end_effector")
                       for post in ("post_north", "post_south")]
        self._tip = mujoco.mj_name2id(self.model, site, "end_effector")
        self.task: Optional[ArmTask] = None
        self.goal_end_effector = np.zeros(2)
        self.reset(self.sample_task(0))

    def _check_model(self) -> None:
        """arm.xml and the constants here describe the same robot."""
        m = self.model
        names = tuple(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(m.njnt))
        bounds = np.allclose(m.actuator_ctrlrange, np.stack([ACTION_LOW, ACTION_HIGH], 1))
        limits = np.allclose(m.jnt_range, np.stack([JOINT_LOW, JOINT_HIGH], 1))
        if names != JOINT_NAMES or m.nu != 3 or not bounds or not limits:
            raise RuntimeError(f"{MODEL_PATH} does not match ArmEnv's joints, limits and bounds")

    # -- properties of the current state ------------------------------------------------------

    @property
    def position(self) -> np.ndarray:
        return self.data.qpos.copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.data.qvel.copy()

    @property
    def goal(self) -> np.ndarray:
        return self.task.goal.copy()

    # -- tasks ----------------------------------------------------------------------------------

    def sample_task(self, seed: int) -> ArmTask:
        """The task of ``seed`` (see the module doc); raises RuntimeError if none is found."""
        rng = np.random.default_rng(seed)
        non_greedy = bool(rng.random() < self.non_greedy_fraction)
        for _ in range(5000):
            start, goal = self._free_configuration(rng), self._free_configuration(rng)
            ee_gap = np.linalg.norm(self.end_effector(goal) - self.end_effector(start))
            if ee_gap <= 4 * self.success_radius:
                continue
            straight = self.path_clearance(start, goal)
            wanted = straight < -NON_GREEDY_DEPTH if non_greedy else straight > 0.0
            if wanted and self.detour(start, goal) is not None:
                return ArmTask(start, goal, int(seed), non_greedy)
        raise RuntimeError(f"no arm task found for seed {seed}")

    def _free_configuration(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(1000):   # most of the joint box is free: this ends in a few draws
            q = rng.uniform(JOINT_LOW + 0.05, JOINT_HIGH - 0.05)
            if self.clearance(q) >= TASK_CLEARANCE:
                return q
        raise RuntimeError("found no collision-free arm configuration")

    def detour(self, start, goal) -> Optional[np.ndarray]:
        """Waypoints [4, 3] of a collision-free fold-turn-unfold path, or None if no fold works."""
        start, goal = np.asarray(start, float), np.asarray(goal, float)
        for s2, s3 in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
            fold = np.array([0.0, s2 * FOLD, s3 * FOLD])
            path = np.stack([start, [start[0], *fold[1:]], [goal[0], *fold[1:]], goal])
            if all(self.path_clearance(a, b) >= PATH_CLEARANCE for a, b in zip(path, path[1:])):
                return path
        return None

    def reset(self, task: ArmTask | int = 0) -> ArmTask:
        """Put the arm at rest at the task's start (a seed draws the task); returns the task."""
        if not isinstance(task, ArmTask):
            task = self.sample_task(int(task))
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = task.start
        mujoco.mj_forward(self.model, self.data)
        self.task = task
        self.goal_end_effector = self.end_effector(task.goal)
        return task

    # -- stepping and sensing ------------------------------------------------------------------

    def step(self, action) -> np.ndarray:
        """Hold the joint velocity command ``action`` [3] for one control period; returns it
        as applied (clipped; NaN as 0)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (3,):
            raise ValueError(f"action must have 3 joint velocities, got {a.size}")
        a = np.clip(np.nan_to_num(a, nan=0.0), ACTION_LOW, ACTION_HIGH)
        self.data.ctrl[:] = a
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        return a

    def observe(self) -> ArmObservation:
        return ArmObservation(self.render_at(self.data.qpos), self.position, self.velocity)

    def render_at(self, q) -> np.ndarray:
        """The camera image (RGB uint8 [72, 96, 3]) of the arm at joint positions ``q``."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=IMAGE_HEIGHT, width=IMAGE_WIDTH)
            # At exit, before the interpreter tears down the GL bindings the renderer needs.
            self._finalizer = weakref.finalize(self, self._renderer.close)
        self._pose(q)
        mujoco.mj_camlight(self.model, self._probe)
        self._renderer.update_scene(self._probe, camera=CAMERA)
        return self._renderer.render().copy()

    def end_effector(self, q=None) -> np.ndarray:
        """The end effector's (x, y) in metres at ``q`` (default: the current joints)."""
        self._pose(self.data.qpos if q is None else q)
        return self._probe.site_xpos[self._tip, :2].copy()

    def distance_to_goal(self) -> float:
        return float(np.linalg.norm(self.end_effector() - self.goal_end_effector))

    def succeeded(self) -> bool:
        return self.distance_to_goal() <= self.success_radius

    # -- collision geometry --------------------------------------------------------------------

    def clearance(self, q) -> float:
        """Smallest signed distance (m) between the arm at ``q`` and a post; < 0: penetration."""
        self._pose(q)
        return min(mujoco.mj_geomDistance(self.model, self._probe, a, b, 1.0, None)
                   for a, b in self._pairs)

    def path_clearance(self, q0, q1) -> float:
        """Smallest clearance along the straight joint-space line from ``q0`` to ``q1``."""
        q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
        sweep = float(REACH_FROM_JOINT @ np.abs(q1 - q0))   # bound on any point's travel
        n = max(1, math.ceil(sweep / PATH_STEP))
        return min(self.clearance(q0 + (q1 - q0) * (i / n)) for i in range(n + 1))

    def _pose(self, q) -> None:
        self._probe.qpos[:] = q
        mujoco.mj_kinematics(self.model, self._probe)

    def close(self) -> None:
        if self._renderer is not None:
            self._finalizer()
            self._renderer = None
