"""The ROS 2 side: the grasp_controller node, its parameters, QoS and message conversions.

Modules import rclpy and ROS messages; ``grasp_ros.control`` holds the logic they call.
Submodules are not imported here, so ``python -m grasp_ros.ros.params`` stays light.
"""
