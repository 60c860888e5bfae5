"""launch/*.launch.py, config/*.yaml and the one-process pipeline agree: executables exist,
config files exist, every YAML key is a parameter the node declares, with the right type."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from lss_bev_ros import pipeline
from lss_bev_ros.pipeline import PipelineConfigError, resolve

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
CONFIG_FILES = sorted((REPO / "config").glob("*.yaml"))


def _setup_nodes() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no NODES")


def _launch_info(path: Path) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """(module-level string constants, [(package, executable, name)] of Node(...) calls)."""
    tree = ast.parse(path.read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    nodes = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Node":
            kw = {}
            for k in call.keywords:
                v = k.value
                if isinstance(v, ast.Constant):
                    kw[k.arg] = v.value
                elif isinstance(v, ast.Name) and v.id in consts:
                    kw[k.arg] = consts[v.id]
            nodes.append((kw.get("package"), kw.get("executable"), kw.get("name")))
    return consts, nodes


def test_expected_launch_and_config_files_exist():
    names = {p.name for p in LAUNCH_FILES}
    assert {"pipeline.launch.py", "bev_only.launch.py", "replay_eval.launch.py"} <= names
    cfgs = {p.name for p in CONFIG_FILES}
    assert {"pipeline.yaml", "bev_only.yaml", "replay_eval.yaml"} <= cfgs
    assert (REPO / "config" / "lss_bev.rviz").is_file()


@pytest.mark.parametrize("launch", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_existing_executables_and_config(launch: Path):
    consts, nodes = _launch_info(launch)
    setup_nodes = _setup_nodes()
    scripts = {p.name for p in (REPO / "scripts").iterdir()}
    ours = [(exe, name) for pkg, exe, name in nodes if pkg == "lss_bev_ros"]
    assert ours, f"{launch.name} starts no lss_bev_ros node"
    for exe, name in ours:
        assert exe in setup_nodes, f"{launch.name}: {exe} not in setup.py NODES"
        assert exe in scripts, f"{launch.name}: {exe} not in scripts/"
        assert name == exe, f"{launch.name}: node name {name} != executable {exe}"
    config_refs = [v for v in consts.values() if isinstance(v, str)
                   and v.endswith((".yaml", ".rviz"))]
    assert any(v.endswith(".yaml") for v in config_refs), f"{launch.name}: no parameter file"
    for ref in config_refs:
        assert (REPO / "config" / ref).is_file(), f"{launch.name}: config/{ref} missing"
    # the launch file's parameter file has a section for each of its nodes, and they resolve
    cfg = REPO / "config" / consts["CONFIG"]
    sections = set(yaml.safe_load(cfg.read_text()))
    missing = {exe for exe, _ in ours} - sections
    assert not missing, f"{cfg.name} lacks sections for {missing}"
    assert [n for n, _, _ in resolve(cfg)] == [n for n in yaml.safe_load(cfg.read_text())]


@pytest.mark.parametrize("cfg", CONFIG_FILES, ids=lambda p: p.name)
def test_every_yaml_key_is_a_declared_parameter(cfg: Path):
    plan = resolve(cfg)  # raises on undeclared keys, wrong types, range/choice violations
    assert plan
    for name, cls, values in plan:
        declared = {s.name for s in cls.PARAMS} | {"autostart"}
        assert set(values) <= declared, f"{cfg.name}: {name}"
        assert name in pipeline.NODE_NAMES


def test_every_node_module_exposes_params_class_attribute():
    for name in pipeline.NODE_NAMES:
        cls = pipeline.node_class(name)
        assert cls.PARAMS, f"{name}: empty PARAMS"
        assert len({s.name for s in cls.PARAMS}) == len(cls.PARAMS), f"{name}: duplicate params"


def test_rviz_config_shows_grid_image_cameras_markers():
    rviz = yaml.safe_load((REPO / "config" / "lss_bev.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    by_class: dict[str, list[str]] = {}
    for d in displays:
        topic = d.get("Topic", {})
        by_class.setdefault(d["Class"].split("/")[-1], []).append(
            topic.get("Value", "") if isinstance(topic, dict) else "")
    assert "/bev/occupancy" in by_class["Map"]
    assert "/bev/image" in by_class["Image"]
    assert any(t.startswith("/cameras/") for t in by_class["Image"])
    assert "/gt/boxes" in by_class["MarkerArray"]
    assert "/objects/markers" in by_class["MarkerArray"]
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"


# -------------------------------------------------------------------- resolve() errors ----
def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_resolve_rejects_undeclared_key_wrong_type_and_unknown_node(tmp_path):
    with pytest.raises(PipelineConfigError, match=r"does not declare.*treshold"):
        resolve(_write(tmp_path, "eval_node:\n  ros__parameters:\n    treshold: 0.5\n"))
    with pytest.raises(PipelineConfigError, match=r"threshold.*not a float"):
        resolve(_write(tmp_path, "eval_node:\n  ros__parameters:\n    threshold: high\n"))
    with pytest.raises(PipelineConfigError, match="maximum"):
        resolve(_write(tmp_path, "eval_node:\n  ros__parameters:\n    threshold: 2.0\n"))
    with pytest.raises(PipelineConfigError, match="unknown node 'radar_node'"):
        resolve(_write(tmp_path, "radar_node:\n  ros__parameters: {}\n"))
    with pytest.raises(PipelineConfigError, match="ros__parameters"):
        resolve(_write(tmp_path, "eval_node:\n  threshold: 0.5\n"))
    with pytest.raises(PipelineConfigError, match="not found"):
        resolve(tmp_path / "nope.yaml")


def test_resolve_coerces_wildcards_and_selects_nodes(tmp_path):
    p = _write(tmp_path, (
        "/**:\n  ros__parameters:\n    threshold: 1\n    qos_reliable: true\n"
        "/ns/eval_node:\n  ros__parameters:\n    stamp_tolerance_s: 1\n"
        "frame_player_node:\n  ros__parameters:\n    rate_hz: 3\n"))
    plan = resolve(p)
    assert [n for n, _, _ in plan] == ["eval_node", "frame_player_node"]
    ev = plan[0][2]
    assert ev["threshold"] == 1.0 and isinstance(ev["threshold"], float)
    assert ev["stamp_tolerance_s"] == 1.0 and ev["qos_reliable"] is True
    assert plan[1][2]["rate_hz"] == 3.0 and "threshold" not in plan[1][2]
    assert [n for n, _, _ in resolve(p, ["frame_player_node"])] == ["frame_player_node"]
    with pytest.raises(PipelineConfigError, match="no section"):
        resolve(p, ["bev_node"])


def test_pipeline_cli_check(capsys):
    assert pipeline.main(["--params-file", str(REPO / "config" / "replay_eval.yaml"),
                          "--check"]) == 0
    out = capsys.readouterr().out
    assert "bev_node" in out and "eval_node" in out and "frame_player_node" in out
    assert pipeline.main(["--params-file", "/nonexistent.yaml", "--check"]) == 2


def test_pipeline_cli_runs_and_stops_cleanly(tmp_path):
    """``python -m lss_bev_ros.pipeline --params-file F --duration S`` in its own process."""
    import os
    import subprocess
    import sys

    p = _write(tmp_path, "eval_node:\n  ros__parameters:\n    reference: gt_boxes\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lss_bev_ros.pipeline", "--params-file", str(p),
         "--duration", "2"], check=False, capture_output=True, text=True, timeout=120,
        env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "[pipeline] running eval_node" in proc.stdout
    assert "eval_node: active=True" in proc.stdout and "[pipeline] stopping" in proc.stdout
