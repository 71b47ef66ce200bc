"""grasp_controller on a Gazebo (gz sim) robot, through ros_gz_bridge. Not run in this repo's CI.

    ros2 launch grasp_ros gazebo.launch.py world:=my_world.sdf \\
        camera_topic:=/world/my_world/model/robot/link/camera_link/sensor/camera/image \\
        command_topic:=/velocity_controller/commands joint_names:="['x_joint', 'y_joint']"

What it starts:

1. Gazebo itself (ros_gz_sim's gz_sim.launch.py, running: ``-r``) when ``world`` is given; leave
   it empty when Gazebo and the robot are started elsewhere. Spawning the robot and its
   ros2_control controllers is the robot's own launch file's job.
2. ros_gz_bridge's parameter_bridge, one way from Gazebo to ROS:
   ``/clock`` (rosgraph_msgs/Clock <- gz.msgs.Clock), so every node can run on sim time;
   the camera (sensor_msgs/Image <- gz.msgs.Image) from ``camera_topic``, remapped to ``image``
   and reliable at both ends (``reliable_camera``);
   and, if ``joint_state_topic`` names a gz topic (a JointStatePublisher system's, e.g.
   /world/<world>/model/<robot>/joint_state), the joints (sensor_msgs/JointState <-
   gz.msgs.Model), remapped to ``joint_states``. With gz_ros2_control, leave it empty: the
   joint_state_broadcaster already publishes /joint_states.
3. grasp_controller (lifecycle; autostart) with ``use_sim_time``, its parameters from
   ``params_file``, ``command`` remapped to ``command_topic``: the Float64MultiArray input of a
   ros2_control forward command controller (e.g. velocity_controllers/JointGroupVelocityController,
   one velocity per joint in ``joint_names`` order, in [-1, 1]: scale it in the controller's
   limits or choose the robot's units accordingly).

The goal comes from outside on /goal_state (grasp_ros/msg/JointGoal) or /goal_image, e.g.:

    ros2 topic pub --once --qos-durability transient_local --qos-reliability reliable \\
        /goal_state grasp_ros/msg/JointGoal "{name: [x_joint, y_joint], position: [0.5, 0.2]}"

The controller subscribes to what the model's card names (``grasp-ros info MODEL``): the
camera (any size; cropped and resized as the card says) and/or joint_states (the card's joints
must be among ``joint_names``). The built-in analytic model only knows grasp_ros's own 2-D worlds
(``model_options`` ``{observe: joints}`` or ``{observe: image}``); bring a learned model
(``model_options:="{checkpoint: my_robot.pt}"``).

Needs ``ros_gz_sim`` and ``ros_gz_bridge`` (e.g. ``apt install ros-$ROS_DISTRO-ros-gz``), which
``package.xml`` does not require: the rest of the package runs without Gazebo.
"""
import contextlib
import os
import tempfile

import yaml
from launch import LaunchContext, LaunchDescription
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction,
                            RegisterEventHandler)
from launch.conditions import IfCondition
from launch.event_handlers import OnShutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from grasp_ros.ros.launch_actions import (EXIT_WITH_LAUNCH, camera_reliability, params_file_exists,
                                          resolved_topic, supervised)

ARGUMENTS = (
    ("world", "", "SDF world to start Gazebo with; empty: Gazebo is started elsewhere"),
    ("camera_topic", "/camera", "gz topic of the robot's camera (gz.msgs.Image)"),
    ("joint_state_topic", "", "gz topic of the joint states (gz.msgs.Model); empty: ros2_control "
                              "publishes /joint_states"),
    ("command_topic", "/velocity_controller/commands",
     "the ros2_control forward command controller's input (std_msgs/Float64MultiArray)"),
    ("joint_names", "", "joints the controller reads and commands, in the model's order, e.g. "
                        "\"['x_joint', 'y_joint']\"; empty: the model card's"),
    ("model", "analytic", "world model spec"),
    ("model_options", "{}", "world model options (a YAML map as a string)"),
    ("model_weights", "", "world model weights file"),
    ("allow_python_models", "false",
     "load a module:factory model (imports and runs that module's Python code)"),
    ("planner", "grasp", "planner: grasp, cem, mppi or gd"),
    ("horizon", "50", "planning horizon H"),
    ("rate", "10.0", "control rate (Hz, sim time)"),
    ("params_file", PathJoinSubstitution([FindPackageShare("grasp_ros"), "config",
                                          "grasp_controller.yaml"]),
     "controller parameters YAML (default: the package's config/grasp_controller.yaml)"),
)


