"""The planners (GRASP, CEM, MPPI, GD) behind one interface: pure torch, seeded, fast.

Most checks use a tiny linear world model F(s, a) = M s + B a (exact, cheap, any bounds); the
goal-reaching check plans with the analytic model of the "open" world and executes the plan in
the simulator.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from grasp_ros.sim import Episode, make_env
from grasp_ros.models import check_world_model, load_world_model
from grasp_ros.planning import (PLANNERS, Budget, CemPlanner, CemSettings, GdPlanner, GdSettings,
                                GraspPlanner, GraspSettings, MppiPlanner, MppiSettings, Plan,
                                PlanningError, WarmStart, make_planner)
from grasp_ros.planning.costs import CostContext, Goal, decode_joints
from grasp_ros.planning.lbfgs import minimise
from grasp_ros.planning.rollout import rollout, task_cost

NAMES = sorted(PLANNERS)
H = 8                                  # horizon of the linear-model checks
M = [[0.9, 0.2], [-0.1, 1.05]]
B = [[0.5, 0.0], [0.1, 0.3]]
Z0, GOAL = torch.tensor([0.1, -0.2]), torch.tensor([0.8, 0.5])

# Small settings: enough for every code path, cheap enough for a busy CI machine.
FAST = {
    "grasp": dict(iterations=12, chains=2, sync_every=5, sync_steps=2),
    "cem": dict(iterations=3, samples=24, elites=4),
    "mppi": dict(iterations=3, samples=24),
    "gd": dict(iterations=6, chains=2),
}


class LinearModel(nn.Module):
    """F(s, a) = s M^T + a B^T, meeting the world-model contract; counts and records its calls.

    ``log_var`` makes it stochastic (predict returns (mean, log_variance)); ``nan`` makes it
    return NaN wherever the latent's first coordinate exceeds ``nan`` (-inf: everywhere).
    """

    image_size = 0

    def __init__(self, low=(-1.0, -1.0), high=(1.0, 1.0), log_var=None, nan=None):
        super().__init__()
        self.register_buffer("M", torch.tensor(M))
        self.register_buffer("B", torch.tensor(B))
        self.register_buffer("action_low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.tensor(high, dtype=torch.float32))
        self.latent_dim = self.joint_dim = 2
        self.action_dim = 2
        self.log_var, self.nan = log_var, nan
        self.calls = 0
        self.records = []   # (latent shape, latent requires grad, action requires grad, action min, max)

    def encode(self, observation):
        return observation["joints"]

    def predict(self, latent, action):
        self.calls += latent.shape[:-1].numel()
        flat = action.detach().reshape(-1, action.shape[-1])
        self.records.append((tuple(latent.shape), latent.requires_grad, action.requires_grad,
                             flat.amin(0).cpu(), flat.amax(0).cpu()))
        mean = latent @ self.M.T + action @ self.B.T
        if self.nan is not None:
            mean = torch.where(latent[..., :1] > self.nan, torch.full_like(mean, math.nan), mean)
        if self.log_var is None:
            return mean
        return mean, torch.full_like(mean, self.log_var)


def _planner(name, model, horizon=H, seed=0, **changes):
    return make_planner(name, model, horizon, {**FAST[name], **changes}, seed=seed)


def _mean_rollout(model, z0, actions):
    with torch.no_grad():
        return rollout(model, z0.to(actions.device), actions[None])[0]


def test_the_linear_test_model_meets_the_contract():
    check_world_model(LinearModel(), "linear test model")
    check_world_model(LinearModel(log_var=0.0), "stochastic linear test model")


# -- reaching a goal -----------------------------------------------------------------------

REACH_H = 20
REACH = {
    "grasp": dict(iterations=100),          # the shipped defaults otherwise
    "cem": dict(iterations=6, samples=64, elites=8),
    "mppi": dict(iterations=8, samples=64),
    "gd": dict(iterations=30),
}


@functools.lru_cache(maxsize=None)
def _analytic(horizon):
    return load_world_model({"name": "analytic", "env": "open", "horizon": horizon})


def _nearby_episode(env, seed):
    """A seeded task pulled towards the centre: away from the walls, well within one horizon."""
    ep = env.sample_episode(seed)
    return Episode(ep.start * 0.5, ep.goal * 0.5, seed)


@pytest.mark.parametrize("name", NAMES)
def test_reaches_the_goal_in_the_open_world(name):
    env, model = make_env("open", REACH_H), _analytic(REACH_H)
    for seed in (0, 1):
        ep = _nearby_episode(env, seed)
        planner = make_planner(name, model, REACH_H, REACH[name], seed=0)
        plan = planner.plan(torch.tensor(ep.start), torch.tensor(ep.goal, dtype=torch.float64))
        env.reset(ep)
        path = env.execute(plan.actions.numpy())
        assert env.success(path[-1]), f"{name} seed {seed}: ends {env.distance_to_goal():.3f} from the goal"
        # the analytic model is the simulator's dynamics: the plan's states are what happens
        np.testing.assert_allclose(path, plan.states.numpy(), atol=1e-4)


# -- the plan is what it says it is ---------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_plan_is_its_true_rollout_and_counts_model_calls(name):
    model = LinearModel()
    plan = _planner(name, model).plan(Z0, GOAL)
    assert plan.model_calls == model.calls
    assert plan.planner == name and plan.horizon == H
    assert plan.actions.shape == (H, 2) and plan.states.shape == (H + 1, 2)
    torch.testing.assert_close(plan.states, _mean_rollout(model, Z0, plan.actions))
    cost = float(task_cost(plan.states, GOAL, _planner(name, model).settings.running_weight))
    assert plan.cost == pytest.approx(cost, rel=1e-5, abs=1e-7)
    assert plan.cost < float(task_cost(_mean_rollout(model, Z0, torch.zeros(H, 2)), GOAL, 0.05))
    assert 1 <= plan.iterations <= FAST[name]["iterations"] and plan.solve_time > 0


# -- action bounds ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_iterate_respects_asymmetric_action_bounds(name):
    low, high = torch.tensor([-0.2, -1.0]), torch.tensor([0.5, 1.0])
    model = LinearModel(low=low.tolist(), high=high.tolist())
    planner = _planner(name, model)
    for corner in ((-5.0, 5.0), (5.0, -5.0)):
        # the goal and the (out-of-bounds) warm start both pull past a corner of the box
        goal, warm = torch.tensor(corner), WarmStart(torch.tensor([corner]).repeat(H, 1))
        plan = planner.plan(Z0, goal, warm)
        assert bool((plan.actions >= low).all() and (plan.actions <= high).all())
        assert bool(((plan.actions == low) | (plan.actions == high)).any())   # the bounds bind
    seen_low = torch.stack([r[3] for r in model.records]).amin(0)
    seen_high = torch.stack([r[4] for r in model.records]).amax(0)
    assert bool((seen_low >= low).all() and (seen_high <= high).all()), (seen_low, seen_high)


# -- seeding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_plan_and_reset_rewinds(name):
    model = LinearModel()
    first, twin = _planner(name, model, seed=3), _planner(name, model, seed=3)
    a, b = first.plan(Z0, GOAL), twin.plan(Z0, GOAL)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.states, b.states) and a.cost == b.cost
    first.plan(Z0, GOAL)                                   # moves the random stream on
    first.reset()
    again = first.plan(Z0, GOAL)
    assert torch.equal(a.actions, again.actions)
    if name != "gd":                                       # gd's chain 0 is deterministic
        other = _planner(name, model, seed=4).plan(Z0, GOAL)
        assert not torch.equal(a.actions, other.actions)


# -- budgets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_iteration_budget(name):
    plan = _planner(name, LinearModel(), iterations=50).plan(Z0, GOAL, budget=Budget(max_iterations=3))
    assert 1 <= plan.iterations <= 3


def test_grasp_reports_its_syncs_and_a_budgeted_plan_repeats_from_its_counts():
    """GRASP counts the syncs it ran (every sync_every iterations; max_syncs caps them). Under a
    wall-clock budget it skips the last syncs that no longer fit; the iteration and sync counts
    it reports repeat its plan exactly without a clock (how grasp-ros replay repeats a cycle
    recorded in real time), whatever the CPU allowed."""
    model = LinearModel()
    full = _planner("grasp", model, iterations=12, sync_every=5).plan(Z0, GOAL, budget=Budget(max_iterations=12))
    assert (full.iterations, full.syncs) == (12, 2)
    assert _planner("grasp", model, iterations=12, sync_every=5, max_syncs=1).plan(Z0, GOAL).syncs == 1
    plain = _planner("grasp", model, iterations=12, sync_every=5, sync_search=0).plan(Z0, GOAL)
    capped = _planner("grasp", model, iterations=12, sync_every=5, sync_search=0, max_syncs=0).plan(Z0, GOAL)
    assert capped.syncs == 0 and not torch.equal(capped.actions, plain.actions)
    with pytest.raises(ValueError, match="max_syncs"):
        _planner("grasp", model, max_syncs=-2)

    analytic, horizon = _analytic(REACH_H), REACH_H
    ep = _nearby_episode(make_env("open", horizon), 0)
    z0, goal = torch.tensor(ep.start, dtype=torch.float32), torch.tensor(ep.goal, dtype=torch.float32)
    timed = make_planner("grasp", analytic, horizon, {"iterations": 10**6, "sync_every": 3}, seed=4)
    recorded = timed.plan(z0, goal, budget=Budget(max_seconds=0.05))
    assert 0 <= recorded.syncs <= recorded.iterations // 3
    again = make_planner("grasp", analytic, horizon, {"iterations": recorded.iterations, "sync_every": 3,
                                                      "max_syncs": recorded.syncs}, seed=4)
    repeat = again.plan(z0, goal)
    assert (repeat.iterations, repeat.syncs) == (recorded.iterations, recorded.syncs)
    assert torch.equal(repeat.actions, recorded.actions)


def test_grasp_draws_the_start_samples_that_fit_and_a_budgeted_plan_repeats_from_its_count():
    """Without a clock GRASP draws all its start samples (max_start_samples caps them); under a
    wall-clock budget, once it knows its pace a sample, only those that fit before the final
    ranking (a batched rollout cannot stop half-way: all of them made a busy CPU's cycles late).
    The count it reports repeats its plan exactly without a clock, as a replay repeats a cycle."""
    model = LinearModel()
    settings = {"iterations": 3, "start_samples": 40}
    assert _planner("grasp", model, **settings).plan(Z0, GOAL).start_samples == 40
    assert _planner("grasp", model, **settings, max_start_samples=7).plan(Z0, GOAL).start_samples == 7
    assert _planner("grasp", model, iterations=3).plan(Z0, GOAL).start_samples == 0
    with pytest.raises(ValueError, match="max_start_samples"):
        _planner("grasp", model, max_start_samples=-2)
    timed = _planner("grasp", model, **settings)
    first = timed.plan(Z0, GOAL, budget=Budget(max_seconds=1e-9))     # no pace known yet: all
    assert first.start_samples == 40
    assert timed.plan(Z0, GOAL, budget=Budget(max_seconds=3600.0)).start_samples == 40
    out_of_time = timed.plan(Z0, GOAL, budget=Budget(max_seconds=1e-9))
    assert (out_of_time.start_samples, out_of_time.iterations) == (0, 0)

    analytic, horizon = _analytic(REACH_H), REACH_H
    ep = _nearby_episode(make_env("open", horizon), 0)
    z0, goal = torch.tensor(ep.start, dtype=torch.float32), torch.tensor(ep.goal, dtype=torch.float32)
    sampled = {"iterations": 10**6, "sync_every": 3, "start_samples": 64}
    for seconds in (0.05, 1e-9):            # whatever fitted; nothing at all
        timed = make_planner("grasp", analytic, horizon, sampled, seed=4)
        warm = timed.plan(z0, goal, budget=Budget(max_iterations=2)).shifted(1)
        recorded = timed.plan(z0, goal, warm, budget=Budget(max_seconds=seconds))
        again = make_planner("grasp", analytic, horizon, sampled, seed=4)
        again.plan(z0, goal, budget=Budget(max_iterations=2))
        # the replay's way: the counts set from the next plan on, as the controller's parameters
        again.configure(iterations=recorded.iterations, max_syncs=recorded.syncs,
                        max_start_samples=recorded.start_samples)
        repeat = again.plan(z0, goal, warm)
        assert repeat.start_samples == recorded.start_samples <= 64
        assert torch.equal(repeat.actions, recorded.actions)
    assert recorded.start_samples == 0


@pytest.mark.parametrize("warm_states, fitted", [("rollout", 29), ("virtual", 40)])
def test_grasp_start_samples_leave_time_for_the_warm_rollout(warm_states, fitted):
    """What follows the start samples and cannot stop half-way is kept time for: the warm
    start's rollout (where the warm chains start on it) and the final ranking, at their slowest
    recent costs. Those costs are set here (s), so the count does not depend on the CPU: 600 s
    left, 10 s a sample, the warm rollout 300 s -> 29 of 40 samples (30 would end at 600 s)."""
    planner = _planner("grasp", LinearModel(), start_samples=40, iterations=3, sync_every=0,
                       warm_states=warm_states)
    warm = planner.plan(Z0, GOAL).shifted(1)
    for name, seconds in (("sample", 10.0), ("final", 0.0), ("warm", 300.0)):
        planner._seconds[name].clear()
        planner._seconds[name].append(seconds)
    plan = planner.plan(Z0, GOAL, warm, budget=Budget(max_seconds=600.0))
    assert (plan.start_samples, plan.iterations) == (fitted, 3)


@pytest.mark.parametrize("name", NAMES)
def test_a_plan_whose_budget_ran_out_at_once_repeats_with_zero_iterations(name):
    """A cycle whose wall-clock budget was gone before the first iteration plans 0 iterations (the
    initial plans ranked); ``iterations`` 0 repeats it exactly, warm start included."""
    model = LinearModel()
    warm = _planner(name, model).plan(Z0, GOAL, budget=Budget(max_iterations=2)).shifted(1)
    timed = _planner(name, model)
    recorded = timed.plan(Z0, GOAL, warm, budget=Budget(max_seconds=1e-9))
    assert recorded.iterations == 0
    again = _planner(name, model, iterations=0).plan(Z0, GOAL, warm)
    assert again.iterations == 0 and torch.equal(again.actions, recorded.actions)
    assert torch.equal(_planner(name, model).plan(Z0, GOAL, warm, Budget(max_iterations=0)).actions,
                       recorded.actions)


@pytest.mark.parametrize("name", NAMES)
def test_warm_up_leaves_the_next_plan_as_a_fresh_planners(name):
    """warm_up (a cold and a warm-started plan before the first cycle) rewinds the random stream."""
    fresh = _planner(name, LinearModel()).plan(Z0, GOAL)
    warmed = _planner(name, LinearModel())
    warmed.warm_up(torch.zeros(2), torch.full((2,), 0.1))
    assert torch.equal(warmed.plan(Z0, GOAL).actions, fresh.actions)


def test_the_warm_up_is_a_few_iterations_with_a_sync_whatever_sync_every_says():
    """Configure warms the planner up without a deadline: it ran sync_every iterations, and a
    peer's sync_every of 100,000 made it take minutes."""
    model = LinearModel()
    planner = make_planner("grasp", model, H, {"chains": 2, "sync_every": 100_000})
    planner.warm_up(torch.zeros(2), torch.full((2,), 0.1))
    assert len(planner._seconds["sync"]) == 1                  # the warm plan's sync ran
    assert model.calls < 100 * 2 * H                           # a few iterations, not 100,000
    assert planner.settings.sync_every == 100_000


@pytest.mark.parametrize("name", NAMES)
def test_time_budget_is_anytime(name):
    model, horizon = _analytic(REACH_H), REACH_H
    planner = make_planner(name, model, horizon, {"iterations": 10**6}, seed=0)   # defaults otherwise
    ep = _nearby_episode(make_env("open", horizon), 0)
    z0, goal = torch.tensor(ep.start, dtype=torch.float32), torch.tensor(ep.goal, dtype=torch.float32)
    plan = planner.plan(z0, goal, budget=Budget(max_seconds=0.05))
    # Stopped by its clock, not the iteration cap, having run on until about the limit (it stops
    # when the slowest recent iteration no longer fits): how many it ran depends on the CPU.
    assert plan.iterations < 10**6 and plan.solve_time >= 0.025
    assert bool(torch.isfinite(plan.actions).all()) and math.isfinite(plan.cost)
    # a budget too short for a single iteration still returns a valid plan (the initial guess)
    quick = planner.plan(z0, goal, budget=Budget(max_seconds=1e-9))
    assert quick.iterations <= 1 and bool(torch.isfinite(quick.actions).all())


@pytest.mark.parametrize("name", NAMES)
def test_iteration_times_carry_across_plan_calls(name):
    """A plan call's first iteration is judged by the iterations of the calls before it: one that
    cannot fit is not started (a control cycle's budget would be overrun by it). warm_up forgets
    those times. The budgets are far from any real iteration time, so the CPU does not matter."""
    planner = _planner(name, LinearModel(), iterations=50)
    assert planner.plan(Z0, GOAL, budget=Budget(max_iterations=3, max_seconds=300.0)).iterations == 3
    planner._iteration_seconds.append(1000.0)      # as if a recent iteration had taken 1000 s
    held = planner.plan(Z0, GOAL, budget=Budget(max_iterations=3, max_seconds=300.0))
    assert held.iterations == 0 and bool(torch.isfinite(held.actions).all())
    # ... and forgets that time, so one slow spell does not stop every later call from planning
    assert planner.plan(Z0, GOAL, budget=Budget(max_iterations=3, max_seconds=300.0)).iterations == 3
    planner._iteration_seconds.extend([1000.0, 1000.0])    # two slow ones: two calls held
    assert [planner.plan(Z0, GOAL, budget=Budget(max_iterations=3, max_seconds=300.0)).iterations
            for _ in range(3)] == [0, 0, 3]
    planner.warm_up(torch.zeros(2), torch.full((2,), 0.1))
    assert planner.plan(Z0, GOAL, budget=Budget(max_iterations=3, max_seconds=300.0)).iterations == 3


def test_a_lazy_deadline_reads_the_clock_a_few_times_and_keeps_the_limit(monkeypatch):
    """On a GPU every reading of the clock waits for the device; a lazy Deadline (the default
    there) trusts half the iterations that would still fit at the slowest recent pace, so a plan
    reads it about log2(iterations) times and still stops within its limit while iterations get
    up to 2x slower than measured. A fake clock: 1 ms an iteration, then 1.8 ms."""
    from types import SimpleNamespace
    from grasp_ros.planning import base
    now = [0.0]
    monkeypatch.setattr(base, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    counts = {}
    for lazy in (False, True):
        now[0], readings = 0.0, []
        deadline = base.Deadline(Budget(max_seconds=0.2), 10_000, lazy=lazy)
        deadline._synchronize = lambda: readings.append(1)
        iterations = 0
        while not deadline.done(iterations):
            now[0] += 0.001 if iterations < 100 else 0.0018
            iterations += 1
        assert now[0] < 0.2, lazy                       # never past the limit
        counts[lazy] = (iterations, len(readings))
    (eager_iterations, eager_readings), (lazy_iterations, lazy_readings) = counts[False], counts[True]
    assert eager_readings == eager_iterations + 1      # a reading every iteration
    assert lazy_readings <= 2 * math.log2(eager_iterations) + 2
    assert lazy_iterations >= eager_iterations - 5     # and hardly fewer iterations
    assert base.Deadline(None, 1, torch.device("cpu"))._lazy is False   # the CPU reads every iteration


class _HostReads(TorchFunctionMode):
    """Counts the reads of tensor values back to the host (bool/float/int/item/tolist/numpy): on
    a GPU each one waits for the device to finish everything queued before it."""

    READS = {torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
             torch.Tensor.__index__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func in self.READS
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", NAMES)
def test_a_plan_reads_back_from_the_device_a_few_times_whatever_its_iterations(name):
    """No host read per iteration, sync or ranking: the best plan so far stays on the device and
    the input checks read once. Counted on the CPU, where the same code runs; a cold and a
    warm-started plan, at 5 and at 20 iterations (GRASP: 1 and 4 syncs, ranks every 5)."""
    reads = {}
    for iterations in (5, 20):
        planner = _planner(name, LinearModel(), iterations=iterations)
        with _HostReads() as cold:
            first = planner.plan(Z0, GOAL)
        with _HostReads() as warm:
            second = planner.plan(Z0, GOAL, warm_start=first.shifted(1))
        assert first.iterations == second.iterations == iterations
        reads[iterations] = (cold.count, warm.count)
    if name == "grasp":
        assert second.syncs == 4
    assert reads[5] == reads[20], reads
    assert max(reads[20]) <= 8, reads


def test_budget_rejects_nonsense():
    for bad in (dict(max_iterations=-1), dict(max_seconds=0.0), dict(max_seconds=-1.0),
                dict(max_seconds=math.nan)):
        with pytest.raises(ValueError):
            Budget(**bad)


# -- bad input -------------------------------------------------------------------------------------

BAD_SETTINGS = {
    "grasp": [dict(lr_actions=-0.1), dict(chains=0), dict(noise_decay=0.0), dict(warm_chains=1.5),
              dict(init_actions="random")],
    "cem": [dict(elites=0), dict(elites=25), dict(samples=0), dict(smoothing=1.0), dict(init_std=-1.0),
            dict(keep_elites=True, elites=24)],
    "mppi": [dict(temperature=0.0), dict(samples=0), dict(noise_std=-0.5)],
    "gd": [dict(lr=-0.1), dict(lr=0.0), dict(chains=0), dict(grad_clip=-1.0)],
}
COMMON_BAD = [dict(iterations=-1), dict(running_weight=-1.0), dict(tolerance=math.nan),
              dict(running_weight=math.inf), dict(no_such_setting=1)]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_value_error(name):
    model = LinearModel()
    planner = _planner(name, model)
    for z0, goal in ((torch.zeros(3), GOAL), (Z0, torch.zeros(2, 2)), (torch.zeros(1, 1, 2), GOAL),
                     (torch.tensor([math.nan, 0.0]), GOAL), (Z0, torch.tensor([0.0, math.inf]))):
        with pytest.raises(ValueError):
            planner.plan(z0, goal)
    planner.plan(Z0[None], GOAL[None])                      # a batch of one is fine
    for horizon in (0, -1):
        with pytest.raises(ValueError):
            make_planner(name, model, horizon)
    with pytest.raises(ValueError):
        make_planner(name, LinearModel(low=(0.5, -1.0), high=(0.2, 1.0)), H)
    before = planner.settings
    for bad in COMMON_BAD + BAD_SETTINGS[name]:
        with pytest.raises(ValueError):
            planner.configure(**bad)
        assert planner.settings == before                  # a rejected change leaves no trace


@pytest.mark.parametrize("cls, settings", [
    (GraspPlanner, GraspSettings(sync_steps=-1)), (CemPlanner, CemSettings(elites=400)),
    (MppiPlanner, MppiSettings(temperature=-1.0)), (GdPlanner, GdSettings(iterations=-1)),
])
def test_bad_settings_object_rejected_at_construction(cls, settings):
    with pytest.raises(ValueError):
        cls(LinearModel(), H, settings=settings)


@pytest.mark.parametrize("name, rows, cost", [
    ("grasp", "start_samples", 1), ("grasp", "chains", 12),    # chains: the adjoint's 8 + 2 x D
    ("cem", "samples", 1), ("mppi", "samples", 1), ("gd", "chains", 8)])
def test_one_batched_model_call_is_bounded(name, rows, cost):
    """A batched call cannot stop half-way, and its memory grows with it: its model steps are
    capped (a step with a gradient weighs GRADIENT_STEP_COST), at construction and in configure,
    and a refused change leaves the settings."""
    from grasp_ros.planning.base import MAX_BATCH_STEPS
    horizon = 1024
    fits = MAX_BATCH_STEPS // horizon // cost
    planner = make_planner(name, LinearModel(), horizon, {rows: fits})
    with pytest.raises(ValueError, match="MAX_BATCH_STEPS"):
        planner.configure(**{rows: fits + 1})
    assert getattr(planner.settings, rows) == fits
    with pytest.raises(ValueError, match="model steps in one batched call"):
        make_planner(name, LinearModel(), 2 * horizon, {rows: fits})


def test_a_sync_by_the_adjoint_counts_its_jacobians():
    """A peer forced the adjoint on a 32-D latent: 2^16 chain steps took 21 s and 3.85 GB."""
    settings = {"chains": 100, "sync_search": 1}
    make_planner("grasp", LinearModel(), 1024, {**settings, "sync_gradient": "backprop"})
    with pytest.raises(ValueError, match="the adjoint's Jacobians of 100 chains x horizon 1024 x latent 2"):
        make_planner("grasp", LinearModel(), 1024, {**settings, "sync_gradient": "adjoint"})


def test_make_planner_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("astar", LinearModel(), H)


# -- NaN from the model -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_model_returning_nan_raises_planning_error(name):
    with pytest.raises(PlanningError):
        _planner(name, LinearModel(nan=-math.inf)).plan(Z0, GOAL)


@pytest.mark.parametrize("name", NAMES)
def test_nan_region_never_poisons_the_plan(name):
    # NaN wherever x > 0.3, and the goal lies beyond. cem, mppi and gd evaluate their finite
    # initial guess, so they must return a finite plan; grasp may instead raise PlanningError.
    try:
        plan = _planner(name, LinearModel(nan=0.3)).plan(Z0, GOAL)
    except PlanningError:
        assert name == "grasp"
        return
    assert bool(torch.isfinite(plan.actions).all() and torch.isfinite(plan.states).all())
    assert math.isfinite(plan.cost)


# -- warm starts -------------------------------------------------------------------------------

def _manual_plan(virtual=True):
    actions = torch.arange(12.0).view(6, 2)
    states = torch.arange(14.0).view(7, 2)
    return Plan(actions, states, 0.0, 1, 0.0, 6, "test", virtual_states=-states if virtual else None)


def test_shifted_moves_actions_and_virtual_states():
    plan = _manual_plan()
    warm = plan.shifted(2)
    assert torch.equal(warm.actions[:4], plan.actions[2:]) and torch.equal(warm.actions[4:], torch.zeros(2, 2))
    assert torch.equal(warm.states[:5], plan.virtual_states[2:])
    assert torch.equal(warm.states[5:], plan.virtual_states[-1:].repeat(2, 1))   # tail: the goal
    same = plan.shifted(0)
    assert torch.equal(same.actions, plan.actions) and torch.equal(same.states, plan.virtual_states)
    gone = plan.shifted(99)
    assert torch.equal(gone.actions, torch.zeros(6, 2)) and torch.equal(gone.states, plan.virtual_states[-1:].repeat(7, 1))
    assert torch.equal(_manual_plan(virtual=False).shifted(1).states[:6], plan.states[1:])  # true states otherwise
    assert plan.actions[0, 0] == 0.0                        # the plan itself is untouched
    with pytest.raises(ValueError):
        plan.shifted(-1)


def test_grasp_plan_shift_carries_its_virtual_states():
    planner = _planner("grasp", LinearModel())
    plan = planner.plan(Z0, GOAL)
    virtual = plan.virtual_states
    assert virtual is not None and virtual.shape == (H + 1, 2)
    assert torch.equal(virtual[0], Z0) and torch.equal(virtual[-1], GOAL)
    warm = plan.shifted(3)
    assert torch.equal(warm.states[: H - 2], virtual[3:]) and torch.equal(warm.states[H - 2:], GOAL.repeat(3, 1))
    assert torch.equal(warm.actions[: H - 3], plan.actions[3:]) and not warm.actions[H - 3:].any()
    assert bool(torch.isfinite(planner.plan(Z0, GOAL, warm).actions).all())


@pytest.mark.parametrize("name", NAMES)
def test_warm_start_shapes_and_poison(name):
    model = LinearModel()
    planner = _planner(name, model)
    for bad in (WarmStart(torch.zeros(H + 1, 2)), WarmStart(torch.zeros(H, 3)),
                WarmStart(torch.zeros(H, 2), torch.zeros(H, 2))):
        with pytest.raises(ValueError):
            planner.plan(Z0, GOAL, bad)
    fresh = _planner(name, model).plan(Z0, GOAL)
    for poison in (WarmStart(torch.full((H, 2), math.nan)),
                   WarmStart(torch.zeros(H, 2), torch.full((H + 1, 2), math.inf))):
        planner.reset()
        plan = planner.plan(Z0, GOAL, poison)               # dropped: as if there were none
        assert bool(torch.isfinite(plan.actions).all()) and torch.equal(plan.actions, fresh.actions)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "grasp"])
def test_warm_start_is_never_worse(name):
    # cem, mppi and gd evaluate the warm start itself first; grasp only ranks optimised chains.
    model = LinearModel()
    plan = _planner(name, model).plan(Z0, GOAL)
    again = _planner(name, model, seed=7).plan(Z0, GOAL, plan.shifted(0), Budget(max_iterations=1))
    assert again.cost <= plan.cost + 1e-6


# -- GRASP's gradient structure -----------------------------------------------------------------

class _CapturingGrasp(GraspPlanner):
    """GRASP that keeps its iterates (and their initial values) for inspection."""

    def _initial_iterates(self, *args):
        actions, states = super()._initial_iterates(*args)
        self.iterates = (actions, states, actions.detach().clone(), states.detach().clone())
        return actions, states


@pytest.mark.parametrize("warm_states, sync_every, on_rollout, kept_on_rollout", [
    ("rollout", 5, True, True), ("auto", 0, True, True), ("auto", 5, False, False),
    ("virtual", 0, False, False), ("reset", 0, False, True), ("reset", 5, False, True)])
def test_warm_chains_start_on_the_warm_starts_rollout_where_no_sync_keeps_its_states_honest(
        warm_states, sync_every, on_rollout, kept_on_rollout):
    """Without syncs, a warm start's virtual states, shifted cycle after cycle, drift from what
    its actions do (0.7 rad on an outside arm, docs/notes/warm_states.md); "rollout" (and
    "auto" where sync_every is 0) starts the warm chains on the actions' true rollout instead,
    and the warm start competes in the final ranking with that path. "reset" keeps the chains
    on the virtual states and only the warm start's own path on its rollout."""
    model = LinearModel()
    actions = torch.full((H, 2), 0.3)
    true = _mean_rollout(model, Z0, actions)                 # [H+1, D]
    drifted = true + 0.5
    settings = GraspSettings(chains=4, warm_states=warm_states, sync_every=sync_every, start_samples=0)
    planner = _CapturingGrasp(model, H, settings=settings, seed=1)
    plan = planner.plan(Z0, GOAL, WarmStart(actions, drifted), Budget(max_iterations=0))
    warm_chain = planner.iterates[1][0].detach()            # chain 0 is the warm one
    expected, kept = (true if on_rollout else drifted), (true if kept_on_rollout else drifted)
    assert torch.allclose(warm_chain, expected[1:H], atol=1e-6), (warm_chain, expected)
    assert torch.equal(plan.actions, actions)               # no iterations: the warm start's actions
    assert torch.allclose(plan.virtual_states[1:H], kept[1:H], atol=1e-6)   # and the path it is kept with


def test_grasp_gradients_match_the_stop_gradient_loss_exactly():
    """d L / d s_t = -2 (F(s_{t-1}, a_{t-1}) - s_t): no M^T term through the model's state input."""
    model, gamma = LinearModel(), 0.3
    settings = GraspSettings(chains=3, goal_weight=gamma, sync_every=0, init_spread=0.5, grad_clip=0.0)
    planner = _CapturingGrasp(model, H, settings=settings, seed=1)
    planner.plan(Z0, GOAL, budget=Budget(max_iterations=1))
    actions, states, a0, s0 = planner.iterates
    Mt, Bt = model.M.T, model.B.T
    full = torch.cat([Z0.expand(3, 1, 2), s0, GOAL.expand(3, 1, 2)], dim=1)    # [C, H+1, D]
    predicted = full[:, :-1] @ Mt + a0 @ Bt                                     # [C, H, D]
    residual, to_goal = predicted - full[:, 1:], predicted - GOAL
    expected_states = -2 * residual[:, :-1]                                     # s_1..s_{H-1}
    expected_actions = 2 * residual @ Bt.T + 2 * gamma * to_goal @ Bt.T
    torch.testing.assert_close(states.grad, expected_states, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(actions.grad, expected_actions, rtol=1e-5, atol=1e-6)
    # the full-gradient loss would differ: the test can tell the two apart
    through_state = 2 * residual[:, 1:] @ Mt.T + 2 * gamma * to_goal[:, 1:] @ Mt.T
    assert float((expected_states + through_state - states.grad).abs().max()) > 1e-2


def test_grasp_loss_terms_stop_the_gradient_at_the_state_input():
    from grasp_ros.planning.grasp import grasp_loss_terms
    model, gamma = LinearModel(), 0.3
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(3, H + 1, 2, generator=gen).requires_grad_(True)
    actions = torch.randn(3, H, 2, generator=gen).requires_grad_(True)
    dynamics, to_goal = grasp_loss_terms(model, states, actions, GOAL)
    assert dynamics.shape == to_goal.shape == (3, H)
    (dynamics.sum() + gamma * to_goal.sum()).backward()
    with torch.no_grad():
        residual = states[:, :-1] @ model.M.T + actions @ model.B.T - states[:, 1:]
    expected = torch.zeros_like(states)
    expected[:, 1:] = -2 * residual                         # only as the target of the step before
    torch.testing.assert_close(states.grad, expected, rtol=1e-5, atol=1e-6)


def test_grasp_never_differentiates_the_batched_step_through_states():
    model = LinearModel()
    # (the adjoint sync's Jacobians are a batched call too, through the full rollout: not here)
    _planner("grasp", model, sync_every=3, sync_gradient="backprop").plan(Z0, GOAL)
    batched = [r for r in model.records if len(r[0]) == 3]   # the one-call [C, H, D] relaxed step
    assert batched and all(r[2] for r in batched)            # actions are differentiated ...
    assert not any(r[1] for r in batched)                     # ... the latent input never


# -- stochastic models --------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_stochastic_model_mean_by_default_and_samples_on_request(name):
    noisy, exact = LinearModel(log_var=math.log(0.1 ** 2)), LinearModel()
    mean_plan = _planner(name, noisy, seed=2).plan(Z0, GOAL)
    assert torch.equal(mean_plan.actions, _planner(name, exact, seed=2).plan(Z0, GOAL).actions)
    torch.testing.assert_close(mean_plan.states, _mean_rollout(exact, Z0, mean_plan.actions))

    sampled = _planner(name, noisy, seed=2, sample_dynamics=True).plan(Z0, GOAL)
    twin = _planner(name, noisy, seed=2, sample_dynamics=True).plan(Z0, GOAL)
    assert torch.equal(sampled.actions, twin.actions) and torch.equal(sampled.states, twin.states)
    assert bool(torch.isfinite(sampled.states).all())
    assert not torch.allclose(sampled.states, _mean_rollout(exact, Z0, sampled.actions), atol=1e-3)


# -- GPU ---------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_plans_on_the_gpu(name):
    model = LinearModel(low=(-0.2, -1.0), high=(0.5, 1.0), log_var=math.log(0.05 ** 2)).to("cuda")
    z0, goal = Z0.cuda(), GOAL.cuda()
    plan = _planner(name, model, seed=5).plan(z0, goal)
    assert plan.actions.device.type == "cuda" and plan.states.device.type == "cuda"
    assert bool(torch.isfinite(plan.actions).all()) and math.isfinite(plan.cost)
    assert bool((plan.actions >= model.action_low).all() and (plan.actions <= model.action_high).all())
    torch.testing.assert_close(plan.states, _mean_rollout(model, z0, plan.actions))
    assert torch.equal(plan.actions, _planner(name, model, seed=5).plan(z0, goal).actions)
    sampled = _planner(name, model, seed=5, sample_dynamics=True).plan(z0, goal, plan.shifted(1))
    assert bool(torch.isfinite(sampled.actions).all())


class _EmbeddedModel(nn.Module):
    """A 2-D point mass embedded in a 6-D latent: F(z, a) = z + 0.1 a E^T, E [6, 2] with rows 2..5
    zero, so that only latent dimensions 0 and 1 are reachable (a learned latent in miniature)."""

    image_size = joint_dim = 0

    def __init__(self):
        super().__init__()
        E = torch.zeros(6, 2)
        E[0, 0], E[1, 1] = 1.0, 1.0
        self.register_buffer("E", E)
        self.register_buffer("action_low", -torch.ones(2))
        self.register_buffer("action_high", torch.ones(2))
        self.latent_dim, self.action_dim = 6, 2

    def encode(self, observation):
        return observation["joints"]

    def predict(self, latent, action):
        return latent + 0.1 * action @ self.E.T


def test_grasp_bends_and_noise_stay_on_the_reachable_set_of_a_larger_latent():
    """Chain bends and state noise follow the one-step displacements: nothing in dims 2..5."""
    model = _EmbeddedModel()
    z0, goal = torch.zeros(6), torch.tensor([0.5, 0.3, 0.0, 0.0, 0.0, 0.0])
    planner = _CapturingGrasp(model, H, settings=GraspSettings(chains=8, sync_every=0), seed=0)
    plan = planner.plan(z0, goal, budget=Budget(max_iterations=5))
    _, states, _, s0 = planner.iterates
    assert float(s0[..., 2:].abs().max()) == 0.0 and float(states.detach()[..., 2:].abs().max()) == 0.0
    assert float((s0[1:, :, :2] - s0[0, :, :2]).abs().max()) > 0.05     # but bent in dims 0, 1
    assert plan.virtual_states[:, 2:].abs().max() == 0.0


def test_grasp_fresh_chains_start_with_the_actions_that_follow_their_routes():
    """init_actions "inverse": through the model's local linear response (exact here, a latent
    that moves in 2 of its 6 directions), each chain's first actions roll out along its own
    route, so one iteration already ranks routes, not standstills. "zero": they hold still."""
    model = _EmbeddedModel()
    z0, goal = torch.zeros(6), torch.tensor([0.3, 0.2, 0.0, 0.0, 0.0, 0.0])
    for init in ("inverse", "zero"):
        settings = GraspSettings(chains=4, sync_every=0, init_spread=0.05, route_spread=0.0,
                                 init_actions=init)
        planner = _CapturingGrasp(model, H, settings=settings, seed=0)
        planner.plan(z0, goal, budget=Budget(max_iterations=1))
        _, _, a0, s0 = planner.iterates
        if init == "zero":
            assert float(a0.abs().max()) == 0.0
            continue
        routes = torch.cat([z0.expand(4, 1, 6), s0, goal.expand(4, 1, 6)], dim=1)
        assert float(a0.abs().max()) < 1.0                      # inside the bounds: not clamped
        torch.testing.assert_close(rollout(model, z0, a0), routes, rtol=0, atol=1e-5)


def test_grasp_fresh_chains_arrive_at_their_paces_and_hold():
    """arrivals 3: chain c's route reaches the goal at step H / 2^(c mod 3), then stays there,
    and its actions roll out along it (then hold still); arrivals 1: every route takes H steps."""
    model, horizon = _EmbeddedModel(), 16
    z0, goal = torch.zeros(6), torch.tensor([0.3, 0.2, 0.0, 0.0, 0.0, 0.0])
    settings = GraspSettings(chains=6, sync_every=0, init_spread=0.0, route_spread=0.0, arrivals=3)
    planner = _CapturingGrasp(model, horizon, settings=settings, seed=0)
    planner.plan(z0, goal, budget=Budget(max_iterations=1))
    _, _, a0, s0 = planner.iterates
    routes = torch.cat([z0.expand(6, 1, 6), s0, goal.expand(6, 1, 6)], dim=1)
    for c in range(6):
        arrival = horizon // 2 ** (c % 3)                       # 16, 8, 4, 16, 8, 4
        at_goal = (routes[c] - goal).norm(dim=-1) < 1e-6
        assert not bool(at_goal[:arrival].any()) and bool(at_goal[arrival:].all())
    torch.testing.assert_close(rollout(model, z0, a0), routes, rtol=0, atol=1e-5)
    assert float(a0[2, 4:].abs().max()) < 1e-5                  # arrived: holds still
    with pytest.raises(ValueError, match="arrivals"):
        GraspSettings(arrivals=0).validate()
    same = GraspSettings(chains=6, sync_every=0, init_spread=0.0, route_spread=0.0)
    planner = _CapturingGrasp(model, horizon, settings=same, seed=0)
    planner.plan(z0, goal, budget=Budget(max_iterations=1))
    assert bool(((planner.iterates[3] - goal).norm(dim=-1) > 1e-6).all())   # none before H


def test_grasp_wide_routes_run_from_nearly_straight_to_wide_detours_on_the_reachable_set():
    """route_spread: the wide routes' bends grow along a ladder from init_spread to route_spread
    horizon reaches and gain modes as they grow, in the directions one step can move (dims 0, 1
    of 6); the narrow chains and route_spread 0 bend along one half sine."""
    model, horizon = _EmbeddedModel(), 40
    z0, goal = torch.zeros(6), torch.tensor([0.5, 0.3, 0.0, 0.0, 0.0, 0.0])
    t = torch.arange(1, horizon).div(horizon).view(-1, 1)
    straight = z0 + t * (goal - z0)

    def bends(**settings):
        planner = _CapturingGrasp(model, horizon, settings=GraspSettings(chains=9, sync_every=0, **settings), seed=0)
        planner.plan(z0, goal, budget=Budget(max_iterations=0))
        return planner.iterates[3] - straight                       # [C, H-1, 6]

    def one_half_sine(bend):                                         # bend(t) = sin(pi t) * r
        r = bend[horizon // 2 - 1] / math.sin(math.pi * 0.5)
        return torch.allclose(bend, torch.sin(math.pi * t) * r, atol=1e-5)

    wide = bends(init_spread=0.1, route_spread=2.0, wide_routes=0.5)     # chains 1-4 narrow, 5-8 wide
    size = wide.norm(dim=-1).amax(dim=-1)
    assert float(wide[..., 2:].abs().max()) == 0.0
    assert float(size[0]) == 0.0 and all(one_half_sine(wide[c]) for c in range(1, 5))
    assert float(size[8]) > 5 * float(size[1:5].max())
    assert not one_half_sine(wide[8])                                 # more than one mode
    plain = bends(init_spread=0.1, route_spread=0.0)
    assert all(one_half_sine(plain[c]) for c in range(9)) and float(plain.norm(dim=-1).max()) < float(size[8]) / 5
    for bad in (dict(route_spread=-0.1), dict(route_modes=0), dict(wide_routes=1.5)):
        with pytest.raises(ValueError):
            GraspSettings(**bad).validate()


class _SyncWatchingGrasp(GraspPlanner):
    """GRASP that records every chain's true rollout cost before and after each sync."""

    def _sync(self, z0, goal, actions, virtual, best):
        with torch.no_grad():
            before = self._cost(self._rollout(z0, actions), goal, actions)
        calls = super()._sync(z0, goal, actions, virtual, best)
        with torch.no_grad():
            after = self._cost(self._rollout(z0, actions), goal, actions)
        self.syncs_seen.append((before, after))
        return calls


def test_grasp_sampled_starts_are_the_best_samples_and_their_rollouts():
    """start_samples: random sequences ranked by true rollout; the best become the last fresh
    chains (actions, and their rollouts as virtual states: no residual), every sample a
    candidate; around the warm start in the next plan, inside the bounds."""
    from grasp_ros.planning.base import Best, Deadline
    from grasp_ros.planning.costs import Goal
    model = LinearModel(low=(-0.5, -1.0), high=(1.0, 0.25))
    planner = _planner("grasp", model, chains=6, start_samples=40, start_chains=0.5)
    plan = planner.plan(Z0, GOAL)
    plan = planner.plan(Z0, GOAL, warm_start=plan.shifted())      # samples around the warm start
    low, high = torch.tensor([-0.5, -1.0]), torch.tensor([1.0, 0.25])
    assert bool(((plan.actions >= low) & (plan.actions <= high)).all())
    actions, states, best = torch.zeros(6, H, 2), torch.zeros(6, H - 1, 2), Best()
    calls = planner._sampled_starts(Z0, Goal(latent=GOAL), None, actions, states, best, 40, Deadline(None, 1))
    assert calls == 40 * H
    assert not actions[:3].any() and not states[:3].any()         # the first chains untouched
    chosen = rollout(model, Z0, actions[3:])
    torch.testing.assert_close(states[3:], chosen[:, 1:H])         # rollouts as virtual states
    costs = task_cost(chosen, GOAL, planner.settings.running_weight)
    assert best.cost == pytest.approx(float(costs.min()))         # the best sample is among them
    with pytest.raises(ValueError, match="start_chains"):
        GraspSettings(start_chains=1.5).validate()


def test_grasp_sampled_starts_spread_their_std_log_evenly_down_to_local_samples():
    """start_std_spread: from the same draws, sample n of N deviates from the warm start by
    start_std / spread^(n / (N-1)) of what it would at spread 1: the first as wide as before, the
    last local (a refinement of the warm start by true rollout); 1 repeats the draws exactly."""
    from grasp_ros.planning.base import Best, Deadline
    from grasp_ros.planning.costs import Goal

    class Recorded(Best):
        def offer(self, actions, *rest):
            self.samples = actions.clone()
            return super().offer(actions, *rest)

    model = LinearModel(low=(-100.0, -100.0), high=(100.0, 100.0))    # nothing clamped
    warm = WarmStart(torch.full((H, 2), 0.3))
    deviations = {}
    for spread in (1.0, 10.0):
        planner = _planner("grasp", model, chains=6, start_samples=40, start_std=0.01,
                           start_std_spread=spread)
        best = Recorded()
        planner._sampled_starts(Z0, Goal(latent=GOAL), warm, torch.zeros(6, H, 2),
                                torch.zeros(6, H - 1, 2), best, 40, Deadline(None, 1))
        deviations[spread] = best.samples - warm.actions
    shrink = torch.logspace(0.0, -1.0, 40).view(40, 1, 1)
    torch.testing.assert_close(deviations[10.0], deviations[1.0] * shrink, rtol=1e-4, atol=1e-6)
    assert float(deviations[10.0][-1].abs().max()) < 0.11 * float(deviations[1.0][-1].abs().max())
    with pytest.raises(ValueError, match="start_std_spread"):
        GraspSettings(start_std_spread=0.5).validate()


def test_coloured_noise_is_white_noise_at_zero_and_drifts_when_red():
    """beta 0: torch.randn's very draws (a bag recorded before start_colour replays exactly);
    beta 2: each sequence of unit power, slowly varying, and drifting: its mean over time
    (what carries a robot somewhere) far larger than white noise's."""
    from grasp_ros.planning.noise import coloured_noise
    shape = (400, 50, 3)
    white = coloured_noise(shape, 0.0, torch.Generator().manual_seed(5))
    assert torch.equal(white, torch.randn(*shape, generator=torch.Generator().manual_seed(5)))
    red = coloured_noise(shape, 2.0, torch.Generator().manual_seed(5))
    assert red.shape == shape and torch.isfinite(red).all()
    assert torch.equal(red, coloured_noise(shape, 2.0, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(red.pow(2).mean(1), torch.ones(400, 3))       # unit power each

    def lag_one(x):
        return float((x[:, 1:] * x[:, :-1]).mean() / x.pow(2).mean())
    assert lag_one(white) == pytest.approx(0.0, abs=0.05) and lag_one(red) > 0.8
    assert float(red.mean(1).std()) > 3 * float(white.mean(1).std())
    assert coloured_noise((4, 1, 2), 2.0, torch.Generator()).shape == (4, 1, 2)  # H = 1: white
    planner = _planner("grasp", LinearModel(), chains=6, start_samples=40, start_colour=2.0)
    plans = [planner.plan(Z0, GOAL) for _ in range(2) if planner.reset() is None]
    torch.testing.assert_close(plans[0].actions, plans[1].actions, rtol=0, atol=0)
    with pytest.raises(ValueError, match="start_colour"):
        GraspSettings(start_colour=-1.0).validate()
    for name in ("cem", "mppi"):     # the sampling planners draw from it too
        white = _planner(name, LinearModel(), samples=40, iterations=2).plan(Z0, GOAL)
        red = [_planner(name, LinearModel(), samples=40, iterations=2, noise_colour=2.0).plan(Z0, GOAL)
               for _ in range(2)]
        torch.testing.assert_close(red[0].actions, red[1].actions, rtol=0, atol=0)
        assert not torch.equal(white.actions, red[0].actions)
        with pytest.raises(ValueError, match="noise_colour"):
            _planner(name, LinearModel(), noise_colour=-1.0)


def test_a_searched_sync_never_makes_a_chain_worse_where_a_plain_step_does():
    """sync_search tries sync_lr x 4^k and keeps, per chain, the best true rollout or none; one
    plain step of a large sync_lr throws chains off (wall_door, H=50, the analytic model)."""
    env = make_env("wall_door", 50)
    model = load_world_model({"name": "analytic", "env": "wall_door", "horizon": 50})
    episode = env.sample_episode(3)
    z0, goal = (torch.tensor(p, dtype=torch.float32) for p in (episode.start, episode.goal))
    changes = {}
    for search in (4, 0):
        settings = GraspSettings(chains=8, iterations=20, sync_every=5, sync_lr=100.0, sync_search=search)
        planner = _SyncWatchingGrasp(model, 50, settings=settings, seed=0)
        planner.syncs_seen = []
        planner.plan(z0, goal)
        assert len(planner.syncs_seen) == 4
        changes[search] = torch.stack([after - before for before, after in planner.syncs_seen])
    assert float(changes[4].max()) <= 0.0 and float(changes[4].min()) < 0.0
    assert float(changes[0].max()) > 0.0


def test_grasp_plans_out_of_the_u_maze_open_loop():
    """Issue 11's U-maze: the start inside a U, the goal behind its back. With wide routes and the
    searched sync GRASP's open-loop plans get out and round an arm; without them the chains stay
    at the U's back wall (seeds 0-3 here; 100 episodes in docs/benchmarks/u_maze)."""
    env = make_env("u_maze", 100)
    model = load_world_model({"name": "analytic", "env": "u_maze", "horizon": 100})
    tolerance = (0.5 * env.success_radius) ** 2

    def reached(**settings) -> int:
        planner = make_planner("grasp", model, 100, dict(tolerance=tolerance, **settings))
        successes = 0
        for seed in range(4):
            episode = env.sample_episode(seed)
            env.reset(episode)
            planner.reset(seed)
            plan = planner.plan(*(torch.tensor(p, dtype=torch.float32) for p in (episode.start, episode.goal)))
            successes += env.success(env.execute(plan.actions.numpy())[-1])
        return successes
    assert reached() >= 3
    assert reached(route_spread=0.0, sync_search=0) <= 2


def test_action_weight_adds_the_mean_squared_action_and_quiets_idle_actions():
    states = torch.zeros(3, H + 1, 2)
    actions = torch.ones(3, H, 2) * 0.5
    base = task_cost(states, GOAL, 0.1)
    torch.testing.assert_close(task_cost(states, GOAL, 0.1, actions, 2.0) - base, torch.full((3,), 2.0 * 0.5))
    # A goal one step away: the actions after it do not matter to the goal terms; the effort term
    # makes them small instead of arbitrary.
    model, goal = _EmbeddedModel(), torch.tensor([0.05, 0.0, 0.0, 0.0, 0.0, 0.0])
    idle = {}
    for weight in (0.0, 0.05):
        plan = make_planner("cem", model, H, {"action_weight": weight, "iterations": 30}, seed=0).plan(
            torch.zeros(6), goal)
        idle[weight] = float(plan.actions[2:].abs().mean())
    assert idle[0.05] < 0.5 * idle[0.0], idle



def test_grasp_ranks_its_initial_routes_and_ranking_leaves_the_optimisation_alone():
    """rank_every: the chains' true rollouts are ranked before iteration 0, so a route that the
    initial actions already follow to the goal ends the plan at once (time to success); ranking
    never changes the iterates, only which of them is offered as the best so far."""
    model = _EmbeddedModel()
    z0, goal = torch.zeros(6), torch.tensor([0.3, 0.2, 0.0, 0.0, 0.0, 0.0])
    quick = _CapturingGrasp(model, H, settings=GraspSettings(chains=4, tolerance=1e-6), seed=0)
    plan = quick.plan(z0, goal)
    assert plan.iterations == 0 and float((plan.states[-1] - goal).norm()) < 1e-3
    slow = _CapturingGrasp(model, H, settings=GraspSettings(chains=4, tolerance=1e-6, rank_every=0), seed=0)
    assert slow.plan(z0, goal, budget=Budget(max_iterations=50)).iterations >= 1
    # tolerance 0 turns the early exit off, even for a plan of cost 0: iteration counts repeat
    exact = _CapturingGrasp(model, H, settings=GraspSettings(chains=4), seed=0)
    capped = exact.plan(z0, goal, budget=Budget(max_iterations=3))
    assert capped.iterations == 3 and capped.cost < 1e-6

    def iterates(rank_every):
        planner = _CapturingGrasp(model, H, settings=GraspSettings(chains=4, sync_every=4, rank_every=rank_every), seed=3)
        planner.plan(z0, goal, budget=Budget(max_iterations=9))
        return planner.iterates[0].detach(), planner.iterates[1].detach()
    for a, b in zip(iterates(0), iterates(3)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="rank_every"):
        GraspSettings(rank_every=-1).validate()


def test_lbfgs_minimises_a_curved_valley_and_never_returns_a_point_where_f_is_not_finite():
    rosenbrock = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    x = minimise(rosenbrock, torch.tensor([-1.2, 1.0], dtype=torch.float64), steps=200)
    assert torch.allclose(x, torch.ones(2, dtype=torch.float64), atol=1e-6)
    # f is NaN beyond x = 0.5, its minimum beyond it: the search stops short, finite.
    cliff = lambda x: torch.where(x[0] < 0.5, (x[0] - 2) ** 2, torch.tensor(math.nan, dtype=x.dtype))
    x = minimise(cliff, torch.tensor([0.0]), steps=50)
    assert 0.0 < float(x[0]) < 0.5
    start = torch.tensor([1.0])
    assert torch.equal(minimise(cliff, start, steps=50), start)     # NaN at the start: stays


def test_lbfgs_stops_once_f_has_fallen_to_the_reduction_asked_for():
    """A search whose answer only has to be close (a route's end) stops early, and still gets
    there: f at most ``reduction`` times f(x0), with fewer evaluations than the full search."""
    calls = []
    def rosenbrock(x):
        calls.append(1)
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    minimise(rosenbrock, x0, steps=200)
    full = len(calls)
    calls.clear()
    x = minimise(rosenbrock, x0, steps=200, reduction=1e-2)
    assert len(calls) < full, (len(calls), full)
    assert float(rosenbrock(x)) <= 1e-2 * float(rosenbrock(x0))


def test_grasp_searches_the_latent_nearest_a_joint_goal_for_its_chains_to_end_at():
    """With a joint goal and no goal latent, the chains' routes end at a latent whose decoded
    joints are the goal, found from z0."""
    model = load_world_model({"name": "learned", "env": "wall_door", "horizon": 50})
    planner = make_planner("grasp", model, 20, {"chains": 4})
    z0 = torch.zeros(model.latent_dim)
    goal = torch.tensor([0.4, 0.3])
    planner._context = CostContext(model, None)
    end = planner._latent_near_goal(z0, Goal(None, goal))
    with torch.no_grad():
        reached = decode_joints(model, end[None])[0]
    assert torch.allclose(reached, goal, atol=1e-3), reached
