"""World-model contract, analytic model, and load_world_model's clear errors."""
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import grasp_ros
from grasp_ros.sim import make_env
from grasp_ros.sim.analytic import AnalyticNavModel
from grasp_ros.sim.render import AGENT
from grasp_ros.models import WorldModel, WorldModelError, check_world_model, load_world_model

from archive_edits import damaged_copy, unreadable_copy, with_entry


def test_analytic_model_matches_simulator():
    env = make_env("wall_door", 50)
    model = load_world_model({"name": "analytic", "env": "wall_door", "horizon": 50})
    env.reset(env.sample_episode(3))
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (40, 2))
    path = env.execute(actions)
    z = torch.tensor(path[0], dtype=torch.float32)
    for a in actions:
        z = model.predict(z, torch.tensor(a, dtype=torch.float32))
    assert np.allclose(z.numpy(), path[-1], atol=1e-4)


def test_analytic_encodes_joints_and_image():
    env = make_env("wall_door", 50)
    env.reset(env.sample_episode(2))
    model = AnalyticNavModel("wall_door", 50)
    image = torch.from_numpy(env.render())[None]
    from_image = model.encode({"image": image})
    from_joints = model.encode({"joints": torch.tensor(env.position[None], dtype=torch.float32)})
    assert from_image.shape == (1, 2) and torch.allclose(from_image, from_joints, atol=0.04)
    with pytest.raises(WorldModelError, match="no agent"):
        model.encode({"image": torch.zeros(1, 64, 64, 3, dtype=torch.uint8)})
    assert torch.equal(model.position(from_joints), from_joints)


@pytest.mark.parametrize("size", [16, 64, 128])
def test_analytic_image_encoding_refuses_a_second_red_object(size):
    """The agent's centroid of two red things is neither (an audit's frame with a second red
    disk gave OK cycles planned from between them); one disk anywhere, clipped at the border too,
    is found."""
    model = AnalyticNavModel("wall_door", 50, image_size=size, observe="image")
    camera = model._camera
    positions = np.random.default_rng(0).uniform(-1.05, 1.05, (100, 2))
    found = model.encode({"image": torch.from_numpy(np.stack([camera.render(p) for p in positions]))})
    inside = np.abs(positions).max(1) < 0.95
    assert np.abs(found.numpy()[inside] - positions[inside]).max() < 2.5 / size
    two = camera.render([0.5, 0.5])
    other = camera.render([-0.5, -0.4])
    red = np.abs(other.astype(int) - AGENT).sum(-1) < 90          # the second agent's pixels
    two[red] = other[red]
    with pytest.raises(WorldModelError, match="covers more than its disk"):
        model.encode({"image": torch.from_numpy(two)[None]})


class Linear(WorldModel):
    """A user's model meeting the contract: z' = z + B a."""

    latent_dim, action_dim, joint_dim = 3, 2, 3

    def __init__(self, latent_dim=3):
        super().__init__([-1, -1], [1, 1])
        self.latent_dim = latent_dim
        self.B = nn.Linear(2, latent_dim, bias=False)

    def encode(self, obs):
        return obs["joints"][:, : self.latent_dim]

    def predict(self, z, a):
        return z + self.B(a)


def make_linear(latent_dim: int = 3):
    return Linear(latent_dim)


def test_factory_with_weights_round_trip(tmp_path):
    model = make_linear()
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    loaded = load_world_model({"factory": "test_models:make_linear", "weights": str(path)},
                              allow_factory=True)
    z, a = torch.randn(4, 3), torch.randn(4, 2)
    assert torch.equal(loaded.predict(z, a), model.predict(z, a))


