"""The task cost (grasp_ros/planning/costs.py): its terms by hand, the same cost in every planner
and inside GRASP's loss, joint-space goals, user terms behind allow_python, and the node's cost.*
parameters. Pure torch and seeded, except the node checks (real DDS, test_controller_node's rig).
"""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from grasp_ros.planning import Budget, Cost, CostContext, Goal, PLANNERS, make_planner
from grasp_ros.planning.costs import check_spec, task_cost
from grasp_ros.planning.grasp import grasp_loss, grasp_loss_terms
from grasp_ros.ros import params
from grasp_ros.sim import make_env
from grasp_ros.sim.analytic import AnalyticNavModel
from test_planners import REACH as OPEN_REACH, REACH_H as OPEN_H, _nearby_episode

NAMES = sorted(PLANNERS)
TERM_MODULE = "cost_term_marker"              # test/cost_term_marker.py
TERM = f"{TERM_MODULE}:last_x_from_half"


class JointHeadModel(nn.Module):
    """Latent D = 3, z' = z + 0.2 a B^T (A = 2), and a joint head q = z C^T (J = 2) that mixes
    the latent: a joint goal is reached only through decode_state."""

    latent_dim, action_dim, image_size, joint_dim = 3, 2, 0, 0

    def __init__(self):
        super().__init__()
        self.register_buffer("B", torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
        self.register_buffer("C", torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]]))
        self.register_buffer("action_low", -torch.ones(2))
        self.register_buffer("action_high", torch.ones(2))

    def predict(self, latent, action):
        return latent + 0.2 * action @ self.B.T

    def decode_state(self, latent):
        return latent @ self.C.T


class NoHeadModel(JointHeadModel):
    decode_state = None


def _context(model=None, previous=None):
    return CostContext(model if model is not None else JointHeadModel(), previous)


def _old_task_cost(states, goal, running_weight, actions, action_weight):
    """The cost every planner used before costs.py, as it was written then."""
    sq = (states[..., 1:, :] - goal).pow(2).sum(-1)
    cost = sq[..., -1] + running_weight * sq.mean(-1)
    if action_weight:
        cost = cost + action_weight * actions.pow(2).sum(-1).mean(-1)
    return cost


# -- each term by hand --------------------------------------------------------------------------

STATES = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 2.0]]])   # [1, H+1=3, D=3]
ACTIONS = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])                            # [1, H=2, A=2]


def test_latent_goal_terminal_and_running():
    goal = Goal(latent=torch.tensor([1.0, 1.0, 0.0]))
    # distances: s_1 -> 1, s_2 -> 4; terminal 4, running mean 2.5
    cost = Cost({}, running_weight=0.2)(STATES, ACTIONS, goal, _context())
    assert torch.allclose(cost, torch.tensor([4.0 + 0.2 * 2.5]))
    half = Cost({"latent_goal": 0.5}, running_weight=0.2)(STATES, ACTIONS, goal, _context())
    assert torch.allclose(half, 0.5 * cost)


def test_joint_goal_through_decode_state():
    # q = C s: s_1 -> (1, 0), s_2 -> (2, 0); goal (2, 1): distances 2, 1
    goal = Goal(joints=torch.tensor([2.0, 1.0]))
    cost = Cost({"joint_goal": 3.0}, running_weight=0.5)(STATES, ACTIONS, goal, _context())
    assert torch.allclose(cost, torch.tensor([3.0 * (1.0 + 0.5 * 1.5)]))
    both = Goal(latent=torch.tensor([1.0, 1.0, 0.0]), joints=torch.tensor([2.0, 1.0]))
    assert torch.allclose(Cost({"joint_goal": 3.0})(STATES, ACTIONS, both, _context()),
                          torch.tensor([4.0 + 3.0 * 1.0]))


