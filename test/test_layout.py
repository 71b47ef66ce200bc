"""The rooms stay apart: the controller runs without importing the simulators."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

CONTROLLER_RUN = """
import sys
from grasp_ros.control import ControlConfig, build_control_loop
from grasp_ros.models import model_spec
{ros_import}
loop = build_control_loop(model_spec("learned"), "grasp", 50, ControlConfig())
print(sorted(m for m in sys.modules if m.startswith(("grasp_ros.sim", "grasp_ros.envs"))))
print("torch._dynamo" in sys.modules)
"""


@pytest.mark.parametrize("ros_import", ["", "import grasp_ros.ros.controller_node"])
def test_controller_with_the_learned_model_imports_no_simulator_and_no_compiler(ros_import):
    """Nor torch's compiler: any ``torch.optim`` optimiser imports ``torch._dynamo`` when it is
    made (2.4 s of a controller's start-up here); the warm-up plans towards a joint goal, whose
    latent search is this package's L-BFGS."""
    if ros_import:
        pytest.importorskip("rclpy")
        pytest.importorskip("grasp_ros.msg", exc_type=ImportError)
    out = subprocess.run([sys.executable, "-c", CONTROLLER_RUN.format(ros_import=ros_import)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "False"]


def test_analytic_model_loads_the_sim_room_on_demand():
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from grasp_ros.models import load_world_model; "
                          "load_world_model({'name': 'analytic', 'env': 'open', 'horizon': 20}); "
                          "print('grasp_ros.sim.analytic' in sys.modules)"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"


ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path):
    """Every module a file's import statements name, relative imports resolved."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else []))


@pytest.mark.parametrize("room", ["models", "planning", "control", "ros"])
def test_the_rooms_below_the_simulators_name_none_of_them_in_an_import(room):
    # Not even inside a function: the analytic built-in is named by its path (models/loader.py).
    found = {str(path.relative_to(ROOT)): module
             for path in sorted((ROOT / "grasp_ros" / room).rglob("*.py"))
             for module in _imported_modules(path) if module.startswith("grasp_ros.sim")}
    assert found == {}
