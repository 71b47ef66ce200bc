"""Closed-loop demo in simulation: grasp_sim (the world, owner of /clock) + grasp_controller.

    ros2 launch grasp_ros sim_demo.launch.py          # wall_door, GRASP, learned model, from pixels
    ros2 launch grasp_ros sim_demo.launch.py model:=analytic observation:=joints env:=u_maze
    ros2 launch grasp_ros sim_demo.launch.py episodes:=3 exit_when_done:=true

What `grasp-ros demo` starts when the launch package is installed (same parameters; without it,
the demo starts the same two processes itself). The sim publishes /clock, `image`,
`joint_states`, the episode goal on /goal_state and /goal_image, and episode reports on
/grasp_sim/episode; it steps physics and takes images at `rate`, the controller's rate, so one
control period is one env step. The controller runs on sim time (use_sim_time), configures and
activates itself (autostart), reads its parameters from `params_file` (overridden by the
arguments here), and has its private goal topics remapped to the sim's. With
exit_when_done:=true the whole launch ends when the sim has run `episodes` episodes.

The launch also ends when either process exits early, with the reason in the log: a crash, or
the controller failing to configure (it then exits with status 1), e.g. the default learned
model with env:=open or u_maze (it knows only wall_door; use model:=analytic there).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from grasp_ros.ros.launch_actions import EXIT_WITH_LAUNCH, params_file_exists, supervised

# (name, default, description): every argument of this launch file.
ARGUMENTS = (
    ("env", "wall_door", "world: open, wall_door or u_maze"),
    ("planner", "grasp", "controller planner: grasp, cem, mppi or gd"),
    ("model", "learned", "world model: a built-in name or a module:factory, given the options "
                         "env, horizon and observe (a TorchScript file takes none: use "
                         "grasp_controller.launch.py)"),
    ("allow_python_models", "false",
     "load a module:factory model (imports and runs that module's Python code)"),
    ("observation", "image", "what the controller encodes: image (camera) or joints"),
    ("horizon", "50", "planning horizon H, and the env's resolution (max step = reach / H)"),
    ("rate", "10.0", "control rate (Hz); the sim steps physics and takes images at this rate"),
    ("seed", "0", "first episode's seed (episode k uses seed + k)"),
    ("episodes", "0", "episodes to run (0: without end)"),
    ("exit_when_done", "false", "end the launch after the last episode"),
    ("max_episode_time", "60.0", "sim seconds before an episode fails"),
    ("rate_factor", "1.0", "sim seconds per wall second"),
    ("clock_period", "0.005", "sim time quantum of /clock (s)"),
    ("wait_for_subscribers", "",
     "sim time starts once these nodes (comma-separated names) subscribe to joint_states"),
    ("params_file", PathJoinSubstitution([FindPackageShare("grasp_ros"), "config",
                                          "grasp_controller.yaml"]),
     "controller parameters YAML (default: the package's config/grasp_controller.yaml)"),
    ("log_level", "info", "log level of both nodes"),
)


def typed(name: str, value_type):
    """A launch argument as a parameter of a fixed type (``rate:=10`` still gives a double)."""
    return ParameterValue(LaunchConfiguration(name), value_type=value_type)



def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, default, text in ARGUMENTS]
    log_level = ["--log-level", LaunchConfiguration("log_level")]

    sim = Node(
        package="grasp_ros", executable="grasp_sim", name="grasp_sim", output="screen",
        additional_env=EXIT_WITH_LAUNCH,
        parameters=[{
            "env": typed("env", str),
            "horizon": typed("horizon", int),
            "seed": typed("seed", int),
            "episodes": typed("episodes", int),
            "exit_when_done": typed("exit_when_done", bool),
            "physics_rate_hz": typed("rate", float),
            "camera_rate_hz": typed("rate", float),
            "max_episode_time": typed("max_episode_time", float),
            "rate_factor": typed("rate_factor", float),
            "clock_period": typed("clock_period", float),
            "wait_for_subscribers": typed("wait_for_subscribers", str),
        }],
        ros_arguments=log_level,
    )
    controller = LifecycleNode(
        package="grasp_ros", executable="grasp_controller", name="grasp_controller",
        namespace="", output="screen", additional_env=EXIT_WITH_LAUNCH,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "autostart": True,
                "use_sim_time": True,
                "model": typed("model", str),
                "allow_python_models": typed("allow_python_models", bool),
                # A YAML-looking string: without value_type=str launch would parse it to a map.
                # observe: the input the model is to encode (the analytic model takes either).
                "model_options": ParameterValue(
                    ["{env: ", LaunchConfiguration("env"), ", horizon: ",
                     LaunchConfiguration("horizon"), ", observe: ", LaunchConfiguration("observation"),
                     "}"], value_type=str),
                "planner": typed("planner", str),
                "horizon": typed("horizon", int),
                "control_rate_hz": typed("rate", float),
            },
        ],
        remappings=[("~/goal_state", "/goal_state"), ("~/goal_image", "/goal_image")],
        ros_arguments=log_level,
    )
    # The sim ended (exit_when_done, a crash) or the controller did: so does the demo.
    return LaunchDescription([*arguments, OpaqueFunction(function=params_file_exists), sim, controller,
                              *supervised(sim, controller)])
