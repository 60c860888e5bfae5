"""Held-out vehicle IoU of an LSS checkpoint by distance from the ego (where the error is).

    python bench/heldout_range_iou.py                                  # the committed model
    python bench/heldout_range_iou.py --weights runs/train_proof/ckpt/last.pt

Uses the `bench/train_proof.py` dataset (`--workdir`, generated there if absent: run
train_proof once first) and its split (the last `--val-scenes` of `--scenes` held out). Prints,
per ring of BEV cell centres (m from the ego), the pooled IoU at threshold 0.5 against the GT
footprints and the ring's share of the GT vehicle area, for the held-out scenes and for two
training scenes (the gap between them is generalisation, the rest is the model).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lss_bev_ros.data.dataset import LSSDataset  # noqa: E402
from lss_bev_ros.data.synthetic import split_scene_names  # noqa: E402
from lss_bev_ros.eval.metrics import Confusion  # noqa: E402
from lss_bev_ros.lss.checkpoint import load_checkpoint  # noqa: E402

RINGS_M = (0.0, 15.0, 30.0, 44.0, 80.0)  # 44 m: the last depth bin of the small configs


def ring_ious(model: torch.nn.Module, ds: LSSDataset, n: int, rings: tuple[float, ...]
              ) -> list[tuple[float, float, float, float]]:
    """(lo m, hi m, IoU, GT share) per ring over the first ``n`` samples of ``ds``."""
    g = model.cfg.grid
    xs = np.arange(g.nx[0]) * g.dx[0] + g.bx[0]
    ys = np.arange(g.nx[1]) * g.dx[1] + g.bx[1]
    r = np.hypot(*np.meshgrid(xs, ys, indexing="ij"))  # X x Y, m
    masks = [(r >= lo) & (r < hi) for lo, hi in itertools.pairwise(rings)]
    conf = [Confusion() for _ in masks]
    with torch.no_grad():
        for i in range(min(n, len(ds))):
            item = ds[i]
            prob = model(*(t.unsqueeze(0) for t in item[:6])).sigmoid()[0, 0].numpy()
            gt = item[6][0].numpy() > 0.5
            for k, m in enumerate(masks):
                conf[k] = conf[k] + Confusion.from_scores(prob, gt, 0.5, m)
    gt_area = [c.tp + c.fn for c in conf]
    total = max(sum(gt_area), 1)
    return [(lo, hi, c.iou, a / total)
            for lo, hi, c, a in zip(rings[:-1], rings[1:], conf, gt_area, strict=True)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", default=str(REPO / "models" / "lss_small_cpu_80x352_synth.pt"))
    p.add_argument("--workdir", default=str(REPO / "runs" / "train_proof"))
    p.add_argument("--scenes", type=int, default=64)
    p.add_argument("--val-scenes", type=int, default=2)
    p.add_argument("--samples", type=int, default=12, help="frames per split (train_proof: 12)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from nuscenes.nuscenes import NuScenes

    data = Path(args.workdir) / "data"
    if not (data / "v1.0-mini" / "sample.json").is_file():
        p.error(f"no dataset under {data}: run bench/train_proof.py (it generates it) first")
    model, cfg, _ = load_checkpoint(args.weights)
    model = model.float().eval()
    nusc = NuScenes(version="v1.0-mini", dataroot=str(data), verbose=False)
    train, val = split_scene_names(args.scenes, args.val_scenes)
    lo, _, step = cfg.grid.dbound
    print(f"{args.weights}: held-out GT-footprint IoU@0.5 by distance from the ego "
          f"(frustum {lo:g}-{lo + (cfg.grid.num_depth_bins - 1) * step:g} m)")
    print("| scenes | " + " | ".join(f"{lo:g}-{hi:g} m" for lo, hi in
                                     itertools.pairwise(RINGS_M)) + " |")
    print("|---|" + "---|" * (len(RINGS_M) - 1))
    for name, scenes in ((f"held-out {', '.join(val)}", val), ("2 training scenes", train[:2])):
        rows = ring_ious(model, LSSDataset(nusc, scenes, cfg, is_train=False), args.samples,
                         RINGS_M)
        print(f"| {name} | " + " | ".join(f"{iou:.3f} (GT share {share:.2f})"
                                         for _, _, iou, share in rows) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
