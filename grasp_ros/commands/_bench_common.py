"""What the benchmark and demo commands share: the model arguments and the model card's inputs,
rate and data source. The results they write: ``grasp_ros.bench.results``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def add_model_arguments(parser) -> None:
    """--model and --observation of the commands that run the controller node."""
    parser.add_argument("--model", default="learned",
                        help="controller world model: learned (the shipped camera model), analytic, "
                             "a TorchScript file or module:factory (default: %(default)s)")
    parser.add_argument("--observation", choices=("image", "joints", "image+joints"), default=None,
                        help="what the controller encodes (default: image, joints for --model analytic, "
                             "a checkpoint's inputs with --checkpoint)")


def resolve_observation(args) -> str:
    """--observation, or its default for --model."""
    return args.observation or ("joints" if args.model == "analytic" else "image")


def add_checkpoint_argument(parser) -> None:
    """--checkpoint of the commands that run a learned model in the closed loop."""
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="learned model checkpoint (.pt) for --model learned (default: the "
                             "shipped model of the world)")


def learned_card(checkpoint: Optional[Path]):
    """The model card of the learned model in ``checkpoint`` (None: the shipped default).

    Loads the model, so a bad file fails here with ``WorldModelError`` naming the problem,
    before any node starts.
    """
    from ..models import load_world_model
    from ..models.card import card_for

    spec = {"name": "learned"}
    if checkpoint is not None:
        spec["checkpoint"] = str(checkpoint)
    return card_for(load_world_model(spec))


def card_inputs(card) -> str:
    """What a card's model encodes, as LoopSpec.observation names it: image, joints, image+joints."""
    return "+".join(k for k in ("image", "joints") if getattr(card, k) is not None)


def card_rate(card, default: float) -> float:
    """The control rate (Hz) a model card's period asks for, else ``default``. Three digits: a
    bag's period is measured (its median frame interval), 0.09998 s means 10 Hz."""
    if card is None or not card.period:
        return default
    return float(f"{1.0 / card.period:.3g}")


def data_source(card) -> Optional[str]:
    """Where a model's training data came from, from its card: "rosbag", "simulator", or None."""
    source = str((card.provenance if card is not None else {}).get("source") or "")
    return source.split(":")[0] or None


def add_param_argument(parser) -> None:
    """-p NAME:=VALUE of the commands that run the controller node."""
    parser.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME:=VALUE",
                        help="a controller parameter for the run (repeatable), e.g. -p planner.chains:=24; "
                             "checked by the controller's parameter table")


HARNESS_PARAMETERS = {"autostart": "the harness starts the node", "use_sim_time": "the sim owns /clock",
                      "model": "--model", "model_options": "--model / --checkpoint",
                      "allow_python_models": "--model", "planner": "--planner", "horizon": "--horizon",
                      "control_rate_hz": "--rate"}
"""Controller parameters the harness sets itself, and what to use instead of ``-p``."""


def controller_overrides(texts, command: str) -> dict:
    """The ``-p`` assignments of ``grasp-ros COMMAND`` as typed parameters; SystemExit with the
    reason."""
    from ..ros import params

    def typed(name, value):
        if name in HARNESS_PARAMETERS:
            raise ValueError(f"set by the harness ({HARNESS_PARAMETERS[name]})")
        return params.typed_value(name, value)

    overrides = {}
    for text in texts:
        try:
            name, value = params.parse_assignment(text, typed)
        except ValueError as exc:
            raise SystemExit(f"grasp-ros {command}: -p {text}: {exc}") from None
        overrides[name] = value
    return overrides
