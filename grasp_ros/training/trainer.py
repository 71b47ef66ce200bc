"""Training loop of the latent world model: seeded, validated, checkpointed, resumable.

A batch is B segments of s steps (frames o_0..o_s, joints q_0..q_s, actions a_0..a_{s-1}).
Every frame is encoded once, z_t = enc(o_t), and a k-step rollout starts from every frame that
has k frames after it, so one encoder pass serves s-k+1 rollouts (the encoder is the cost):

    zhat_{t,0} = z_t + noise,  zhat_{t,j} = F(zhat_{t,j-1}, a_{t+j-1}),  y_{t+j} = sg(z_{t+j})
    L = w_pred   * mean_{t,j} ||zhat_{t,j} - y_{t+j}||^2 / D          multi-step latent prediction
      + w_state  * mean ||dec(z_t) - q_t||^2 + mean_{t,j} ||dec(zhat_{t,j}) - q_{t+j}||^2
      + w_metric * mean_{u,v} (||z_u - z_v|| - ||q_u - q_v||)^2        latent distance = state distance
      + w_var    * mean_d relu(1 - std_d(z))                          VICReg variance (optional)

sg is stop-gradient: targets are the same encodings without gradient, so the loss cannot be
lowered by moving targets. The state terms (reconstruction from encoded and predicted latents)
and the metric term anchor the latent to the robot's state, which rules out collapse, and make
the planners' Euclidean latent cost a distance that planners can descend. Validation metrics:
latent MSE and position error per rollout step j = 1..k, and the encoder's position error.

Two phases. (1) ``epochs`` over the segments, training everything. (2) ``dynamics_steps``
steps on the dynamics and the state head alone, over encodings of every frame computed once
with the frozen encoder: the same loss without the encoder's terms. A phase-2 step costs a
small fraction of a phase-1 step (no images), and on wall_door it halved the 31-step rollout
error (0.055 -> 0.027) in a minute of CPU, where more phase-1 epochs gained little.

At the end, the novelty statistics of a sample of training frames (``input_statistics``,
``grasp_ros.models.novelty``) are stored with the model, so that a controller can tell inputs
unlike the training data.

A loss that is not finite stops training there (``TrainingDiverged``), before a checkpoint of
non-finite weights is written: one NaN step makes every weight NaN, and the run went on to write
them and fail later, at the novelty statistics.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..data import DatasetError, TransitionData, TransitionWindows
from ..models.card import ModelCard, card_from_data, decimal_bound
from ..models.joint_layout import position_columns
from ..models.learned import CHECKPOINT_FORMAT, LatentWorldModel, card_metrics
from ..models.novelty import InputStatistics, compute_statistics
from ..models.scripted import script


class TrainingDiverged(ValueError):
    """The loss went infinite or NaN: training stops, and names where and the likely causes."""


@dataclass
class TrainSettings:
    epochs: int = 15
    """Passes over the training windows."""
    batch_size: int = 8
    """B: segments per gradient step."""
    segment_steps: int = 24
    """s: steps per segment; every segment gives s - k + 1 rollouts."""
    rollout_steps: int = 16
    """k: steps of the multi-step prediction loss (k <= s)."""
    start_noise: float = 0.02
    """Std of Gaussian noise added to each rollout's start latent: the dynamics learn to pull
    off-manifold latents (a planner's virtual states, an encoder's error) back to the data."""
    lr: float = 2e-3
    """Adam learning rate at the start; cosine-decayed to lr_final_fraction * lr."""
    lr_final_fraction: float = 0.05
    """Learning rate at the last step, as a fraction of lr."""
    dynamics_steps: int = 6000
    """Phase 2: gradient steps on dynamics and state head over frozen encodings (0 skips it)."""
    dynamics_batch_size: int = 32
    """Segments per phase-2 step."""
    dynamics_lr: float = 1e-3
    """Phase-2 learning rate at the start; cosine-decayed like ``lr``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 10.0
    """Clip the global gradient norm to this (0 disables)."""
    pred_weight: float = 8.0
    """w_pred: multi-step latent prediction (a per-dimension mean). Planners compare predicted
    latents with encoded ones, so the prediction must land on the encoder's latents in every
    dimension, not only in those the state head reads: at 1, the shipped wall_door model drifted
    0.09 per step off them (more than a step), and GRASP's virtual states, which sit on the
    encoder's latents, could not be matched; at 8 it drifts 0.02."""
    state_weight: float = 1.0
    """w_state: state (joint vector) reconstruction from encoded and predicted latents."""
    metric_weight: float = 1.0
    """w_metric: match latent distances to state distances within a batch."""
    variance_weight: float = 0.0
    """w_var: VICReg variance term on the encoded latents (0 disables)."""
    val_fraction: float = 0.1
    """Fraction of episodes held out for validation."""
    val_windows: int = 256
    """Validation segments evaluated per epoch (a fixed, seeded subset)."""
    statistics_frames: int = 4096
    """Training frames (a seeded sample) whose encodings and image statistics are stored with the
    model for novelty detection (``grasp_ros.models.novelty``); 0 stores none."""
    seed: int = 0
    """Seeds model initialisation, the split, shuffling and validation subset."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""

    def validate(self) -> None:
        not_finite = [f.name for f in dataclasses.fields(self)
                      if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))]
        if not_finite:
            raise ValueError(f"{', '.join(not_finite)} must be finite, got "
                             f"{', '.join(str(getattr(self, n)) for n in not_finite)}")
        if min(self.epochs, self.batch_size, self.dynamics_batch_size, self.rollout_steps, self.val_windows) < 1:
            raise ValueError("epochs, batch sizes, rollout_steps and val_windows must be >= 1")
        if self.dynamics_steps < 0 or not self.dynamics_lr > 0:
            raise ValueError(f"dynamics_steps must be >= 0 and dynamics_lr > 0, "
                             f"got {self.dynamics_steps}, {self.dynamics_lr}")
        if self.segment_steps < self.rollout_steps:
            raise ValueError(f"segment_steps ({self.segment_steps}) must be >= rollout_steps ({self.rollout_steps})")
        if not (self.lr > 0 and 0 < self.lr_final_fraction <= 1):
            raise ValueError(f"lr must be > 0 and lr_final_fraction in (0, 1], got {self.lr}, {self.lr_final_fraction}")
        weights = (self.pred_weight, self.state_weight, self.metric_weight, self.variance_weight)
        if min(weights) < 0 or self.state_weight + self.metric_weight + self.variance_weight == 0:
            raise ValueError("loss weights must be >= 0, and at least one anti-collapse term "
                             "(state, metric or variance) must be on")
        if self.statistics_frames < 0 or self.statistics_frames == 1:
            raise ValueError(f"statistics_frames must be 0 or >= 2, got {self.statistics_frames}")
        if min(self.start_noise, self.weight_decay, self.grad_clip) < 0:
            raise ValueError(f"start_noise, weight_decay and grad_clip (0: no clipping) must be >= 0, got "
                             f"{self.start_noise}, {self.weight_decay}, {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def window_losses(model: LatentWorldModel, batch: dict[str, torch.Tensor], settings: TrainSettings,
                  latents: Optional[torch.Tensor] = None,
                  positions: Optional[list[int]] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its parts for a batch of segments (images [B, s+1, S, S, 3], joints
    [B, s+1, J], actions [B, s, A]). Parts: ``pred`` [k] and ``position_err`` [k+1] per rollout
    step (index 0 of ``position_err``: encoded frames), the scalar terms, and ``loss``.

    ``latents`` [B, s+1, D]: encodings from a frozen encoder (phase 2); the images are then not
    needed, and the encoder's own terms (metric, variance) are left out. ``positions``: the joint
    columns ``position_err`` measures (``measured_position_columns``; default the first two)."""
    joints, actions = batch["joints"], batch["actions"]
    B, s = actions.shape[:2]
    k = settings.rollout_steps
    z = latents if latents is not None else model.encode(
        _observation(model, batch["images"].flatten(0, 1), joints.flatten(0, 1))).view(B, s + 1, -1)
    targets = z[:, 1:].detach().unfold(1, k, 1).transpose(-1, -2)                  # [B, n, k, D]
    true_states = joints[:, 1:].unfold(1, k, 1).transpose(-1, -2)                  # [B, n, k, J]
    steps = actions.unfold(1, k, 1).transpose(-1, -2)                              # [B, n, k, A]
    starts = z[:, : s - k + 1]
    if settings.start_noise > 0 and model.training:
        starts = starts + settings.start_noise * torch.randn_like(starts)
    predicted = _rollout(model, starts, steps)                                     # [B, n, k, D]
    pred_per_step = (predicted - targets).pow(2).mean(-1).flatten(0, 1).mean(0)     # [k]
    encoded_states, predicted_states = model.decode_state(z), model.decode_state(predicted)
    J = encoded_states.shape[-1]
    state_encoded = (encoded_states - joints[..., :J]).pow(2).sum(-1).mean()
    state_predicted = (predicted_states - true_states[..., :J]).pow(2).sum(-1).mean()
    loss = settings.pred_weight * pred_per_step.mean() + settings.state_weight * (state_encoded + state_predicted)
    metric = variance = torch.zeros((), device=z.device)
    if latents is None:
        flat_z, flat_q = z.flatten(0, 1), joints.flatten(0, 1)
        metric = (torch.cdist(flat_z, flat_z) - torch.cdist(flat_q, flat_q)).pow(2).mean()
        variance = torch.relu(1 - torch.sqrt(flat_z.var(0) + 1e-4)).mean()
        loss = loss + settings.metric_weight * metric + settings.variance_weight * variance
    with torch.no_grad():
        cols = list(range(min(2, J))) if positions is None else list(positions)
        encoded_err = (encoded_states[..., cols] - joints[..., cols]).norm(dim=-1).mean().view(1)
        predicted_err = (predicted_states[..., cols] - true_states[..., cols]).norm(dim=-1).flatten(0, 1).mean(0)
        position_err = torch.cat([encoded_err, predicted_err])
    return loss, {"loss": loss, "pred": pred_per_step, "state_encoded": state_encoded,
                  "state_predicted": state_predicted, "metric": metric, "variance": variance,
                  "position_err": position_err}


