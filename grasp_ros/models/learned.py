"""Built-in learned world model: camera image -> latent -> action-conditioned latent dynamics.

Shapes: ``B`` batch, ``S`` image side, ``D`` latent, ``A`` action, ``J`` joint (state) dimension.

* Encoder: RGB uint8 [B, S, S, 3] -> three convolutions (the first of stride 2) -> spatial
  softmax (each feature map's expected pixel coordinate on the S/2 grid, a keypoint) -> MLP ->
  latent [B, D]. Keypoints make the position of a small object, the agent, an explicit and
  smooth input to the MLP. Optionally the joint vector [B, J] is concatenated to the keypoints
  (``joint_dim`` > 0: e.g. positions and velocities), and the encoder sees the last K frames
  stacked on the channel axis (``frames`` K > 1, image [B, K, S, S, 3], oldest first): a single
  frame cannot show a velocity, and any robot with inertia needs one.
* Dynamics: z' = z + f(z, a) + W a, f an MLP with layer norm and SiLU (smooth, so planners get
  useful action gradients), W a linear map that carries free-space motion from the start.
  ``steps_per_action`` > 1 applies it several times per action, so a model trained at the fine
  time step of horizon 50 plans at horizon 25 (each action held for two data steps).
* State head: latent -> the joint vector; ``position`` is its first two entries (the navigation
  sims' joints are the agent's x, y).

The training objective (``grasp_ros.training``) makes the latent space usable by planners whose
cost is Euclidean latent distance, and keeps it from collapsing: multi-step latent prediction
against stop-gradient targets, state reconstruction from encoded and predicted latents, and a
metric term that matches latent distances to state distances.

Checkpoints hold plain types and tensors only (``torch.load(weights_only=True)``):
``{"format", "config", "state_dict", "input_statistics", ...}``; ``input_statistics`` (optional,
``grasp_ros.models.novelty``) describes the training inputs, and ``load_latent_model`` attaches
it as ``model.input_statistics``. ``load_world_model("learned")`` reads the shipped
``grasp_ros/assets/wall_door_latent.pt``; ``{"name": "learned", "checkpoint": path}`` reads
another one; ``{"name": "learned", "weights": path}`` loads a state dict into the shipped
architecture.
"""
import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .card import ModelCard, card_from_data, check_card_fits
from .contract import WorldModel, WorldModelError, error_text
from .spec import register_builtin
from .archive import load_checked
from .scripted import script
from .text import quote, shorten

CHECKPOINT_FORMAT = "grasp_ros.latent_world_model/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "wall_door_latent.pt"


class SpatialSoftmax(nn.Module):
    """Feature maps [B, C, h, w] -> expected (x, y) of each map's softmax, in [-1, 1]: [B, 2C]."""

    def __init__(self, height: int, width: int):
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(1, -1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))  # [hw, 2]
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(features.flatten(2) / self.log_temperature.exp(), dim=-1)   # [B, C, hw]
        return (weights @ self.grid).flatten(1)


def mlp(sizes: List[int]) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


MAX_IMAGE_SIZE = 512
"""Largest model input side (px)."""
MAX_WIDTH = 4096
"""Most channels of a convolution and units of a hidden layer (4096: 34 M weights a dynamics
MLP, 134 MB)."""


