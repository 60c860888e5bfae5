"""Per-client adaptive JPEG quality (after NVIDIA Simple Streamer's bandwidth-aware quality).

Each MJPEG client owns one :class:`AdaptiveQuality`. After every frame the client thread reports
how long the send took; when the smoothed send time exceeds the per-frame budget (the client or
its link cannot keep up) the quality drops quickly, and when sends are comfortably fast it climbs
back slowly. Qualities are multiples of ``step`` so clients at the same level share one encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdaptiveQuality:
    """JPEG quality controller for one client.

    ``target_send_ms``: per-frame send-time budget (ms). Quality goes down by ``step_down`` when
    the EMA of send times is above it, up by ``step_up`` after ``patience`` consecutive frames
    below ``target_send_ms * headroom``. ``enabled=False`` keeps ``quality`` fixed.
    """

    quality: int = 80
    min_quality: int = 30
    max_quality: int = 90
    target_send_ms: float = 50.0
    enabled: bool = True
    step: int = 5
    step_down: int = 10
    step_up: int = 5
    headroom: float = 0.5
    patience: int = 5
    alpha: float = 0.3
    ema_send_ms: float | None = field(default=None, init=False)
    _good: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_quality <= self.max_quality <= 100:
            raise ValueError(
                f"need 1 <= min_quality <= max_quality <= 100, got "
                f"{self.min_quality}..{self.max_quality}"
            )
        if self.target_send_ms <= 0:
            raise ValueError(f"target_send_ms must be > 0, got {self.target_send_ms}")
        self.quality = self._clamp(self.quality)

    def _clamp(self, q: float) -> int:
        q = int(round(q / self.step) * self.step) if self.step > 1 else int(q)
        return int(min(self.max_quality, max(self.min_quality, q)))

    def update(self, send_ms: float) -> int:
        """Report one frame's send time (ms); returns the quality for the next frame."""
        send_ms = max(0.0, float(send_ms))
        if self.ema_send_ms is None:
            self.ema_send_ms = send_ms
        else:
            self.ema_send_ms += self.alpha * (send_ms - self.ema_send_ms)
        if not self.enabled:
            return self.quality
        if self.ema_send_ms > self.target_send_ms:
            self._good = 0
            self.quality = self._clamp(self.quality - self.step_down)
        elif self.ema_send_ms < self.target_send_ms * self.headroom:
            self._good += 1
            if self._good >= self.patience:
                self._good = 0
                self.quality = self._clamp(self.quality + self.step_up)
        else:
            self._good = 0
        return self.quality
