"""GRASP: Gradient RelAxed Stochastic Planner (Psenka et al., arXiv:2602.00475).

Variables: actions a_0..a_{H-1} and virtual states s_1..s_{H-1}; s_0 = z0 is fixed. With the
one-step predictions F_t = F(sg(s_t), a_t), each iteration minimises, for C chains at once,

    L = sum_{t<H-1} ||F_t - s_{t+1}||^2  +  J(s_0, F_0, .., F_{H-1}; a)  +  gamma * sum_t G(F_t)

where sg is stop-gradient: the model is only ever differentiated through its *action* input, and
a virtual state gets gradient only as the target of the step before it. J is the task cost every
planner ranks by (``costs.Cost``), evaluated on the predictions: each F_t stands where the
rollout's s_{t+1} would. G is the per-step goal distance (||F_t - g||^2 towards a goal latent g,
and/or the joint goal's through ``decode_state``) and gamma = ``goal_weight``: a dense pull
towards the goal, GRASP's own. With the default cost J = ||F_{H-1} - g||^2 + running_weight *
mean_t ||F_t - g||^2 (+ effort), its first part is the paper's last residual to the pinned end
s_H = g, so with ``running_weight`` 0 this is the paper's loss; ``running_weight`` adds
running_weight / H to gamma as the weight of every step's goal distance, exactly as it weighs the
rollouts that rank the chains. A goal given only as joint positions has no latent end: the chains'
straight lines end at the latent nearest z0 that decodes to the goal, and J's joint terms pull the
last prediction to the goal. All H one-step
predictions of all C chains are ONE batched model call. After each Adam step, Gaussian noise is
added to the virtual states (exploration). Every ``sync_every`` iterations, ``sync_steps``
gradient steps on the actions through the full serial rollout pull the actions back to a plan
that the model really executes ("sync"; each step the best of ``sync_search`` sizes, per chain);
those rollouts also rank the chains, as do rollouts before iteration 0 and every ``rank_every``
iterations, and the returned plan is the chain whose true rollout costs least. The fresh chains
start on routes from nearly straight to wide detours (``route_spread``): the iterations refine a
route's shape, they do not change it from one side of an obstacle to the other. With
``start_samples``, some start instead from the best of random action sequences, ranked by their
true rollouts.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
import math
from dataclasses import dataclass
from typing import Optional

import torch

from .adam import Adam
from .adjoint import ADJOINT_MAX_LATENT, rollout_gradient
from .base import GRADIENT_STEP_COST, Best, Deadline, Plan, Planner, PlannerSettings, WarmStart
from .noise import coloured_noise
from .costs import Cost, CostContext, Goal
from .lbfgs import minimise
from .rollout import model_step


def grasp_loss_terms(model, states: torch.Tensor, actions: torch.Tensor, goal: torch.Tensor,
                     sample: bool = False, generator: Optional[torch.Generator] = None):
    """The paper's two loss terms per chain and step (the default cost, end pinned at s_H = g),
    from ONE batched model call; what the iteration-cost benchmark times.

    states [C, H+1, D] (s_0 .. s_H), actions [C, H, A], goal [D] ->
    (||F(sg(s_t), a_t) - s_{t+1}||^2, ||F(sg(s_t), a_t) - g||^2), each [C, H].
    """
    predicted = model_step(model, states[:, :-1].detach(), actions, sample, generator)
    return (predicted - states[:, 1:]).pow(2).sum(-1), (predicted - goal).pow(2).sum(-1)


def grasp_loss(model, cost: Cost, visited: torch.Tensor, actions: torch.Tensor, goal: Goal,
               context: CostContext, goal_weight: float, sample: bool = False,
               generator: Optional[torch.Generator] = None):
    """L of the module docstring, summed over chains, from ONE batched model call.

    visited [C, H, D]: s_0 and the virtual states s_1..s_{H-1}; actions [C, H, A] ->
    (L, residual [C, H-1], task cost J [C], goal distances G [C, H], predictions [C, H, D]).
    """
    predicted = model_step(model, visited.detach(), actions, sample, generator)
    residual = (predicted[:, :-1] - visited[:, 1:]).pow(2).sum(-1)
    predictions = torch.cat([visited[:, :1].detach(), predicted], dim=1)       # s_0, F_0..F_{H-1}
    task = cost(predictions, actions, goal, context)
    to_goal = cost.goal_steps(predictions, goal, context)
    loss = residual.sum() + task.sum() + goal_weight * to_goal.sum()
    return loss, residual, task, to_goal, predicted


INIT_ACTIONS = ("inverse", "zero")
SYNC_GRADIENTS = ("auto", "adjoint", "backprop")
WARM_STATES = ("auto", "virtual", "rollout", "reset")


@dataclass
class GraspSettings(PlannerSettings):
    iterations: int = 200
    """Iteration cap when the budget names none."""
    chains: int = 48
    """C: independent chains optimised in parallel as one batch (a batch of the analytic model
    costs about as much as one chain on a CPU: the time is in dispatching the ops)."""
    lr_actions: float = 0.1
    """Adam learning rate of the actions."""
    lr_states: float = 0.25
    """Adam learning rate of the virtual states, in step units (see ``state_noise``)."""
    goal_weight: float = 0.005
    """gamma: weight of the dense goal term sum_t ||F(s_t, a_t) - g||^2 (GRASP's own; the task
    cost's running_weight adds running_weight / H to it)."""
    state_noise: float = 0.5
    """sigma: std of the Gaussian noise added to the virtual states after each step, in step units:
    multiples of the model's one-step displacement at z0 (RMS per latent dimension, random actions),
    so one setting carries over between models, latent sizes and horizons."""
    noise_decay: float = 0.99
    """sigma is multiplied by this after every iteration (1 keeps it constant)."""
    warmup_iterations: int = 0
    """Noise-free iterations at the start."""
    sync_every: int = 10
    """K: iterations between syncs (0 disables sync)."""
    sync_steps: int = 1
    """J: gradient steps on the actions through the full rollout at each sync."""
    sync_lr: float = 6.0
    """Step size of those plain gradient steps (the smallest one tried, with ``sync_search``)."""
    sync_search: int = 4
    """Step sizes each sync step tries: ``sync_lr * 4^k`` for k < sync_search, in one batched
    rollout; each chain takes the step whose true rollout costs least, or none when no step
    improves it. The full rollout's gradient has no natural scale (it grows with the horizon and
    the latent's units): one fixed step is too short to close the last 0.1-0.2 m of a detour at
    H=100 and throws a chain off its route elsewhere. 0: one plain step of ``sync_lr``, whatever
    it does to the chain."""
    sync_gradient: str = "auto"
    """How a sync step gets the gradient through the full rollout: "backprop" (autograd back
    through the H steps), "adjoint" (the rollout without a gradient, then every step's Jacobian
    in one batched call and the adjoint recurrence: ``planning.adjoint``), or "auto": the adjoint
    for a latent of at most ``ADJOINT_MAX_LATENT`` values, where it is the faster. The two agree
    to float rounding, not to the bit. Sampled dynamics (``sample_dynamics``) always backprop
    through the rollout they sampled."""
    rank_every: int = 5
    """Also before iteration 0 and every this many iterations (0: never), the chains' true
    rollouts are ranked without a gradient step: the best-so-far stays current between syncs, and
    a chain whose initial route already works is found at once (its actions follow its route).
    Costs one serial rollout each; a control loop, which ranks every chain at the end of a cycle
    anyway, can turn it off."""
    max_syncs: int = -1
    """Syncs per plan at most (-1: no cap). Under a wall-clock budget the last syncs that no
    longer fit are skipped (``Plan.syncs`` counts those run); a replay caps a cycle at its count."""
    grad_clip: float = 0.0
    """Clip each chain's action-gradient norm to this (0 disables)."""
    init_spread: float = 0.8
    """Chain diversity: chain c > 0 starts from the straight line bent by sin(pi t / H) * r_c,
    chain 0 from the straight line itself. r_c is Gaussian with the shape of the model's one-step
    displacements and E||r_c||^2 = init_spread^2 * A (A action dims): N(0, init_spread^2 I) where
    the latent is the state, and no bends off the reachable set in a larger latent space."""
    route_spread: float = 2.0
    """Width of the widest fresh route, in horizon reaches (H one-step displacements: how far the
    horizon can go). The bends of the wide routes grow log-evenly from ``init_spread`` to
    ``route_spread`` reaches and gain sine modes as they grow, so one batch offers nearly
    straight routes and wide detours at once. A route out of a dead end and round an obstacle
    (the U-maze) is one the iterations cannot reach from a nearly straight one: a virtual state
    moves only towards its prediction and by noise, never a whole route sideways
    (``docs/notes/u_maze.md``). 0: every fresh chain bent by ``init_spread`` along one half sine."""
    wide_routes: float = 0.75
    """Fraction of the fresh chains (1..C-1) on wide routes; the others bend by ``init_spread``
    along one half sine, the routes a plan through a door usually finds at iteration 0."""
    route_modes: int = 3
    """Half-sine modes of the widest route's bend (mode m scaled 1/m; modes above 1 grow in along
    the ladder of widths): 1 bends a route one way, 2 and 3 let it leave in one direction and
    arrive from another."""
    arrivals: int = 1
    """Paces of the fresh chains' routes: chain c reaches its end at step H / 2^(c mod arrivals)
    and holds there (1: every route takes the whole horizon). A route's pace is what gradient
    steps move least (every virtual state would have to move at once), so within the few
    iterations of a control cycle the paces on offer are those the chains start with; the
    ranking by true rollout, with a running goal cost, then prefers the fastest that works."""
    init_actions: str = "inverse"
    """The actions of the chains that do not start from the warm start. "inverse": those that
    would move along the chain's route under the model's local linear response at z0 (least
    squares over the step-unit probe), so that its true rollout follows its route from the first
    iteration: with the few iterations per cycle a busy CPU leaves, the fresh chains then still
    offer routes, not standstills. "zero": hold still, all left to the optimiser."""
    warm_states: str = "auto"
    """Where the warm chains' virtual states start: "virtual", the previous plan's optimised
    virtual states, shifted; "rollout", the true rollout of the warm start's actions from this
    cycle's z0 (one more rollout of H steps), which is also the warm start's virtual path when it
    competes in the final ranking; "reset": the chains on the virtual states, the warm start
    competing with its true rollout, so an unchanged warm start that wins carries that path, not
    its shifted virtual one; "auto": rollout where ``sync_every`` is 0, else virtual.
    Without syncs nothing else pulls the virtual states back to what the actions do: shifted
    cycle after cycle they drift from it, the residual term drags the warm chains' actions
    towards a path the model does not follow, the unchanged warm start beats them, and a
    receding-horizon loop replays one old plan (docs/notes/warm_states.md). Chains started on
    the rollout have no residual to follow: with few iterations a cycle (1-4) their first Adam
    steps move every action by the step size along the goal terms' gradient, and the arm reached
    fewer goals with "rollout" than with "virtual" or "reset" (docs/notes/warm_states.md)."""
    warm_chains: float = 0.25
    """Fraction of chains that start from the warm start; the rest start fresh every cycle, so a
    receding-horizon loop keeps exploring other routes (e.g. out of a dead end against a wall;
    alternatives tried: ``docs/notes/planner_experiments.md``)."""
    start_samples: int = 0
    """Random action sequences drawn around the warm start (else zero) every plan and ranked by
    their true rollouts (one batched rollout); the best become fresh chains (``start_chains``),
    their rollouts their virtual states, and every sample is a candidate plan. Where the
    model's action gradients mislead (a learned model of a robot with momentum), the chains then
    start from sequences the model really executes well, and the iterations refine those.
    0: none."""
    start_chains: float = 0.5
    """Fraction of the fresh chains that start from the best samples (the last ones)."""
    start_std: float = 0.5
    """Std of the samples, in half action ranges."""
    start_colour: float = 0.0
    """Colour of the samples' noise over time: power spectrum ~ 1/f^start_colour (0: white, as
    before this setting; 2: red, slowly varying, so a sample drives the robot somewhere instead
    of jittering in place; ``grasp_ros.planning.noise``)."""
    start_std_spread: float = 1.0
    """The samples' std runs log-evenly over the samples from ``start_std`` down to
    ``start_std / start_std_spread`` (1: all at ``start_std``, the same draws as before this
    setting). Wide samples find other routes; near ones are local refinements of the warm start,
    each ranked by its true rollout, which the gradient iterations do not give where a learned
    model's action gradients mislead: on an outside arm with momentum the wide red samples at
    ``start_std`` 0.5 won 1 cycle in 2385 (docs/notes/warm_states.md), so near the goal the plan
    stopped improving (config/arm_controller.yaml sets 10)."""
    max_start_samples: int = -1
    """Start samples per plan at most (-1: no cap). Under a wall-clock budget a plan draws only
    as many as fit, at the slowest recent pace a sample, before the warm start's rollout (where
    it runs), one iteration and the final ranking (``Plan.start_samples`` counts them): their
    batched rollout cannot stop half-way, and on a busy CPU all of them made one cycle in ten
    late. A replay caps a cycle at its count."""
    trace: bool = False
    """Record loss terms, gradient norms and residual every iteration (for plots; slow)."""

    def validate(self) -> None:
        super().validate()
        if (self.chains < 1 or self.sync_every < 0 or self.sync_steps < 0 or self.warmup_iterations < 0
                or self.rank_every < 0 or self.sync_search < 0):
            raise ValueError("chains must be >= 1; sync_every, sync_steps, sync_search, "
                             "warmup_iterations, rank_every >= 0")
        if (self.start_samples < 0 or not 0 <= self.start_chains <= 1 or self.start_std < 0
                or self.start_colour < 0):
            raise ValueError("start_samples, start_std and start_colour must be >= 0, start_chains in [0, 1]")
        if not self.start_std_spread >= 1:
            raise ValueError(f"start_std_spread must be >= 1, got {self.start_std_spread}")
        if self.route_spread < 0 or self.route_modes < 1:
            raise ValueError("route_spread must be >= 0 and route_modes >= 1")
        if not 0 <= self.wide_routes <= 1:
            raise ValueError(f"wide_routes must be in [0, 1], got {self.wide_routes}")
        if self.max_syncs < -1 or self.max_start_samples < -1:
            raise ValueError("max_syncs and max_start_samples must be >= 0, or -1 for no cap")
        if min(self.lr_actions, self.lr_states, self.sync_lr) < 0 or self.goal_weight < 0:
            raise ValueError("learning rates and goal_weight must be >= 0")
        if self.init_spread < 0:
            raise ValueError("init_spread must be >= 0")
        if self.arrivals < 1:
            raise ValueError(f"arrivals must be >= 1, got {self.arrivals}")
        if self.state_noise < 0 or not 0 < self.noise_decay <= 1 or not 0 <= self.warm_chains <= 1:
            raise ValueError("state_noise >= 0, 0 < noise_decay <= 1, 0 <= warm_chains <= 1")
        if self.sync_gradient not in SYNC_GRADIENTS:
            raise ValueError(f"sync_gradient must be one of {', '.join(SYNC_GRADIENTS)}, got {self.sync_gradient!r}")
        if self.warm_states not in WARM_STATES:
            raise ValueError(f"warm_states must be one of {', '.join(WARM_STATES)}, got {self.warm_states!r}")
        if self.init_actions not in INIT_ACTIONS:
            raise ValueError(f"init_actions must be one of {', '.join(INIT_ACTIONS)}, got {self.init_actions!r}")


class GraspPlanner(Planner):
    name = "grasp"
    Settings = GraspSettings
    PROBE_ACTIONS = 32
    """Random actions of the step-unit probe (``_one_step_moves``)."""
    GOAL_SEARCH_STEPS = 50
    """L-BFGS steps of ``_latent_near_goal`` at most."""
    GOAL_SEARCH_REDUCTION = 1e-4
    """... and it stops once the goal distance has fallen to this fraction of z0's (the decoded
    joints 1% of the way from the goal): the end is only where the fresh routes head, and the
    search runs every cycle, where all 50 steps took half a learned arm's fixed cost a plan
    (docs/notes/arm.md)."""

    def __init__(self, *args, **kwargs):
        # Recent measured costs of a sync, the final rollout, a start sample and the warm start's
        # rollout (a shared CPU makes them vary).
        self._seconds = {name: deque(maxlen=8) for name in ("sync", "final", "sample", "warm")}
        super().__init__(*args, **kwargs)

    def _solve(self, z0, goal: Goal, warm: Optional[WarmStart], deadline: Deadline) -> Plan:
        cfg: GraspSettings = self.settings
        H, C = self.horizon, cfg.chains
        step, moves, inverse = self._one_step_moves(z0)
        if warm is not None and goal.latent is not None:
            warm = warm.retargeted(goal.latent)
        end = goal.latent if goal.latent is not None else self._latent_near_goal(z0, goal)
        actions, states = self._initial_iterates(z0, end, warm, moves / step, inverse, step)
        best, trace = self._best(deadline), ([] if cfg.trace else None)
        warm_rollout = warm is not None and self._warm_from_rollout(cfg)
        drawn = self._start_sample_count(deadline, warm_rollout)
        start_calls = self._sampled_starts(z0, goal, warm, actions, states, best, drawn, deadline) if drawn else 0
        warm_path = None     # the warm start's virtual path in the final ranking (None: its own)
        if warm_rollout:
            with self._timed("warm", deadline):
                warm_path = self._rollout_warm(z0, goal, warm, states, best)
            start_calls += H
        actions.requires_grad_(True)
        states.requires_grad_(True)
        optimiser = Adam([(actions, cfg.lr_actions), (states, cfg.lr_states * step)])
        first = z0.expand(C, 1, -1)
        # The virtual end, for the returned plan and the warm start: the goal latent, else the
        # last prediction.
        last = None if goal.latent is None else goal.latent.expand(C, 1, -1)
        sigma, calls, it, syncs = cfg.state_noise, self.PROBE_ACTIONS + start_calls, 0, 0
        synced_at = -1      # the iteration count after the last sync (which ranked the chains)
        # Syncs and the final rollout are serial H-step rollouts that cannot stop half-way: under
        # a wall-clock budget, start them only when the slowest of their recent costs still fits.
        while not deadline.done(it, reserve=self._reserve("final")) and not self._converged(best):
            if cfg.rank_every and it % cfg.rank_every == 0 and it != synced_at:
                calls += self._rank(z0, goal, actions, states, last, best)
                if self._converged(best):
                    break
            visited = torch.cat([first, states], dim=1)                          # [C, H, D]
            loss, residual, task, to_goal, predicted = grasp_loss(
                self.model, self.cost, visited, actions, goal, self._context, cfg.goal_weight,
                cfg.sample_dynamics, self.generator)
            virtual_end = predicted[:, -1:].detach() if last is None else last
            full = torch.cat([visited.detach(), virtual_end], dim=1)             # [C, H+1, D]
            optimiser.zero_grad()
            loss.backward()
            if cfg.grad_clip > 0:
                norms = actions.grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                actions.grad.mul_((cfg.grad_clip / norms).clamp(max=1.0).view(C, 1, 1))
            if trace is not None:
                trace.append(self._trace_row(it, residual, task, to_goal, actions, states, sigma))
            optimiser.step()
            calls += C * H
            it += 1
            with torch.no_grad():
                actions.copy_(self._clamp(actions))
                if it > cfg.warmup_iterations and sigma > 0 and H > 1:
                    states.add_(sigma * self._state_noise(states.shape, moves))
                    sigma *= cfg.noise_decay
            # Once a sync no longer fits, none later in this plan does (no new cost is measured
            # and time only runs out): the count run says which ran, for a replay to repeat.
            if (cfg.sync_every and it % cfg.sync_every == 0
                    and (cfg.max_syncs < 0 or syncs < cfg.max_syncs)
                    and deadline.allows(self._reserve("sync") + self._reserve("final"))):
                with self._timed("sync", deadline):
                    calls += self._sync(z0, goal, actions, full.detach(), best)
                syncs, synced_at = syncs + 1, it
        with torch.no_grad(), self._timed("final", deadline):
            visited = torch.cat([first, states], dim=1)
            if last is None:
                last = model_step(self.model, visited[:, -1:], actions[:, -1:])
                calls += C
            full = torch.cat([visited, last], dim=1)
            candidates, virtual = actions, full
            if warm is not None:   # the previous plan as it stands competes too: never worse
                candidates = torch.cat([actions, warm.actions[None]])
                path = self._warm_states(z0, goal, warm) if warm_path is None else warm_path
                virtual = torch.cat([full, path[None]])
            real = self._rollout(z0, candidates)
            best.offer(candidates, real, self._cost(real, goal, candidates), virtual)
            calls += candidates.shape[0] * H
            # (no finite plan: the residual is meaningless, and _finish raises PlanningError)
            predicted = model_step(self.model, best.virtual_states[:-1], best.actions)
            residual = float((predicted - best.virtual_states[1:]).pow(2).sum(-1).mean())
        return self._finish(best, z0, goal, it, calls + H,     # + H: the residual's model_step
                            dynamics_residual=residual, trace=trace, syncs=syncs, start_samples=drawn)

    @contextlib.contextmanager
    def _timed(self, what: str, deadline: Deadline):
        # On the planner's clock: finished device work, without an observer's time.
        start = deadline.elapsed()
        yield
        self._seconds[what].append(deadline.elapsed() - start)

    @contextlib.contextmanager
    def _warming_up(self):
        """A sync within the warm-up's few iterations, whatever ``sync_every`` says, so that the
        warm-up reaches the sync path and stays short (it has no deadline: a large sync_every
        would otherwise make configure run that many iterations)."""
        settings = self.settings
        if settings.sync_every > self.WARM_UP_ITERATIONS:
            self.settings = dataclasses.replace(settings, sync_every=self.WARM_UP_ITERATIONS)
        try:
            yield
        finally:
            self.settings = settings

    def _forget_timings(self) -> None:
        super()._forget_timings()
        for seconds in self._seconds.values():
            seconds.clear()

    def _reserve(self, what: str) -> float:
        """Seconds to keep for a sync / the final rollout (or a start sample's pace): the worst
        of the recent ones."""
        return max(self._seconds[what], default=0.0)

    def _start_sample_count(self, deadline: Deadline, warm_rollout: bool) -> int:
        """Start samples to draw now: ``start_samples`` (capped by ``max_start_samples``), or
        under a wall-clock budget as many as fit at the slowest recent pace a sample while what
        follows them still fits: the warm start's rollout (``warm_rollout``), one iteration and
        the final ranking, each at its slowest recent cost."""
        cfg = self.settings
        count = cfg.start_samples if cfg.max_start_samples < 0 else min(cfg.start_samples, cfg.max_start_samples)
        pace = self._reserve("sample")
        if count == 0 or pace == 0:
            return count
        warm = self._reserve("warm") if warm_rollout else 0.0
        spare = deadline.left() - warm - deadline.slowest_iteration - self._reserve("final")
        return count if spare >= count * pace else max(0, int(spare / pace))

    def _warm_states(self, z0: torch.Tensor, goal: Goal, warm: WarmStart) -> torch.Tensor:
        """The warm start's virtual states [H+1, D] with this cycle's fixed ends (the end: the
        goal latent, else the warm start's own)."""
        H = self.horizon
        if warm.states is None:
            end = z0 if goal.latent is None else goal.latent
            return torch.cat([z0[None], z0 + torch.zeros(H - 1, self.latent_dim, device=self.device),
                              end[None]])
        end = warm.states[H] if goal.latent is None else goal.latent
        return torch.cat([z0[None], warm.states[1:H], end[None]])

    def _latent_near_goal(self, z0: torch.Tensor, goal: Goal) -> torch.Tensor:
        """Where the chains' straight lines end when the goal has no latent: the latent nearest
        z0 (L-BFGS from z0) that the goal terms score best, e.g. one whose decoded joints are the
        joint goal. Only a start: the stop-gradient leaves the virtual states no other pull
        towards the goal, and the loss itself judges the predictions, not this latent."""
        def distance(z):
            return self.cost.goal_steps(torch.stack([z0, z])[None], goal, self._context).sum()
        return minimise(distance, z0, self.GOAL_SEARCH_STEPS, reduction=self.GOAL_SEARCH_REDUCTION)

    @torch.no_grad()
    def _one_step_moves(self, z0: torch.Tensor):
        """The model's one-step displacements F(z0, a) - z0 for random actions inside the bounds,
        centred, [P, D], their RMS per latent dimension (the "step unit"), and the local linear
        inverse: (mean displacement [D], mean action [A], map [D, A]) with a ~= a_mean + (d -
        d_mean) @ map, least squares over the probe (None where the probe did not move, or
        ``init_actions`` does not use it)."""
        a = self.low + torch.rand(self.PROBE_ACTIONS, self.action_dim, generator=self.generator,
                                  device=self.device) * (self.high - self.low)
        moved = model_step(self.model, z0.expand(self.PROBE_ACTIONS, -1), a)
        moves = moved - z0
        scale = float(moves.pow(2).mean().sqrt())
        if not (math.isfinite(scale) and scale > 0):
            # no usable measurement: unit noise per dimension, as from an identity "displacement"
            return 1.0, torch.eye(self.latent_dim, device=self.device) * math.sqrt(self.latent_dim), None
        centred = moves - moves.mean(0)
        if self.settings.init_actions != "inverse":
            return scale, centred, None
        # pinv (SVD) copes with a latent that moves in fewer directions than it has, on any device
        to_action = torch.linalg.pinv(centred, rtol=1e-5) @ (a - a.mean(0))
        return scale, centred, (moves.mean(0), a.mean(0), to_action)

    def _state_noise(self, shape, moves: torch.Tensor) -> torch.Tensor:
        """Gaussian noise [..., D] with the covariance of the one-step displacements ``moves``.

        Shaped like what one action can do: in a learned latent space, where the reachable states
        span a few directions of many, isotropic noise would push the virtual states off that set,
        to inputs the dynamics network never saw (and whose action gradients are meaningless)."""
        xi = torch.randn(*shape[:-1], moves.shape[0], generator=self.generator, device=self.device)
        return xi @ moves / math.sqrt(moves.shape[0])

    def _initial_iterates(self, z0, end: Optional[torch.Tensor], warm: Optional[WarmStart],
                          directions: torch.Tensor, inverse=None, step: float = 1.0):
        """Actions [C, H, A] and virtual states s_1..s_{H-1} [C, H-1, D]: the straight line to
        ``end`` (None: z0 throughout), bent; the actions by ``init_actions``, through
        ``inverse`` (``_one_step_moves``); the first chains from the warm start.

        ``directions`` [P, D]: one-step displacements in step units; the chains' bends follow
        them, so that in a latent space larger than the state they stay on the reachable set.
        ``step``: the step unit in latent units (the wide routes' widths are in horizon reaches)."""
        cfg, H, C = self.settings, self.horizon, self.settings.chains
        pace = torch.arange(C, device=self.device).remainder(cfg.arrivals).exp2().view(C, 1, 1)
        t = torch.arange(1, H, device=self.device, dtype=torch.float32).view(1, H - 1, 1)
        frac = (t * pace / H).clamp(max=1.0)                        # [C, H-1, 1]: 1 once arrived
        end = z0 if end is None else end
        states = (z0 + frac * (end - z0)).expand(C, H - 1, self.latent_dim).clone()
        # Expected squared norm spread^2 * A: N(0, spread^2 I) when D == A.
        unit = math.sqrt(self.action_dim / self.latent_dim)
        wide = round(cfg.wide_routes * (C - 1)) if cfg.route_spread > 0 else 0
        narrow = C - 1 - wide
        if cfg.init_spread > 0 and narrow > 0:
            bend = cfg.init_spread * unit * self._state_noise((narrow, 1, self.latent_dim), directions)
            states[1:narrow + 1] += torch.sin(math.pi * frac[1:narrow + 1]) * bend
        if wide > 0:
            states[narrow + 1:] += self._wide_bends(frac[narrow + 1:], cfg.init_spread * unit,
                                                    cfg.route_spread * H * step * unit, directions)
        actions = torch.zeros(C, H, self.action_dim, device=self.device)
        if inverse is not None:
            d_mean, a_mean, to_action = inverse
            route = torch.cat([z0.expand(C, 1, -1), states, end.expand(C, 1, -1)], dim=1)
            guess = a_mean + (route[:, 1:] - route[:, :-1] - d_mean) @ to_action
            actions = torch.where(torch.isfinite(guess).all(), self._clamp(guess), actions)
        if warm is not None:
            n = self._warm_chain_count()
            actions[:n] = warm.actions
            if warm.states is not None:
                states[:n] = warm.states[1:H]
        return actions, states

    def _wide_bends(self, frac: torch.Tensor, smallest: float, widest: float,
                    directions: torch.Tensor) -> torch.Tensor:
        """Bends [N, H-1, D] of N routes at ``frac`` [N, H-1, 1] (their progress, 0..1). Route n
        stands at u = n / (N-1) on a ladder: its spread runs log-evenly from ``smallest`` to
        ``widest`` (latent units; linearly when smallest is 0); mode 1 adds sin(pi frac) * spread,
        mode m > 1 of ``route_modes`` u * sin(m pi frac) * spread / m, each along a random
        one-step displacement direction."""
        n, modes = frac.shape[0], self.settings.route_modes
        u = torch.linspace(0.0, 1.0, n, device=self.device).view(n, 1, 1)
        spread = smallest * (widest / smallest) ** u if smallest > 0 else widest * u
        m = torch.arange(1, modes + 1, device=self.device, dtype=torch.float32).view(1, modes, 1, 1)
        shapes = torch.sin(math.pi * m * frac[:, None]) / m                  # [N, M, H-1, 1]
        shapes = shapes * torch.where(m > 1, u[:, None], torch.ones_like(u[:, None]))  # 1 mode .. all
        directions_nm = self._state_noise((n, modes, 1, self.latent_dim), directions)
        return spread * (shapes * directions_nm).sum(1)

    def _warm_chain_count(self) -> int:
        """Chains that start from a warm start (the first ones): at least one."""
        return max(1, round(self.settings.warm_chains * self.settings.chains))

    @torch.no_grad()
    def _sampled_starts(self, z0, goal, warm, actions, states, best: Best, count: int,
                        deadline: Deadline) -> int:
        """The last ``start_chains`` of the fresh chains start from the best of ``count``
        random action sequences (around the warm start, else zero; std ``start_std`` of half the
        action range), ranked by their true rollouts, which become their virtual states; every
        sample is offered to ``best``. Returns model calls."""
        cfg, (C, H, A) = self.settings, actions.shape
        began = deadline.elapsed()
        warm_n = self._warm_chain_count() if warm is not None else 0
        k = min(round(cfg.start_chains * (C - warm_n)), count)
        centre = warm.actions if warm is not None else torch.zeros(H, A, device=self.device)
        noise = coloured_noise((count, H, A), cfg.start_colour, self.generator, self.device)
        std = cfg.start_std * (self.high - self.low) / 2                        # [A]
        if cfg.start_std_spread > 1:     # sample n: start_std / spread^(n / (N-1)), log-even
            std = std * torch.logspace(0.0, -math.log10(cfg.start_std_spread), count,
                                       device=self.device).view(-1, 1, 1)
        samples = self._clamp(centre + std * noise)
        real = self._rollout(z0, samples)
        cost = self._cost(real, goal, samples)
        end = real[:, -1:] if goal.latent is None else goal.latent.expand(samples.shape[0], 1, -1)
        best.offer(samples, real, cost, torch.cat([real[:, :-1], end], dim=1))
        if k > 0:
            cost = torch.where(torch.isfinite(cost), cost, torch.full_like(cost, math.inf))
            pick = torch.topk(cost, k, largest=False).indices
            actions[C - k:] = samples[pick]
            states[C - k:] = real[pick, 1:H]
        self._seconds["sample"].append((deadline.elapsed() - began) / count)
        return count * H

    @staticmethod
    def _warm_from_rollout(settings: GraspSettings) -> bool:
        """Whether the warm start is rolled out this cycle: its path in the final ranking, and
        with "rollout" the warm chains' start (``warm_states``)."""
        how = settings.warm_states
        return how in ("rollout", "reset") or (how == "auto" and settings.sync_every == 0)

    @torch.no_grad()
    def _rollout_warm(self, z0, goal, warm: WarmStart, states: torch.Tensor, best: Best) -> torch.Tensor:
        """The warm start's true rollout from z0 (H model calls) as its virtual path [H+1, D]
        (the end: the goal latent, else the rollout's own), written into the warm chains'
        virtual states; with ``warm_states`` "reset" offered to ``best`` instead, before any
        chain: the first of equal plans is kept, so the unchanged warm start winning keeps this
        path, not the copy of its virtual states that a warm chain starts with."""
        H = self.horizon
        real = self._rollout(z0, warm.actions[None])[0]                        # [H+1, D]
        end = real[-1:] if goal.latent is None else goal.latent[None]
        path = torch.cat([real[:-1], end])
        if self.settings.warm_states == "reset":
            cost = self._cost(real[None], goal, warm.actions[None])
            best.offer(warm.actions[None], real[None], cost, path[None])
        else:
            states[:self._warm_chain_count()] = real[1:H]
        return path

    @torch.no_grad()
    def _rank(self, z0, goal, actions, states, last, best: Best) -> int:
        """Offer every chain's true rollout to ``best`` as the chains stand; returns model calls.
        The virtual end: the goal latent, else the rollout's own end."""
        real = self._rollout(z0, actions)
        end = real[:, -1:] if last is None else last
        virtual = torch.cat([z0.expand(actions.shape[0], 1, -1), states, end], dim=1)
        best.offer(actions, real, self._cost(real, goal, actions), virtual)
        return actions.shape[0] * self.horizon

    def _sync(self, z0, goal, actions: torch.Tensor, virtual: torch.Tensor, best: Best) -> int:
        """J gradient steps on the actions through the full rollout, each of ``sync_lr`` or the
        best of ``sync_search`` sizes; returns model calls."""
        cfg, calls = self.settings, 0
        for j in range(cfg.sync_steps):
            real, cost, grad, rollout_calls = self._rollout_gradient(z0, goal, actions)
            if j == 0:
                best.offer(actions, real, cost, virtual)
            calls += rollout_calls
            with torch.no_grad():
                if cfg.sync_search:
                    calls += self._searched_step(z0, goal, actions, cost.detach(), grad, virtual, best)
                else:
                    actions.copy_(self._clamp(actions - cfg.sync_lr * grad))
        return calls

    def _rollout_gradient(self, z0, goal, actions: torch.Tensor):
        """The true rollout of ``actions``, its cost [C], the cost's gradient, as
        ``sync_gradient`` says, and the model calls made (the adjoint's Jacobians: a second
        batched call)."""
        calls = actions.shape[0] * self.horizon
        if self._syncs_by_adjoint(self.settings):
            real, cost, grad = rollout_gradient(self.model, z0, actions,
                                                lambda states, a: self._cost(states, goal, a))
            return real, cost, grad, 2 * calls
        real = self._rollout(z0, actions)
        cost = self._cost(real, goal, actions)
        (grad,) = torch.autograd.grad(cost.sum(), actions)
        return real, cost, grad, calls

    def _syncs_by_adjoint(self, settings: GraspSettings) -> bool:
        """Whether a sync takes its gradient by the adjoint (``sync_gradient``)."""
        how = settings.sync_gradient
        if how == "auto":
            how = "adjoint" if self.latent_dim <= ADJOINT_MAX_LATENT else "backprop"
        return how == "adjoint" and not settings.sample_dynamics

    def _largest_batched_call(self, settings: GraspSettings) -> tuple[int, str]:
        C, H = settings.chains, self.horizon
        calls = [(max(1, settings.sync_search) * C * H, f"{max(1, settings.sync_search)} sync step sizes x "
                                                         f"{C} chains x horizon {H}"),
                 (settings.start_samples * H, f"{settings.start_samples} start samples x horizon {H}"),
                 ((C + 1) * H, f"{C + 1} chains x horizon {H}"),
                 (C * H * GRADIENT_STEP_COST, f"an iteration of {C} chains x horizon {H}")]
        if settings.sync_every and self._syncs_by_adjoint(settings):
            calls.append((C * H * (GRADIENT_STEP_COST + 2 * self.latent_dim),
                          f"the adjoint's Jacobians of {C} chains x horizon {H} x latent {self.latent_dim}"))
        return max(calls)

    def _searched_step(self, z0, goal, actions, cost, grad, virtual, best: Best) -> int:
        """Each chain steps along -grad by the step size, of ``sync_search`` tried, whose true
        rollout costs least, or stays when none beats ``cost`` [C]; returns model calls."""
        K, (C, H, A) = self.settings.sync_search, actions.shape
        rates = self.settings.sync_lr * torch.pow(
            4.0, torch.arange(K, device=self.device, dtype=actions.dtype)).view(K, 1, 1, 1)
        trial = self._clamp(actions[None] - rates * grad[None]).reshape(K * C, H, A)
        real = self._rollout(z0, trial)
        trial_cost = self._cost(real, goal, trial)
        best.offer(trial, real, trial_cost, virtual.repeat(K, 1, 1))
        costs = torch.cat([cost[None], trial_cost.view(K, C)])                # [K+1, C]
        costs = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, math.inf))
        pick = costs.argmin(0)                                               # 0: no step
        chosen = torch.cat([actions[None], trial.view(K, C, H, A)])[pick, torch.arange(C, device=self.device)]
        actions.copy_(chosen)
        return K * C * H

    @staticmethod
    def _trace_row(it, residual, task, to_goal, actions, states, sigma) -> dict:
        residual, to_goal = residual.detach(), to_goal.detach()
        return {
            "iteration": it,
            "dynamics_loss": float(residual.sum(1).mean()),       # the free virtual states' residual
            "task_loss": float(task.detach().mean()),
            "goal_loss": float(to_goal.sum(1).mean()),
            "residual": float(residual.mean()) if residual.numel() else 0.0,
            "action_grad_norm": float(actions.grad.flatten(1).norm(dim=1).mean()),
            "state_grad_norm": float(states.grad.flatten(1).norm(dim=1).mean()) if states.grad is not None else 0.0,
            "sigma": sigma,
        }
