"""ROS 2 nodes (thin glue around the ROS-free cores)."""
