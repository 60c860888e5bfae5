#!/usr/bin/env bash
# Build the self-contained development environment in the repository for one ROS 2 distro
# (idempotent; tools/ros_distro.sh says which directories each distro uses):
#   .venv/     Python 3.11 venv with ROS 2 (rclpy + Fast DDS) from PyPI, torch, ultralytics,
#              nuscenes-devkit, rosbags, onnxruntime, colcon      (.venv-kilted/ for Kilted)
#   install/   the colcon-built lss_bev_ros package (custom messages + Python + scripts)
#              (build/, log/ beside it)                            (install-kilted/ ... for Kilted)
# A re-run with nothing changed returns in seconds (stamp files hash the inputs).
# Usage: tools/bootstrap.sh [--distro jazzy|kilted] [--with-browser]
#   --distro D      (or ROS_DISTRO=D in the environment) the ROS 2 distro; default: Jazzy (LTS)
#   --with-browser  also apt-install chromium for the dashboard tests
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
WITH_BROWSER=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with-browser) WITH_BROWSER=1 ;;
    --distro) ROS_DISTRO="${2:?--distro needs a value}"; shift ;;
    --distro=*) ROS_DISTRO="${1#--distro=}" ;;
    *) echo "usage: tools/bootstrap.sh [--distro jazzy|kilted] [--with-browser]" >&2; exit 2 ;;
  esac
  shift
done
source "$REPO/tools/ros_distro.sh" "$REPO" || exit 2
DISTRO="$LSS_ROS_DISTRO" VENV="$LSS_VENV"
ROS_REQ="tools/requirements-ros-$DISTRO.txt"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
log() { printf '[bootstrap %s] %s\n' "$DISTRO" "$*"; }
hash_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }  # files; missing ok

# 0. one distro per venv: a venv made for another distro (or before distros were recorded: then
#    its installed rclpy wheel tells) is rebuilt from scratch, with its colcon spaces --------------
DISTRO_MARK="$VENV/.lss_bev_ros_distro"
venv_distro() {
  if [[ -f "$DISTRO_MARK" ]]; then cat "$DISTRO_MARK"
  elif compgen -G "$VENV/lib/python3*/site-packages/ros_jazzy_rclpy-*.dist-info" >/dev/null; then
    echo jazzy
  elif compgen -G "$VENV/lib/python3*/site-packages/ros_rclpy-*.dist-info" >/dev/null; then
    echo kilted
  else echo "$DISTRO"; fi  # no ROS installed yet
}
if [[ -d "$VENV" && "$(venv_distro)" != "$DISTRO" ]]; then
  log "$VENV holds ROS 2 $(venv_distro), not $DISTRO: removing it and its build/install/log"
  rm -rf "$VENV" "$LSS_BUILD" "$LSS_INSTALL" "$LSS_LOG"
fi

# 1. virtual environment + pinned packages --------------------------------------------------------
PIP_STAMP="$VENV/.lss_bev_pip_stamp"
PIP_HASH="$(hash_of tools/requirements.txt "$ROS_REQ" tools/bootstrap.sh)"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
echo "$DISTRO" > "$DISTRO_MARK"
if [[ "$(cat "$PIP_STAMP" 2>/dev/null)" != "$PIP_HASH" ]]; then
  log "installing Python packages (first run: a few minutes)"
  pipi() {  # pip install, without the local mirror's "Location ... is ignored" noise
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
      | { grep -v "is ignored: it is neither" || true; }
    return "${PIPESTATUS[0]}"
  }
  pipi --upgrade pip "setuptools<80" wheel
  # torch/torchvision first: the verified pair (CUDA build, runs on CPU; torchvision has no CPU build)
  pipi torch==2.14.1 torchvision==0.29.1
  pipi -r tools/requirements.txt -r "$ROS_REQ"
  # ultralytics without its opencv-python(5)/numpy>=2 dependency; cv2 comes from opencv-python-headless 4.x
  pipi --no-deps ultralytics==8.4.190
  "$VENV/bin/python" -c "import numpy, cv2, torch, torchvision, ultralytics, nuscenes, rosbags, onnxruntime; \
assert numpy.__version__.startswith('1.26'), numpy.__version__"
  echo "$PIP_HASH" > "$PIP_STAMP"
else
  log "Python packages up to date"
fi
# console scripts (lss-bev-bag, lss-bev-train, ...) into .venv/bin, code stays in the checkout
if [[ ! -e "$VENV/bin/lss-bev-bag" || setup.py -nt "$VENV/bin/lss-bev-bag" ]]; then
  log "installing lss_bev_ros console scripts (editable)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation \
    -e "$REPO" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  touch "$VENV/bin/lss-bev-bag"
fi

# 2. include dirs that the ROS message wheels' CMake configs expect (see shared/ENVIRONMENT.md) -----
PYINC="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
ensure_link() {  # ensure_link TARGET LINKPATH
  if [[ ! -e "$2" ]]; then
    if mkdir -p "$(dirname "$2")" 2>/dev/null && ln -sfn "$1" "$2" 2>/dev/null; then :; else
      sudo mkdir -p "$(dirname "$2")" && sudo ln -sfn "$1" "$2"; fi
  fi
}
ensure_link "$PYINC" /opt/python/cp311-cp311/include/python3.11
ensure_link "$NPINC" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

# 3. colcon build of the package (messages) ------------------------------------------------------
BUILD_HASH="$(hash_of CMakeLists.txt package.xml msg/*.msg tools/vendor/*/*.* tools/vendor/*/CMakeLists.txt tools/vendor/*/msg/* tools/bootstrap.sh "$ROS_REQ")"
BUILD_STAMP="$LSS_INSTALL/.lss_bev_build_stamp"
if [[ "$(cat "$BUILD_STAMP" 2>/dev/null)" != "$BUILD_HASH" ]]; then
  log "building messages with colcon"
  mkdir -p "$LSS_LOG"
  # tf2_msgs has no PyPI wheel: build the identical interface from tools/vendor (dev only)
  VENDOR_PATHS=""
  "$VENV/bin/python" -c "import tf2_msgs" 2>/dev/null || VENDOR_PATHS="$REPO/tools/vendor/tf2_msgs"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    export PYTHONWARNINGS=ignore
    colcon --log-base "$LSS_LOG" build --base-paths "$REPO" $VENDOR_PATHS --merge-install \
      --build-base "$LSS_BUILD" --install-base "$LSS_INSTALL" --symlink-install \
      --event-handlers console_cohesion- --cmake-args -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DPython3_NumPy_INCLUDE_DIR=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include \
      >"$LSS_LOG/colcon_last.txt" 2>&1 \
      || { tail -60 "$LSS_LOG/colcon_last.txt"; exit 1; }
  )
  echo "$BUILD_HASH" > "$BUILD_STAMP"
else
  log "messages up to date"
fi

# 4. optional: headless Chromium for the dashboard test -------------------------------------------
if [[ "$WITH_BROWSER" == 1 ]] && ! command -v chromium >/dev/null; then
  log "installing chromium (apt)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [[ "$DISTRO" == "$LSS_DEFAULT_ROS_DISTRO" ]]; then log "ready: source tools/env.sh"
else log "ready: ROS_DISTRO=$DISTRO source tools/env.sh"; fi
