"""pip install of the grasp_ros Python library alone (no ROS needed).

colcon builds the ROS package from CMakeLists.txt (ament_cmake, for the messages); this
file is only for `pip install .` / `pip install -e .`, e.g. to train world models or run the
planners and benchmarks on a machine without ROS 2.
"""
from setuptools import find_packages, setup

setup(
    name="grasp_ros",
    version="0.1.0",
    description=(
        "Receding-horizon control with learned world models for ROS 2, "
        "planning with the GRASP planner"
    ),
    license="Apache-2.0",
    author="grasp_ros maintainers",
    python_requires=">=3.10",
    packages=find_packages(include=["grasp_ros", "grasp_ros.*"]),
    package_data={
        "grasp_ros": [
            "assets/*.pt",
            "assets/*.yaml",
            "assets/*.json",
            "assets/*.npz",
            "sim/arm/*.xml",
        ],
    },
    include_package_data=True,
    install_requires=[
        # Not pinned here (requirements.txt pins torch==2.13.0 for the CPU wheel): a library
        # should not force one torch build on its users.
        "torch>=2.2",
        "numpy>=1.26",
        "pyyaml>=6",
        "opencv-python-headless>=4.8",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "mujoco>=4.0,<5",   # the planar arm (requirements.txt pins the tested 4.0.1)
    ],
    extras_require={
        "test": ["pytest>=8.0,<8.4"],   # 8.4 and 9.x break launch_testing (requirements.txt)
        "bags": ["rosbags>=0.10"],
        "mppi": ["pytorch-mppi==0.9.1"],
    },
    entry_points={
        "console_scripts": [
            "grasp-ros = grasp_ros.cli:console",
        ],
    },
    zip_safe=False,
    # build/ belongs to colcon: keep setuptools' own build files in a folder of their own.
    options={"build": {"build_base": "build/pip"}},
)
