"""grasp_controller with its parameter file, topic remaps, sim time and lifecycle start-up.

    ros2 launch grasp_ros grasp_controller.launch.py
    ros2 launch grasp_ros grasp_controller.launch.py use_sim_time:=true goal_state:=/goal_state
    ros2 launch grasp_ros grasp_controller.launch.py params_file:=/path/to/my.yaml \\
        image:=/camera/image_raw command:=/forward_velocity_controller/commands
    ros2 launch grasp_ros grasp_controller.launch.py autostart:=false   # for a lifecycle manager

One mechanism starts the node: its own `autostart` parameter, which this file sets from the
`autostart` argument after `params_file` (so the argument wins over the file's value). With
autostart:=true (the default) the node configures and activates itself; if either fails it
exits with status 1 and the reason, and the launch ends with status 1. With autostart:=false
the node waits, unconfigured, for a lifecycle manager (`ros2 lifecycle set <node> configure`, then
`... activate`); launch sends no transitions of its own, so none can collide with the node's
or the manager's. Parameters come from `params_file` (default: the package's
config/grasp_controller.yaml, every parameter documented there). The model sources (`model`,
`model_weights`, `model_options`, `allow_python_models`) are read-only: set them in the file.

A raw camera of 1280x720 or more from a driver that publishes reliably needs a reliable reader
(a best-effort one gets few of its frames whole; README, "Large raw frames need a reliable
reader"): `camera_reliability:=reliable` sets the QoS override of the camera topic as the node
resolves it (namespace, remap, an including launch's pushed namespace), raw or compressed.
"""
from launch import LaunchDescription
from launch import LaunchContext
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from grasp_ros.ros.launch_actions import (EXIT_WITH_LAUNCH, UseSimTime, camera_reliability,
                                          params_file_exists, resolved_topic, supervised)

# The node's topic names and what each argument remaps it to (default: not moved).
REMAPS = (
    ("image", "image", "camera input (sensor_msgs/Image), when the model card names a camera"),
    ("joint_states", "joint_states", "joint input (sensor_msgs/JointState), when the card names joints"),
    ("goal_state", "~/goal_state", "joint-space goal (grasp_ros/JointGoal, transient local)"),
    ("goal_image", "~/goal_image", "goal image (sensor_msgs/Image, transient local)"),
    ("command", "command", "Float64MultiArray output, command_interface:=forward_command"),
    ("joint_trajectory", "joint_trajectory",
     "JointTrajectory output, command_interface:=joint_trajectory"),
    ("cmd_vel", "cmd_vel", "Twist / TwistStamped output, command_interface:=twist / twist_stamped"),
)

ARGUMENTS = (
    ("namespace", "", "namespace of the node"),
    ("node_name", "grasp_controller", "name of the node"),
    ("params_file", PathJoinSubstitution([FindPackageShare("grasp_ros"), "config",
                                          "grasp_controller.yaml"]),
     "parameter file (default: the package's config/grasp_controller.yaml)"),
    ("use_sim_time", "", "true: run on /clock (simulation) instead of the system clock; empty (the "
                         "default): as a SetParameter of an including launch file says, else false"),
    ("autostart", "true", "the node configures and activates itself (false: wait for a lifecycle manager)"),
    ("log_level", "info", "log level of the node"),
    ("camera_reliability", "", "reliable: read the camera reliably (large raw frames from a reliable "
                               "driver); best_effort; empty (the default): as params_file says, else "
                               "best effort"),
    *((name, default, f"topic for {text}") for name, default, text in REMAPS),
)



def controller(context: LaunchContext) -> list:
    """The node, and the end of the launch when it exits: a failed autostart or a crash (an
    audit's bad parameter file left the node dead and `ros2 launch` exiting 0)."""
    namespace = LaunchConfiguration("namespace").perform(context)
    camera = resolved_topic(context, LaunchConfiguration("image").perform(context), namespace,
                            LaunchConfiguration("node_name").perform(context))
    node = LifecycleNode(
        package="grasp_ros", executable="grasp_controller",
        name=LaunchConfiguration("node_name"), namespace=namespace,
        output="screen", additional_env=EXIT_WITH_LAUNCH,
        parameters=[
            LaunchConfiguration("params_file"),
            {"use_sim_time": ParameterValue(UseSimTime(), value_type=bool),
             "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
             **camera_reliability(camera, "subscription",
                                  LaunchConfiguration("camera_reliability").perform(context))},
        ],
        remappings=[(topic, LaunchConfiguration(name)) for name, topic, _ in REMAPS],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )
    return [node, *supervised(node)]


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, default, text in ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=params_file_exists),
                              OpaqueFunction(function=controller)])
