"""grasp_controller with its parameter file, topic remaps, sim time and lifecycle start-up.

    ros2 launch grasp_ros grasp_controller.launch.py
    ros2 launch grasp_ros grasp_controller.launch.py use_sim_time:=true goal_state:=/goal_state
    ros2 launch grasp_ros grasp_controller.launch.py params_file:=/path/to/my.yaml \\
        image:=/camera/image_raw command:=/forward_velocity_controller/commands
    ros2 launch grasp_ros grasp_controller.launch.py autostart:=false   # for a lifecycle manager

With autostart:=true (the default) launch plays lifecycle manager: it asks the node to configure
once the process is up, and to activate once configuring has succeeded (only then: a later
deactivate by hand is not undone). With autostart:=false the node waits, unconfigured, for
`ros2 lifecycle set <node> configure` and `... activate`. Parameters come from `params_file`
(default: the package's config/grasp_controller.yaml, every parameter documented there).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

# The node's topic names and what each argument remaps it to (default: not moved).
REMAPS = (
    ("image", "image", "camera input (sensor_msgs/Image), with observation:=image"),
    ("joint_states", "joint_states", "joint input (sensor_msgs/JointState), with observation:=joints"),
    ("goal_state", "~/goal_state", "joint-space goal (grasp_ros/JointGoal, transient local)"),
    ("goal_image", "~/goal_image", "goal image (sensor_msgs/Image, transient local)"),
    ("command", "command", "Float64MultiArray output, command_interface:=forward_command"),
    ("joint_trajectory", "joint_trajectory",
     "JointTrajectory output, command_interface:=joint_trajectory"),
)

ARGUMENTS = (
    ("namespace", "", "namespace of the node"),
    ("node_name", "grasp_controller", "name of the node"),
    ("params_file", PathJoinSubstitution([FindPackageShare("grasp_ros"), "config",
                                          "grasp_controller.yaml"]),
     "parameter file (default: the package's config/grasp_controller.yaml)"),
    ("use_sim_time", "false", "run on /clock (simulation) instead of the system clock"),
    ("autostart", "true", "configure and activate the node from launch"),
    ("log_level", "info", "log level of the node"),
    *((name, default, f"topic for {text}") for name, default, text in REMAPS),
)


def change_state(node: LifecycleNode, transition_id: int, **kwargs) -> EmitEvent:
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                       transition_id=transition_id), **kwargs)


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, default, text in ARGUMENTS]
    autostart = IfCondition(LaunchConfiguration("autostart"))
    controller = LifecycleNode(
        package="grasp_ros", executable="grasp_controller",
        name=LaunchConfiguration("node_name"), namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)},
        ],
        remappings=[(topic, LaunchConfiguration(name)) for name, topic, _ in REMAPS],
        ros_arguments=["--log-level", LaunchConfiguration("log_level")],
    )
    configure = change_state(controller, Transition.TRANSITION_CONFIGURE, condition=autostart)
    activate_once_configured = RegisterEventHandler(
        OnStateTransition(target_lifecycle_node=controller,
                          start_state="configuring", goal_state="inactive",
                          entities=[change_state(controller, Transition.TRANSITION_ACTIVATE)]),
        condition=autostart)
    return LaunchDescription([*arguments, controller, configure, activate_once_configured])