def test_joint_goal_scales_give_each_value_its_unit():
    """A gripper in m beside joints in rad: unscaled, its error all but vanishes from the sum
    (an outside robot's audit: the gripper was not controlled). Each value's error is divided
    by its unit; the count must match decode_state's."""
    goal = Goal(joints=torch.tensor([2.0, 1.0]))        # errors: s_1 (1, 1), s_2 (0, 1)
    scaled = Cost({"joint_goal_scales": [1.0, 0.1]}, running_weight=0.5, model=JointHeadModel())
    # squared scaled errors: s_1 1 + 100, s_2 0 + 100; terminal 100, running 0.5 x 100.5
    assert torch.allclose(scaled(STATES, ACTIONS, goal, _context()), torch.tensor([100.0 + 0.5 * 100.5]))
    ones = Cost({"joint_goal_scales": [1.0, 1.0]}, running_weight=0.5, model=JointHeadModel())
    assert torch.equal(ones(STATES, ACTIONS, goal, _context()),
                       Cost({}, running_weight=0.5)(STATES, ACTIONS, goal, _context()))
    with pytest.raises(ValueError, match="joint_goal_scales .* give 3 values; the model's decode_state returns 2"):
        Cost({"joint_goal_scales": [1.0] * 3}, model=JointHeadModel())
    for bad in ([1.0, 0.0], [1.0, -1.0], [1e-20, 1.0], [1.0, 1e300]):
        with pytest.raises(ValueError, match=r"must be in \[1e-06, 1e\+06\]"):
            check_spec({"joint_goal_scales": bad})
        assert "must be in [1e-06, 1e+06]" in params.BY_NAME["cost.joint_goal_scales"].validate(bad)
    # The finest unit accepted keeps a plan's cost finite in float32 (1e-20 was accepted, and
    # every plan was NaN: an adversarial audit), errors of a few units included.
    finest = Cost({"joint_goal_scales": [1e-6, 1e-6]}, running_weight=1e6, model=JointHeadModel())
    assert torch.isfinite(finest(STATES * 10, ACTIONS, goal, _context())).all()
    values = {p.name: p.default for p in params.PARAMETERS}
    assert params.knobs_for("grasp", dict(values, **{"cost.joint_goal_scales": [1.0, 0.01]}))[0][
        "costs"]["joint_goal_scales"] == [1.0, 0.01]


def test_a_joint_goal_without_decode_state_is_a_clear_error():
    with pytest.raises(ValueError, match="no decode_state"):
        Cost({})(STATES, ACTIONS, Goal(joints=torch.zeros(2)), _context(NoHeadModel()))
    planner = make_planner("cem", NoHeadModel(), 4, {"iterations": 1, "samples": 4, "elites": 2})
    with pytest.raises(ValueError, match="no decode_state"):
        planner.plan(torch.zeros(3), None, joint_goal=torch.zeros(2))
    with pytest.raises(ValueError, match=r"joint goal must have shape \(2,\)"):
        make_planner("cem", JointHeadModel(), 4).plan(torch.zeros(3), None, joint_goal=torch.zeros(3))
    with pytest.raises(ValueError, match="needs a goal"):
        make_planner("cem", JointHeadModel(), 4).plan(torch.zeros(3), None)


def test_effort_and_smoothness():
    goal = Goal(latent=STATES[0, -1])                  # the latent term is 0
    assert torch.allclose(Cost({}, action_weight=2.0)(STATES, ACTIONS, goal, _context()),
                          torch.tensor([2.0 * (1.0 + 4.0) / 2]))
    smooth = Cost({"smoothness": 1.0})
    # without the previous action: steps 0 and ||(-1, 2)||^2 = 5
    assert torch.allclose(smooth(STATES, ACTIONS, goal, _context()), torch.tensor([5.0 / 2]))
    # after (1, 1): the first step adds ||(0, -1)||^2 = 1
    after = _context(previous=torch.tensor([1.0, 1.0]))
    assert torch.allclose(smooth(STATES, ACTIONS, goal, after), torch.tensor([(1.0 + 5.0) / 2]))