class LatentWorldModel(WorldModel):
    """Conv + keypoint encoder, residual MLP dynamics and a state head (see the module docstring)."""

    # Evaluated annotations (this file does not postpone them): TorchScript reads these types.
    latent_dim: int
    action_dim: int
    image_size: int
    image_frames: int
    joint_dim: int
    input_statistics: Optional[Dict[str, torch.Tensor]]
    card_json: str

    def __init__(self, image_size: int = 64, latent_dim: int = 32, channels: List[int] = (16, 16, 16),
                 hidden: int = 128, joint_dim: int = 0, state_dim: int = 2, env: str = "",
                 horizon: int = 0, steps_per_action: int = 1, action_dim: int = 2, frames: int = 1):
        # Actions are normalised to [-1, 1]; the model card maps them to robot units.
        if not 1 <= int(action_dim) <= 64 or not 1 <= int(frames) <= 16:
            raise ValueError(f"action_dim must be in [1, 64] and frames in [1, 16], got {action_dim}, {frames}")
        super().__init__([-1.0] * int(action_dim), [1.0] * int(action_dim))
        # Bounded, as a checkpoint's config says what to build before its weights are read: a
        # 1.4 KB file of {"hidden": 200000} asked for 160 GB (an adversarial audit).
        if not 16 <= image_size <= MAX_IMAGE_SIZE or image_size % 2:
            raise ValueError(f"image_size must be even and in [16, {MAX_IMAGE_SIZE}], got {image_size}")
        if (not 1 <= latent_dim <= 1024 or not 1 <= state_dim <= 1024 or not 0 <= joint_dim <= 1024
                or steps_per_action < 1):
            raise ValueError(f"bad sizes: latent_dim {latent_dim}, state_dim {state_dim} (each in "
                             f"[1, 1024]), joint_dim {joint_dim} ([0, 1024]), steps_per_action "
                             f"{steps_per_action}")
        if len(channels) != 3 or not all(1 <= int(c) <= MAX_WIDTH for c in (*channels, hidden)):
            raise ValueError(f"channels (three) and hidden must be in [1, {MAX_WIDTH}], got "
                             f"{list(channels)}, {hidden}")
        c1, c2, c3 = (int(c) for c in channels)
        self.image_size, self.latent_dim, self.joint_dim = int(image_size), int(latent_dim), int(joint_dim)
        self.state_dim, self.hidden, self.channels = int(state_dim), int(hidden), [c1, c2, c3]
        self.env, self.horizon, self.steps_per_action = str(env), int(horizon), int(steps_per_action)
        self.action_dim = int(action_dim)   # an instance attribute, so TorchScript export keeps it
        # Frames per observation (oldest first, one control period apart): a single frame cannot
        # show a velocity; the first convolution sees them stacked on the channel axis.
        self.image_frames = int(frames)
        self.input_statistics = None   # set from the training data (grasp_ros.models.novelty)
        self.card_json = ""   # the model card (grasp_ros.models.card) as JSON; TorchScript keeps a str
        self.conv = nn.Sequential(
            nn.Conv2d(3 * self.image_frames, c1, 4, stride=2, padding=1), nn.SiLU(),   # S/2: keypoints on a S/2 grid
            nn.Conv2d(c1, c2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c2, c3, 3, padding=1))
        self.keypoints = SpatialSoftmax(image_size // 2, image_size // 2)
        self.encoder_head = mlp([2 * c3 + self.joint_dim, hidden, hidden, latent_dim])
        # Layer norm inside the dynamics MLP: without it, training was slow to leave the "move
        # less than the data" regime and rollouts drifted (wall_door, same budget: 8-step
        # position error 0.11 without, 0.045 with).
        self.dynamics = nn.Sequential(
            nn.Linear(latent_dim + self.action_dim, hidden), nn.LayerNorm(hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(),
            nn.Linear(hidden, latent_dim))
        self.action_map = nn.Linear(self.action_dim, latent_dim, bias=False)   # free-space motion
        self.state_head = mlp([latent_dim, hidden, state_dim])
        for layer in (self.dynamics[-1], self.action_map):   # start as "nothing moves": z' = z
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.dynamics[-1].bias)

    def config(self) -> Dict[str, Any]:
        """Constructor arguments as plain types (what a checkpoint stores to rebuild the model)."""
        return {"image_size": self.image_size, "latent_dim": self.latent_dim, "channels": list(self.channels),
                "hidden": self.hidden, "joint_dim": self.joint_dim, "state_dim": self.state_dim,
                "env": self.env, "horizon": self.horizon, "action_dim": self.action_dim,
                "frames": self.image_frames}

    @torch.jit.export
    def encode(self, observation: Dict[str, torch.Tensor]) -> torch.Tensor:
        """observation {"image": uint8 [B, S, S, 3], "joints": [B, J] if joint_dim} -> [B, D]."""
        if "image" not in observation:
            raise WorldModelError("learned model: observation has no 'image'")
        image = observation["image"]
        S = self.image_size
        if image.dtype != torch.uint8:
            raise WorldModelError(f"learned model: image must be uint8 RGB, got {image.dtype}")
        K = self.image_frames
        if K == 1:
            if image.dim() != 4 or image.shape[1] != S or image.shape[2] != S or image.shape[3] != 3:
                raise WorldModelError(f"learned model: image must be [B, {S}, {S}, 3], got {image.shape}")
            x = image.permute(0, 3, 1, 2)
        else:
            if (image.dim() != 5 or image.shape[1] != K or image.shape[2] != S or image.shape[3] != S
                    or image.shape[4] != 3):
                raise WorldModelError(f"learned model: image must be [B, {K}, {S}, {S}, 3] (the last {K} "
                                      f"frames, oldest first), got {image.shape}")
            x = image.permute(0, 1, 4, 2, 3).flatten(1, 2)
        x = x.to(self.action_low.dtype) / 255.0 - 0.5
        features = self.keypoints(self.conv(x))
        if self.joint_dim > 0:
            if "joints" not in observation:
                raise WorldModelError("learned model: this model also encodes 'joints'; none given")
            joints = observation["joints"].to(features.dtype)
            if joints.dim() != 2 or joints.shape[1] != self.joint_dim or joints.shape[0] != image.shape[0]:
                raise WorldModelError(f"learned model: joints must be [B, {self.joint_dim}], got {joints.shape}")
            features = torch.cat([features, joints], dim=1)
        return self.encoder_head(features)

    @torch.jit.export
    def predict(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """latent [..., D], action [..., A] (clipped to the bounds) -> next latent [..., D]."""
        action = torch.maximum(torch.minimum(action, self.action_high), self.action_low)
        z = latent
        for _ in range(self.steps_per_action):
            z = z + self.dynamics(torch.cat([z, action], dim=-1)) + self.action_map(action)
        return z

    @torch.jit.ignore
    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """latent [C, D], actions [C, H, A] -> the serial rollout [C, H+1, D] (first = z0),
        compiled where ``compile_rollout`` made it so."""
        return getattr(self, "_compiled_rollout", self.serial_rollout)(z0, actions)

    @torch.jit.export
    def serial_rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        z = z0
        states: List[torch.Tensor] = [z]
        for t in range(actions.shape[1]):
            z = self.predict(z, actions[:, t])
            states.append(z)
        return torch.stack(states, dim=1)

    @torch.jit.export
    def decode_state(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [..., D] -> joint vector [..., J_state]."""
        return self.state_head(latent)

    @torch.jit.export
    def position(self, latent: torch.Tensor) -> torch.Tensor:
        """For display (predicted paths): the first two or three decoded state entries."""
        state = self.state_head(latent)
        return state[..., : min(3, state.shape[-1])] if state.shape[-1] >= 2 else torch.cat([state, state * 0], -1)


def load_latent_model(path: str | os.PathLike, horizon: Optional[int] = None) -> LatentWorldModel:
    """The model in checkpoint ``path``, planning at ``horizon`` (default: the data's own step).

    Raises ``WorldModelError`` for a missing, corrupt or mismatched file, naming the problem.
    """
    source = f"learned model checkpoint {quote(os.fspath(path))}"
    if not os.path.isfile(path):
        raise WorldModelError(f"{source}: file not found (train one with `grasp-ros train`)")
    try:
        checkpoint = load_checked(path)
    except Exception as exc:  # truncated zip, pickled objects, not a torch file at all...
        raise WorldModelError(f"{source}: cannot read it ({type(exc).__name__}: {shorten(exc)})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise WorldModelError(f"{source}: not a {CHECKPOINT_FORMAT} checkpoint (found {quote(found)})")
    config = dict(checkpoint.get("config") or {})
    try:
        model = LatentWorldModel(**config, steps_per_action=_steps_per_action(config, horizon))
    except (TypeError, ValueError) as exc:
        raise WorldModelError(f"{source}: bad config {quote(config)}: {error_text(exc)}") from exc
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise WorldModelError(f"{source}: weights do not fit the config {quote(config)}: "
                              f"{shorten(exc, 300)}") from exc
    statistics = checkpoint.get("input_statistics")
    tensors = {**dict(model.state_dict()), **(statistics if isinstance(statistics, dict) else {})}
    broken = [name for name, value in tensors.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.isfinite().all()]
    if broken:      # a training run that diverged: every plan would be NaN
        raise WorldModelError(f"{source}: {len(broken)} of its tensors hold NaN or Inf "
                              f"({shorten(', '.join(broken), 200)}): a training run that diverged?")
    model.input_statistics = dict(statistics) if isinstance(statistics, dict) else None
    card = checkpoint_card(checkpoint, model, source)
    model.card_json = json.dumps(card.to_dict())
    return compile_rollout(model.eval())


def card_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The validation numbers a model card shows (of the last evaluation)."""
    out = {"one_step_state_err": metrics["position_err"][0], "encoded_state_err": metrics["position_err_encoded"],
           f"{len(metrics['latent_mse'])}_step_latent_mse": metrics["latent_mse"][-1],
           "train_seconds": metrics.get("seconds")}
    return {k: (round(float(v), 6) if v is not None else None) for k, v in out.items()}


def checkpoint_card(checkpoint: dict, model: LatentWorldModel, source: str) -> ModelCard:
    """The checkpoint's model card for ``model`` (its period scaled by the steps per action), or,
    for a checkpoint written before cards, one derived from its dataset metadata."""
    if checkpoint.get("card") is not None:
        card = ModelCard.from_dict(checkpoint["card"], f"{source}: card")
    else:
        meta = checkpoint.get("dataset") if isinstance(checkpoint.get("dataset"), dict) else {}
        metrics = checkpoint.get("metrics")
        card = card_from_data(meta, model.image_size, model.joint_dim, model.action_dim,
                              card_metrics(metrics) if isinstance(metrics, dict) else {},
                              image_frames=model.image_frames)
    check_card_fits(card, model, f"{source}: card")
    if model.steps_per_action > 1 and card.period:
        card = dataclasses.replace(card, period=card.period * model.steps_per_action)
    return card


def compile_rollout(model: LatentWorldModel) -> LatentWorldModel:
    """Run ``model.rollout`` as TorchScript: the H serial steps then run without Python between
    them, about twice as fast on a CPU for a planner's small batches (its no-grad rollouts; the
    gradient paths stay eager, where TorchScript's backward is slower here). The compiled method
    is held outside the module's registry, so state dicts and exports are unchanged."""
    # A partial, not the bare method: torch.jit.script(model) (an export) would take a bare
    # compiled method for one of the module's own.
    object.__setattr__(model, "_compiled_rollout", functools.partial(script(model).serial_rollout))
    return model


def _steps_per_action(config: Dict[str, Any], horizon: Optional[int]) -> int:
    """Data steps per planning step: the data's horizon over the planning horizon (an integer)."""
    trained = int(config.get("horizon") or 0)
    if horizon is None or int(horizon) == trained or trained <= 0:
        return 1   # a robot's data (no sim horizon): one planning step is one data step (the card's period)
    if int(horizon) < 1 or trained % int(horizon):
        raise WorldModelError(f"learned model: trained at horizon {trained}; a planning horizon must "
                              f"divide it (e.g. {trained} or {trained // 2}), got {quote(horizon)}")
    return trained // int(horizon)


@register_builtin("learned")
def _learned(checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, env: Optional[str] = None,
             horizon: Optional[int] = None, image_size: Optional[int] = None,
             observe: Optional[str] = None) -> LatentWorldModel:
    """``observe`` (optional): the input a launch expects the model to encode ("image", "joints"
    or "image+joints"), checked against the model's card."""
    model = load_latent_model(checkpoint, horizon)
    if observe is not None:
        card = json.loads(model.card_json)
        encodes = "+".join(k for k in ("image", "joints") if card.get(k))
        if observe != encodes:
            raise WorldModelError(f"learned model {quote(os.fspath(checkpoint))} encodes {encodes}, "
                                  f"not {quote(observe)}")
    if env is not None and model.env and env != model.env:
        raise WorldModelError(f"learned model {quote(os.fspath(checkpoint))} was trained on {model.env!r}, "
                              f"not {quote(env)}")
    if image_size is not None and int(image_size) != model.image_size:
        raise WorldModelError(f"learned model encodes {model.image_size}px images, not {quote(image_size)}px")
    return model
