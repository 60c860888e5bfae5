#!/usr/bin/env bash
# One entry point for a fresh machine (no ROS needed): sets up .venv + messages, then
# (ROS 2 Jazzy by default; ROS_DISTRO=kilted ./dev.sh ... uses .venv-kilted + install-kilted)
#   ./dev.sh demo [args]   run the demo pipeline (synthetic nuScenes -> rosbag2 -> live BEV/detection/eval)
#   ./dev.sh test [args]   ruff + mypy (ROS-free core) + the whole pytest suite
#   ./dev.sh bench NAME    run bench/NAME.py
#   ./dev.sh shell         a shell with the environment sourced
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cmd="${1:-}"; shift || true
case "$cmd" in
  demo)
    bash tools/bootstrap.sh
    source tools/env.sh
    exec python -m rosbag_tools.demo "$@"
    ;;
  test)
    bash tools/bootstrap.sh --with-browser
    source tools/env.sh
    echo "[test] ruff check"
    ruff check .
    echo "[test] mypy (ROS-free core, files in pyproject.toml)"
    mypy
    echo "[test] pytest"
    exec python -m pytest "$@"
    ;;
  bench)
    bash tools/bootstrap.sh
    source tools/env.sh
    name="${1:?usage: ./dev.sh bench NAME}"; shift
    exec python "bench/${name%.py}.py" "$@"
    ;;
  shell)
    bash tools/bootstrap.sh
    source tools/env.sh
    exec bash -i
    ;;
  *)
    echo "usage: ./dev.sh demo|test|bench NAME|shell" >&2
    exit 2
    ;;
esac
