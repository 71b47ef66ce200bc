"""Novelty of an input: how far an observation lies from the data a world model was trained on.

A model is planned on inputs unlike its training data without complaint: the shipped wall_door
encoder maps an all-black or a noise frame into or beside the wall, a blue-tinted floor outside
the arena, and none of these latents is further from the training latents than frames of its own
world are. So ``InputStatistics`` measures the input itself too, in up to three parts, each a
feature vector's mean [F] and regularised covariance [F, F]:

* ``latent``: the encoded observation [D];
* ``image``: per RGB channel, a frame's mean, standard deviation, darkest and brightest value
  and roughness (mean absolute difference of neighbouring pixels), in [0, 1]: 15 numbers
  (``image_features``). Mean and std (colour balance, contrast) catch black, white and recoloured
  frames; darkest and brightest values catch a small object that changes colour or vanishes;
  roughness catches pixel noise, which leaves mean and std almost unchanged;
* ``joints``: the joint vector [J].

``score``: each part's deviation from its training mean is whitened with the symmetric inverse
square root of the covariance, and the largest component over all parts is the score. For
features that vary independently this is how many training standard deviations the furthest
feature lies out ("how many training spreads away"); in-distribution inputs score mostly below
3. Not caught: changes that leave the frame's statistics and the latent ordinary, such as a
second agent. Measurements behind the floors and ``DEFAULT_NOVELTY_THRESHOLD``:
``grasp_ros/assets/README.md``.

A model carries its statistics as ``model.input_statistics``, a flat dict of tensors
(``to_dict``), which checkpoints (``torch.load(weights_only=True)``) and TorchScript keep;
``novelty_for(model)`` reads it.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional

import torch

DEFAULT_NOVELTY_THRESHOLD = 6.0
"""Recommended threshold on ``score``: over twice the largest in-distribution score measured
(2.5 for the shipped model's frames, 1.8 for the analytic model's arena), and below every
strange input tried (black, white, noise, recoloured frames: above 11; joints at (5, 0): 8.6)."""

PARTS = ("latent", "image", "joints")
RANGE_MARGIN = 0.1
"""A joint goal may lie this fraction of a joint's training range beyond that range. Spreads do
not bound a goal: an arm's elbow that swept +-2 rad (to its hard stops) has a spread of 1.2 rad,
so a goal at 3 rad scored 2.4 and the arm pressed into its stop for as long as the goal stood."""
LATENT_FLOOR = 0.01
"""Latent and joint parts: every direction varies at least this fraction of the training
cloud's overall spread (sqrt of the covariance trace), so that directions training barely
explored (the shipped model's latents lie near a 2-D sheet in 32 dimensions) do not make every
new input novel."""
IMAGE_FLOOR = 0.01
"""Image part: every feature varies at least this much (in [0, 1] intensity units, 2.55 grey
levels). A simulator's frames differ only by the agent's few pixels, so without a floor any
camera would be novel; with it, a frame brighter by 10 grey levels scores 4 and by 20 scores 8,
bracketing where the shipped encoder's position error grows past its own."""


def image_features(image: torch.Tensor) -> torch.Tensor:
    """uint8 RGB [B, S, S, 3] -> [B, 15]: per channel mean, std, min, max, roughness, in [0, 1]."""
    if image.dim() == 5:      # the last K frames of a history model: the newest describes it
        image = image[:, -1]
    B, H, W = image.shape[:3]
    pixels = image.reshape(B, H * W, 3)
    low, high = pixels.aminmax(dim=1)
    x = pixels.to(torch.float32)          # sums over dim 1 of [B, N, 3]: several times faster than std_mean
    mean = x.sum(1) / (H * W)
    std = ((x - mean.unsqueeze(1)).square().sum(1) / (H * W)).sqrt()
    grid = x.view(B, H, W, 3)
    rough = ((grid[:, 1:] - grid[:, :-1]).abs().reshape(B, -1, 3).sum(1)
             + (grid[:, :, 1:] - grid[:, :, :-1]).abs().reshape(B, -1, 3).sum(1)) / (H * (W - 1) + (H - 1) * W)
    return torch.cat([mean, std, low, high, rough], dim=1) / 255


class InputStatistics:
    """Mean [F] and regularised covariance [F, F] of each part's training features.

    ``parts`` maps a part name (``PARTS``) to (mean, covariance); ``samples`` is how many
    observations they came from; ``ranges`` maps a part to its features' (lowest, highest)
    training values (the joints'; statistics made before ranges were kept have none). Whitening
    matrices are computed once here, so ``score`` is a few small matrix products.
    """

    def __init__(self, parts: Mapping[str, tuple[torch.Tensor, torch.Tensor]], samples: int = 0,
                 ranges: Optional[Mapping[str, tuple[torch.Tensor, torch.Tensor]]] = None):
        unknown = set(parts) - set(PARTS)
        if unknown or not parts:
            raise ValueError(f"input statistics need parts among {PARTS}, got {sorted(parts)}")
        self.parts = {name: (mean.to(torch.float32), cov.to(torch.float32)) for name, (mean, cov) in parts.items()}
        self.samples = int(samples)
        self.ranges = {name: (low.to(torch.float32), high.to(torch.float32))
                       for name, (low, high) in (ranges or {}).items()}
        for name, (low, high) in self.ranges.items():
            if name not in self.parts or low.shape != self.parts[name][0].shape or high.shape != low.shape:
                raise ValueError(f"input statistics: range of {name!r} must match its mean, got "
                                 f"{tuple(low.shape)} and {tuple(high.shape)}")
        self._whiten: Dict[str, torch.Tensor] = {}
        for name, (mean, cov) in self.parts.items():
            if mean.dim() != 1 or cov.shape != (mean.numel(), mean.numel()):
                raise ValueError(f"input statistics {name!r}: mean [F] and covariance [F, F] expected, "
                                 f"got {tuple(mean.shape)} and {tuple(cov.shape)}")
            values, vectors = torch.linalg.eigh(cov.double())
            if not bool(values.min() > 0):
                raise ValueError(f"input statistics {name!r}: covariance is not positive definite")
            # Symmetric (ZCA) whitening: of all whitenings the one closest to the features' own
            # axes, and unique where the floor makes eigenvalues equal (a principal basis is not).
            self._whiten[name] = ((vectors / values.sqrt()) @ vectors.T).to(mean)     # [F, F]

    def to(self, device) -> "InputStatistics":
        return InputStatistics({k: (m.to(device), c.to(device)) for k, (m, c) in self.parts.items()}, self.samples,
                               {k: (lo.to(device), hi.to(device)) for k, (lo, hi) in self.ranges.items()})

    def to_dict(self) -> Dict[str, torch.Tensor]:
        """Flat {"<part>.mean", "<part>.covariance", "<part>.low", "<part>.high", "samples"}:
        tensors only."""
        out = {"samples": torch.tensor(self.samples)}
        for name, (mean, cov) in self.parts.items():
            out[f"{name}.mean"], out[f"{name}.covariance"] = mean.cpu(), cov.cpu()
        for name, (low, high) in self.ranges.items():
            out[f"{name}.low"], out[f"{name}.high"] = low.cpu(), high.cpu()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, torch.Tensor]) -> "InputStatistics":
        parts = {name: (torch.as_tensor(data[f"{name}.mean"]), torch.as_tensor(data[f"{name}.covariance"]))
                 for name in PARTS if f"{name}.mean" in data}
        ranges = {name: (torch.as_tensor(data[f"{name}.low"]), torch.as_tensor(data[f"{name}.high"]))
                  for name in parts if f"{name}.low" in data and f"{name}.high" in data}
        return cls(parts, int(data.get("samples", 0)), ranges)

    def beyond_range(self, name: str, x: torch.Tensor) -> list[tuple[int, float, float, float]]:
        """(feature, value, lowest, highest) for each feature of ``x`` [F] further than
        ``RANGE_MARGIN`` of its training range outside that range; [] where there is no range."""
        if name not in self.ranges:
            return []
        low, high = self.ranges[name]
        x = x.to(low).reshape(-1)
        margin = RANGE_MARGIN * (high - low)
        out = ((x < low - margin) | (x > high + margin)).nonzero().flatten().tolist()
        return [(i, float(x[i]), float(low[i]), float(high[i])) for i in out]

    def furthest(self, name: str, x: torch.Tensor) -> int:
        """The feature of ``x`` [F] whose whitened deviation is largest (what makes it novel)."""
        mean, whiten = self.parts[name][0], self._whiten[name]
        z = torch.nan_to_num(((x.to(mean).reshape(-1) - mean) @ whiten).abs(), nan=float("inf"))
        return int(z.argmax())

    def score_parts(self, observation: Mapping[str, torch.Tensor], latent: torch.Tensor) -> Dict[str, float]:
        """Each part's score (see ``score``), for the parts both the statistics and the input have."""
        features = {"latent": latent}
        if "image" in self.parts and "image" in observation:
            image = observation["image"]
            features["image"] = image_features(image if image.dim() == 4 else image.unsqueeze(0))
        if "joints" in self.parts and "joints" in observation:
            features["joints"] = observation["joints"]
        names = [n for n in features if n in self.parts]
        scores = [self._part_score(n, features[n]) for n in names]
        return dict(zip(names, torch.stack(scores).tolist())) if scores else {}

    def score(self, observation: Mapping[str, torch.Tensor], latent: torch.Tensor) -> float:
        """Novelty of one observation (image uint8 [S, S, 3] or [1, S, S, 3], joints [J] or
        [1, J]) and its latent ([D] or [1, D]): the largest whitened deviation from the training
        mean over all parts (and over a batch), in training standard deviations. In-distribution
        inputs score mostly below 3; NaN or infinite values score inf."""
        return max(self.score_parts(observation, latent).values(), default=0.0)

    def part_score(self, name: str, x: torch.Tensor) -> float:
        """One part's score of features ``x`` ([F] or [B, F]); NaN without statistics for it
        (a goal in joint space, for a model trained without joint inputs)."""
        return float(self._part_score(name, x)) if name in self.parts else float("nan")

    def _part_score(self, name: str, x: torch.Tensor) -> torch.Tensor:
        mean, whiten = self.parts[name][0], self._whiten[name]
        x = x.to(mean).reshape(-1, x.shape[-1])
        if x.shape[-1] != mean.numel():
            raise ValueError(f"novelty: {name} has {x.shape[-1]} values, its statistics {mean.numel()}")
        z = ((x - mean) @ whiten).abs().amax()
        return torch.nan_to_num(z, nan=float("inf"))


