"""Frame history: a learned model of the last K camera frames, trained on stacked windows, and a
control loop that stacks the frames one model period apart."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from grasp_ros.control import ControlConfig, ControlLoop, Status
from grasp_ros.data import TransitionData, TransitionWindows
from grasp_ros.models import WorldModel, WorldModelError, check_world_model, load_world_model
from grasp_ros.models.card import ActionOutput, ImageInput, ModelCard, card_for
from grasp_ros.models.learned import LatentWorldModel
from grasp_ros.planning import make_planner
from grasp_ros.training import TrainSettings, export_torchscript, train

SMALL = {"latent_dim": 8, "hidden": 16, "channels": [4, 4, 4]}


def test_a_history_model_encodes_the_last_k_frames_and_refuses_one():
    model = LatentWorldModel(image_size=16, frames=3, **SMALL)
    check_world_model(model, "history model")          # the probe sends [B, 3, 16, 16, 3]
    frames = torch.randint(0, 255, (2, 3, 16, 16, 3), dtype=torch.uint8)
    assert model.encode({"image": frames}).shape == (2, 8)
    with pytest.raises(WorldModelError, match=r"\[B, 3, 16, 16, 3\]"):
        model.encode({"image": frames[:, -1]})
    with pytest.raises(ValueError, match="frames"):
        LatentWorldModel(image_size=16, frames=0, **SMALL)


def data_with_numbered_frames(N=2, T=6):
    """Every frame filled with its own number (episode * 100 + t), so stacks can be read back."""
    number = np.arange(N)[:, None] * 100 + np.arange(T + 1)[None]
    images = np.broadcast_to(number[..., None, None, None], (N, T + 1, 16, 16, 3)).astype(np.uint8).copy()
    meta = {"env": "", "image_size": 16, "max_step": 0.0, "seed": 0, "source": "test", "period": 0.1}
    rng = np.random.default_rng(0)
    return TransitionData(images, rng.normal(size=(N, T + 1, 2)), rng.uniform(-1, 1, (N, T, 2)), meta)


def test_windows_stack_each_frame_with_the_ones_before_it_first_frames_repeating():
    windows = TransitionWindows(data_with_numbered_frames(), 3, history=3)
    images = windows.gather(torch.arange(len(windows)))["images"]
    assert images.shape == (len(windows), 4, 3, 16, 16, 3)
    first = images[0, :, :, 0, 0, 0].tolist()           # episode 0's window starting at frame 0
    assert first == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]]


def test_training_with_history_writes_it_in_the_card_and_exports_keep_it(tmp_path):
    settings = TrainSettings(epochs=1, batch_size=2, segment_steps=3, rollout_steps=2, dynamics_steps=2,
                             dynamics_batch_size=2, val_fraction=0.5, statistics_frames=4, seed=0)
    result = train(data_with_numbered_frames(), str(tmp_path / "h.pt"), settings, {**SMALL, "frames": 2},
                   progress=False, log=lambda _: None)
    loaded = load_world_model({"name": "learned", "checkpoint": str(tmp_path / "h.pt")})
    card = card_for(loaded)
    assert loaded.image_frames == 2 and card.image.history == 2 and "the last 2 frames" in card.describe()
    export_torchscript(result["model"], str(tmp_path / "h.ts"))
    scripted = load_world_model(str(tmp_path / "h.ts"))
    assert scripted.image_frames == 2 and card_for(scripted).image.history == 2


class NumberedFrames(WorldModel):
    """Encodes the number each frame of its 3-frame stack is filled with: what the loop stacked."""
    latent_dim, action_dim, image_size, image_frames = 3, 2, 16, 3

    def __init__(self, period):
        super().__init__([-1.0, -1.0], [1.0, 1.0])
        self.card = ModelCard(ActionOutput(("a", "b"), (-1.0, -1.0), (1.0, 1.0)),
                              image=ImageInput(16, history=3), period=period)

    def encode(self, observation):
        return observation["image"][:, :, 0, 0, 0].to(torch.float32)

    def predict(self, latent, action):
        return latent + 0.0 * action.sum(-1, keepdim=True)


@pytest.mark.parametrize("period", [0.1, 0.0])       # 0: the card's period unknown: the control period
def test_the_loop_stacks_frames_one_model_period_apart(period):
    model = NumberedFrames(period)
    loop = ControlLoop(model, make_planner("gd", model, 3, {"iterations": 1}),
                       ControlConfig(period=0.1, timing="fixed_iterations", novelty_threshold=0.0))
    loop.set_goal({"image": np.full((16, 16, 3), 7, np.uint8)})   # one picture: repeated K times
    for i in range(10):                                            # a 30 Hz camera, frames numbered i
        loop.observe({"image": np.full((16, 16, 3), i, np.uint8)}, 1.0 + i / 30)
    result = loop.step(1.0 + 9 / 30)
    assert result.status == Status.OK, result.message
    stacked = result.plan.states[0].tolist()       # the encoded observation: z0
    assert stacked == [3.0, 6.0, 9.0]              # 0.1 s = 3 frames apart, oldest first
    assert loop.goal_target.target.tolist() == [7.0, 7.0, 7.0]


def test_a_young_history_repeats_its_first_frame():
    model = NumberedFrames(0.1)
    loop = ControlLoop(model, make_planner("gd", model, 3, {"iterations": 1}),
                       ControlConfig(period=0.1, timing="fixed_iterations", novelty_threshold=0.0))
    loop.set_goal({"image": np.zeros((16, 16, 3), np.uint8)})
    loop.observe({"image": np.full((16, 16, 3), 5, np.uint8)}, 2.0)
    loop.observe({"image": np.full((16, 16, 3), 6, np.uint8)}, 2.1)
    result = loop.step(2.1)
    assert result.plan.states[0].tolist() == [5.0, 5.0, 6.0]
