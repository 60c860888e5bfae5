"""``lss-bev-bag eval-many`` on a real local Ray cluster with 2 workers: 4 synthetic bags (one
truncated) x 2 checkpoints. Per-bag numbers equal the sequential ``evaluate_bag``; the truncated
bag is in the aggregate; weights load once per worker; a second run does no work."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rosbag_tools.eval_many import (
    EvalManyOptions,
    ManyReport,
    ModelSpec,
    bag_key,
    evaluate_many,
    find_bags,
    model_entry,
    plan_tasks,
    read_marker,
    score_objects_over_bags,
)
from rosbag_tools.evaluate import EvalOptions, evaluate_bag

TRAINED = Path(__file__).resolve().parents[2] / "models" / "lss_small_synth.pt"
WORKERS = 2
# threshold under the untrained model's near-constant output: its predictions are not empty
OPTS = EvalOptions(threshold=0.45, torch_threads=1, n_sample_images=0, progress=False)
SUMMARY_KEYS = ("mean_iou", "pooled_iou", "mean_precision", "mean_recall", "tp", "fp", "fn", "tn",
                "frames_processed", "frames_evaluated", "unmatched_count")
FRAME_KEYS = ("stamp", "reference_stamp", "iou", "precision", "recall", "tp", "fp", "fn", "tn")


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic scenes of 3 samples (real devkit schema)."""
    from lss_bev_ros.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("nuscenes_many")
    generate_dataset(root, n_scenes=3, samples_per_scene=3, seed=11, progress=False)
    return root


