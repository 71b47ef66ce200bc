"""The planners' fast paths give the answers of the plain ones: the hand-written Adam is
torch.optim.Adam to the bit, the analytic model's compiled rollout is its step repeated to the
bit, and the adjoint gradient through a rollout is backpropagation's to float rounding."""
from __future__ import annotations

import pytest
import torch

from grasp_ros.models import load_world_model
from grasp_ros.models.learned import LatentWorldModel
from grasp_ros.planning import GraspSettings, make_planner
from grasp_ros.planning import grasp as grasp_module
from grasp_ros.planning.adam import Adam
from grasp_ros.planning.adjoint import ADJOINT_MAX_LATENT, rollout_gradient
from grasp_ros.planning.costs import Cost, CostContext, Goal
from grasp_ros.planning.rollout import rollout


def _analytic(env="wall_door", horizon=50):
    return load_world_model({"name": "analytic", "env": env, "horizon": horizon})


def _learned(latent_dim=32):
    torch.manual_seed(0)
    model = LatentWorldModel(image_size=16, latent_dim=latent_dim, hidden=32)
    for layer in (model.dynamics[-1], model.action_map):   # it starts as "nothing moves"
        torch.nn.init.normal_(layer.weight, std=0.2)
    return model.eval()


def test_adam_is_torch_adam_to_the_bit():
    torch.manual_seed(0)
    ours = [torch.randn(4, 5), torch.randn(3)]
    theirs = [p.clone().requires_grad_(True) for p in ours]
    ours = [p.clone().requires_grad_(True) for p in ours]
    mine = Adam([(ours[0], 0.1), (ours[1], 0.03)])
    reference = torch.optim.Adam([{"params": [theirs[0]], "lr": 0.1}, {"params": [theirs[1]], "lr": 0.03}])
    for step in range(30):
        grads = [torch.randn_like(p) * (step + 1) for p in ours]
        for params in (ours, theirs):
            for p, g in zip(params, grads):
                p.grad = None if step % 7 == 3 and p.dim() == 1 else g.clone()   # now and then none
        mine.step()
        reference.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), f"differs at step {step}"
    mine.zero_grad()
    assert all(p.grad is None for p in ours)


@pytest.mark.parametrize("env", ["wall_door", "u_maze"])
def test_the_analytic_rollout_is_its_step_repeated_to_the_bit(env):
    model = _analytic(env, 100)
    torch.manual_seed(1)
    z0 = torch.rand(16, 2) * 2 - 1
    actions = torch.rand(16, 100, 2) * 2.4 - 1.2          # some beyond the bounds: clamped alike
    with torch.no_grad():
        compiled = rollout(model, z0, actions)           # the model's own rollout verb
        z, stepped = z0, [z0]
        for t in range(100):
            z = model.predict(z, actions[:, t])
            stepped.append(z)
    assert torch.equal(compiled, torch.stack(stepped, dim=1))


def _backprop(model, z0, actions, cost):
    a = actions.clone().requires_grad_(True)
    states = rollout(model, z0, a)
    costs = cost(states, a)
    (grad,) = torch.autograd.grad(costs.sum(), a)
    return states.detach(), costs.detach(), grad


@pytest.mark.parametrize("which", ["analytic", "learned"])
def test_the_adjoint_gradient_is_backpropagations(which):
    model = _analytic() if which == "analytic" else _learned()
    D, H, C = model.latent_dim, 30, 6
    torch.manual_seed(2)
    if which == "analytic":      # starts beside the wall, where the contact terms act
        z0 = torch.tensor([[-0.2, 0.1]]).repeat(C, 1) + 0.05 * torch.randn(C, 2)
    else:
        z0 = 0.5 * torch.randn(C, D)
    actions = torch.rand(C, H, 2) * 2.2 - 1.1
    goal = Goal(latent=0.5 * torch.ones(D))
    spec = {"smoothness": 0.3}
    cost_model = Cost(spec, running_weight=0.1, action_weight=0.05, model=model)
    context = CostContext(model, previous_action=torch.tensor([0.2, -0.4]))

    def cost(states, a):
        return cost_model(states, a, goal, context)

    states, costs, grad = rollout_gradient(model, z0, actions, cost)
    ref_states, ref_costs, ref_grad = _backprop(model, z0, actions, cost)
    assert not (states.requires_grad or costs.requires_grad or grad.requires_grad)
    assert torch.allclose(states, ref_states, rtol=0, atol=1e-6)
    assert torch.allclose(costs, ref_costs, rtol=1e-6, atol=1e-7)
    scale = float(ref_grad.abs().max())
    assert scale > 1e-3                                   # a gradient worth comparing
    assert float((grad - ref_grad).abs().max()) <= 1e-5 * scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_adjoint_gradient_is_backpropagations_on_cuda():
    model = _learned().to("cuda")
    z0, actions = torch.randn(4, 32, device="cuda"), torch.rand(4, 20, 2, device="cuda") * 2 - 1
    goal = torch.ones(32, device="cuda")

    def cost(states, a):
        return (states[:, -1] - goal).pow(2).sum(-1) + 0.1 * (states[:, 1:] - goal).pow(2).sum(-1).mean(-1)
    _, _, grad = rollout_gradient(model, z0, actions, cost)
    _, _, ref = _backprop(model, z0, actions, cost)
    assert float((grad - ref).abs().max()) <= 1e-4 * float(ref.abs().max())


def test_grasp_takes_the_adjoint_for_small_latents_and_backprop_for_large_ones(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return rollout_gradient(*args, **kwargs)
    monkeypatch.setattr(grasp_module, "rollout_gradient", counted)
    settings = dict(iterations=10, chains=4, sync_every=5)
    for model, expected in ((_analytic(), 2), (_learned(ADJOINT_MAX_LATENT + 1), 0), (_learned(ADJOINT_MAX_LATENT), 2)):
        calls.clear()
        D = model.latent_dim
        make_planner("grasp", model, 20, settings).plan(torch.zeros(D), 0.3 * torch.ones(D))
        assert len(calls) == expected, (D, len(calls))
    for how, expected in (("adjoint", 2), ("backprop", 0)):
        calls.clear()
        make_planner("grasp", _learned(), 20, dict(settings, sync_gradient=how)).plan(torch.zeros(32), 0.3 * torch.ones(32))
        assert len(calls) == expected


def test_grasp_plans_alike_with_either_sync_gradient():
    """The two gradients differ by rounding only: the plans' costs agree closely (wall_door)."""
    model = _analytic()
    z0, goal = torch.tensor([-0.7, -0.6]), torch.tensor([0.7, 0.6])
    costs = {how: make_planner("grasp", model, 50, dict(iterations=20, chains=8, sync_gradient=how))
             .plan(z0, goal).cost for how in ("adjoint", "backprop")}
    assert abs(costs["adjoint"] - costs["backprop"]) <= 0.05 * max(costs.values()) + 1e-4


def test_bad_sync_gradient_is_refused():
    with pytest.raises(ValueError, match="sync_gradient"):
        GraspSettings(sync_gradient="finite_differences").validate()