def test_torchscript_round_trip(tmp_path):
    class Scripted(nn.Module):
        def __init__(self):
            super().__init__()
            self.latent_dim, self.action_dim, self.joint_dim = 3, 2, 3
            self.register_buffer("action_low", -torch.ones(2))
            self.register_buffer("action_high", torch.ones(2))
            self.B = nn.Linear(2, 3, bias=False)

        @torch.jit.export
        def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
            return obs["joints"]

        @torch.jit.export
        def predict(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return z + self.B(a)

        def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return self.predict(z, a)

    module = Scripted()
    path = tmp_path / "model.ts"
    torch.jit.script(module).save(str(path))
    loaded = load_world_model(str(path))
    z, a = torch.randn(2, 5, 3), torch.randn(2, 5, 2)
    assert torch.allclose(loaded.predict(z, a), module.predict(z, a))
    assert loaded.latent_dim == 3 and loaded.action_dim == 2
    # torch's reader does not check the zip's CRC-32s: a changed byte in B loaded quietly
    damaged = damaged_copy(path, tmp_path / "damaged.ts")
    with pytest.raises(WorldModelError, match=r"damaged: its entry '.*' fails its CRC-32"):
        load_world_model(str(damaged))


@pytest.mark.parametrize("spec, message", [
    ("no_such_builtin_or_file.ts", "file not found"),
    ({"name": "nope"}, "unknown built-in"),
    ({"name": "analytic", "env": "atlantis"}, "bad options"),
    ({"factory": "test_models:missing"}, "factory not found"),
    ({"factory": "no_such_module_xyz:f"}, "factory not found"),
    ({"factory": "nocolon"}, "module:function"),
    ({"factory": "test_models:make_linear", "weights": "/nonexistent.pt"}, "not found"),
    (42, "must be a name"),
    ({"name": "analytic", "torchscript": "x.ts"}, "exactly one"),
])
def test_bad_specs_raise_one_clear_error(spec, message):
    with pytest.raises(WorldModelError, match=message):
        load_world_model(spec, allow_factory=True)


def test_corrupt_and_mismatched_files(tmp_path):
    junk = tmp_path / "junk.ts"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(WorldModelError, match="not a TorchScript file"):
        load_world_model(str(junk))
    checkpoint = str(Path(grasp_ros.__file__).parent / "assets" / "arm_latent.pt")   # not an export
    with pytest.raises(WorldModelError, match=r"not a TorchScript file .*loads as the built-in: "
                                              r"model learned, model_options \{checkpoint: "):
        load_world_model(checkpoint)
    bad_weights = tmp_path / "junk.pt"
    bad_weights.write_bytes(b"\x00garbage")
    with pytest.raises(WorldModelError, match="cannot read weights"):
        load_world_model({"factory": "test_models:make_linear", "weights": str(bad_weights)},
                         allow_factory=True)
    wrong = tmp_path / "wrong.pt"
    torch.save(make_linear(5).state_dict(), wrong)
    with pytest.raises(WorldModelError, match="do not fit"):
        load_world_model({"factory": "test_models:make_linear", "weights": str(wrong)},
                         allow_factory=True)
    fine = tmp_path / "fine.pt"
    torch.save(make_linear().state_dict(), fine)
    damaged = damaged_copy(fine, tmp_path / "damaged.pt")
    with pytest.raises(WorldModelError, match=r"cannot read weights .*fails its CRC-32"):
        load_world_model({"factory": "test_models:make_linear", "weights": str(damaged)},
                         allow_factory=True)
    learned = damaged_copy(Path(grasp_ros.__file__).parent / "assets" / "wall_door_latent.pt",
                           tmp_path / "learned.pt")     # loaded finite and silent before
    with pytest.raises(WorldModelError, match=r"learned.pt'?: cannot read it .*fails its CRC-32"):
        load_world_model({"name": "learned", "checkpoint": str(learned)})
    unreadable = unreadable_copy(fine, tmp_path / "unreadable.ts")   # zipfile's own kinds of error
    with pytest.raises(WorldModelError, match=r"damaged: its zip structure does not read \(NotImplementedError"):
        load_world_model(str(unreadable))


def test_a_torch_file_whose_directory_claims_more_than_it_holds_is_refused_unread(tmp_path):
    from grasp_ros.models.archive import check_archive
    """torch writes each entry once, uncompressed: an audit's 3.7 MB file of one deflated entry
    declared 3 GB (torch allocated them), and 1.7 MB listing a 1 GB entry 300 times took the
    CRC check 11 minutes. Both refused from the directory alone; the shipped files pass."""
    shipped = Path(grasp_ros.__file__).parent / "assets" / "wall_door_latent.pt"
    claims = with_entry(shipped, tmp_path / "claims.pt", "wall_door_latent/extra", bytes(50_000_000),
                        compress=zipfile.ZIP_DEFLATED)
    assert claims.stat().st_size < 1_000_000
    with pytest.raises(WorldModelError, match=r"its entries declare \d+ bytes, more than twice the file's"):
        load_world_model({"name": "learned", "checkpoint": str(claims)})
    export = tmp_path / "export.ts"             # TorchScript deflates its code: within bounds
    torch.jit.save(torch.jit.script(nn.Linear(3, 4)), export)
    check_archive(export)
    twice = with_entry(shipped, tmp_path / "twice.pt", "wall_door_latent/extra", b"x" * 100, copies=2)
    with pytest.raises(WorldModelError, match="its entry 'wall_door_latent/extra' is listed twice"):
        load_world_model({"name": "learned", "checkpoint": str(twice)})
    load_world_model({"name": "learned", "checkpoint": str(shipped)})


def test_a_checkpoint_config_cannot_ask_for_more_than_a_model_may_be(tmp_path):
    """A checkpoint's config says what to build before its weights are read: 1.4 KB of
    {"hidden": 200000} asked for 160 GB and ended in a traceback (an adversarial audit)."""
    from grasp_ros.models.learned import CHECKPOINT_FORMAT
    for config, said in (({"hidden": 200_000}, r"hidden must be in \[1, 4096\]"),
                         ({"hidden": -5}, r"hidden must be in \[1, 4096\]"),
                         ({"channels": [16, 100_000, 100_000]}, r"channels \(three\)"),
                         ({"image_size": 2_000_000}, r"image_size must be even and in \[16, 512\]"),
                         ({"state_dim": 10**10}, r"each in \[1, 1024\]")):
        path = tmp_path / "tiny.pt"
        torch.save({"format": CHECKPOINT_FORMAT, "config": config, "state_dict": {}}, path)
        with pytest.raises(WorldModelError, match=said):
            load_world_model({"name": "learned", "checkpoint": str(path)})


def test_a_checkpoint_of_a_training_run_that_diverged_is_refused(tmp_path):
    """A failed training run left weights of NaN, which loaded and made every plan NaN."""
    from grasp_ros.models.archive import load_checked
    checkpoint = load_checked(Path(grasp_ros.__file__).parent / "assets" / "wall_door_latent.pt")
    checkpoint["state_dict"]["dynamics.0.weight"][0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    torch.save(checkpoint, path)
    with pytest.raises(WorldModelError, match=r"1 of its tensors hold NaN or Inf \(dynamics.0.weight\)"):
        load_world_model({"name": "learned", "checkpoint": str(path)})


def test_weights_never_unpickle_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"B.weight": Evil()}, path)
    with pytest.raises(WorldModelError, match="cannot read weights"):
        load_world_model({"factory": "test_models:make_linear", "weights": str(path)},
                         allow_factory=True)