def test_joint_limit_barrier_is_zero_inside_and_quadratic_outside():
    limits = {"weight": 2.0, "low": [-1.0, -0.5], "high": [1.5, 0.5]}
    cost = Cost({"joint_limits": limits}, model=JointHeadModel())
    goal = Goal(latent=STATES[0, -1])
    # q_1 = (1, 0): inside; q_2 = (2, 0): 0.5 above x's limit -> 0.25
    assert torch.allclose(cost(STATES, ACTIONS, goal, _context()), torch.tensor([2.0 * 0.25 / 2]))
    inside = STATES * torch.tensor([1.0, 1.0, 0.0]) * 0.4
    assert float(cost(inside, ACTIONS, Goal(latent=inside[0, -1]), _context())) == 0.0
    with pytest.raises(ValueError, match="give 3 values; the model's decode_state returns 2: one per joint and field"):
        Cost({"joint_limits": {"weight": 1.0, "low": [0.0] * 3, "high": [1.0] * 3}}, model=JointHeadModel())


@pytest.mark.parametrize("spec, reason", [
    ({"speed": 1.0}, "unknown keys"),
    ({"smoothness": -1.0}, ">= 0"),
    ({"smoothness": "a lot"}, "must be a number"),
    ({"joint_limits": {"weight": 1.0}}, "needs the limits"),
    ({"joint_limits": {"low": [0.0], "high": [1.0, 2.0]}}, "low has 1 values, high 2"),
    ({"joint_limits": {"low": [1.0], "high": [0.0]}}, "low <= high"),
    ({"terms": ["not a target"]}, "package.module:function"),
])
def test_bad_specs_are_refused_with_the_reason(spec, reason):
    with pytest.raises(ValueError, match=reason):
        check_spec(spec)
    with pytest.raises(ValueError, match=reason):
        make_planner("gd", JointHeadModel(), 4, {"costs": spec})


# -- defaults unchanged ---------------------------------------------------------------------------

def test_the_default_cost_is_the_old_formula_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    states, actions = torch.randn(64, 11, 3, generator=gen), torch.randn(64, 10, 2, generator=gen)
    goal = torch.randn(3, generator=gen)
    model = JointHeadModel()
    for rw, aw in ((0.0, 0.0), (0.1, 0.0), (0.37, 0.013)):
        old = _old_task_cost(states, goal, rw, actions, aw)
        assert torch.equal(Cost({}, rw, aw)(states, actions, Goal(latent=goal), _context()), old)
        assert torch.equal(task_cost(states, goal, rw, actions, aw), old)
        for name in NAMES:
            planner = make_planner(name, model, 10, {"running_weight": rw, "action_weight": aw,
                                                     "iterations": 1})
            planner.plan(torch.zeros(3), goal)                      # sets the plan's context
            assert torch.equal(planner._cost(states, Goal(latent=goal), actions), old), name


def test_grasp_default_loss_is_the_papers_loss():
    """With running_weight 0: residuals to the pinned end s_H = g plus gamma times the goal term."""
    model, gamma = JointHeadModel(), 0.3
    gen = torch.Generator().manual_seed(1)
    z0, goal = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
    states = torch.randn(4, 5, 3, generator=gen)                        # s_1..s_{H-1}, H = 6
    actions = torch.rand(4, 6, 2, generator=gen) * 2 - 1
    visited = torch.cat([z0.expand(4, 1, 3), states], 1)
    loss = grasp_loss(model, Cost({}, 0.0, 0.0), visited, actions, Goal(latent=goal), _context(model),
                      gamma)[0]
    dynamics, to_goal = grasp_loss_terms(model, torch.cat([visited, goal.expand(4, 1, 3)], 1), actions, goal)
    torch.testing.assert_close(loss, dynamics.sum() + gamma * to_goal.sum())


