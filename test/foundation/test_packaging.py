"""package.xml, setup.py, CMakeLists.txt, scripts/, launch/ and config/ agree with each other
and with what the code imports."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[2]

# import name -> package.xml dependency key (rosdep key or ROS package)
IMPORT_TO_KEY = {
    "rclpy": "rclpy",
    "std_msgs": "std_msgs",
    "builtin_interfaces": "builtin_interfaces",
    "sensor_msgs": "sensor_msgs",
    "nav_msgs": "nav_msgs",
    "geometry_msgs": "geometry_msgs",
    "visualization_msgs": "visualization_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "rosgraph_msgs": "rosgraph_msgs",
    "rcl_interfaces": "rclpy",  # comes with rclpy
    "tf2_ros": "tf2_ros",
    "tf2_msgs": "tf2_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "torch": "python3-pytorch-pip",
    "torchvision": "python3-torchvision-pip",
    "efficientnet_pytorch": "python3-efficientnet-pytorch-pip",
    "ultralytics": "python3-ultralytics-pip",
    "nuscenes": "python3-nuscenes-devkit-pip",
    "pyquaternion": "python3-nuscenes-devkit-pip",  # installed with the devkit
    "rosbags": "python3-rosbags-pip",
    "onnx": "python3-onnx-pip",
    "onnxruntime": "python3-onnxruntime-pip",
    "matplotlib": "python3-matplotlib",
    "PIL": "python3-pil",
    "shapely": "python3-shapely",
    "scipy": "python3-scipy",
    "filterpy": "python3-filterpy-pip",
    "ray": "python3-ray-pip",  # lss-bev-bag eval-many
}
# optional accelerators: imported lazily behind a clear BackendUnavailableError
OPTIONAL = {"tensorrt", "torch2trt", "pycuda", "cuda", "onnxscript", "motmetrics", "mcap",
            "mcap_ros2", "lap"}


def _package():
    return parse_package(str(REPO / "package.xml"))


def _setup_dicts() -> tuple[dict[str, str], dict[str, str]]:
    tree = ast.parse((REPO / "setup.py").read_text())
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("NODES", "TOOLS")
        ):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["NODES"], found["TOOLS"]


def _imported_top_modules() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for root in ("lss_bev_ros", "rosbag_tools", "launch"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for n in names:
                    out.setdefault(n.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return out


def test_package_xml_is_format3_and_valid() -> None:
    pkg = _package()
    assert pkg.package_format == 3
    assert pkg.name == "lss_bev_ros"
    pkg.validate()
    assert any(e.tagname == "build_type" and e.content == "ament_cmake" for e in pkg.exports)


def test_package_xml_names_every_runtime_dependency() -> None:
    pkg = _package()
    declared = {d.name for d in pkg.exec_depends + pkg.build_export_depends}
    declared |= {d.name for d in getattr(pkg, "depends", [])}
    declared |= {d.name for d in pkg.build_depends}
    stdlib = set(sys.stdlib_module_names)
    own = {"lss_bev_ros", "rosbag_tools"}
    missing = {}
    for mod, files in _imported_top_modules().items():
        if mod in stdlib or mod in own or mod in OPTIONAL or mod == "__future__":
            continue
        key = IMPORT_TO_KEY.get(mod)
        if key is None or key not in declared:
            missing[mod] = sorted(files)[:3]
    assert not missing, f"imports without a package.xml dependency: {missing}"


def test_setup_entry_points_match_scripts_and_resolve() -> None:
    nodes, tools = _setup_dicts()
    scripts = {p.name for p in (REPO / "scripts").iterdir() if p.is_file()}
    assert scripts == set(nodes), "scripts/ (ros2 run executables) and setup.py NODES differ"
    for name, target in {**nodes, **tools}.items():
        module, func = target.split(":")
        mod = importlib.import_module(module)
        assert callable(getattr(mod, func, None)), f"{name}: {target} is not callable"
    for name in scripts:
        text = (REPO / "scripts" / name).read_text()
        module, func = nodes[name].split(":")
        assert f"from {module} import {func}" in text, f"scripts/{name} does not call {nodes[name]}"
        assert (REPO / "scripts" / name).stat().st_mode & 0o111, f"scripts/{name} not executable"


def test_cmake_installs_messages_scripts_launch_and_config() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    for msg in sorted((REPO / "msg").glob("*.msg")):
        assert f'"msg/{msg.name}"' in cmake, f"{msg.name} not generated by CMakeLists.txt"
    assert re.search(
        r"install\(PROGRAMS \$\{NODE_SCRIPTS\} DESTINATION lib/\$\{PROJECT_NAME\}", cmake
    )
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    setup = (REPO / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup


@pytest.mark.parametrize("node_dir", ["launch", "config"])
def test_launch_and_config_dirs_not_empty(node_dir: str) -> None:
    assert any((REPO / node_dir).iterdir()), f"{node_dir}/ is empty"


def test_colcon_install_space_has_node_executables_and_messages() -> None:
    """The install space ``ros2 run`` would use: the ament index's prefix of lss_bev_ros (this
    ROS distro's install/ or install-<distro>/, first on AMENT_PREFIX_PATH via tools/env.sh)."""
    from ament_index_python.packages import get_package_prefix

    install = Path(get_package_prefix("lss_bev_ros"))
    nodes, _ = _setup_dicts()
    for name in nodes:
        assert (install / "lib" / "lss_bev_ros" / name).exists(), f"colcon did not install {name}"
    msgs = install / "lib" / "python3.11" / "site-packages" / "lss_bev_ros" / "msg"
    assert (msgs / "_detection2_d_array.py").exists()
    assert (install / "share" / "lss_bev_ros" / "package.xml").exists()
