# Source me: environment for running lss_bev_ros from this checkout (after tools/bootstrap.sh).
_LSS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_LSS_REPO/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AMENT_PREFIX_PATH="$_LSS_REPO/install:$VIRTUAL_ENV"
export LD_LIBRARY_PATH="$_LSS_REPO/install/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$_LSS_REPO:$_LSS_REPO/install/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Keep DDS on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
export YOLO_OFFLINE=1 ULTRALYTICS_SETTINGS_DIR="${ULTRALYTICS_SETTINGS_DIR:-$_LSS_REPO/.venv/ultralytics}"
export YOLO_CONFIG_DIR="$ULTRALYTICS_SETTINGS_DIR"
