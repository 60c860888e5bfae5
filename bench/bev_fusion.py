"""Single-frame vs temporally fused BEV occupancy on held-out synthetic sequences (issue 14).

    nice -n 10 python bench/bev_fusion.py                    # ~4 min on the 2-core dev machine
    python bench/bev_fusion.py --frames-2hz 10 --frames-10hz 20 --scenes 1   # quicker

1. generates held-out sequences with ``lss-bev-synth`` (seed 4242, never seen by the committed
   checkpoint, which was trained on seed 2024) at 2 Hz and at 10 Hz (``--rate-hz``);
2. runs ``models/lss_small_synth.pt`` on every key frame (CPU, 1 thread); the single-frame grid
   is the model probability on the cells a camera sees (``bev_processor.camera_visibility``),
   exactly what ``bev_node`` publishes;
3. feeds the same grids with the ego poses (``ego_pose`` of the LIDAR_TOP sample data: what
   ``/odom`` carries in a converted bag) to :class:`lss_bev_ros.fusion.GridFusion`;
4. prints, per rate, side by side for the single-frame and the fused grid:

   * IoU of ``known & p > 0.5`` against the GT vehicle footprints (``dataset.vehicle_mask``),
     pooled over all frames and cells;
   * the same for static (parked / stopped) and for moving (``vehicle.moving``) vehicles: the
     other group's footprint cells are ignored (neither FP nor FN);
   * flicker: share of cells whose occupied/free state changes between consecutive frames,
     counted on cells observed (known) in both frames and whose GT does not change; the
     previous frame is first moved into the current ``base_link`` by the ego motion
     (``fusion.warp_grid``, nearest), so the ego driving is not counted as flicker.

Goal (issue 14): flicker at least halved, overall IoU not lower, moving-vehicle IoU not lower by
more than 0.02. Model outputs are cached under --workdir (``--no-cache`` recomputes), so fusion
settings can be compared quickly (``--history-band-logodds`` etc.). The defaults of
``FusionConfig`` were chosen on ``--seed 777``; seed 4242 (the default here) was not used for it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lss_bev_ros.conversions import GridSpec  # noqa: E402
from lss_bev_ros.fusion import FusionConfig, GridFusion, Pose2D, warp_grid  # noqa: E402

THRESHOLD = 0.5


@dataclass
class Frame:
    """One key frame: model output and references, X x Y arrays indexed [ix, iy]."""

    stamp: float  # s
    pose: Pose2D  # map -> base_link
    prob: np.ndarray  # float32 model probability
    known: np.ndarray  # bool, seen by a camera
    gt: np.ndarray  # bool, all vehicle footprints
    gt_moving: np.ndarray  # bool, footprints of vehicle.moving


@dataclass
class Score:
    """Pooled counts of one grid kind over a set of sequences."""

    tp: dict[str, int] = field(default_factory=lambda: {"all": 0, "static": 0, "moving": 0})
    fp: dict[str, int] = field(default_factory=lambda: {"all": 0, "static": 0, "moving": 0})
    fn: dict[str, int] = field(default_factory=lambda: {"all": 0, "static": 0, "moving": 0})
    flips: int = 0
    flip_cells: int = 0

    def iou(self, group: str) -> float:
        d = self.tp[group] + self.fp[group] + self.fn[group]
        return self.tp[group] / d if d else math.nan

    @property
    def flicker(self) -> float:
        return self.flips / self.flip_cells if self.flip_cells else math.nan

    def add_frame(self, occ: np.ndarray, f: Frame) -> None:
        static = f.gt & ~f.gt_moving
        groups = {"all": (f.gt, np.ones_like(f.gt)), "static": (static, ~f.gt_moving),
                  "moving": (f.gt_moving, ~static)}
        for g, (ref, valid) in groups.items():
            self.tp[g] += int(np.sum(occ & ref & valid))
            self.fp[g] += int(np.sum(occ & ~ref & valid))
            self.fn[g] += int(np.sum(~occ & ref & valid))

    def add_pair(self, occ_prev: np.ndarray, known_prev: np.ndarray, prev: Frame,
                 occ: np.ndarray, known: np.ndarray, cur: Frame, grid: GridSpec) -> None:
        w_occ = warp_grid(occ_prev, prev.pose, cur.pose, grid) > 0.5
        w_known = warp_grid(known_prev, prev.pose, cur.pose, grid) > 0.5
        w_gt = warp_grid(prev.gt, prev.pose, cur.pose, grid) > 0.5
        cells = known & w_known & (w_gt == cur.gt)
        self.flips += int(np.sum(cells & (occ != w_occ)))
        self.flip_cells += int(np.sum(cells))


def _footprints(nusc: Any, token: str, grid_cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(all vehicles, moving vehicles) footprint masks, rasterised like ``vehicle_mask``."""
    from lss_bev_ros.data.dataset import box_bottom_corners, ego_pose_of_lidar

    g2e = np.linalg.inv(ego_pose_of_lidar(nusc, token))
    dx, bx = np.asarray(grid_cfg.dx[:2]), np.asarray(grid_cfg.bx[:2])
    nx = grid_cfg.nx
    masks = [np.zeros((nx[0], nx[1]), np.float32) for _ in range(2)]
    for tok in nusc.get("sample", token)["anns"]:
        ann = nusc.get("sample_annotation", tok)
        if not ann["category_name"].startswith("vehicle."):
            continue
        attrs = {nusc.get("attribute", a)["name"] for a in ann["attribute_tokens"]}
        corners = box_bottom_corners(ann["translation"], ann["size"], ann["rotation"])
        pts = corners @ g2e[:3, :3].T + g2e[:3, 3]
        pts = np.round((pts[:, :2] - bx + dx / 2.0) / dx).astype(np.int32)
        pts[:, [1, 0]] = pts[:, [0, 1]]
        cv2.fillPoly(masks[0], [pts], 1.0)
        if "vehicle.moving" in attrs:
            cv2.fillPoly(masks[1], [pts], 1.0)
    return masks[0] > 0.5, masks[1] > 0.5


