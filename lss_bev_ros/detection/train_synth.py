"""Train a small YOLO on synthetic nuScenes-format scenes (no pretrained weights anywhere).

1. :func:`write_yolo_dataset`: camera images of chosen scenes + 2D GT from :mod:`.gt` ->
   ultralytics' YOLO layout (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``).
2. :func:`train_yolo`: ultralytics' own trainer on a model built from ``yolo11n.yaml``
   (CPU, ``workers=0``, ``amp=False``, ``plots=False``, ``val=True``), returns ``best.pt``.

CLI (regenerates ``models/yolo_synth/``, see its README)::

    python -m lss_bev_ros.detection.train_synth --workdir /tmp/yolo_synth --scenes 16 \\
        --samples-per-scene 10 --epochs 30 --imgsz 416 --out models/yolo_synth/yolo11n_synth.pt
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import yaml

from lss_bev_ros.calibration import NUSCENES_CAMERAS
from lss_bev_ros.detection.gt import CLASS_NAMES, GTConfig, camera_gt, scenes_by_name


@dataclass
class YoloDatasetSummary:
    """What :func:`write_yolo_dataset` wrote."""

    data_yaml: Path
    images: dict[str, int]  # split -> image count
    boxes: dict[str, int]  # split -> label count


def write_yolo_dataset(
    nusc,
    out_dir: str | Path,
    splits: dict[str, Iterable[str]],
    cameras: Iterable[str] = NUSCENES_CAMERAS,
    image_width: int = 640,
    gt_config: GTConfig | None = None,
    jpeg_quality: int = 90,
) -> YoloDatasetSummary:
    """Write ``splits`` (split name -> scene names) of ``nusc`` as a YOLO dataset.

    Images are resized to ``image_width`` pixels wide (labels are normalised, so unchanged).
    """
    out = Path(out_dir).resolve()
    scenes = scenes_by_name(nusc)
    counts: dict[str, int] = {}
    boxes: dict[str, int] = {}
    cams = tuple(cameras)
    for split, names in splits.items():
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        for d in (img_dir, lbl_dir):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        counts[split] = boxes[split] = 0
        for name in names:
            if name not in scenes:
                raise KeyError(f"scene {name!r} not in dataset (have {sorted(scenes)})")
            tok = nusc.get("scene", scenes[name])["first_sample_token"]
            while tok:
                sample = nusc.get("sample", tok)
                for cam in cams:
                    gt = camera_gt(nusc, sample["data"][cam], gt_config)
                    stem = f"{name}_{cam}_{gt.timestamp_us}"
                    img = cv2.imread(str(gt.image_path), cv2.IMREAD_COLOR)
                    if img is None:
                        raise OSError(f"cannot read {gt.image_path}")
                    h = round(img.shape[0] * image_width / img.shape[1])
                    img = cv2.resize(img, (image_width, h), interpolation=cv2.INTER_AREA)
                    cv2.imwrite(str(img_dir / f"{stem}.jpg"), img,
                                [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                    (lbl_dir / f"{stem}.txt").write_text(gt.yolo_labels())
                    counts[split] += 1
                    boxes[split] += len(gt)
                tok = sample["next"]
    data = {
        "path": str(out),
        **{split: f"images/{split}" for split in splits},
        "names": dict(enumerate(CLASS_NAMES)),
    }
    if "val" not in splits and "train" in splits:
        data["val"] = "images/train"
    yaml_path = out / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return YoloDatasetSummary(yaml_path, counts, boxes)


def untrained_weights(path: str | Path, model_cfg: str = "yolo11n.yaml") -> Path:
    """Save a randomly initialised ``model_cfg`` network with our classes (a baseline)."""
    from lss_bev_ros.detection.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    y = YOLO(model_cfg, task="detect")
    y.model = DetectionModel(model_cfg, nc=len(CLASS_NAMES), verbose=False)
    y.model.names = dict(enumerate(CLASS_NAMES))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    y.save(out)
    return out


def train_yolo(
    data_yaml: str | Path,
    project: str | Path,
    epochs: int = 10,
    imgsz: int = 320,
    batch: int = 16,
    model_cfg: str = "yolo11n.yaml",
    seed: int = 0,
    name: str = "train",
    val: bool = True,
    **overrides,
) -> Path:
    """ultralytics' trainer (CPU) on a fresh ``model_cfg`` network, or continuing from our own
    ``.pt`` weights; returns the best weights."""
    from lss_bev_ros.detection.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(model_cfg, task="detect")
    args = {
        "data": str(data_yaml),
        "epochs": int(epochs),
        "imgsz": int(imgsz),
        "batch": int(batch),
        "device": "cpu",
        "workers": 0,
        "amp": False,
        "plots": False,
        "val": val,
        "project": str(Path(project).resolve()),
        "name": name,
        "exist_ok": True,
        "seed": seed,
        "deterministic": False,
        # from scratch for a model config; a .pt of ours continues from its weights
        "pretrained": not str(model_cfg).endswith((".yaml", ".yml")),
        "verbose": False,
        # synthetic cuboids under a fixed sun: colour is informative, flips are fine
        "hsv_h": 0.0,
        "fliplr": 0.5,
        "mosaic": 1.0,
        "close_mosaic": max(0, min(5, int(epochs) // 4)),
        "warmup_epochs": min(3.0, max(0.0, int(epochs) / 10)),
        **overrides,
    }
    model.train(**args)
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        best = save_dir / "weights" / "last.pt"
    if not best.is_file():
        raise RuntimeError(f"training finished without weights in {save_dir / 'weights'}")
    return best


def main(argv: list[str] | None = None) -> int:
    """Generate synthetic scenes, write the YOLO dataset, train, copy the best weights."""
    parser = argparse.ArgumentParser(
        prog="python -m lss_bev_ros.detection.train_synth",
        description="Train YOLO (yolo11n.yaml, from scratch, CPU) on synthetic nuScenes scenes "
        "with 2D boxes projected from the 3D annotations.",
    )
    parser.add_argument("--workdir", required=True, help="scratch folder (data, runs)")
    parser.add_argument("--dataroot", help="existing synthetic nuScenes root (default: generate)")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--scenes", type=int, default=12, help="scenes to generate")
    parser.add_argument("--val-scenes", type=int, default=2, help="trailing scenes for val")
    parser.add_argument("--samples-per-scene", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    parser.add_argument("--image-width", type=int, default=640, help="stored image width, px")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default="yolo11n.yaml",
                        help="ultralytics model config (from scratch), or a .pt of ours to "
                        "continue training from")
    parser.add_argument("--out", help="copy the best weights here (e.g. models/yolo_synth/...)")
    args = parser.parse_args(argv)

    from nuscenes.nuscenes import NuScenes

    from lss_bev_ros.data.synthetic import generate_dataset, split_scene_names

    work = Path(args.workdir)
    t0 = time.perf_counter()
    dataroot = Path(args.dataroot) if args.dataroot else work / "nuscenes"
    if not args.dataroot:
        generate_dataset(dataroot, args.scenes, args.samples_per_scene, args.seed, args.version,
                         progress=False)
    nusc = NuScenes(version=args.version, dataroot=str(dataroot), verbose=False)
    names = sorted(scenes_by_name(nusc))
    n_val = min(args.val_scenes, len(names) - 1)
    if args.dataroot:
        train, val = names[: len(names) - n_val], names[len(names) - n_val:]
    else:
        train, val = split_scene_names(len(names), n_val)
    summary = write_yolo_dataset(nusc, work / "yolo", {"train": train, "val": val},
                                 image_width=args.image_width)
    print(f"dataset: {summary.images} images, {summary.boxes} boxes "
          f"({time.perf_counter() - t0:.0f} s)")
    best = train_yolo(summary.data_yaml, work / "runs", args.epochs, args.imgsz, args.batch,
                      args.model)
    print(f"trained in {time.perf_counter() - t0:.0f} s: {best}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, out)
        print(f"copied to {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
