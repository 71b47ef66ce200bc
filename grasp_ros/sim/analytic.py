"""Built-in analytic world model of the navigation simulators: the simulator's own dynamics.

The latent is the position itself (D = 2), so plans made with this model can be checked exactly
by executing them in the simulator. It encodes joints (x, y) directly, or an image by finding
the agent's red disk, which lets the camera path run without a learned model.

Its novelty statistics (``input_statistics``, ``grasp_ros.models.novelty``) describe the whole
arena [-1, 1]^2: joints drawn uniformly there and camera frames of the agent at such positions,
measured on first use (a fraction of a second). A joint at (5, 0) or a goal at (40, 0) is novel.
"""
from __future__ import annotations

from functools import cached_property
from typing import Dict

import numpy as np
import torch

from .dynamics import AGENT_RADIUS
from .nav import NOMINAL_HORIZON, make_env
from .render import AGENT
from ..models.card import NAV_SIM_ACTIONS, NAV_SIM_JOINTS, ActionOutput, ImageInput, JointInput, ModelCard
from ..models.contract import Observation, WorldModel, WorldModelError
from ..models.novelty import compute_statistics


class AnalyticNavModel(WorldModel):
    latent_dim = 2
    action_dim = 2
    joint_dim = 2

    def __init__(self, env: str = "wall_door", horizon: int = NOMINAL_HORIZON, image_size: int = 64,
                 observe: str = "joints"):
        super().__init__([-1.0, -1.0], [1.0, 1.0])
        if observe not in ("joints", "image"):
            raise ValueError(f"observe must be 'joints' or 'image', got {observe!r}")
        sim = make_env(env, horizon, image_size=image_size)
        # It encodes either input; the card names the one the controller should subscribe to.
        self.card = ModelCard(
            ActionOutput(NAV_SIM_ACTIONS, (-1.0, -1.0), (1.0, 1.0), "normalised (max_step per step)"),
            image=ImageInput(int(image_size)) if observe == "image" else None,
            joints=JointInput(NAV_SIM_JOINTS) if observe == "joints" else None,
            goal_joints=JointInput(NAV_SIM_JOINTS),
            provenance={"source": "the simulator's own dynamics", "env": env})
        self.env_name, self.horizon, self.image_size = env, int(horizon), int(image_size)
        self.dynamics = sim.dynamics
        self._camera = sim.camera

    def encode(self, observation: Observation) -> torch.Tensor:
        if "joints" in observation:
            return observation["joints"].to(self.action_low.dtype)[..., :2]
        if "image" in observation:
            return self._locate_agent(observation["image"])
        raise WorldModelError("analytic model: observation has neither 'joints' nor 'image'")

    def predict(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.dynamics(latent, action)

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The contract's optional serial rollout [C, H+1, 2]: the same steps, compiled."""
        return self.dynamics.rollout(z0, actions)

    def position(self, latent: torch.Tensor) -> torch.Tensor:
        return latent

    @cached_property
    def input_statistics(self) -> Dict[str, torch.Tensor]:
        """Novelty statistics of the arena: 4096 uniform joint vectors, 512 frames (seeded)."""
        rng = np.random.default_rng(0)
        joints = rng.uniform(-1, 1, (4096, 2))
        frames = np.stack([self._camera.render(p) for p in joints[:512]])
        joints = torch.as_tensor(joints, dtype=torch.float32)
        batches = [{"joints": joints[512:]}, {"joints": joints[:512], "image": torch.from_numpy(frames)}]
        return compute_statistics(self, batches).to_dict()

    def _locate_agent(self, image: torch.Tensor) -> torch.Tensor:
        """Centroid of the agent's red pixels, in world coordinates. image uint8 [B, S, S, 3]."""
        if image.dim() != 4 or image.shape[-1] != 3:
            raise WorldModelError(f"analytic model: image must be [B, S, S, 3], got {tuple(image.shape)}")
        px = image.to(torch.int16)
        colour = torch.tensor(AGENT, dtype=torch.int16, device=image.device)
        mask = ((px - colour).abs().sum(-1) < 90).to(torch.float32)       # [B, S, S]
        count = mask.sum((-2, -1))
        if bool((count == 0).any()):
            raise WorldModelError("analytic model: no agent visible in the image")
        rows = torch.arange(image.shape[1], dtype=torch.float32, device=image.device)
        cols = torch.arange(image.shape[2], dtype=torch.float32, device=image.device)
        r = (mask.sum(-1) * rows).sum(-1) / count
        c = (mask.sum(-2) * cols).sum(-1) / count
        # One disk, or the centroid of two red things is neither (an audit's second red object
        # gave OK cycles planned from between them): every red pixel within the disk's radius.
        spread = ((rows.view(-1, 1) - r.view(-1, 1, 1)) ** 2 + (cols - c.view(-1, 1, 1)) ** 2) * mask
        radius = max(2, round(AGENT_RADIUS * image.shape[2])) + 2           # + anti-aliased edge
        if bool((spread.flatten(1).amax(1) > radius ** 2).any()):
            raise WorldModelError("analytic model: the agent's colour covers more than its disk "
                                  "(another red object in view?)")
        x = c / (image.shape[2] - 1) * 2 - 1
        y = 1 - r / (image.shape[1] - 1) * 2
        return torch.stack([x, y], dim=-1).to(self.action_low.dtype)
