"""Novelty statistics stored with the models: in-distribution inputs score low, strange ones high."""
import numpy as np
import pytest
import torch

from grasp_ros.data.exploration import random_free_position
from grasp_ros.sim import make_env
from grasp_ros.sim.render import BACKGROUND, WALL
from grasp_ros.models import WorldModel, load_world_model
from grasp_ros.models.learned import DEFAULT_CHECKPOINT, LatentWorldModel
from grasp_ros.models.novelty import (DEFAULT_NOVELTY_THRESHOLD, InputStatistics, compute_statistics,
                                      image_features, novelty_for)

THRESHOLD = DEFAULT_NOVELTY_THRESHOLD


@pytest.fixture(scope="module")
def learned():
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint")
    model = load_world_model({"name": "learned", "env": "wall_door", "horizon": 50})
    return model, novelty_for(model)


@pytest.fixture(scope="module")
def renders():
    """Camera frames of the agent at 200 seeded free positions of wall_door [200, 64, 64, 3]."""
    env = make_env("wall_door", 50)
    rng = np.random.default_rng(2024)
    return torch.from_numpy(np.stack([env.render(random_free_position(env, rng)) for _ in range(200)]))


def _scores(model, scorer, images):
    with torch.no_grad():
        latents = model.encode({"image": images})
    return np.array([scorer.score({"image": images[i:i + 1]}, latents[i]) for i in range(len(images))])


def _recoloured(frame: torch.Tensor) -> torch.Tensor:
    """The same wall_door frame in a dark scheme: dark floor, light walls."""
    out = frame.clone()
    out[(frame == torch.tensor(BACKGROUND, dtype=torch.uint8)).all(-1)] = torch.tensor([30, 30, 40], dtype=torch.uint8)
    out[(frame == torch.tensor(WALL, dtype=torch.uint8)).all(-1)] = torch.tensor([200, 200, 190], dtype=torch.uint8)
    return out


def test_shipped_model_scores_its_world_low(learned, renders):
    model, scorer = learned
    assert scorer is not None and set(scorer.parts) == {"latent", "image"}
    scores = _scores(model, scorer, renders)
    assert scores.max() < THRESHOLD / 1.5, f"p99 {np.quantile(scores, 0.99):.2f}, max {scores.max():.2f}"


def test_shipped_model_flags_frames_unlike_its_world(learned, renders):
    model, scorer = learned
    g = torch.Generator().manual_seed(0)
    strange = {
        "black": torch.zeros(1, 64, 64, 3, dtype=torch.uint8),
        "white": torch.full((1, 64, 64, 3), 255, dtype=torch.uint8),
        "uniform noise": torch.randint(0, 256, (8, 64, 64, 3), generator=g, dtype=torch.uint8),
        "recoloured": torch.stack([_recoloured(f) for f in renders[:8]]),
        "brighter by 30 levels": (renders[:8].short() + 30).clamp(0, 255).to(torch.uint8),
    }
    for kind, images in strange.items():
        scores = _scores(model, scorer, images)
        assert scores.min() > THRESHOLD, f"{kind}: {scores.min():.2f}"


def test_score_takes_batched_or_single_inputs_and_refuses_nan(learned, renders):
    model, scorer = learned
    with torch.no_grad():
        z = model.encode({"image": renders[:1]})
    batched = scorer.score({"image": renders[:1]}, z)
    assert scorer.score({"image": renders[0]}, z[0]) == pytest.approx(batched)
    assert scorer.score({}, z[0]) <= batched   # only the latent part: never more
    assert scorer.score({"image": renders[0]}, torch.full_like(z[0], float("nan"))) == float("inf")


