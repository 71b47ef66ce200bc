"""Simulators: seeded episodes, walls that hold, success checks, the camera."""
import numpy as np
import pytest
import torch

from grasp_ros.sim import ENV_NAMES, LAYOUTS, PointMassDynamics, make_env
from grasp_ros.sim.layouts import shortest_path_length


@pytest.mark.parametrize("name", ENV_NAMES)
def test_episodes_are_seeded_and_feasible(name):
    env = make_env(name, 50)
    a, b = env.sample_episode(7), env.sample_episode(7)
    assert np.array_equal(a.start, b.start) and np.array_equal(a.goal, b.goal)
    assert not np.array_equal(a.start, env.sample_episode(8).start)
    for seed in range(20):
        ep = env.sample_episode(seed)
        assert shortest_path_length(env.layout, ep.start, ep.goal) <= 0.8 * env.layout.reach


def test_wall_blocks_and_door_lets_through():
    env = make_env("wall_door", 50)
    env.position = np.array([-0.5, -0.5])
    for _ in range(100):
        env.step([1.0, 0.0])
    assert -0.2 < env.position[0] < -0.1, "the wall must stop the agent"
    env.position = np.array([-0.5, 0.45])        # level with the door
    for _ in range(30):
        env.step([1.0, 0.0])
    assert env.position[0] > 0.5, "the door must let the agent through"


def test_border_holds_and_no_seam_at_wall_ends():
    env = make_env("wall_door", 25)  # large steps: two sub-steps each
    env.position = np.array([-0.5, -0.95])
    for _ in range(100):
        env.step([1.0, -1.0])        # slide along the bottom border into the wall's foot
    assert env.position[0] < -0.1 and env.position[1] > -1.0


def test_step_is_clipped_and_nan_safe():
    env = make_env("open", 50)
    env.position = np.zeros(2)
    env.step([10.0, np.nan])
    assert np.allclose(env.position, [env.max_step, 0.0])


def test_success_radius():
    env = make_env("open", 50)
    env.reset(env.sample_episode(0))
    assert not env.success()
    assert env.success(env.goal + [env.success_radius * 0.9, 0])
    assert not env.success(env.goal + [env.success_radius * 1.1, 0])


def test_horizon_sets_step_size():
    assert make_env("u_maze", 100).max_step == pytest.approx(LAYOUTS["u_maze"].reach / 100)
    with pytest.raises(ValueError):
        make_env("u_maze", 0)
    with pytest.raises(ValueError, match="unknown env"):
        make_env("no_such_world")


def test_render_shows_agent_and_walls():
    env = make_env("wall_door", 50, image_size=64)
    env.reset(env.sample_episode(1))
    image = env.render(show_goal=True)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    col, row = env.camera.to_pixel(env.position)
    assert image[row, col, 0] > 150 and image[row, col, 1] < 100, "agent pixel is red"
    wall_col, wall_row = env.camera.to_pixel((0.0, -0.5))
    assert image[wall_row, wall_col].max() < 100, "wall pixel is dark"
    assert not np.array_equal(image, env.render(env.position + [0.3, 0.0]))
    with pytest.raises(ValueError):
        make_env("open", image_size=8)


def test_dynamics_is_differentiable_and_batched():
    dyn = PointMassDynamics(LAYOUTS["wall_door"].all_walls, max_step=0.07)
    p = torch.tensor([[-0.5, 0.0], [-0.14, -0.5]], dtype=torch.float64)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    nxt = dyn(p, a)
    nxt[:, 0].sum().backward()
    free, blocked = a.grad[0, 0].item(), a.grad[1, 0].item()
    assert free == pytest.approx(0.07, rel=1e-3), "free motion: d x' / d a_x = max_step"
    assert abs(blocked) < 1e-3, "pushing into a wall has (almost) no effect"
    assert dyn(p.expand(3, 4, 2, 2), a.detach().expand(3, 4, 2, 2)).shape == (3, 4, 2, 2)


def test_a_long_random_rollout_stays_in_the_arena():
    # (Its speed, about 7,000 steps per second here, is a benchmark figure, not a test.)
    env = make_env("u_maze", 100)
    env.reset(0)
    path = np.asarray(env.execute(np.random.default_rng(0).uniform(-1, 1, (500, 2))))
    assert path.shape == (501, 2) and np.isfinite(path).all() and np.abs(path).max() <= 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_compiled_rollout_is_the_steps_to_the_bit_and_casts_no_constant(dtype):
    """The rollout (one TorchScript loop) gives what H calls give, to the bit; and no step
    multiplies by a Python number, which costs a cast of it to the tensor's dtype each time (half
    of each multiplication's cost in a 50-step rollout; counted, not timed)."""
    from torch.profiler import ProfilerActivity, profile

    dyn = PointMassDynamics(LAYOUTS["u_maze"].all_walls, max_step=0.2)     # two sub-steps a step
    g = torch.Generator().manual_seed(0)
    p = (torch.rand(8, 2, generator=g) * 2 - 1).to(dtype)
    a = (torch.rand(8, 20, 2, generator=g) * 2.4 - 1.2).to(dtype)
    states = [p]
    for t in range(a.shape[1]):
        states.append(dyn(states[-1], a[:, t]))
    assert torch.equal(dyn.rollout(p, a), torch.stack(states, dim=1))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        dyn.rollout(p, a)
        dyn(p, a[:, 0])
    casts = [e.name for e in prof.events() if e.name == "aten::_to_copy"]
    assert casts == []
