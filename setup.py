"""pip-installable ROS-free parts of lss_bev_ros, plus the node entry points.

On a ROS 2 machine colcon builds this package with CMakeLists.txt (messages + Python + scripts);
this file serves `pip install .` and declares the same node entry points, launch and config data.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lss_bev_ros"

# Node executables: name -> module:function. scripts/<name> wraps the same function for
# `ros2 run`; test/test_packaging.py checks that both lists, launch files and config agree.
NODES = {
    "bev_node": "lss_bev_ros.nodes.bev_node:main",
    "fusion_node": "lss_bev_ros.nodes.fusion_node:main",
    "eval_node": "lss_bev_ros.nodes.eval_node:main",
    "detector_node": "lss_bev_ros.nodes.detector_node:main",
    "objects_node": "lss_bev_ros.nodes.objects_node:main",
    "dashboard_node": "lss_bev_ros.nodes.dashboard_node:main",
    "frame_player_node": "lss_bev_ros.nodes.frame_player_node:main",
    "pipeline": "lss_bev_ros.pipeline:main",
}

# Command-line tools (not nodes).
TOOLS = {
    "lss-bev-train": "lss_bev_ros.lss.train:main",
    "lss-bev-synth": "lss_bev_ros.data.synthetic:main",
    "lss-bev-bag": "rosbag_tools.cli:main",
    "lss-bev-export-yolo": "lss_bev_ros.detection.export:main",
    "lss-bev-export": "lss_bev_ros.backends.export:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "rosbag_tools", "rosbag_tools.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["numpy", "pyyaml"],
    zip_safe=False,
    maintainer="lss_bev_ros maintainers",
    maintainer_email="maintainers@lss-bev-ros.dev",
    description="Lift-Splat-Shoot BEV perception and YOLO tracking for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [f"{k} = {v}" for k, v in {**NODES, **TOOLS}.items()],
    },
)
