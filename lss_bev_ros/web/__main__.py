"""Stand-alone live view (no ROS): a demo feed to look at the pages, and a producer-cost check.

    python -m lss_bev_ros.web --demo [--port 8080] [--duration S]   # synthetic data, Ctrl-C stops
    python -m lss_bev_ros.web --bench                                 # prints measured ratios
"""

from __future__ import annotations

import argparse
import math
import socket
import statistics
import threading
import time

import numpy as np

from lss_bev_ros.conversions.image import encode_jpeg
from lss_bev_ros.web.server import DashboardServer


def _demo_frames(i: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:360, 0:960]
    cam = np.stack([(xx + 4 * i) % 256, (yy * 0.7) % 256, np.full_like(xx, 90)], 2)
    bev = np.zeros((400, 400, 3), np.uint8)
    r = 120 + int(40 * math.sin(i / 10))
    bev[r : r + 16, 190:210] = (40, 220, 60)
    bev[196:204, 196:204] = 255
    return cam.astype(np.uint8), bev


def demo(host: str, port: int, duration: float) -> None:
    """Serve synthetic metrics, timing and frames at 10 Hz."""
    srv = DashboardServer(host, port, adaptive=True).start()
    print(f"live view demo on {srv.url}/  (/cam, /bev, /eval, /eval.json); Ctrl-C stops")
    rng = np.random.default_rng(0)
    t_end = time.monotonic() + duration if duration > 0 else math.inf
    i = 0
    try:
        while time.monotonic() < t_end:
            iou = 0.3 + 0.1 * math.sin(i / 20) + 0.02 * rng.standard_normal()
            srv.update_metrics({"iou": iou, "precision": iou + 0.2, "recall": iou + 0.1,
                                "mean_iou": 0.3, "frame_count": i + 1, "unmatched_count": 0,
                                "latency_p50_ms": 110.0, "latency_p90_ms": 140.0,
                                "latency_p99_ms": 170.0,
                                "reference_description": "synthetic demo data"})
            srv.update_timing("bev", "torch", {
                "preprocess": 3 + rng.random(), "geometry": 1.0,
                "camera_encoder": 40 + 5 * rng.random(), "voxel_pooling": 8 + rng.random(),
                "bev_encoder": 25 + 3 * rng.random()}, latency_ms=110 + 20 * rng.random(),
                frames_processed=i + 1, frames_dropped=i // 20, node="demo")
            cam, bev = _demo_frames(i)
            srv.update_jpeg_stream("cam", cam, copy=False)
            srv.update_jpeg_stream("bev", bev, copy=False)
            i += 1
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


def bench(n: int = 200) -> None:
    """Producer cost per frame: swap-in vs encoding a JPEG, and with clients (one stalled)."""
    cam, _ = _demo_frames(0)
    srv = DashboardServer(port=0, jpeg_quality=80).start()
    try:
        def producer_ms() -> float:
            ts = []
            for i in range(n):
                frame = cam.copy()
                frame[0, 0] = i % 256
                t0 = time.perf_counter()
                srv.update_jpeg_stream("cam", frame, copy=False)
                ts.append((time.perf_counter() - t0) * 1e3)
                time.sleep(0.002)
            return statistics.median(ts)

        t0 = time.perf_counter()
        for _ in range(20):
            encode_jpeg(cam, 80)
        enc_ms = (time.perf_counter() - t0) / 20 * 1e3
        idle = producer_ms()
        socks = []
        stop = threading.Event()
        for k in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port))
            if k == 0:  # stalled: tiny buffer, never reads
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /cam HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        readers = [threading.Thread(target=_drain, args=(s, stop), daemon=True)
                   for s in socks[1:]]
        for t in readers:
            t.start()
        time.sleep(0.5)
        busy = producer_ms()
        stop.set()
        st = srv.stream_stats()["cam"]
        print(f"frame {cam.shape[1]}x{cam.shape[0]}, n={n}")
        print(f"JPEG encode (q80)                 : {enc_ms:8.3f} ms/frame")
        print(f"producer swap-in, no clients       : {idle:8.4f} ms/frame (median)")
        print(f"producer swap-in, 3 readers+1 stall: {busy:8.4f} ms/frame (median)")
        print(f"ratio encode / swap-in             : {enc_ms / max(idle, 1e-6):8.1f} x")
        print(f"ratio swap-in with/without clients : {busy / max(idle, 1e-6):8.2f} x")
        print(f"clients: {[(c['frames_sent'], c['frames_dropped']) for c in st['clients']]} "
              "(sent, dropped) each")
        for s in socks:
            s.close()
    finally:
        srv.stop()


def _drain(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            if not sock.recv(1 << 16):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lss_bev_ros.web", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", action="store_true", help="serve synthetic data")
    ap.add_argument("--bench", action="store_true", help="measure the producer-side cost")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--duration", type=float, default=0.0, help="demo seconds (0: until Ctrl-C)")
    args = ap.parse_args(argv)
    if args.bench:
        bench()
    elif args.demo:
        demo(args.host, args.port, args.duration)
    else:
        ap.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