def typed(name: str, value_type):
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)


def reliable_camera(context: LaunchContext, end: str) -> dict:
    """The camera read reliably at both ends of the bridge (``end``: publisher, subscription),
    both nodes reading ``image`` in the namespace the launch is included in."""
    return camera_reliability(resolved_topic(context, "image"), end, "reliable")


def bridge(context: LaunchContext):
    """parameter_bridge for /clock, the camera and (optionally) the joint states, gz -> ROS."""
    camera = LaunchConfiguration("camera_topic").perform(context)
    joints = LaunchConfiguration("joint_state_topic").perform(context)
    topics = ["/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock",
              f"{camera}@sensor_msgs/msg/Image[gz.msgs.Image"]
    remappings = [(camera, "image")]
    if joints:
        topics.append(f"{joints}@sensor_msgs/msg/JointState[gz.msgs.Model")
        remappings.append((joints, "joint_states"))
    return [Node(package="ros_gz_bridge", executable="parameter_bridge", name="grasp_gz_bridge",
                 arguments=topics, remappings=remappings, output="screen",
                 parameters=[{"use_sim_time": True, **reliable_camera(context, "publisher")}])]


def joint_names_file(context: LaunchContext) -> list:
    """``joint_names`` as a parameter file of its own, every name quoted: launch_ros writes a
    list of strings unquoted, and rcl then reads a joint named y, n, on or off as a bool."""
    text = LaunchConfiguration("joint_names").perform(context).strip()
    names = yaml.safe_load(text) if text else None
    if not names:
        return []
    if not isinstance(names, list):
        raise ValueError(f"joint_names must be a list such as \"['x_joint', 'y_joint']\", got {text!r}")
    with tempfile.NamedTemporaryFile("w", prefix="grasp_joint_names_", suffix=".yaml", delete=False) as out:
        yaml.safe_dump({"/**": {"ros__parameters": {"joint_names": [str(n) for n in names]}}},
                       out, default_style='"')
    return [out.name]


def controller(context: LaunchContext) -> list:
    """grasp_controller, and the end of the launch when it exits (a failed autostart, a crash):
    Gazebo and the bridge would otherwise run on without it. The joint names' file goes with
    the launch."""
    names = joint_names_file(context)
    node = LifecycleNode(
        package="grasp_ros", executable="grasp_controller", name="grasp_controller",
        namespace="", output="screen", additional_env=EXIT_WITH_LAUNCH,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "autostart": True,
                "use_sim_time": True,
                "model": typed("model", str),
                "model_options": typed("model_options", str),
                "model_weights": typed("model_weights", str),
                "allow_python_models": typed("allow_python_models", bool),
                "planner": typed("planner", str),
                "horizon": typed("horizon", int),
                "control_rate_hz": typed("rate", float),
                **reliable_camera(context, "subscription"),
            },
            *names,
        ],
        remappings=[("command", LaunchConfiguration("command_topic")),
                    ("~/goal_state", "/goal_state"), ("~/goal_image", "/goal_image")],
    )
    removal = [RegisterEventHandler(OnShutdown(on_shutdown=lambda event, ctx: remove_files(names)))]
    return [node, *supervised(node), *(removal if names else [])]


def remove_files(paths) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)



def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, default, text in ARGUMENTS]
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("ros_gz_sim"), "launch", "gz_sim.launch.py"])),
        launch_arguments={"gz_args": ["-r ", LaunchConfiguration("world")]}.items(),
        condition=IfCondition(PythonExpression(["'", LaunchConfiguration("world"), "' != ''"])))
    return LaunchDescription([*arguments, OpaqueFunction(function=params_file_exists), gazebo,
                              OpaqueFunction(function=bridge),
                              OpaqueFunction(function=controller)])