def load_sequences(root: Path, rate_hz: float, n_scenes: int, n_frames: int, seed: int,
                   use_cache: bool) -> list[list[Frame]]:
    """Generate (once) and run the model over ``n_scenes`` sequences of ``n_frames``."""
    cache = root / "frames.npz"
    if use_cache and cache.is_file():
        return _from_cache(cache)
    import torch
    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.bev_processor import camera_visibility
    from lss_bev_ros.calibration import rig_from_nuscenes
    from lss_bev_ros.data.dataset import ego_pose_of_lidar, sample_inputs, scene_sample_tokens
    from lss_bev_ros.data.synthetic import generate_dataset, scene_name
    from lss_bev_ros.lss.checkpoint import load_checkpoint

    if not (root / "v1.0-mini" / "sample.json").is_file():
        generate_dataset(root, n_scenes, n_frames, seed, progress=False,
                         sample_period_us=round(1e6 / rate_hz))
    nusc = NuScenes("v1.0-mini", str(root), verbose=False)
    model, cfg, _ = load_checkpoint(REPO / "models" / "lss_small_synth.pt")
    model.eval()
    grid = GridSpec.from_bounds(cfg.grid.xbound, cfg.grid.ybound)
    seqs: list[list[Frame]] = []
    for i in range(n_scenes):
        tokens = scene_sample_tokens(nusc, [scene_name(i)])
        vis = None
        frames = []
        for tok in tokens:
            if vis is None:
                lo, hi, _ = cfg.grid.dbound
                parts = camera_visibility(rig_from_nuscenes(nusc, tok), grid, (lo, hi))
                vis = np.logical_or.reduce(list(parts.values()))
            inp = sample_inputs(nusc, tok, cfg)
            with torch.no_grad():
                prob = model(*inp).sigmoid()[0, 0].numpy().astype(np.float32)
            gt, moving = _footprints(nusc, tok, cfg.grid)
            stamp = nusc.get("sample", tok)["timestamp"] * 1e-6
            frames.append(Frame(stamp, Pose2D.from_matrix(ego_pose_of_lidar(nusc, tok)), prob,
                                vis.copy(), gt, moving))
        seqs.append(frames)
    _to_cache(cache, seqs)
    return seqs


def _to_cache(path: Path, seqs: list[list[Frame]]) -> None:
    arrs: dict[str, np.ndarray] = {}
    for i, fr in enumerate(seqs):
        arrs[f"s{i}_stamp"] = np.array([f.stamp for f in fr])
        arrs[f"s{i}_pose"] = np.array([[f.pose.x, f.pose.y, f.pose.yaw] for f in fr])
        for k in ("prob", "known", "gt", "gt_moving"):
            arrs[f"s{i}_{k}"] = np.stack([getattr(f, k) for f in fr])
    np.savez_compressed(path, n=len(seqs), **arrs)