def measured_position_columns(meta: dict[str, Any], joint_dim: int) -> list[int]:
    """The joint columns that hold positions, by the data's ``joint_fields`` (``joint_layout``);
    data without fields or positions: the first two columns."""
    fields = list(meta.get("joint_fields") or ("position",))
    if "position" not in fields or joint_dim % len(fields):
        return list(range(min(2, joint_dim)))
    return position_columns(range(joint_dim // len(fields)), fields)   # only the joints' count matters


def _observation(model: LatentWorldModel, images: torch.Tensor, joints: torch.Tensor) -> dict[str, torch.Tensor]:
    obs = {"image": images}
    if model.joint_dim:
        obs["joints"] = joints[:, : model.joint_dim]
    return obs


def _rollout(model: LatentWorldModel, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Latents [..., k, D] after each of the actions [..., k, A] from z0 [..., D]."""
    z, out = z0, []
    for t in range(actions.shape[-2]):
        z = model.predict(z, actions[..., t, :])
        out.append(z)
    return torch.stack(out, -2)


@torch.no_grad()
def evaluate(model: LatentWorldModel, windows: TransitionWindows, settings: TrainSettings,
             indices: torch.Tensor, device: torch.device,
             positions: Optional[list[int]] = None) -> dict[str, Any]:
    """Validation metrics over the segments ``indices``: per rollout step j = 1..k, latent MSE
    (mean over D) and position error (decoded, in the joints' units, over the ``positions``
    columns); the encoder's position error."""
    model.eval()
    totals: dict[str, Any] = {}
    for start in range(0, len(indices), 32):
        batch = {k: v.to(device) for k, v in windows.gather(indices[start:start + 32]).items()}
        loss, parts = window_losses(model, batch, settings, positions=positions)
        n = batch["actions"].shape[0]
        for key, value in (("loss", loss), ("latent_mse", parts["pred"]), ("position_err", parts["position_err"])):
            totals[key] = totals.get(key, 0) + value * n
        totals["n"] = totals.get("n", 0) + n
    n = totals.pop("n")
    position = (totals["position_err"] / n).tolist()
    model.train()
    return {"loss": float(totals["loss"] / n), "latent_mse": (totals["latent_mse"] / n).tolist(),
            "position_err_encoded": position[0], "position_err": position[1:]}


def action_bounds(data: TransitionData) -> tuple[list[float], list[float]]:
    """The robot-unit action bounds of ``data``: its metadata's, [-1, 1] for the simulators (their
    commands are normalised), else the range the data covers (a zero range widened by 1)."""
    meta, A = data.meta, data.action_dim
    if meta.get("action_low") is not None and meta.get("action_high") is not None:
        return [float(v) for v in meta["action_low"]], [float(v) for v in meta["action_high"]]
    if meta.get("env"):
        return [-1.0] * A, [1.0] * A
    flat = data.actions.reshape(-1, A)
    low = np.array([decimal_bound(v, upper=False) for v in flat.min(0)])
    high = np.array([decimal_bound(v, upper=True) for v in flat.max(0)])
    flat_range = high - low < 1e-9
    low[flat_range] -= 1.0
    high[flat_range] += 1.0
    return low.tolist(), high.tolist()


def normalised_actions(data: TransitionData, card: ModelCard) -> TransitionData:
    """``data`` with its actions mapped from the card's robot units to the model's [-1, 1]."""
    A = data.action_dim
    actions = card.to_model(data.actions, -np.ones(A), np.ones(A)).astype(np.float32)
    return TransitionData(data.images, data.joints, np.clip(actions, -1.0, 1.0), dict(data.meta))


def save_checkpoint(path: str, model: LatentWorldModel, **extra: Any) -> None:
    """State dict, config, the model's ``input_statistics`` if it has them, and ``extra`` (plain
    types and tensors only), written atomically: no temp file stays behind when it fails."""
    tmp = f"{path}.tmp{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    statistics = getattr(model, "input_statistics", None)
    if statistics:
        extra = {"input_statistics": {k: v.cpu() for k, v in statistics.items()}, **extra}
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "config": model.config(), "state_dict": model.state_dict(),
                    **extra}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def train(data: TransitionData, out: str, settings: TrainSettings, model_options: Optional[dict] = None,
          resume: Optional[dict] = None, progress: bool = True,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a ``LatentWorldModel`` on ``data``, checkpointing to ``out`` after every epoch and
    after phase 2.

    ``resume`` is a checkpoint dict from an earlier run: its model config, weights, optimiser and
    schedule continue from its epoch (pass its ``settings`` too, changing only ``epochs``).
    Returns {"model" (in eval mode), "epoch", "history", "metrics", "train_seconds"}.
    """
    settings.validate()
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    chosen = resume["config"] if resume else (model_options or {})
    joint_dim, frames = int(chosen.get("joint_dim", 0)), int(chosen.get("frames", 1))
    try:
        card = (ModelCard.from_dict(resume["card"]) if resume and resume.get("card") else
                card_from_data(dict(data.meta, episodes=data.episodes, steps=data.steps), data.image_size,
                               joint_dim, data.action_dim, {}, *action_bounds(data), image_frames=frames))
    except (TypeError, ValueError) as exc:   # an entry of the wrong kind: names of a number, bounds of text
        raise DatasetError(f"its metadata does not describe a model ({exc})") from exc
    data = normalised_actions(data, card)
    if settings.segment_steps > data.steps:
        raise DatasetError(
            f"the trainer's segments of {settings.segment_steps} steps do not fit the dataset's episodes "
            f"of {data.steps} steps: train with --segment-steps {data.steps} (and --rollout-steps at most "
            f"that, {min(settings.rollout_steps, data.steps)}), or collect with --episode-steps "
            f"{settings.segment_steps} or more")
    train_data, val_data = data.split(settings.val_fraction, settings.seed)
    windows = TransitionWindows(train_data, settings.segment_steps, history=frames,
                                stride=settings.segment_steps - settings.rollout_steps + 1)
    val_windows = TransitionWindows(val_data, settings.segment_steps, history=frames)
    options = {"image_size": data.image_size, "state_dim": data.joint_dim, "env": data.meta.get("env") or "",
               "horizon": int(data.meta.get("horizon") or 0), "action_dim": data.action_dim,
               **(model_options or {})}
    model = LatentWorldModel(**(resume["config"] if resume else options)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(windows) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _cosine(step, total_steps, settings))
    history, first_epoch, seconds, dynamics_done = [], 0, 0.0, False
    if resume:
        model.load_state_dict(resume["state_dict"])
        optimiser.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        history, first_epoch, seconds = list(resume["history"]), int(resume["epoch"]), float(resume["train_seconds"])
        dynamics_done = bool(resume.get("dynamics_done")) and first_epoch >= settings.epochs
    val_indices = torch.randperm(len(val_windows), generator=torch.Generator().manual_seed(settings.seed))
    val_indices = val_indices[: settings.val_windows]
    positions = measured_position_columns(data.meta, data.joint_dim)   # what position_err measures
    joint_peak = float(np.abs(data.joints).max())

    def diverged(where: str, value: float, lr: str) -> TrainingDiverged:
        kept = (f"; {out!r} keeps the last finished epoch ({len([h for h in history if 'phase' not in h])}), "
                "--resume continues from it" if history else "; no checkpoint written")
        return TrainingDiverged(
            f"training stopped at {where}: the loss is {value} (not finite). Likely causes: inputs whose "
            f"squares overflow float32 (the dataset's joints reach {joint_peak:.3g}; beyond about 1e19 they "
            f"do), or a learning rate too high ({lr}){kept}")

    log(f"training on {device}: {len(windows)} segments of {settings.segment_steps} steps from "
        f"{train_data.episodes} episodes, rollouts of {settings.rollout_steps}; validating on "
        f"{len(val_indices)} segments of {val_data.episodes} episodes")

    def save():
        full_card = dataclasses.replace(card, metrics=card_metrics(history[-1]) if history else {})
        model.card_json = json.dumps(full_card.to_dict())   # the model in hand carries it too (exports)
        save_checkpoint(out, model, card=full_card.to_dict(),
                        epoch=len([h for h in history if "phase" not in h]), history=history,
                        metrics=history[-1], train_seconds=seconds, dynamics_done=dynamics_done,
                        settings=dataclasses.asdict(settings), optimizer=optimiser.state_dict(),
                        scheduler=schedule.state_dict(),
                        dataset=dict(data.meta, episodes=data.episodes, steps=data.steps))

    model.train()
    for epoch in range(first_epoch, settings.epochs):
        started = time.perf_counter()
        torch.manual_seed(settings.seed * 1000 + epoch)   # start noise: a resumed run draws the same
        order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(settings.seed * 1000 + epoch))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="step",
                   disable=not progress, leave=False)
        running = 0.0
        for step in bar:
            batch = windows.gather(order[step * settings.batch_size:(step + 1) * settings.batch_size])
            loss, _ = window_losses(model, {k: v.to(device) for k, v in batch.items()}, settings)
            value = loss.item()
            if not math.isfinite(value):
                raise diverged(f"epoch {epoch + 1}, step {step + 1} of {steps_per_epoch}", value,
                               f"--lr {settings.lr:g}")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimiser.step()
            schedule.step()
            running = 0.95 * running + 0.05 * value if step else value
            bar.set_postfix(loss=f"{running:.4f}")
        seconds += time.perf_counter() - started
        metrics = evaluate(model, val_windows, settings, val_indices, device, positions)
        if not math.isfinite(metrics["loss"]):   # the last step's update, or the held-out episodes
            raise diverged(f"epoch {epoch + 1}, validation", metrics["loss"], f"--lr {settings.lr:g}")
        metrics.update(epoch=epoch + 1, train_loss=running, seconds=round(seconds, 1))
        history.append(metrics)
        save()
        log(f"epoch {epoch + 1}: train loss {running:.4f}, {_describe(metrics, settings)} ({seconds:.0f} s)")
    if not dynamics_done and settings.dynamics_steps:
        started = time.perf_counter()
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        running = _refine_dynamics(model, windows, settings, device, progress, diverged)
        seconds += time.perf_counter() - started
        metrics = evaluate(model, val_windows, settings, val_indices, device, positions)
        metrics.update(epoch=settings.epochs, phase="dynamics", train_loss=running, seconds=round(seconds, 1))
        log(f"dynamics ({settings.dynamics_steps} steps on frozen encodings): train loss {running:.4f}, "
            f"{_describe(metrics, settings)} ({seconds:.0f} s)")
        epochs_metrics = next((h for h in reversed(history) if "phase" not in h), None)
        if epochs_metrics is not None and not metrics["loss"] <= epochs_metrics["loss"]:
            # Fitted to the training frames, worse on the held-out ones (an outside arm's: val
            # loss 0.18 -> 1.30, its 16-step error 0.14 -> 0.49): the epochs' weights are kept.
            model.load_state_dict(before)
            metrics = dict(epochs_metrics, phase="dynamics", kept="epochs", dynamics_val_loss=metrics["loss"],
                           train_loss=running, seconds=round(seconds, 1))
            log(f"dynamics: validation loss {metrics['dynamics_val_loss']:.4f} is worse than after the "
                f"epochs ({epochs_metrics['loss']:.4f}): the model after the epochs is kept "
                "(--dynamics-steps 0 skips this phase)")
        history.append(metrics)
        dynamics_done = True
        save()
    model.eval()
    if settings.statistics_frames:
        statistics = input_statistics(model, train_data, settings.statistics_frames, settings.seed)
        model.input_statistics = statistics.to_dict()
        save()
        log(f"novelty statistics of {statistics.samples} training frames stored with the model")
    return {"model": model, "epoch": settings.epochs, "history": history,
            "metrics": history[-1] if history else {}, "train_seconds": seconds}


def input_statistics(model: LatentWorldModel, data: TransitionData, frames: int, seed: int = 0,
                     batch_size: int = 512) -> InputStatistics:
    """Novelty statistics of up to ``frames`` frames of ``data`` (drawn without replacement,
    seeded), given to the model as it encodes them."""
    windows = TransitionWindows(data, 1, history=model.image_frames)   # for its frame stacking
    T1 = data.images.shape[1]
    joints = torch.from_numpy(data.joints.reshape(-1, data.joints.shape[-1]))
    chosen = torch.randperm(len(joints), generator=torch.Generator().manual_seed(seed))[:frames].sort().values
    batches = (_observation(model, windows.stacked_images(c // T1, c % T1), joints[c])
               for c in chosen.split(batch_size))
    return compute_statistics(model, batches)


def _describe(metrics: dict[str, Any], settings: TrainSettings) -> str:
    k = settings.rollout_steps
    return (f"val loss {metrics['loss']:.4f}, latent MSE step 1/{k} {metrics['latent_mse'][0]:.2e}/"
            f"{metrics['latent_mse'][-1]:.2e}, position error encoded {metrics['position_err_encoded']:.3f}, "
            f"step {k} {metrics['position_err'][-1]:.3f}")


def _refine_dynamics(model: LatentWorldModel, windows: TransitionWindows, settings: TrainSettings,
                     device: torch.device, progress: bool,
                     diverged: Callable[[str, float, str], Exception]) -> float:
    """Phase 2: train dynamics, action map and state head over frozen encodings of every frame.
    A loss that is not finite raises ``diverged(where, loss, learning rate)``."""
    model.eval()
    with torch.no_grad():
        N, T1 = windows.images.shape[:2]
        every = torch.arange(N * T1)
        latents = torch.cat([model.encode(_observation(
            model, windows.stacked_images(chunk // T1, chunk % T1).to(device),
            windows.joints.flatten(0, 1)[chunk].to(device)))
            for chunk in every.split(512)]).view(N, T1, -1)
    model.train()
    params = [*model.dynamics.parameters(), *model.action_map.parameters(), *model.state_head.parameters()]
    optimiser = torch.optim.AdamW(params, lr=settings.dynamics_lr, weight_decay=settings.weight_decay)
    total = settings.dynamics_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _cosine(step, total, settings))
    generator = torch.Generator().manual_seed(settings.seed + 1)
    torch.manual_seed(settings.seed + 1)
    joints, actions = windows.joints.to(device), windows.actions.to(device)
    running = 0.0
    for step in tqdm(range(total), desc="dynamics", unit="step", disable=not progress, leave=False):
        episode, frame = windows.frame_index(torch.randint(len(windows), (settings.dynamics_batch_size,),
                                                           generator=generator))
        batch = {"joints": joints[episode, frame], "actions": actions[episode, frame[:, :-1]]}
        loss, _ = window_losses(model, batch, settings, latents=latents[episode, frame])
        value = loss.item()
        if not math.isfinite(value):
            raise diverged(f"dynamics step {step + 1} of {total}", value, f"--dynamics-lr {settings.dynamics_lr:g}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimiser.step()
        schedule.step()
        running = 0.95 * running + 0.05 * value if step else value
    return running


def _cosine(step: int, total: int, settings: TrainSettings) -> float:
    floor = settings.lr_final_fraction
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def export_torchscript(model: LatentWorldModel, path: str) -> None:
    """Save ``model`` as TorchScript (CPU): encode, predict, position, decode_state and the
    contract's attributes, loadable by ``load_world_model(path)`` without this package's classes."""
    scripted = script(model.cpu().eval())
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        scripted.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
