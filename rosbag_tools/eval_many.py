"""``lss-bev-bag eval-many``: fleet-scale replay evaluation, many bags x models, on Ray.

Every (bag, model) pair is one task that calls the very same
:func:`rosbag_tools.evaluate.evaluate_bag` as ``lss-bev-bag eval`` (same options, same pipeline
core, same per-bag report files), so its numbers equal the sequential run's by construction;
only the model is handed in already loaded (weights are loaded once per worker and kept, keyed
by model hash, not once per bag). Workers are Ray actors on a local cluster (default) or on an
existing cluster (``address``: ``auto``, ``host:6379`` or ``ray://host:10001``); ``use_ray=False``
runs the same tasks in this process.

Layout under ``out``::

    <out>/<model_hash>/model.json               the model (checkpoint, sha256, backend, ...)
    <out>/<model_hash>/<bag_key>/summary.json   evaluate_bag's report (frames.csv, plots, ...)
    <out>/<model_hash>/<bag_key>/eval_many.json task marker: ok | failed, the keys it is valid for
    <out>/aggregate.json|.md|.csv               all models x bags, worst bags first

A task is skipped when its marker matches the model hash, the evaluation options and the bag's
files (size, mtime): re-running resumes. A bag whose evaluation raises
:class:`~rosbag_tools.bagio.BagToolError` (truncated, corrupt, no rig, ...) is marked failed and
reported in the aggregate; it is not retried unless ``retry_failed`` or the bag changed. Any other
error (a crashed worker, a bug) is reported but not remembered, so the next run retries it.
``ray`` is imported only when Ray is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rosbag_tools.bagio import BagToolError, rig_path_for_bag
from rosbag_tools.evaluate import EvalOptions, evaluate_bag, load_model

MARKER = "eval_many.json"
AGGREGATE_STEM = "aggregate"
MODEL_FIELDS = ("weights", "backend", "device", "precision", "backend_options")
"""EvalOptions fields that define the model (in the model hash, one set per model)."""
NOT_RESULT_FIELDS = ("progress", "video", "video_fps", "n_sample_images", "cache_dir",
                     "torch_threads", "write_report")
"""EvalOptions fields that do not change a bag's numbers (not in the options hash)."""
STORAGE_SUFFIXES = (".mcap", ".db3")


# ----------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate: a checkpoint (None: untrained LSSConfig.small, ``seed``) run with
    a backend at a precision on a device."""

    weights: Path | None
    backend: str = "torch"
    device: str = "cpu"
    precision: str = "auto"
    backend_options: str = ""
    seed: int = 0

    @property
    def label(self) -> str:
        name = self.weights.name if self.weights is not None else f"untrained(seed {self.seed})"
        return f"{name} [{self.backend}/{self.precision}/{self.device}]"


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_hash(spec: ModelSpec, weights_sha256: str | None = None) -> str:
    """sha256 of the checkpoint's bytes + backend, device, precision and backend options
    (hex). ``weights_sha256``: the file's digest when already computed."""
    if spec.weights is None:
        weights = f"untrained:small:{spec.seed}"
    else:
        weights = weights_sha256 or file_sha256(Path(spec.weights))
    key = {"weights_sha256": weights, "backend": spec.backend, "device": spec.device,
           "precision": spec.precision, "backend_options": spec.backend_options}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ModelEntry:
    """A model of the run: spec, hashes, and (with Ray) the checkpoint bytes in the object store
    (``weights_ref``: a ``ray.ObjectRef``), so that workers need not see the file."""

    spec: ModelSpec
    hash: str  # model_hash(spec)
    weights_sha256: str | None
    weights_ref: Any = None

    @property
    def key(self) -> str:
        """Short hash: the model's folder name."""
        return self.hash[:12]


def model_entry(spec: ModelSpec) -> ModelEntry:
    """Hash a model spec (reads the checkpoint once); a missing checkpoint is a BagToolError."""
    sha = None
    if spec.weights is not None:
        p = Path(spec.weights)
        if not p.is_file():
            raise BagToolError(f"weights file not found: {p}")
        sha = file_sha256(p)
    return ModelEntry(spec, model_hash(spec, sha), sha)


def eval_options_for(template: EvalOptions, spec: ModelSpec) -> EvalOptions:
    """``template`` with the model fields of ``spec`` (what ``lss-bev-bag eval`` would get)."""
    return dataclasses.replace(template, weights=spec.weights, backend=spec.backend,
                               device=spec.device, precision=spec.precision,
                               backend_options=spec.backend_options, seed=spec.seed)


