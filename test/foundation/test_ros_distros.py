"""The supported ROS 2 distros (tools/ros_distro.sh) have requirement files that agree, and the
environment under test runs the distro it says it does."""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
# rclpy major version of each distro's release line (Humble 3, Iron 4, Jazzy 7, Kilted 9)
RCLPY_MAJOR = {"jazzy": 7, "kilted": 9}
# the packages that differ between the two lists, and why (tools/requirements-ros-jazzy.txt)
ONLY_KILTED = {"ament-cmake-ros-core"}  # split out of ament_cmake_ros after Jazzy
ONLY_JAZZY = {"ament-cmake-gmock", "ament-cmake-gtest", "ament-cmake-pytest"}  # ament_cmake_ros


def _shell_var(name: str) -> str:
    m = re.search(rf'^{name}="?([^"\n#]*)"?', (TOOLS / "ros_distro.sh").read_text(), re.M)
    assert m, f"{name} not set in tools/ros_distro.sh"
    return m.group(1).strip()


SUPPORTED = _shell_var("LSS_SUPPORTED_ROS_DISTROS").split()
DEFAULT = _shell_var("LSS_DEFAULT_ROS_DISTRO")


def _requirements(path: Path) -> list[str]:
    lines = (ln.split("#")[0].strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln]


def test_default_distro_is_supported_and_named_in_the_readme() -> None:
    assert DEFAULT in SUPPORTED
    readme = (REPO / "README.md").read_text()
    assert f"default: **{DEFAULT.capitalize()}**" in readme


@pytest.mark.parametrize("distro", SUPPORTED)
def test_each_supported_distro_has_ros_requirements(distro: str) -> None:
    reqs = _requirements(TOOLS / f"requirements-ros-{distro}.txt")
    assert reqs and all(r.startswith("ros-") for r in reqs), reqs
    assert distro in RCLPY_MAJOR, f"add {distro}'s rclpy major version to RCLPY_MAJOR"


def test_common_requirements_hold_no_ros_distro_package() -> None:
    ros = [r for r in _requirements(TOOLS / "requirements.txt") if r.startswith("ros-")]
    assert not ros, f"ROS wheels belong in tools/requirements-ros-<distro>.txt: {ros}"


def test_jazzy_requirements_are_the_kilted_ones_with_the_jazzy_prefix() -> None:
    kilted = {r.removeprefix("ros-") for r in _requirements(TOOLS / "requirements-ros-kilted.txt")}
    jazzy = _requirements(TOOLS / "requirements-ros-jazzy.txt")
    assert all(r.startswith("ros-jazzy-") for r in jazzy), jazzy
    jazzy_names = {r.removeprefix("ros-jazzy-") for r in jazzy}
    assert jazzy_names == (kilted - ONLY_KILTED) | ONLY_JAZZY, (
        f"only in kilted: {sorted(kilted - jazzy_names - ONLY_KILTED)}, "
        f"only in jazzy: {sorted(jazzy_names - kilted - ONLY_JAZZY)}")


@pytest.mark.ros
def test_environment_runs_the_rclpy_of_its_ros_distro() -> None:
    distro = os.environ.get("ROS_DISTRO", DEFAULT)
    version = importlib.metadata.version("ros-rclpy")
    assert int(version.split(".")[0]) == RCLPY_MAJOR[distro], (distro, version)
    mark = Path(sys.prefix) / ".lss_bev_ros_distro"
    if mark.is_file():  # written by tools/bootstrap.sh into the venv it built
        assert mark.read_text().strip() == distro, (mark, distro)