def _from_cache(path: Path) -> list[list[Frame]]:
    z = np.load(path, allow_pickle=False)
    out = []
    for i in range(int(z["n"])):
        out.append([Frame(float(z[f"s{i}_stamp"][k]), Pose2D(*map(float, z[f"s{i}_pose"][k])),
                          z[f"s{i}_prob"][k], z[f"s{i}_known"][k], z[f"s{i}_gt"][k],
                          z[f"s{i}_gt_moving"][k]) for k in range(len(z[f"s{i}_stamp"]))])
    return out


def score(seqs: list[list[Frame]], cfg: FusionConfig | None) -> tuple[Score, float]:
    """Score single-frame grids (``cfg`` None) or fused grids; returns (score, ms/frame)."""
    sc = Score()
    t_fuse, n = 0.0, 0
    for frames in seqs:
        fusion = GridFusion(cfg) if cfg is not None else None
        prev: tuple[np.ndarray, np.ndarray, Frame] | None = None
        for f in frames:
            if fusion is None:
                prob, known = f.prob, f.known
            else:
                t0 = time.perf_counter()
                out = fusion.update(f.stamp, f.prob, f.known, f.pose)
                t_fuse += time.perf_counter() - t0
                n += 1
                assert out is not None
                prob, known = out.probability, out.known
            occ = known & (prob > THRESHOLD)
            sc.add_frame(occ, f)
            if prev is not None:
                sc.add_pair(prev[0], prev[1], prev[2], occ, known, f, cfg.grid if cfg else
                            GridSpec())
            prev = (occ, known, f)
    return sc, (1e3 * t_fuse / n if n else 0.0)


def print_table(rate: str, n_frames: int, single: Score, fused: Score, ms: float) -> None:
    print(f"\n### {rate}: {n_frames} frames")
    print("| metric | single-frame | fused | change |")
    print("|---|---|---|---|")
    for g, label in (("all", "IoU all vehicles"), ("static", "IoU static vehicles"),
                     ("moving", "IoU moving vehicles")):
        a, b = single.iou(g), fused.iou(g)
        print(f"| {label} | {a:.3f} | {b:.3f} | {b - a:+.3f} |")
    a, b = single.flicker, fused.flicker
    print(f"| flicker (share of stable-GT cells that flip) | {a:.4%} | {b:.4%} | "
          f"x{b / a:.2f} |")
    print(f"| flip cells / compared cells | {single.flips} / {single.flip_cells} | "
          f"{fused.flips} / {fused.flip_cells} | |")
    print(f"| fusion time per frame | - | {ms:.1f} ms | |")
    ok_f = b <= 0.5 * a
    ok_i = fused.iou("all") >= single.iou("all")
    ok_m = fused.iou("moving") >= single.iou("moving") - 0.02
    print(f"goal: flicker halved {'yes' if ok_f else 'NO'}; IoU not lower "
          f"{'yes' if ok_i else 'NO'}; moving IoU within 0.02 {'yes' if ok_m else 'NO'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default=str(REPO / "runs" / "bev_fusion"))
    ap.add_argument("--seed", type=int, default=4242, help="data seed (held out: not 2024)")
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--frames-2hz", type=int, default=20)
    ap.add_argument("--frames-10hz", type=int, default=40)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--max-logodds", type=float, default=None, help="override FusionConfig")
    ap.add_argument("--max-step-logodds", type=float, default=None)
    ap.add_argument("--history-band-logodds", type=float, default=None)
    ap.add_argument("--decay-time-s", type=float, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import platform

    print(f"# bev_fusion bench: seed {args.seed}, {args.scenes} scenes per rate, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    over = {k: v for k, v in (("max_logodds", args.max_logodds),
                              ("max_step_logodds", args.max_step_logodds),
                              ("history_band_logodds", args.history_band_logodds),
                              ("decay_time_s", args.decay_time_s)) if v is not None}
    cfg = replace(FusionConfig(), **over)
    print(f"FusionConfig: {cfg}")
    for rate_hz, n in ((2.0, args.frames_2hz), (10.0, args.frames_10hz)):
        root = Path(args.workdir) / f"seed{args.seed}_{rate_hz:g}hz_{args.scenes}x{n}"
        t0 = time.perf_counter()
        seqs = load_sequences(root, rate_hz, args.scenes, n, args.seed, not args.no_cache)
        t_load = time.perf_counter() - t0
        single, _ = score(seqs, None)
        fused, ms = score(seqs, cfg)
        print(f"(data + inference {t_load:.0f} s)")
        print_table(f"{rate_hz:g} Hz", sum(len(s) for s in seqs), single, fused, ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