def test_grasp_loss_has_the_running_term_and_the_other_terms():
    model, gamma, rw = JointHeadModel(), 0.3, 0.2
    gen = torch.Generator().manual_seed(2)
    z0, goal = torch.randn(3, generator=gen), Goal(latent=torch.randn(3, generator=gen))
    visited = torch.cat([z0.expand(4, 1, 3), torch.randn(4, 5, 3, generator=gen)], 1)
    actions = torch.rand(4, 6, 2, generator=gen) * 2 - 1

    def loss(spec, running):
        return grasp_loss(model, Cost(spec, running), visited, actions, goal, _context(model), gamma)[0]

    predicted = visited + 0.2 * actions @ model.B.T                  # F(s_t, a_t), by hand
    running = (predicted - goal.latent).pow(2).sum(-1).mean(-1).sum()
    torch.testing.assert_close(loss({}, rw) - loss({}, 0.0), rw * running)
    smooth = (actions[:, 1:] - actions[:, :-1]).pow(2).sum(-1).sum(-1).div(6).sum()
    torch.testing.assert_close(loss({"smoothness": 0.7}, 0.0) - loss({}, 0.0), 0.7 * smooth)


# -- every planner ranks with the same cost ------------------------------------------------------

SPEC = {"smoothness": 0.3, "joint_goal": 2.0,
        "joint_limits": {"weight": 5.0, "low": [-0.3, -0.3], "high": [0.3, 0.3]}}
SETTINGS = {"running_weight": 0.1, "action_weight": 0.02, "costs": SPEC}
FAST = {
    "grasp": dict(iterations=10, chains=4, sync_every=5),
    "cem": dict(iterations=3, samples=32, elites=4),
    "mppi": dict(iterations=3, samples=32),
    "gd": dict(iterations=10, chains=2),
}


def test_every_planner_ranks_with_the_same_cost():
    model = JointHeadModel()
    gen = torch.Generator().manual_seed(3)
    states, actions = torch.randn(16, 9, 3, generator=gen), torch.rand(16, 8, 2, generator=gen) * 2 - 1
    goal = Goal(latent=torch.tensor([0.4, 0.2, 0.0]), joints=torch.tensor([0.2, 0.1]))
    previous = torch.tensor([0.5, -0.5])
    warm = make_planner("cem", model, 8).plan(torch.zeros(3), goal.latent).shifted(0)
    warm.previous_action = previous
    reference = Cost(SPEC, 0.1, 0.02, model)(states, actions, goal, _context(model, previous))
    for name in NAMES:
        planner = make_planner(name, model, 8, {**SETTINGS, **FAST[name]}, seed=0)
        plan = planner.plan(torch.zeros(3), goal.latent, warm, joint_goal=goal.joints)
        assert torch.equal(planner._cost(states, goal, actions), reference), name
        again = Cost(SPEC, 0.1, 0.02, model)(plan.states[None], plan.actions[None], goal,
                                              _context(model, previous))
        assert plan.cost == pytest.approx(float(again), rel=1e-6), name


def test_plan_shifted_carries_the_executed_action_for_smoothness():
    model = JointHeadModel()
    plan = make_planner("cem", model, 8, {"iterations": 2}).plan(torch.zeros(3), torch.tensor([0.4, 0.2, 0.0]))
    assert torch.equal(plan.shifted(3).previous_action, plan.actions[2])
    assert plan.shifted(0).previous_action is None
    with pytest.raises(ValueError, match="previous_action"):
        warm = plan.shifted(1)
        warm.previous_action = torch.zeros(3)
        make_planner("cem", model, 8).plan(torch.zeros(3), torch.zeros(3), warm)


# -- a goal in joint space -------------------------------------------------------------------------

REACH = {
    "grasp": dict(iterations=100, chains=8),
    "cem": dict(iterations=8, samples=64, elites=8),
    "mppi": dict(iterations=8, samples=64),
    "gd": dict(iterations=60),
}


class AnalyticWithJoints(AnalyticNavModel):
    """The analytic model with a joint head: its latent is the position, the joints (x, y)."""

    def decode_state(self, latent):
        return latent


@pytest.mark.parametrize("name", NAMES)
def test_a_joint_goal_is_reached_in_the_simulator(name):
    env, model = make_env("open", OPEN_H), AnalyticWithJoints(env="open", horizon=OPEN_H)
    for seed in (0, 1):
        episode = _nearby_episode(env, seed)
        planner = make_planner(name, model, OPEN_H, OPEN_REACH[name], seed=0)
        plan = planner.plan(torch.tensor(episode.start), None, joint_goal=torch.tensor(episode.goal))
        env.reset(episode)
        path = env.execute(plan.actions.numpy())
        assert env.success(path[-1]), f"{name} seed {seed}: ends {env.distance_to_goal():.3f} from the goal"