def test_analytic_model_knows_its_arena():
    model = load_world_model({"name": "analytic", "env": "wall_door", "horizon": 50})
    scorer = novelty_for(model)
    assert scorer is not None and set(scorer.parts) == {"latent", "joints", "image"}
    inside = [(0.0, 0.0), (0.9, -0.9), (-1.0, 1.0), (0.5, 0.45), (-0.3, -1.0)]
    for xy in inside + [(5.0, 0.0), (40.0, 0.0), (0.0, -7.0)]:
        joints = torch.tensor([xy])
        score = scorer.score({"joints": joints}, model.encode({"joints": joints})[0])
        assert (score < THRESHOLD) == (xy in inside), f"joints {xy}: {score:.2f}"
    env = make_env("wall_door", 50)
    frame = torch.from_numpy(env.render(np.array([0.5, -0.2])))[None]
    assert scorer.score({"image": frame}, model.encode({"image": frame})[0]) < THRESHOLD
    white = torch.full((1, 64, 64, 3), 255, dtype=torch.uint8)
    assert scorer.score({"image": white}, torch.zeros(2)) > THRESHOLD


def test_statistics_round_trip_through_torch_save(tmp_path):
    model = load_world_model("analytic")
    scorer = novelty_for(model)
    torch.save(scorer.to_dict(), tmp_path / "stats.pt")
    again = InputStatistics.from_dict(torch.load(tmp_path / "stats.pt", weights_only=True))
    assert again.samples == scorer.samples == 4096
    for name, (mean, cov) in scorer.parts.items():
        assert torch.equal(again.parts[name][0], mean) and torch.equal(again.parts[name][1], cov)
    joints = torch.tensor([[3.0, -0.5]])
    assert again.score({"joints": joints}, joints[0]) == scorer.score({"joints": joints}, joints[0])
    # the joints' training range (the arena, +-1) travels too, and bounds a goal beyond it
    low, high = again.ranges["joints"]
    assert torch.equal(low, scorer.ranges["joints"][0]) and -1.0 <= float(low.min()) < -0.99
    assert again.beyond_range("joints", torch.tensor([1.15, -0.5])) == []          # within a tenth
    assert [i for i, *_ in again.beyond_range("joints", joints[0])] == [0]


class JointModel(WorldModel):
    """A user's model of a 3-joint arm: the latent is the joint vector, doubled."""

    latent_dim, action_dim, joint_dim = 3, 2, 3

    def __init__(self):
        super().__init__([-1, -1], [1, 1])

    def encode(self, obs):
        return 2 * obs["joints"]

    def predict(self, z, a):
        return z


def test_statistics_from_batches_of_a_users_model():
    model = JointModel()
    assert novelty_for(model) is None
    assert novelty_for(LatentWorldModel(latent_dim=8, hidden=16, channels=[4, 4, 4])) is None
    g = torch.Generator().manual_seed(1)
    batches = [{"joints": torch.randn(256, 3, generator=g) * torch.tensor([1.0, 0.1, 0.0])} for _ in range(4)]
    statistics = compute_statistics(model, batches)
    assert statistics.samples == 1024 and set(statistics.parts) == {"latent", "joints"}
    model.input_statistics = statistics.to_dict()
    scorer = novelty_for(model)
    held_out = torch.randn(500, 3, generator=g) * torch.tensor([1.0, 0.1, 0.0])
    scores = np.array([scorer.score({"joints": q}, model.encode({"joints": q[None]})[0]) for q in held_out])
    assert np.quantile(scores, 0.99) < 4 and scores.max() < THRESHOLD
    # the third joint never moved in training: moving it by a fifth of the first joint's spread is novel
    q = torch.tensor([[0.0, 0.0, 0.2]])
    assert scorer.score({"joints": q}, model.encode({"joints": q})[0]) > THRESHOLD
    with pytest.raises(ValueError, match="joints has 2 values"):
        scorer.score({"joints": torch.zeros(1, 2)}, torch.zeros(3))


def test_image_features_are_per_channel_summaries():
    image = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    image[0, :, :2, 0] = 255                     # red channel: left half bright, one vertical edge
    f = image_features(image)[0].view(5, 3)      # rows: mean, std, min, max, roughness
    assert torch.allclose(f[:, 0], torch.tensor([0.5, 0.5, 0.0, 1.0, 4 / 24]))
    assert torch.equal(f[:, 1], torch.zeros(5))


def test_a_huge_novelty_is_written_short():
    from grasp_ros.models.novelty import novelty_text
    assert novelty_text(56.94) == "56.9"
    assert novelty_text(1.721002208392667e38) == "1.72e+38"
