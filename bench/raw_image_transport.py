"""How many camera images survive DDS transport on this machine, per QoS / transport choice.

    python bench/raw_image_transport.py                   # 6 cameras, 30 images each, 2 Hz
    python bench/raw_image_transport.py --count 10 --modes best_effort,reliable

One publisher process (6 x 1600 x 900 rgb8 ``sensor_msgs/Image``, like ``lss-bev-bag play
--raw`` or a camera driver, reliable keep-last 5) and one subscriber process (keep-last 2, like
bev_node's camera subscriptions) per mode, started fresh for each mode:

* ``best_effort``     raw images, best-effort subscription (bev_node's default sensor QoS)
* ``reliable``        raw images, reliable subscription (bev_node ``qos_reliable: true``)
* ``compressed``      JPEG ``CompressedImage`` (quality 90, ~200 kB), best-effort subscription
* ``compressed_reliable``  the same JPEGs, reliable subscription
* ``best_effort_shm`` raw images, best-effort, Fast DDS shared-memory transport with a 64 MB
                      segment (:data:`SHM_PROFILE_XML` as ``FASTDDS_DEFAULT_PROFILES_FILE``) in
                      both processes
* ``large_data``      raw images, best-effort, ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` (not in
                      the default set)

Prints images received per camera side by side (and the mean / max delivery latency, receive
time minus header stamp). A raw 1600 x 900 image is 4.3 MB: over UDP, Fast DDS splits it into
~65 kB fragments, and best-effort drops the whole image when one fragment is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

SHM_PROFILE_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>shm_large</transport_id>
        <type>SHM</type>
        <segment_size>67108864</segment_size>
        <maxMessageSize>16777216</maxMessageSize>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="shm_large_participant" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>shm_large</transport_id>
        </userTransports>
        <useBuiltinTransports>true</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""
"""Fast DDS profile: a shared-memory transport whose 64 MB segment holds whole raw images."""

CAMERAS = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK",
           "CAM_BACK_RIGHT")
MODES: dict[str, dict[str, Any]] = {
    "best_effort": {"compressed": False, "reliable": False, "env": {}},
    "reliable": {"compressed": False, "reliable": True, "env": {}},
    "compressed": {"compressed": True, "reliable": False, "env": {}},
    "compressed_reliable": {"compressed": True, "reliable": True, "env": {}},
    "best_effort_shm": {"compressed": False, "reliable": False,
                        "env": {"FASTDDS_DEFAULT_PROFILES_FILE": "<shm profile>"}},
    "large_data": {"compressed": False, "reliable": False,
                   "env": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}},
}
DEFAULT_MODES = ("best_effort", "reliable", "compressed", "compressed_reliable",
                 "best_effort_shm")


def _topic(cam: str, compressed: bool) -> str:
    base = f"/cameras/{cam.lower()}/image_raw"
    return base + "/compressed" if compressed else base


def _qos(reliable: bool, depth: int) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def _image(w: int, h: int, seed: int) -> np.ndarray:
    """H x W x 3 uint8 with camera-like structure (gradients, blocks, mild noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h))], axis=2)
    for _ in range(40):
        bw, bh = int(rng.integers(1, max(2, w // 16))), int(rng.integers(1, max(2, h // 9)))
        x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        img[y0:y0 + bh, x0:x0 + bw] = rng.integers(0, 255, 3)
    img = img + rng.integers(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def run_sub(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CompressedImage, Image

    mode = MODES[args.mode]
    rclpy.init()
    node = rclpy.create_node("transport_bench_sub")
    counts = dict.fromkeys(CAMERAS, 0)
    lat: list[float] = []

    def cb(cam: str, msg: Any) -> None:
        counts[cam] += 1
        st = msg.header.stamp
        lat.append(time.time() - (st.sec + st.nanosec * 1e-9))

    subs = [node.create_subscription(CompressedImage if mode["compressed"] else Image,
                                     _topic(cam, mode["compressed"]),
                                     lambda m, c=cam: cb(c, m), _qos(mode["reliable"], 2))
            for cam in CAMERAS[: args.cameras]]
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    matched = False
    while not done.is_set():
        ex.spin_once(timeout_sec=0.05)
        if not matched and all(s.get_publisher_count() > 0 for s in subs):
            matched = True  # this side matched every writer: the publisher may start
            print("matched", flush=True)
    print(json.dumps({"counts": {c: counts[c] for c in CAMERAS[: args.cameras]},
                      "lat_mean_ms": 1e3 * float(np.mean(lat)) if lat else float("nan"),
                      "lat_max_ms": 1e3 * float(np.max(lat)) if lat else float("nan")}),
          flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_pub(args: argparse.Namespace) -> int:
    import cv2
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    mode = MODES[args.mode]
    rclpy.init()
    node = rclpy.create_node("transport_bench_pub")
    cams = CAMERAS[: args.cameras]
    pubs, msgs = {}, {}
    for i, cam in enumerate(cams):
        rgb = _image(args.width, args.height, i)
        if mode["compressed"]:
            m = CompressedImage(format="jpeg")
            m.data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                  [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        else:
            m = Image(height=args.height, width=args.width, encoding="rgb8",
                      step=args.width * 3)
            m.data = rgb.tobytes()
        m.header.frame_id = cam.lower()
        msgs[cam] = m
        pubs[cam] = node.create_publisher(type(m), _topic(cam, mode["compressed"]),
                                          _qos(True, 5))
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and not all(
            p.get_subscription_count() > 0 for p in pubs.values()):
        time.sleep(0.05)
    sys.stdin.readline()  # "go": the subscriber matched every writer too (slow when loaded)
    t0 = time.monotonic()
    for k in range(args.count):
        while time.monotonic() < t0 + k / args.rate:
            time.sleep(0.002)
        now = time.time()
        for cam in cams:
            msgs[cam].header.stamp.sec = int(now)
            msgs[cam].header.stamp.nanosec = int((now % 1.0) * 1e9)
            pubs[cam].publish(msgs[cam])
    time.sleep(2.0)  # reliable: let the last samples be acknowledged
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_mode(args: argparse.Namespace, name: str, shm_profile: str) -> dict[str, Any]:
    env = dict(os.environ, **{k: shm_profile if v == "<shm profile>" else v
                              for k, v in MODES[name]["env"].items()})
    common = [sys.executable, __file__, "--mode", name, "--count", str(args.count), "--rate",
              str(args.rate), "--cameras", str(args.cameras), "--width", str(args.width),
              "--height", str(args.height)]
    sub = subprocess.Popen([*common, "--role", "sub"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, env=env)
    pub = subprocess.Popen([*common, "--role", "pub"], stdin=subprocess.PIPE, env=env,
                           text=True)
    assert sub.stdout is not None and pub.stdin is not None
    t_match = time.monotonic()
    line = sub.stdout.readline()  # "matched" (blocks until discovery completed)
    match_s = time.monotonic() - t_match
    pub.stdin.write("go\n")
    pub.stdin.close()
    pub.wait(timeout=args.count / args.rate + 60)
    time.sleep(0.5)
    out, _ = sub.communicate("", timeout=30)
    res = json.loads(out.strip().splitlines()[-1])
    res["pub_rc"] = pub.returncode
    res["discovery_s"] = round(match_s, 1) if line.strip() == "matched" else None
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", choices=("main", "pub", "sub"), default="main")
    ap.add_argument("--mode", choices=tuple(MODES), default="best_effort")
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES),
                    help=f"modes compared (main), of {', '.join(MODES)}")
    ap.add_argument("--count", type=int, default=30, help="images per camera")
    ap.add_argument("--rate", type=float, default=2.0, help="images per camera per second")
    ap.add_argument("--cameras", type=int, default=6, choices=range(1, 7))
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    if args.role == "sub":
        return run_sub(args)
    if args.role == "pub":
        return run_pub(args)
    t0 = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        shm_profile = os.path.join(tmp, "fastdds_shm.xml")
        with open(shm_profile, "w") as fh:
            fh.write(SHM_PROFILE_XML)
        for name in args.modes.split(","):
            results[name] = run_mode(args, name, shm_profile)
            print(f"[{time.monotonic() - t0:5.1f} s] {name}: {results[name]}",
                  file=sys.stderr, flush=True)
    cams = CAMERAS[: args.cameras]
    print(f"images received of {args.count} per camera ({args.cameras} cameras, "
          f"{args.width}x{args.height}, {args.rate:g} Hz), "
          f"RMW {os.environ.get('RMW_IMPLEMENTATION', '?')}")
    print(f"{'camera':<16}" + "".join(f"{n:>20}" for n in results))
    for cam in cams:
        print(f"{cam:<16}" + "".join(f"{r['counts'][cam]:>20}" for r in results.values()))
    print(f"{'total':<16}" + "".join(
        f"{sum(r['counts'].values()):>14}/{args.count * len(cams):<5}" for r in results.values()))
    print(f"{'latency mean ms':<16}" + "".join(f"{r['lat_mean_ms']:>20.1f}"
                                               for r in results.values()))
    print(f"{'latency max ms':<16}" + "".join(f"{r['lat_max_ms']:>20.1f}"
                                              for r in results.values()))
    print(f"{'discovery s':<16}" + "".join(f"{r['discovery_s']!s:>20}"
                                           for r in results.values()))
    print(f"wall {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