@pytest.mark.parametrize("name", NAMES)
def test_a_joint_goal_is_reached_through_a_mixing_joint_head(name):
    model, target = JointHeadModel(), torch.tensor([0.6, -0.4])         # 0.72 from the start
    planner = make_planner(name, model, 8, REACH[name], seed=0)
    plan = planner.plan(torch.zeros(3), None, joint_goal=target)
    assert plan.goal is None
    for start, warm in ((torch.zeros(3), None), (plan.states[1], plan.shifted(1))):  # next cycle
        plan = planner.plan(start, None, warm, joint_goal=target)
        reached = model.decode_state(plan.states[-1])
        assert float((reached - target).norm()) < 0.15, (name, reached.tolist())   # from 0.72
    # limits short of the goal: the barrier holds the joints near them, where free they reach
    # 0.6 (GRASP less tightly: the barrier acts on its predictions, its virtual states follow,
    # and its fresh chains start on routes that end at the goal, beyond the limits: over seeds
    # 0-7 it ends 0.29-0.48, against 0.24-0.41 for chains started still, init_actions "zero")
    limited = make_planner(name, model, 8, {**REACH[name], "costs": {
        "joint_limits": {"weight": 100.0, "low": [-0.3, -0.3], "high": [0.3, 0.3]}}}, seed=0)
    joints = model.decode_state(limited.plan(torch.zeros(3), None, joint_goal=target).states)
    assert 0.25 < float(joints.abs().max()) < (0.5 if name == "grasp" else 0.36), (name, joints)


@pytest.mark.parametrize("name", NAMES)
def test_a_goal_whose_every_part_weighs_zero_is_refused_with_the_reason(name):
    """cost.joint_goal_weight 0 (in its range, dynamic) and a goal of joint positions alone:
    GRASP and GD raised torch's "element 0 of tensors does not require grad" every cycle (ERROR
    with that text), and a node started so failed configure with it (an audit). Now the reason
    is the cost's, the warm-up leaves that path out, and a goal with a weighed part is planned."""
    model = JointHeadModel()
    planner = make_planner(name, model, 8, {**REACH[name], "costs": {"joint_goal": 0.0}}, seed=0)
    planner.warm_up(torch.zeros(3), torch.full((3,), 0.1), joint_goal=torch.tensor([0.6, -0.4]))
    with pytest.raises(ValueError, match=r"joint positions alone .* \(cost.joint_goal_weight\)"):
        planner.plan(torch.zeros(3), None, joint_goal=torch.tensor([0.6, -0.4]))
    plan = planner.plan(torch.zeros(3), torch.tensor([0.6, -0.4, 0.1]), joint_goal=torch.tensor([0.6, -0.4]))
    assert torch.isfinite(plan.actions).all()
    cost = Cost({"latent_goal": 0.0, "joint_goal": 0.0}, model=model)
    states = torch.zeros(2, 9, 3, requires_grad=True)      # nothing weighed: a zero gradients reach
    total = cost(states, torch.zeros(2, 8, 2), Goal(torch.zeros(3)), _context(model))
    total.sum().backward()
    assert total.tolist() == [0.0, 0.0] and states.grad is not None


# -- user terms ------------------------------------------------------------------------------------