def options_hash(opts: EvalOptions) -> str:
    """sha256 of the EvalOptions that change a bag's numbers (not the model's: see
    :func:`model_hash`; not progress, pictures, threads)."""
    d = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
         if f.name not in MODEL_FIELDS + NOT_RESULT_FIELDS + ("seed",)}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------- bags
def _bags_in_folder(folder: Path) -> list[Path]:
    """rosbag2 directories (holding metadata.yaml) under ``folder``, plus bare storage files
    that are not inside one."""
    dirs = sorted({p.parent for p in folder.rglob("metadata.yaml")})
    files = [p for p in sorted(folder.rglob("*")) if p.suffix in STORAGE_SUFFIXES
             and p.is_file() and not any(d == p.parent or d in p.parents for d in dirs)]
    return dirs + files


def find_bags(specs: Iterable[str | Path]) -> list[Path]:
    """Bags named by ``specs``: a bag (rosbag2 directory or .mcap/.db3 file), a folder of bags
    (searched recursively), a glob pattern (``**`` allowed; of its matches the folders and
    storage files count), or a list file (one entry per line,
    ``#`` comments, relative paths from the list file's folder). Resolved, deduplicated, in
    order. A spec that names nothing is a BagToolError."""
    out: list[Path] = []

    def add(p: Path) -> None:
        if p.is_dir() and not (p / "metadata.yaml").is_file():
            found = _bags_in_folder(p)
            if not found:
                raise BagToolError(f"no bags under {p}")
            out.extend(found)
        else:
            out.append(p)

    for spec in specs:
        s = str(spec)
        p = Path(s).expanduser()
        if any(c in s for c in "*?["):
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise BagToolError(f"no bags match {s}")
            for h in map(Path, hits):  # bags and folders of bags; not e.g. <bag>.rig.yaml
                if h.is_dir() or h.suffix in STORAGE_SUFFIXES:
                    add(h)
        elif p.is_file() and p.suffix not in STORAGE_SUFFIXES:
            for raw in p.read_text().splitlines():
                line = raw.split("#", 1)[0].strip()
                if line:
                    q = Path(line).expanduser()
                    add(q if q.is_absolute() else p.parent / q)
        elif p.exists():
            add(p)
        else:
            raise BagToolError(f"bag not found: {p}")
    seen: set[Path] = set()
    bags = []
    for b in out:
        r = b.resolve()
        if r not in seen:
            seen.add(r)
            bags.append(r)
    return bags


def bag_key(bag: Path) -> str:
    """Folder name of a bag's results: its name + 8 hex of its resolved path (two bags of the
    same name in different folders do not collide)."""
    r = Path(bag).resolve()
    name = r.name if r.is_dir() else r.stem
    return f"{name}-{hashlib.sha256(str(r).encode()).hexdigest()[:8]}"


def bag_fingerprint(bag: Path) -> dict[str, Any]:
    """What identifies a bag's content cheaply: its files' total size and newest mtime (and the
    rig file beside it). A changed bag is evaluated again."""
    p = Path(bag)
    files = [f for f in sorted(p.rglob("*")) if f.is_file()] if p.is_dir() else [p]
    rig = rig_path_for_bag(p)
    if rig.is_file():
        files.append(rig)
    stats = [f.stat() for f in files if f.exists()]
    return {"path": str(p.resolve()), "files": len(stats),
            "bytes": int(sum(s.st_size for s in stats)),
            "mtime_ns": int(max((s.st_mtime_ns for s in stats), default=0))}


# ------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class BagTask:
    """One (bag, model) evaluation."""

    bag: Path
    key: str  # bag_key(bag)
    model: ModelEntry
    opts: EvalOptions  # eval_options_for(template, model.spec)
    out_dir: Path  # <out>/<model.key>/<key>
    options_hash: str
    fingerprint: dict[str, Any]

    def marker(self) -> dict[str, Any]:
        """The keys a result is valid for."""
        return {"model_hash": self.model.hash, "options_hash": self.options_hash,
                "bag": self.fingerprint}


