# Sourced by tools/bootstrap.sh and tools/env.sh (not run): which ROS 2 distro an environment of
# this checkout is for, and where it lives. One environment per distro, side by side:
#   default distro (LSS_DEFAULT_ROS_DISTRO): .venv/  build/  install/  log/
#   any other:                                .venv-<d>/ build-<d>/ install-<d>/ log-<d>/
# In:  $1 = repository root; ROS_DISTRO (optional, default LSS_DEFAULT_ROS_DISTRO).
# Out: LSS_ROS_DISTRO, LSS_VENV, LSS_BUILD, LSS_INSTALL, LSS_LOG; returns 1 on an unknown distro.
LSS_SUPPORTED_ROS_DISTROS="jazzy kilted"   # each has tools/requirements-ros-<d>.txt
LSS_DEFAULT_ROS_DISTRO=jazzy               # the LTS (README: "ROS 2 distros")
LSS_ROS_DISTRO="${ROS_DISTRO:-$LSS_DEFAULT_ROS_DISTRO}"
case " $LSS_SUPPORTED_ROS_DISTROS " in
  *" $LSS_ROS_DISTRO "*)
    _lss_sfx=""
    [[ "$LSS_ROS_DISTRO" != "$LSS_DEFAULT_ROS_DISTRO" ]] && _lss_sfx="-$LSS_ROS_DISTRO"
    LSS_VENV="$1/.venv$_lss_sfx" LSS_BUILD="$1/build$_lss_sfx"
    LSS_INSTALL="$1/install$_lss_sfx" LSS_LOG="$1/log$_lss_sfx"
    unset _lss_sfx
    ;;
  *)
    echo "ROS_DISTRO=$LSS_ROS_DISTRO: this checkout installs ROS 2 from PyPI for" \
      "'$LSS_SUPPORTED_ROS_DISTROS' only (default $LSS_DEFAULT_ROS_DISTRO). Unset ROS_DISTRO" \
      "(a sourced /opt/ros sets it) or set it to one of them." >&2
    return 1
    ;;
esac
