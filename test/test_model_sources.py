"""Who may load code: read-only model sources, allow_python_models, plain and bounded model_options.

The loader and parsing checks need no ROS. The node checks run the controller over real DDS with
test_controller_node's rig: parameters go through the node's parameter service, and the reason a
configure failed is read from /rosout, as an operator would read it.
"""
from __future__ import annotations

import sys

import pytest
import yaml

from grasp_ros.control import ControlConfig, build_control_loop
from grasp_ros.models import model_spec, parse_options
from grasp_ros.models.spec import MAX_OPTIONS_CHARS
from grasp_ros.models import WorldModelError, load_world_model
from grasp_ros.models.text import QUOTE_LIMIT, quote, shorten
from grasp_ros.ros import param_docs, params

FACTORY_MODULE = "model_factory_marker"       # test/model_factory_marker.py
FACTORY = f"{FACTORY_MODULE}:make"
MESSAGE_LIMIT = 600
"""Characters an error message may have: a few hundred of user input plus the explanation."""
MODEL_SOURCES = ("model", "model_weights", "model_options", "allow_python_models")


def billion_laughs(levels: int = 9) -> str:
    """A few hundred characters of YAML whose aliases expand to 9 ** levels strings."""
    items = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    items += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "{" + ", ".join(items) + "}"


def forget_factory_module() -> None:
    """So that the tests can tell whether the loader imported it."""
    sys.modules.pop(FACTORY_MODULE, None)


def refused(call, *args) -> str:
    """Run ``call(*args)``, which must raise ValueError or WorldModelError; its (short) message."""
    with pytest.raises((ValueError, WorldModelError)) as info:
        call(*args)
    message = str(info.value)
    assert len(message) < MESSAGE_LIMIT, message[:2 * MESSAGE_LIMIT]
    return message


# -- the loader's gate -------------------------------------------------------------------------

def test_factory_models_load_only_when_allowed(tmp_path):
    marker = tmp_path / "factory_ran"
    spec = {"factory": FACTORY, "options": {"marker": str(marker)}}
    forget_factory_module()
    for refuse in (lambda: load_world_model(spec),
                   lambda: build_control_loop(spec, "grasp", 20, ControlConfig(period=0.5))):
        with pytest.raises(WorldModelError, match="Python factory models are disabled: start the "
                                                  "node with allow_python_models:=true"):
            refuse()
    assert not marker.exists() and FACTORY_MODULE not in sys.modules, "the factory's code ran"

    model = load_world_model(spec, allow_factory=True)
    assert marker.exists() and model.joint_dim == 2
    # built-ins and TorchScript files need no permission
    assert load_world_model({"name": "analytic", "env": "open", "horizon": 20}).joint_dim == 2


# -- model_options: plain YAML, bounded --------------------------------------------------------

@pytest.fixture
def nothing_built(monkeypatch):
    """Refusals from the parser's events come before YAML builds anything (no expansion, so no
    time or memory spent on it, however slow the machine): building now fails the test."""
    from grasp_ros.models import spec

    def build(*_args, **_kwargs):
        raise AssertionError("the options were built before being refused")
    monkeypatch.setattr(spec.yaml, "load", build)


def test_an_alias_bomb_is_refused_before_it_expands(nothing_built):
    bomb = billion_laughs()
    assert len(bomb) < 500
    assert "anchors or aliases" in refused(parse_options, bomb)
    # merge keys need aliases too; an anchor alone is refused as well
    assert "anchors or aliases" in refused(parse_options, "{a: &x {b: 1}, c: {<<: *x}}")
    assert "anchors or aliases" in refused(parse_options, "{a: &x 1}")


def test_oversized_or_deeply_nested_options_are_refused_before_they_are_built(nothing_built):
    padded = "{env: open, pad: " + "x" * MAX_OPTIONS_CHARS + "}"
    assert f"at most {MAX_OPTIONS_CHARS}" in refused(parse_options, padded)
    deep = "{a: " + "[" * 2000 + "]" * 2000 + "}"
    assert "nest" in refused(parse_options, deep)
    assert "nested more than" in refused(parse_options, "{a: " + "[" * 17 + "]" * 17 + "}")


def test_plain_options_still_parse_and_code_tags_do_not():
    assert parse_options("{env: open, horizon: 50, sizes: [1, {b: 2.5}]}") == {
        "env": "open", "horizon": 50, "sizes": [1, {"b": 2.5}]}
    assert parse_options("") == {} and parse_options("  ") == {}
    assert "not valid YAML" in refused(parse_options, "{a: !!python/object/apply:os.system [ls]}")
    assert "must be a YAML mapping" in refused(parse_options, "[" + "1, " * 1300 + "1]")


# -- error messages quote at most a few hundred characters -------------------------------------

def test_quote_and_shorten_are_bounded():
    assert quote("abc") == "'abc'" and shorten("abc") == "abc"
    long = "y" * 10_000
    assert quote(long).endswith("... (10000 characters)") and len(quote(long)) < QUOTE_LIMIT + 40
    assert shorten(long).endswith("... (10000 characters)")
    shared = yaml.safe_load(billion_laughs())   # PyYAML shares aliased nodes: cheap to build
    assert len(quote(shared)) < QUOTE_LIMIT + 40   # printed in full it is gigabytes


