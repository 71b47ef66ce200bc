"""Open-loop planner benchmark (``grasp-ros bench`` / ``python -m grasp_ros.bench``)."""
