"""The rooms stay apart: the controller runs without importing the simulators."""
import subprocess
import sys

import pytest

CONTROLLER_RUN = """
import sys
from grasp_ros.control import ControlConfig, build_control_loop
from grasp_ros.models import model_spec
{ros_import}
loop = build_control_loop(model_spec("learned"), "grasp", 50, ControlConfig())
print(sorted(m for m in sys.modules if m.startswith(("grasp_ros.sim", "grasp_ros.envs"))))
"""


@pytest.mark.parametrize("ros_import", ["", "import grasp_ros.ros.controller_node"])
def test_controller_with_the_learned_model_imports_no_simulator(ros_import):
    if ros_import:
        pytest.importorskip("rclpy")
        pytest.importorskip("grasp_ros.msg", exc_type=ImportError)
    out = subprocess.run([sys.executable, "-c", CONTROLLER_RUN.format(ros_import=ros_import)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_analytic_model_loads_the_sim_room_on_demand():
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from grasp_ros.models import load_world_model; "
                          "load_world_model({'name': 'analytic', 'env': 'open', 'horizon': 20}); "
                          "print('grasp_ros.sim.analytic' in sys.modules)"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True"