@torch.no_grad()
def compute_statistics(model, observation_batches: Iterable[Mapping[str, torch.Tensor]]) -> InputStatistics:
    """Statistics of the observations the model encodes: batches of {"image": uint8 [B, S, S, 3],
    "joints": [B, J]} (either or both). Each batch is encoded on the model's device; a part is
    measured from the batches that have its key (the latent from all of them)."""
    device = _device_of(model)
    features: Dict[str, list] = {name: [] for name in PARTS}
    samples = 0
    for batch in observation_batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        features["latent"].append(torch.as_tensor(model.encode(dict(batch))).float().cpu())
        samples += len(features["latent"][-1])
        if "image" in batch:
            features["image"].append(image_features(batch["image"]).cpu())
        if "joints" in batch:
            features["joints"].append(batch["joints"].float().cpu())
    parts, ranges = {}, {}
    for name, chunks in features.items():
        if chunks:
            x = torch.cat(chunks).double()
            if len(x) < 2:
                raise ValueError(f"input statistics: need at least 2 observations, got {len(x)}")
            cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
            floor = IMAGE_FLOOR if name == "image" else LATENT_FLOOR * float(cov.trace().sqrt())
            parts[name] = (x.mean(0), cov + max(floor, 1e-6) ** 2 * torch.eye(len(cov), dtype=cov.dtype))
            if name == "joints":
                ranges[name] = x.aminmax(dim=0)
    return InputStatistics(parts, samples, ranges)


def novelty_text(value: float) -> str:
    """A novelty score as a status message writes it: one decimal, three significant digits
    once huge (an input of 1e38 scores some 1e38 spreads)."""
    return f"{value:.1f}" if abs(value) < 1e6 else f"{value:.3g}"


def novelty_for(model) -> Optional[InputStatistics]:
    """The statistics ``model.input_statistics`` describes, on the model's device; None without them."""
    data = getattr(model, "input_statistics", None)
    if not data:
        return None
    return InputStatistics.from_dict(data).to(_device_of(model))


def _device_of(model) -> torch.device:
    low = getattr(model, "action_low", None)
    return low.device if isinstance(low, torch.Tensor) else torch.device("cpu")