@dataclass
class TaskResult:
    """What one task produced (or found already done)."""

    bag: str
    key: str
    model_hash: str
    status: str  # ok | failed (bad input, remembered) | error (not remembered) | skipped
    error: str = ""
    eval_s: float = 0.0  # evaluate_bag inside the task (incl. its backend set-up and report)
    load_s: float = 0.0  # loading the model, when this task had to
    task_s: float = 0.0  # the whole task on the worker
    worker: str = ""  # host:pid
    summary: dict[str, Any] = field(default_factory=dict)
    cached_status: str = ""  # for skipped tasks: the remembered ok | failed

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2))
    os.replace(tmp, path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def read_marker(task: BagTask) -> dict[str, Any] | None:
    """The task's marker if it is valid for this task (same model, options, bag files)."""
    path = task.out_dir / MARKER
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    want = task.marker()
    if any(m.get(k) != v for k, v in want.items()):
        return None
    if m.get("status") == "ok" and not (task.out_dir / "summary.json").is_file():
        return None
    return m


class ModelCache:
    """Models loaded in this process, by model hash: each checkpoint is read once per worker."""

    def __init__(self) -> None:
        self.models: dict[str, tuple[Any, Any]] = {}
        self.loads = 0

    def get(self, entry: ModelEntry, opts: EvalOptions) -> tuple[tuple[Any, Any], float]:
        """((model, cfg), seconds spent loading: 0 when cached)."""
        if entry.hash in self.models:
            return self.models[entry.hash], 0.0
        t0 = time.perf_counter()
        if entry.weights_ref is not None and not _readable_with_sha(opts.weights,
                                                                    entry.weights_sha256):
            import ray

            data: bytes = ray.get(entry.weights_ref)
            with tempfile.TemporaryDirectory(prefix="lss_eval_many_") as tmp:
                local = Path(tmp) / f"{entry.key}.pt"
                local.write_bytes(data)
                model = load_model(dataclasses.replace(opts, weights=local))
        else:
            if opts.weights is not None and entry.weights_sha256 is not None and \
                    file_sha256(Path(opts.weights)) != entry.weights_sha256:
                raise RuntimeError(f"checkpoint {opts.weights} changed during the run")
            model = load_model(opts)
        self.models[entry.hash] = model
        self.loads += 1
        return model, time.perf_counter() - t0


def _readable_with_sha(path: Path | None, sha: str | None) -> bool:
    if path is None or sha is None:
        return False
    p = Path(path)
    try:
        return p.is_file() and file_sha256(p) == sha
    except OSError:
        return False


def run_task(task: BagTask, cache: ModelCache) -> TaskResult:
    """Evaluate one (bag, model) with ``evaluate_bag`` into ``task.out_dir`` and write its
    marker. Never raises for a bad bag: the error is in the result (status failed/error)."""
    import platform

    t0 = time.perf_counter()
    res = TaskResult(str(task.bag), task.key, task.model.hash, "ok",
                     worker=f"{platform.node()}:{os.getpid()}")
    (task.out_dir / MARKER).unlink(missing_ok=True)  # a stale marker must not survive a re-run
    try:
        model, res.load_s = cache.get(task.model, task.opts)
    except Exception as exc:  # the model's fault, not the bag's: reported, not remembered
        res.status, res.error = "error", f"model {task.model.spec.label}: {exc}"
        res.task_s = time.perf_counter() - t0
        return res
    try:
        t1 = time.perf_counter()
        report = evaluate_bag(task.bag, task.out_dir, task.opts, model=model)
        res.eval_s = time.perf_counter() - t1
        res.summary = _jsonable(report.summary)
    except BagToolError as exc:  # bad input: remembered as failed
        res.status, res.error = "failed", str(exc)
    except Exception as exc:  # anything else: reported, retried next run
        res.status, res.error = "error", f"{type(exc).__name__}: {exc}"
    res.task_s = time.perf_counter() - t0
    if res.status in ("ok", "failed"):
        _write_json_atomic(task.out_dir / MARKER, {
            **task.marker(), "status": res.status, "error": res.error, "eval_s": res.eval_s,
            "worker": res.worker, "finished": time.time()})
    return res


class EvalWorker:
    """One worker (a Ray actor): keeps its loaded models between bags."""

    def __init__(self, torch_threads: int = 1) -> None:
        self.cache = ModelCache()
        if torch_threads > 0:
            import torch

            torch.set_num_threads(torch_threads)

    def evaluate(self, task: BagTask) -> TaskResult:
        return run_task(task, self.cache)

    def loads(self) -> int:
        """Models this worker has loaded so far."""
        return self.cache.loads


# ---------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class EvalManyOptions:
    """How to run: Ray cluster, workers, resumption."""

    use_ray: bool = True  # False: the same tasks one after another in this process
    address: str | None = None  # None: start a local cluster; "auto", "host:port", "ray://..."
    workers: int = 0  # actors; 0: local: CPU count, cluster: its CPUs / cpus_per_worker
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    runtime_env: dict[str, Any] | None = None  # passed to ray.init (e.g. py_modules, pip)
    ship_weights: bool = True  # checkpoints through the object store (workers need no copy)
    retry_failed: bool = False  # re-evaluate bags remembered as failed
    progress: bool = True


@dataclass
class ManyReport:
    """The run: every task's result, the aggregate and where it was written."""

    results: list[TaskResult]
    aggregate: dict[str, Any]
    files: dict[str, Path]
    wall_s: float
    executed: int  # tasks run this time
    skipped: int
    workers: int
    model_loads: int  # models loaded by all workers together


def plan_tasks(bags: Sequence[Path], models: Sequence[ModelEntry], out: Path,
               template: EvalOptions) -> list[BagTask]:
    """Every (model, bag) pair, model-major."""
    tasks = []
    for m in models:
        opts = eval_options_for(template, m.spec)
        oh = options_hash(opts)
        for b in bags:
            k = bag_key(b)
            tasks.append(BagTask(Path(b), k, m, opts, out / m.key / k, oh, bag_fingerprint(b)))
    return tasks


def _skipped(task: BagTask, marker: dict[str, Any]) -> TaskResult:
    summary: dict[str, Any] = {}
    if marker.get("status") == "ok":
        try:
            summary = json.loads((task.out_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {}
    return TaskResult(str(task.bag), task.key, task.model.hash, "skipped",
                      error=str(marker.get("error", "")), eval_s=float(marker.get("eval_s", 0)),
                      worker=str(marker.get("worker", "")), summary=summary,
                      cached_status=str(marker.get("status", "")))


def evaluate_many(bags: Sequence[str | Path], models: Sequence[ModelSpec], out: str | Path,
                  template: EvalOptions | None = None, run: EvalManyOptions | None = None,
                  on_result: Callable[[TaskResult], None] | None = None) -> ManyReport:
    """Evaluate every bag with every model (see the module docstring); write the aggregate.

    ``bags``: anything :func:`find_bags` takes; ``template``: the evaluation options of
    ``lss-bev-bag eval`` (its model fields are replaced by each model's); ``on_result``: called
    on the driver per finished task."""
    t0 = time.perf_counter()
    run = run or EvalManyOptions()
    template = dataclasses.replace(template or EvalOptions(), progress=False, video=None)
    out = Path(out)
    bag_paths = find_bags(bags)
    if not models:
        raise BagToolError("no models given")
    entries = [model_entry(m) for m in models]
    for e in entries:
        _write_json_atomic(out / e.key / "model.json", {
            "hash": e.hash, "label": e.spec.label, "weights_sha256": e.weights_sha256,
            **{k: getattr(e.spec, k) for k in ("weights", "backend", "device", "precision",
                                               "backend_options", "seed")}})
    tasks = plan_tasks(bag_paths, entries, out, template)
    results: dict[int, TaskResult] = {}
    todo: list[int] = []
    for i, t in enumerate(tasks):
        m = read_marker(t)
        if m is not None and not (run.retry_failed and m.get("status") == "failed"):
            results[i] = _skipped(t, m)
        else:
            todo.append(i)
    skipped = len(results)

    from tqdm import tqdm

    pbar = tqdm(total=len(tasks), initial=skipped, desc="eval-many", unit="bag",
                disable=not run.progress)

    def done(i: int, r: TaskResult) -> None:
        results[i] = r
        pbar.update(1)
        if r.status != "ok":
            pbar.write(f"{r.status}: {r.bag} [{tasks[i].model.spec.label}]: {r.error}")
        if on_result is not None:
            on_result(r)

    workers = 0
    loads = 0
    timings: dict[str, float] = {}
    try:
        if todo and run.use_ray:
            workers, loads, timings = _run_on_ray(tasks, todo, entries, run, template, done)
        elif todo:
            workers = 1
            cache = ModelCache()
            prev = _set_torch_threads(template.torch_threads)
            try:
                for i in todo:
                    done(i, run_task(tasks[i], cache))
            finally:
                _set_torch_threads(prev)
            loads = cache.loads
    finally:
        pbar.close()
    ordered = [results[i] for i in range(len(tasks))]
    objects = {}
    if template.objects and template.dataroot is not None:
        for e in entries:
            objects[e.hash] = score_objects_over_bags(
                [(t, r) for t, r in zip(tasks, ordered, strict=True) if t.model.hash == e.hash],
                Path(template.dataroot), template.dataset_version, out / e.key / "objects_all")
    wall = time.perf_counter() - t0
    run_info: dict[str, Any] = {
        "wall_s": wall, "executed": len(todo), "skipped": skipped, "workers": workers,
        "model_loads": loads, "ray": bool(todo and run.use_ray),
        "address": run.address or ("local" if run.use_ray else "in-process"),
        "eval_s_sum": sum(r.eval_s for r in ordered if r.status != "skipped"),
        "task_s_sum": sum(r.task_s for r in ordered if r.status != "skipped"), **timings}
    if timings:  # worker-seconds of the dispatch loop not spent inside tasks, per task
        run_info["ray_overhead_per_task_s"] = (
            timings["ray_dispatch_s"] * workers - run_info["task_s_sum"]) / len(todo)
    agg = aggregate(tasks, ordered, run_info, objects)
    files = write_aggregate(agg, out)
    return ManyReport(ordered, agg, files, wall, len(todo), skipped, workers, loads)


def _set_torch_threads(n: int) -> int:
    import torch

    prev = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    return prev


def _run_on_ray(tasks: list[BagTask], todo: list[int], entries: list[ModelEntry],
                run: EvalManyOptions, template: EvalOptions,
                done: Callable[[int, TaskResult], None]) -> tuple[int, int, dict[str, float]]:
    """Run ``todo`` on Ray actors, one task per actor at a time; (workers, model loads,
    timings: ray_start_s (ray.init), ray_actors_s (actors up), ray_dispatch_s (first submit to
    last result), ray_stop_s (actors killed, ray.shutdown))."""
    import ray

    started = False
    t0 = time.perf_counter()
    if not ray.is_initialized():
        kw: dict[str, Any] = {"log_to_driver": False, "runtime_env": run.runtime_env}
        if run.address:  # an existing cluster (ray:// = Ray Client): its resources as they are
            try:
                ray.init(address=run.address, **kw)
            except (ConnectionError, RuntimeError) as exc:
                raise BagToolError(
                    f"cannot connect to the Ray cluster at {run.address}: {exc} (a cluster with "
                    "token authentication needs RAY_AUTH_MODE=token and its token, e.g. in "
                    "~/.ray/auth_token, here too; see docs/EVAL_MANY.md)") from exc
        else:
            n = run.workers or (os.cpu_count() or 1)
            ray.init(num_cpus=max(1, math.ceil(n * run.cpus_per_worker)),
                     num_gpus=math.ceil(n * run.gpus_per_worker) if run.gpus_per_worker else 0,
                     include_dashboard=False, **kw)
        started = True
    timings = {"ray_start_s": time.perf_counter() - t0}
    try:
        n_workers = run.workers or max(1, int(ray.cluster_resources().get("CPU", 1)
                                              / max(run.cpus_per_worker, 1e-9)))
        n_workers = max(1, min(n_workers, len(todo)))
        if run.ship_weights:
            refs = {e.hash: ray.put(Path(e.spec.weights).read_bytes())
                    for e in entries if e.spec.weights is not None}
            by_hash = {e.hash: dataclasses.replace(e, weights_ref=refs.get(e.hash))
                       for e in entries}
            tasks = [dataclasses.replace(t, model=by_hash[t.model.hash]) for t in tasks]
        actor_cls = ray.remote(num_cpus=run.cpus_per_worker,
                               num_gpus=run.gpus_per_worker)(EvalWorker)

        def new_actor() -> Any:
            return actor_cls.remote(template.torch_threads)

        t1 = time.perf_counter()
        actors = [new_actor() for _ in range(n_workers)]
        ray.get([a.loads.remote() for a in actors])  # up and importable
        t2 = time.perf_counter()
        timings["ray_actors_s"] = t2 - t1
        queue = list(todo)
        running: dict[Any, tuple[int, int]] = {}  # ref -> (task index, actor slot)

        def submit(slot: int) -> None:
            if queue:
                i = queue.pop(0)
                running[actors[slot].evaluate.remote(tasks[i])] = (i, slot)

        for slot in range(n_workers):
            submit(slot)
        dead_loads = 0
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            i, slot = running.pop(ready[0])
            try:
                res = ray.get(ready[0])
            except Exception as exc:  # the worker died (killed, OOM, segfault): not remembered
                t = tasks[i]
                res = TaskResult(str(t.bag), t.key, t.model.hash, "error",
                                 error=f"worker lost: {type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception):  # its loads count if it still answers
                    dead_loads += int(ray.get(actors[slot].loads.remote(), timeout=5))
                ray.kill(actors[slot], no_restart=True)
                actors[slot] = new_actor()
            done(i, res)
            submit(slot)
        timings["ray_dispatch_s"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        loads = dead_loads + sum(ray.get([a.loads.remote() for a in actors]))
        for a in actors:
            ray.kill(a, no_restart=True)
        return n_workers, int(loads), timings
    finally:
        if started:
            ray.shutdown()
        if "ray_dispatch_s" in timings:
            timings["ray_stop_s"] = time.perf_counter() - t3


# -------------------------------------------------------------------------------- aggregate
GRID_KEYS = ("mean_iou", "pooled_iou", "mean_precision", "mean_recall", "frames_evaluated",
             "frames_processed", "latency_p50_ms", "latency_p99_ms", "throughput_fps")


def _num(x: Any) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return math.nan
    return f


def _frame_latencies(out_dir: Path) -> list[float]:
    try:
        rows = json.loads((out_dir / "frames.json").read_text())
    except (OSError, ValueError):
        return []
    return [float(r["latency_ms"]) for r in rows
            if r.get("latency_ms") is not None and math.isfinite(float(r["latency_ms"]))]


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan, "count": 0}
    a = np.asarray(values, float)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "count": int(a.size)}


def _bag_row(task: BagTask, r: TaskResult) -> dict[str, Any]:
    status = r.cached_status if r.status == "skipped" else r.status
    s = r.summary
    fused = s.get("fused") or {}
    objects = s.get("objects") or {}
    row: dict[str, Any] = {"model": task.model.key, "bag": task.bag.name, "bag_path": str(task.bag),
                           "key": task.key, "status": status, "skipped": r.status == "skipped",
                           "error": r.error}
    row.update({k: s.get(k) for k in GRID_KEYS})
    row["fused_mean_iou"] = fused.get("mean_iou")
    for k in ("NDS", "mAP", "AMOTA", "AMOTP"):
        if k in objects or k.lower() in objects:
            row[f"objects_{k}"] = objects.get(k, objects.get(k.lower()))
    row["report"] = str(task.out_dir)
    return row


def _worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed bags first, then by mean IoU ascending (no IoU counts as worst)."""
    def key(r: dict[str, Any]) -> tuple[int, float]:
        iou = _num(r.get("mean_iou"))
        return (0 if r["status"] != "ok" else 1, iou if math.isfinite(iou) else -math.inf)

    return sorted(rows, key=key)


def _ok(r: TaskResult) -> bool:
    return (r.cached_status if r.status == "skipped" else r.status) == "ok"


def score_objects_over_bags(pairs: Sequence[tuple[BagTask, TaskResult]], dataroot: Path,
                            version: str, target: Path) -> dict[str, Any]:
    """One devkit evaluation of a model's objects over all its bags: the bags' submission files
    (``<bag report>/objects/results_{detection,tracking}.json``) merged and scored against the
    union of their scenes (a custom split of ``dataroot``). Cached in ``target/score.json``
    while the submissions are unchanged; {} when no bag has objects."""
    files: list[tuple[Path, Path]] = []
    scenes: set[str] = set()
    for t, r in pairs:
        obj = r.summary.get("objects") or {}
        det = t.out_dir / "objects" / "results_detection.json"
        trk = t.out_dir / "objects" / "results_tracking.json"
        if _ok(r) and obj.get("scenes") and det.is_file() and trk.is_file():
            files.append((det, trk))
            scenes.update(obj["scenes"])
    if not files:
        return {}
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for pair in files for f in pair]
    key = hashlib.sha256(json.dumps([stamp, sorted(scenes), str(dataroot), version])
                         .encode()).hexdigest()
    cache = target / "score.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return dict(cached["summary"])
    except (OSError, ValueError):
        pass
    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.objects.nuscenes_eval import score_submission, write_custom_splits
    from rosbag_tools.objects_eval import splits_lock

    merged: list[dict[str, Any]] = [{"meta": None, "results": {}}, {"meta": None, "results": {}}]
    for pair in files:
        for m, f in zip(merged, pair, strict=True):
            sub = json.loads(f.read_text())
            m["meta"] = m["meta"] or sub["meta"]
            m["results"].update(sub["results"])
    target.mkdir(parents=True, exist_ok=True)
    det_all, trk_all = target / "results_detection.json", target / "results_tracking.json"
    det_all.write_text(json.dumps(merged[0]))
    trk_all.write_text(json.dumps(merged[1]))
    split = "lss_bev_eval_many"
    try:
        nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
        with splits_lock(dataroot, version):
            write_custom_splits(dataroot, version, {split: sorted(scenes)})
            summ = score_submission(nusc, det_all, trk_all, target / "devkit", eval_set=split)
    except Exception as exc:  # reported in the aggregate, the per-bag results stand
        return {"error": f"{type(exc).__name__}: {exc}"}
    out = {**_jsonable(summ.as_row()), "bags": len(files), "scenes": sorted(scenes),
           "samples": len(merged[0]["results"])}
    _write_json_atomic(cache, {"key": key, "summary": out})
    return out


def aggregate(tasks: Sequence[BagTask], results: Sequence[TaskResult],
              run_info: dict[str, Any],
              objects: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """All models' numbers over their bags (pooled where the per-bag files allow);
    ``objects``: model hash -> :func:`score_objects_over_bags`."""
    models: dict[str, dict[str, Any]] = {}
    for e in {t.model.hash: t.model for t in tasks}.values():
        pairs = [(t, r) for t, r in zip(tasks, results, strict=True) if t.model.hash == e.hash]
        rows = [_bag_row(t, r) for t, r in pairs]
        ok = [(t, r) for (t, r), row in zip(pairs, rows, strict=True) if row["status"] == "ok"]
        tp = sum(int(r.summary.get("tp", 0) or 0) for _, r in ok)
        fp = sum(int(r.summary.get("fp", 0) or 0) for _, r in ok)
        fn = sum(int(r.summary.get("fn", 0) or 0) for _, r in ok)
        lat: list[float] = []
        for t, _ in ok:
            lat.extend(_frame_latencies(t.out_dir))
        ious = [_num(r.summary.get("mean_iou")) for _, r in ok]
        ious = [v for v in ious if math.isfinite(v)]
        fused = [_num((r.summary.get("fused") or {}).get("mean_iou")) for _, r in ok]
        fused = [v for v in fused if math.isfinite(v)]
        frames = sum(int(r.summary.get("frames_processed", 0) or 0) for _, r in ok)
        proc = sum(_num(r.summary.get("processing_s")) for _, r in ok
                   if math.isfinite(_num(r.summary.get("processing_s"))))
        models[e.key] = {
            "hash": e.hash, "label": e.spec.label,
            "weights": str(e.spec.weights) if e.spec.weights else None,
            "backend": e.spec.backend, "precision": e.spec.precision, "device": e.spec.device,
            "bags": len(rows), "bags_ok": len(ok),
            "bags_failed": [{"bag": r["bag_path"], "status": r["status"], "error": r["error"]}
                            for r in rows if r["status"] != "ok"],
            "grid": {"mean_iou_over_bags": float(np.mean(ious)) if ious else math.nan,
                     "pooled_iou": tp / (tp + fp + fn) if tp + fp + fn else math.nan,
                     "pooled_precision": tp / (tp + fp) if tp + fp else math.nan,
                     "pooled_recall": tp / (tp + fn) if tp + fn else math.nan,
                     "fused_mean_iou_over_bags": float(np.mean(fused)) if fused else math.nan,
                     "frames": frames},
            "latency_ms": _percentiles(lat),
            "throughput_fps": frames / proc if proc > 0 else math.nan,
            "objects": {**_objects_over_bags(rows),
                        **({"devkit_over_bags": objects[e.hash]}
                           if objects and objects.get(e.hash) else {})},
            "worst_bags": _worst_first(rows),
        }
    return {"run": run_info, "models": models}


def _objects_over_bags(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of the per-bag devkit scores (each bag scored by the devkit on its own scene)."""
    out: dict[str, Any] = {}
    for k in ("NDS", "mAP", "AMOTA", "AMOTP"):
        vals = [_num(r.get(f"objects_{k}")) for r in rows if r["status"] == "ok"]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            out[f"{k}_mean_over_bags"] = float(np.mean(vals))
            out["bags_scored"] = len(vals)
    return out


CSV_COLUMNS = ("model", "bag", "status", "mean_iou", "pooled_iou", "mean_precision",
               "mean_recall", "fused_mean_iou", "frames_evaluated", "latency_p50_ms",
               "latency_p99_ms", "objects_NDS", "objects_mAP", "objects_AMOTA", "error",
               "bag_path", "report")


def _fmt(v: Any, nd: int = 3) -> str:
    f = _num(v)
    if v is None or not math.isfinite(f):
        return "-" if v is None or isinstance(v, (int, float)) else str(v)
    return f"{f:.{nd}f}"


def format_markdown(agg: dict[str, Any]) -> str:
    """The aggregate as a markdown report (per model: totals, then bags worst first)."""
    run = agg["run"]
    lines = ["# lss-bev-bag eval-many", "",
             f"{run['executed']} task(s) run, {run['skipped']} skipped (already done), "
             f"{run['workers']} worker(s) ({run['address']}), wall {run['wall_s']:.1f} s, "
             f"{run['model_loads']} model load(s).", ""]
    for key, m in agg["models"].items():
        g, lat = m["grid"], m["latency_ms"]
        lines += [f"## {m['label']} (`{key}`)", "",
                  f"bags ok {m['bags_ok']}/{m['bags']}; mean IoU over bags "
                  f"{_fmt(g['mean_iou_over_bags'])}, pooled IoU {_fmt(g['pooled_iou'])} "
                  f"(precision {_fmt(g['pooled_precision'])}, recall {_fmt(g['pooled_recall'])}),"
                  f" fused {_fmt(g['fused_mean_iou_over_bags'])}; {g['frames']} frames; latency "
                  f"p50 {_fmt(lat['p50'], 1)} / p90 {_fmt(lat['p90'], 1)} / p99 "
                  f"{_fmt(lat['p99'], 1)} ms; {_fmt(m['throughput_fps'], 2)} frames/s per worker",
                  ""]
        obj = dict(m["objects"])
        pooled = obj.pop("devkit_over_bags", None)
        if pooled:
            lines += ["objects (devkit, all bags scored together): " + ", ".join(
                f"{k} {_fmt(pooled.get(k))}" for k in ("NDS", "mAP", "AMOTA", "AMOTP", "IDS"))
                + (f" over {pooled.get('bags')} bags, {pooled.get('samples')} key frames"
                   if "error" not in pooled else f"; error: {pooled['error']}"), ""]
        if obj:
            lines += ["objects (devkit per bag, mean over bags): " + ", ".join(
                f"{k} {_fmt(v)}" for k, v in obj.items()), ""]
        lines += ["| bag | status | mean IoU | pooled IoU | precision | recall | fused IoU | "
                  "frames | p50 ms | p99 ms |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in m["worst_bags"]:
            status = r["status"] if r["status"] == "ok" else f"**{r['status']}**: {r['error']}"
            lines.append(f"| {r['bag']} | {status} | {_fmt(r['mean_iou'])} | "
                         f"{_fmt(r['pooled_iou'])} | {_fmt(r['mean_precision'])} | "
                         f"{_fmt(r['mean_recall'])} | {_fmt(r['fused_mean_iou'])} | "
                         f"{_fmt(r['frames_evaluated'], 0)} | {_fmt(r['latency_p50_ms'], 1)} | "
                         f"{_fmt(r['latency_p99_ms'], 1)} |")
        lines.append("")
    return "\n".join(lines)


def write_aggregate(agg: dict[str, Any], out: Path) -> dict[str, Path]:
    """``aggregate.json``, ``aggregate.md`` and ``aggregate.csv`` (one row per model x bag)."""
    import csv
    import io

    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / f"{AGGREGATE_STEM}.json", "md": out / f"{AGGREGATE_STEM}.md",
             "csv": out / f"{AGGREGATE_STEM}.csv"}
    _write_json_atomic(files["json"], agg)
    files["md"].write_text(format_markdown(agg) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for m in agg["models"].values():
        for r in m["worst_bags"]:
            w.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
    files["csv"].write_text(buf.getvalue())
    return files
