# Source me: environment for running lss_bev_ros from this checkout (after tools/bootstrap.sh),
# for the ROS 2 distro in ROS_DISTRO (default Jazzy; see tools/ros_distro.sh):
#   source tools/env.sh                      # Jazzy: .venv + install
#   export ROS_DISTRO=kilted; source tools/env.sh   # Kilted: .venv-kilted + install-kilted
# Re-sourcing for another distro replaces this checkout's entries in PATH, PYTHONPATH, ...
_LSS_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_lss_rc=1
if source "$_LSS_REPO/tools/ros_distro.sh" "$_LSS_REPO"; then
  _lss_rc=0
  _lss_strip() {  # _lss_strip VALUE: VALUE (a:b:c) without this checkout's entries
    local out="" e IFS=:
    for e in $1; do [[ -n "$e" && "$e" != "$_LSS_REPO"/* && "$e" != "$_LSS_REPO" ]] \
      && out="${out:+$out:}$e"; done
    printf '%s' "$out"
  }
  PATH="$(_lss_strip "$PATH")" LD_LIBRARY_PATH="$(_lss_strip "${LD_LIBRARY_PATH:-}")"
  PYTHONPATH="$(_lss_strip "${PYTHONPATH:-}")"
  export ROS_DISTRO="$LSS_ROS_DISTRO"
  export VIRTUAL_ENV="$LSS_VENV"
  export PATH="$VIRTUAL_ENV/bin:$PATH"
  export AMENT_PREFIX_PATH="$LSS_INSTALL:$VIRTUAL_ENV"
  export LD_LIBRARY_PATH="$LSS_INSTALL/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PYTHONPATH="$_LSS_REPO:$LSS_INSTALL/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  # Keep DDS on this machine.
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
  # ultralytics settings per venv, unless the user points them elsewhere
  [[ -z "${ULTRALYTICS_SETTINGS_DIR:-}" || "$ULTRALYTICS_SETTINGS_DIR" == "$_LSS_REPO"/* ]] \
    && ULTRALYTICS_SETTINGS_DIR="$VIRTUAL_ENV/ultralytics"
  export YOLO_OFFLINE=1 ULTRALYTICS_SETTINGS_DIR
  export YOLO_CONFIG_DIR="$ULTRALYTICS_SETTINGS_DIR"
  [[ -x "$VIRTUAL_ENV/bin/python" ]] \
    || echo "tools/env.sh: $VIRTUAL_ENV missing: run ROS_DISTRO=$ROS_DISTRO tools/bootstrap.sh" >&2
  unset -f _lss_strip
fi
unset _LSS_REPO
return "$_lss_rc" 2>/dev/null || true
