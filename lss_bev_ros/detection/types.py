"""Plain-numpy detection container shared by the detector, the tracker, GT and the node."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRACK_ID_NONE = -1
"""Track id of a detection no tracker has confirmed (``Detection2D.TRACK_ID_NONE``)."""


def _empty_ids(n: int) -> np.ndarray:
    return np.full(n, TRACK_ID_NONE, dtype=np.int64)


@dataclass
class Detections:
    """All detections of one image, in pixels of the *original* image.

    ``xyxy``: K x 4 float32 (x1, y1, x2, y2; origin at the top-left pixel corner),
    ``conf``: K float32 0..1, ``cls``: K int64 class index, ``track_id``: K int64
    (``TRACK_ID_NONE`` when untracked), ``image_size``: (height, width) pixels.
    """

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    image_size: tuple[int, int]
    track_id: np.ndarray = field(default_factory=lambda: _empty_ids(0))

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.conf = np.asarray(self.conf, dtype=np.float32).reshape(-1)
        self.cls = np.asarray(self.cls, dtype=np.int64).reshape(-1)
        tid = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
        self.track_id = tid if len(tid) == n else _empty_ids(n)
        if len(self.conf) != n or len(self.cls) != n:
            raise ValueError(
                f"inconsistent detections: {n} boxes, {len(self.conf)} scores, "
                f"{len(self.cls)} classes"
            )
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> Detections:
        """No detections in an image of ``image_size`` = (height, width)."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), image_size)

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def xywh(self) -> np.ndarray:
        """K x 4 float32 (centre x, centre y, width, height), pixels."""
        c = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([c, wh], axis=1).astype(np.float32)

    def select(self, mask: np.ndarray) -> Detections:
        """Subset by boolean mask or index array."""
        return Detections(
            self.xyxy[mask], self.conf[mask], self.cls[mask], self.image_size, self.track_id[mask]
        )

    def with_track_ids(self, track_id: np.ndarray) -> Detections:
        """Copy with ``track_id`` (K int64) replaced."""
        return Detections(self.xyxy, self.conf, self.cls, self.image_size, track_id)

    def as_array(self) -> np.ndarray:
        """K x 6 float32 rows (x1, y1, x2, y2, conf, cls), the ultralytics ``Boxes`` layout."""
        return np.concatenate(
            [self.xyxy, self.conf[:, None], self.cls[:, None].astype(np.float32)], axis=1
        ).astype(np.float32)