def test_probe_catches_shape_mismatch():
    class WrongShape(Linear):
        def predict(self, z, a):
            return z[..., :2]

    with pytest.raises(WorldModelError, match="predict returned shape"):
        check_world_model(WrongShape())

    class BadBounds(Linear):
        def __init__(self):
            super().__init__()
            self.action_low = torch.tensor([1.0, 1.0])
            self.action_high = torch.tensor([-1.0, -1.0])

    with pytest.raises(WorldModelError, match="low <= high"):
        check_world_model(BadBounds())

    class Raises(Linear):
        def encode(self, obs):
            raise RuntimeError("boom")

    with pytest.raises(WorldModelError, match="probe call failed.*boom"):
        check_world_model(Raises())


def test_stochastic_prediction_is_accepted():
    class Stochastic(Linear):
        def predict(self, z, a):
            return z + self.B(a), torch.full_like(z, -2.0)

    check_world_model(Stochastic())


def test_loaded_models_have_frozen_weights_and_plan_the_same():
    """A planner never trains the model: loading freezes its weights, so a backward pass skips
    their gradients; the plan is the same to the bit as with trainable weights."""
    from grasp_ros.planning import Budget, make_planner

    plans = []
    for frozen in (True, False):
        model = load_world_model({"name": "learned"})
        assert not any(p.requires_grad for p in model.parameters())
        if not frozen:
            for p in model.parameters():
                p.requires_grad_(True)
        planner = make_planner("grasp", model, 20, {"chains": 4, "sync_every": 3})
        g = torch.Generator().manual_seed(0)
        z0, goal = torch.randn(model.latent_dim, generator=g), torch.randn(model.latent_dim, generator=g)
        plans.append(planner.plan(z0, goal, budget=Budget(max_iterations=6)).actions)
    assert torch.equal(plans[0], plans[1])