def test_user_terms_load_only_when_allowed():
    sys.modules.pop(TERM_MODULE, None)
    settings = {"costs": {"terms": [{"function": TERM, "weight": 2.0}]}, "iterations": 2}
    with pytest.raises(ValueError, match="allow_python_models:=true") as info:
        make_planner("cem", JointHeadModel(), 4, settings)
    assert TERM in str(info.value) and TERM_MODULE not in sys.modules   # refused before importing
    planner = make_planner("cem", JointHeadModel(), 4, settings, allow_python=True)
    assert TERM_MODULE in sys.modules
    goal = Goal(latent=STATES[0, -1])
    planner.plan(torch.zeros(3), goal.latent)
    # x_H = 1: (1 - 0.5)^2 = 0.25, times the weight 2
    assert torch.allclose(planner._cost(STATES, goal, ACTIONS), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="not found"):
        make_planner("cem", JointHeadModel(), 4, {"costs": {"terms": [f"{TERM_MODULE}:nothing"]}},
                     allow_python=True)
    wrong = make_planner("cem", JointHeadModel(), 4, {"costs": {"terms": [f"{TERM_MODULE}:wrong_shape"]}},
                         allow_python=True)
    with pytest.raises(ValueError, match="one cost per trajectory"):
        wrong.plan(torch.zeros(3), goal.latent, budget=Budget(max_iterations=1))


# -- node parameters --------------------------------------------------------------------------------

def test_cost_parameters_make_the_costs_setting():
    values = {p.name: p.default for p in params.PARAMETERS}
    knobs, ignored = params.knobs_for("mppi", values)
    assert check_spec(knobs["costs"]) == check_spec({})              # the defaults: the default cost
    assert ignored == [] and "chains" not in knobs                   # GRASP's defaults: nobody's choice
    assert params.knobs_for("mppi", dict(values, **{"planner.route_spread": 0.1}))[1] == [
        "planner.route_spread"]
    assert params.knobs_for("mppi", dict(values, **{"planner.route_spread": 0.0}))[1] == []  # a replay's legacy value
    values.update({"cost.smoothness": 0.5, "cost.joint_limit_weight": 1.0,
                   "cost.joint_limits_low": [-1.0, -2.0], "cost.joint_limits_high": [1.0, 2.0],
                   "cost.terms": [TERM]})
    costs = params.knobs_for("grasp", values)[0]["costs"]
    assert costs["smoothness"] == 0.5 and costs["joint_limits"]["high"] == [1.0, 2.0]
    assert costs["terms"] == [TERM]
    change = params.settings_change(params.BY_NAME["cost.smoothness"], 2.0, values)
    assert change["costs"]["smoothness"] == 2.0 and change["costs"]["terms"] == [TERM]
    assert params.settings_change(params.BY_NAME["planner.chains"], 3, values) == {"chains": 3}
    assert "package.module:function" in params.BY_NAME["cost.terms"].validate(["os.system"])
    assert params.BY_NAME["cost.terms"].read_only


from lifecycle_msgs.msg import State  # noqa: E402
from test_controller_node import rig, ros  # noqa: E402,F401
from test_model_sources import configure_failure  # noqa: E402


def test_node_cost_terms_need_allow_python_models_and_cost_weights_apply_next_cycle(rig):
    sys.modules.pop(TERM_MODULE, None)
    refused = rig(**{"cost.terms": [TERM]})
    reason = configure_failure(refused)
    assert "allow_python_models:=true" in reason and TERM in reason, reason
    assert TERM_MODULE not in sys.modules
    assert refused.state() == State.PRIMARY_STATE_UNCONFIGURED

    r = rig(**{"cost.terms": [TERM], "allow_python_models": True, "cost.smoothness": 0.25})
    r.start()
    r.controlling()
    assert r.node._loop.planner.settings.costs["terms"] == [{"function": TERM, "weight": 1.0}]
    assert r.node._loop.planner.settings.costs["smoothness"] == 0.25
    result = r.set_parameters(**{"cost.terms": []})[0]
    assert not result.successful and "read-only" in result.reason
    result = r.set_parameters(**{"cost.joint_limit_weight": 1.0})[0]   # no limits given
    assert not result.successful and "needs the limits" in result.reason, result.reason
    assert all(res.successful for res in r.set_parameters(**{"cost.smoothness": 2.0}))
    r.cycle(r.send_joints)
    costs = r.node._loop.planner.settings.costs
    assert costs["smoothness"] == 2.0 and costs["terms"] == [{"function": TERM, "weight": 1.0}]