def test_model_loading_errors_quote_user_input_briefly():
    shared = yaml.safe_load(billion_laughs())
    # the original failure: a built-in refusing options made of shared parts printed all of them
    assert "bad options" in refused(load_world_model, {"name": "analytic", "options": shared})
    assert "bad options" in refused(
        load_world_model, {"name": "analytic", "options": {"env": "x" * 100_000}})
    assert "file not found" in refused(load_world_model, "m" * 10_000 + ".ts")
    assert "TorchScript" in refused(model_spec, "/m.ts", "", {"k": "v" * 10_000})
    assert "weights" in refused(
        load_world_model, {"name": "analytic", "weights": "/" + "w" * 10_000}, "cpu")
    for name, value in (("device", "z" * 10_000), ("model", "m" * 10_000),
                        ("on_stale", "s" * 10_000), ("joint_names", ["j"] * 5_000)):
        reason = params.BY_NAME[name].validate(value)
        assert reason and len(reason) < MESSAGE_LIMIT, (name, reason[:2 * MESSAGE_LIMIT])


def test_model_sources_are_read_only_in_the_table():
    for name in MODEL_SOURCES:
        assert params.BY_NAME[name].read_only and params.BY_NAME[name].kind == "read-only"
        assert f"| `{name}` | " in param_docs.markdown_table()
    assert params.BY_NAME["allow_python_models"].default is False
    # cost.terms names Python code too (user cost terms): read-only like the model sources
    assert params.BY_NAME["cost.terms"].read_only
    # cpu_capability is reported by the node itself (read-only so that nobody sets it)
    assert params.BY_NAME["cpu_capability"].read_only
    # lock_safety keeps the safety settings at their start-up values: a peer cannot undo it
    assert params.BY_NAME["lock_safety"].read_only and params.BY_NAME["lock_safety"].default is True
    assert not any(p.read_only for p in params.PARAMETERS
                   if p.name not in (*MODEL_SOURCES, "cost.terms", "cpu_capability", "lock_safety"))


# -- the node ----------------------------------------------------------------------------------

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not importable")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

# Rig and its fixtures (ros: the module's context; rig: a factory of rigs, closed after the test).
from test_controller_node import Rig, rig, ros  # noqa: E402,F401


def configure_failure(r: Rig) -> str:
    """Ask the node to configure, which must fail; the reason it logged (from /rosout)."""
    logger = r.node.get_logger().name
    failures = []
    r.probe.create_subscription(
        Log, "/rosout", lambda m: failures.append(m.msg) if m.name == logger and
        "configure failed" in m.msg else None,
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert not r.transition(Transition.TRANSITION_CONFIGURE)
    assert r.state() == State.PRIMARY_STATE_UNCONFIGURED
    r.wait_until(lambda: failures, what="the reason on /rosout")
    return failures[0]


def test_model_sources_cannot_be_set_through_the_parameter_service(rig):
    r = rig()
    attempts = {"model": "os:system", "model_options": "{command: touch /tmp/pwned}",
                "model_weights": "/tmp/weights.pt", "allow_python_models": True}
    for name, value in attempts.items():
        before = r.node.get_parameter(name).value
        result = r.set_parameters(**{name: value})[0]
        assert not result.successful and "read-only" in result.reason, (name, result.reason)
        assert r.node.get_parameter(name).value == before
    assert r.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert r.transition(Transition.TRANSITION_CONFIGURE)      # with what it was started with


def test_a_factory_model_loads_only_when_allowed_at_start_up(rig, tmp_path):
    marker = tmp_path / "factory_ran"
    options = f'{{marker: "{marker}", env: open, horizon: 20}}'
    forget_factory_module()
    refused = rig(model=FACTORY, model_options=options)
    reason = configure_failure(refused)
    assert "allow_python_models:=true" in reason and FACTORY in reason, reason
    assert not marker.exists() and FACTORY_MODULE not in sys.modules, "the factory's code ran"

    allowed = rig(model=FACTORY, model_options=options, allow_python_models=True)
    allowed.start()
    assert marker.exists()
    allowed.controlling()


@pytest.mark.parametrize("text, reason", [
    (billion_laughs(), "anchors or aliases"),
    ("{env: open, pad: " + "x" * 10_000 + "}", f"at most {MAX_OPTIONS_CHARS}"),
], ids=["alias-bomb", "oversized"])
def test_bad_model_options_fail_configure_with_a_short_reason(rig, text, reason):
    r = rig(model_options=text)
    logged = configure_failure(r)
    assert reason in logged and "restart the node" in logged, logged[:2 * MESSAGE_LIMIT]
    assert len(logged) < MESSAGE_LIMIT


def test_a_torchscript_model_needs_no_model_options_cleared(tmp_path):
    """The default model_options belong to the default model: ``-p model:=robot.ts`` alone loads
    the file; options given on purpose to a TorchScript file are still refused, and a mistyped
    model name with options is named as what it is not (it was "options cannot apply")."""
    values = {name: p.default for name, p in params.BY_NAME.items()}
    assert params.model_spec_of(values) == {"name": "learned", "options": {"env": "wall_door", "horizon": 50}}
    assert params.model_spec_of({**values, "model": "/robots/arm.ts"}) == {"torchscript": "/robots/arm.ts"}
    (tmp_path / "arm.ts").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot apply to the TorchScript file"):
        params.model_spec_of({**values, "model": str(tmp_path / "arm.ts"), "model_options": "{horizon: 20}"})
    with pytest.raises(ValueError, match=r"model 'nosuch' is neither a built-in model \(analytic, learned"):
        params.model_spec_of({**values, "model": "nosuch", "model_options": "{horizon: 20}"})