@pytest.fixture(scope="module")
def bags(dataroot: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The 3 scenes converted to bags + a truncated copy of the second one."""
    from rosbag_tools.convert import convert_dataset

    root = dataroot
    out = tmp_path_factory.mktemp("bags_many")
    found = {r.bag.name: r.bag for r in convert_dataset(root, out, progress=False)}
    src = sorted(found.values())[1]
    cut = shutil.copytree(src, out / "cut")
    shutil.copy(src.parent / f"{src.name}.rig.yaml", out / "cut.rig.yaml")
    (mcap,) = cut.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 6 // 10])
    return {**found, "cut": cut}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[ModelSpec]:
    """The committed synthetic-data checkpoint (when present) and an untrained one (seed 1)."""
    import torch

    from lss_bev_ros.lss.checkpoint import save_checkpoint
    from lss_bev_ros.lss.config import LSSConfig
    from lss_bev_ros.lss.model import LiftSplatShoot

    d = tmp_path_factory.mktemp("weights_many")
    paths = [TRAINED] if TRAINED.is_file() else []
    for seed in range(1, 3 - len(paths)):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(d / f"untrained_seed{seed}.pt",
                                     LiftSplatShoot(LSSConfig.small())))
    return [ModelSpec(Path(p)) for p in paths]


@pytest.fixture(scope="module")
def first_run(bags: dict[str, Path], models: list[ModelSpec],
              tmp_path_factory: pytest.TempPathFactory) -> tuple[ManyReport, Path]:
    out = tmp_path_factory.mktemp("eval_many")
    folder = next(iter(bags.values())).parent  # all 4 bags: found in their folder
    rep = evaluate_many([folder], models, out, OPTS,
                        EvalManyOptions(workers=WORKERS, progress=False))
    return rep, out


@pytest.fixture(scope="module")
def second_run(first_run: tuple[ManyReport, Path], bags: dict[str, Path],
               models: list[ModelSpec]) -> ManyReport:
    _, out = first_run
    return evaluate_many([next(iter(bags.values())).parent], models, out, OPTS,
                         EvalManyOptions(workers=WORKERS, progress=False))


def _by_bag(rep: ManyReport) -> dict[tuple[str, str], Any]:
    return {(r.model_hash, Path(r.bag).name): r for r in rep.results}


def test_eval_many_runs_every_bag_with_every_model_on_ray(first_run, bags, models) -> None:
    rep, _ = first_run
    assert rep.workers == WORKERS and rep.executed == len(bags) * len(models) == 8
    assert rep.skipped == 0
    got = {(r.model_hash, Path(r.bag).name): r.status for r in rep.results}
    for m in models:
        h = model_entry(m).hash
        assert {n: got[(h, n)] for n in bags} == {n: "failed" if n == "cut" else "ok"
                                                   for n in bags}
    assert len({r.worker for r in rep.results}) == WORKERS  # both Ray workers took tasks


def test_eval_many_per_bag_numbers_equal_sequential_eval(first_run, bags, models,
                                                          tmp_path: Path) -> None:
    rep, out = first_run
    res = _by_bag(rep)
    for m in models:
        entry = model_entry(m)
        for name, bag in bags.items():
            if name == "cut":
                continue
            seq = evaluate_bag(bag, tmp_path / entry.key / name,
                               replace(OPTS, weights=m.weights))
            r = res[(entry.hash, name)]
            assert {k: r.summary[k] for k in SUMMARY_KEYS} == \
                {k: seq.summary[k] for k in SUMMARY_KEYS}, (m.weights, name)
            assert r.summary["fused"]["mean_iou"] == seq.summary["fused"]["mean_iou"]
            frames = json.loads((out / entry.key / bag_key(bag) / "frames.json").read_text())
            assert [{k: f[k] for k in FRAME_KEYS} for f in frames] == \
                [{k: getattr(f, k) for k in FRAME_KEYS} for f in seq.frames]
            assert seq.summary["frames_evaluated"] == 3


def test_eval_many_reports_the_truncated_bag_in_the_aggregate(first_run, bags) -> None:
    _, out = first_run
    agg = json.loads((out / "aggregate.json").read_text())
    for m in agg["models"].values():
        assert m["bags"] == 4 and m["bags_ok"] == 3
        (failed,) = m["bags_failed"]
        assert failed["bag"] == str(bags["cut"].resolve())
        assert "truncated or corrupt" in failed["error"]
        assert m["worst_bags"][0]["bag"] == "cut"  # failed bags lead the list
    with (out / "aggregate.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and sum(r["status"] == "failed" for r in rows) == 2
    md = (out / "aggregate.md").read_text()
    assert "**failed**" in md and "truncated or corrupt" in md


def test_eval_many_aggregate_lists_worst_bags_first(first_run) -> None:
    rep, _ = first_run
    for m in rep.aggregate["models"].values():
        ious = [r["mean_iou"] for r in m["worst_bags"] if r["status"] == "ok"]
        assert len(ious) == 3 and ious == sorted(ious)
        tp = sum(r.summary["tp"] for r in rep.results
                 if r.model_hash == m["hash"] and r.status == "ok")
        fp = sum(r.summary["fp"] for r in rep.results
                 if r.model_hash == m["hash"] and r.status == "ok")
        fn = sum(r.summary["fn"] for r in rep.results
                 if r.model_hash == m["hash"] and r.status == "ok")
        assert m["grid"]["pooled_iou"] == pytest.approx(tp / (tp + fp + fn))
        assert m["latency_ms"]["count"] == 9 and m["latency_ms"]["p50"] > 0


def test_eval_many_loads_weights_once_per_worker_not_per_bag(first_run, models) -> None:
    rep, _ = first_run
    assert len(models) <= rep.model_loads <= WORKERS * len(models) < rep.executed
    loaded_in = [r for r in rep.results if r.load_s > 0]
    assert len(loaded_in) == rep.model_loads


def test_eval_many_second_run_does_no_work(first_run, second_run) -> None:
    rep, out = first_run
    again = second_run
    assert again.executed == 0 and again.skipped == 8 and again.workers == 0
    assert again.model_loads == 0
    assert [r.status for r in again.results] == ["skipped"] * 8
    assert [r.cached_status for r in again.results] == [r.status for r in rep.results]
    assert [r.summary.get("mean_iou") for r in again.results] == \
        [r.summary.get("mean_iou") for r in rep.results]
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["run"]["executed"] == 0 and agg["run"]["skipped"] == 8
    assert all(m["bags_ok"] == 3 for m in agg["models"].values())


def test_eval_many_changed_options_invalidate_the_results(first_run, bags, models) -> None:
    _, out = first_run
    entries = [model_entry(m) for m in models]
    bag_list = find_bags([next(iter(bags.values())).parent])
    same = plan_tasks(bag_list, entries, out, OPTS)
    assert all(read_marker(t) is not None for t in same)
    other = plan_tasks(bag_list, entries, out, replace(OPTS, threshold=0.6))
    assert all(read_marker(t) is None for t in other)
    # threads, pictures and progress do not change the numbers: still valid
    cosmetic = plan_tasks(bag_list, entries, out, replace(
        OPTS, torch_threads=2, n_sample_images=4, progress=True))
    assert all(read_marker(t) is not None for t in cosmetic)


def test_find_bags_reads_folders_globs_and_list_files(bags, tmp_path: Path) -> None:
    folder = next(iter(bags.values())).parent
    everything = find_bags([folder])
    assert sorted(p.name for p in everything) == sorted(bags)
    listing = tmp_path / "bags.txt"  # relative entries: from the list file's folder
    listing.write_text(f"# two bags\n{bags['cut']}\n{bags['cut']}  # twice\n"
                       f"{os.path.relpath(bags['synth-0000'], tmp_path)}\n")
    assert find_bags([listing]) == [bags["cut"].resolve(), bags["synth-0000"].resolve()]
    assert find_bags([str(folder / "synth-*")]) == sorted(
        b.resolve() for n, b in bags.items() if n != "cut")
    (mcap,) = bags["cut"].glob("*.mcap")
    assert find_bags([mcap]) == [mcap.resolve()]


def test_eval_many_scores_objects_of_all_bags_together_with_the_devkit(
        bags, dataroot: Path, models, tmp_path: Path) -> None:
    two = [bags["synth-0000"], bags["synth-0002"]]
    rep = evaluate_many(two, models[:1], tmp_path, replace(OPTS, objects=True, dataroot=dataroot),
                        EvalManyOptions(use_ray=False, progress=False))
    (m,) = rep.aggregate["models"].values()
    pooled = m["objects"]["devkit_over_bags"]
    assert pooled["bags"] == 2 and pooled["samples"] == 6
    assert pooled["scenes"] == sorted(r.summary["objects"]["scenes"][0] for r in rep.results)
    assert 0 <= pooled["NDS"] <= 1 and 0 <= pooled["AMOTA"] <= 1
    # scored alone, one bag's merged submission gives that bag's own devkit numbers
    tasks = plan_tasks(find_bags(two[:1]), [model_entry(models[0])], tmp_path,
                       replace(OPTS, objects=True, dataroot=dataroot))
    alone = score_objects_over_bags([(tasks[0], rep.results[0])], dataroot, "v1.0-mini",
                                    tmp_path / "alone")
    own = rep.results[0].summary["objects"]
    assert {k: alone[k] for k in ("NDS", "mAP", "AMOTA", "AMOTP")} == \
        {k: own[k] for k in ("NDS", "mAP", "AMOTA", "AMOTP")}


def test_cli_eval_many_exits_2_and_names_the_failed_bag(bags, models, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "rosbag_tools.cli", "eval-many", str(bags["cut"]),
         str(bags["synth-0000"]), "--weights", str(models[0].weights), "--out", str(tmp_path),
         "--no-ray", "--samples", "0", "--threshold", "0.45", "--quiet"],
        capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 2, r.stderr
    assert "**failed**" in r.stdout and "truncated or corrupt" in r.stdout
    assert "2 evaluated, 0 already done" in r.stdout and "Traceback" not in r.stderr
    rows = list(csv.DictReader((tmp_path / "aggregate.csv").open()))
    assert [(row["bag"], row["status"]) for row in rows] == [("cut", "failed"),
                                                             ("synth-0000", "ok")]
