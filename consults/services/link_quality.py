"""What a measured network link is good for in a video visit.

The one place that holds the thresholds: the device check page receives this table (as JSON)
and applies it in the browser with the same rule as `expected_quality`, so the verdict a
patient reads and the one the server would give cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _

GOOD, NORMAL, LOW, AUDIO = "good", "normal", "low", "audio"


@dataclass(frozen=True)
class QualityLevel:
    name: str
    # The slower direction must reach this: a visit sends and receives video at once.
    min_kbps: int
    # Above this round-trip time talk turns into talking over each other, whatever the rate.
    max_rtt_ms: int


# Best first; the first level a link satisfies is its verdict. The rates are what our video
# settings need with headroom: 720p VP8 ~1.2 Mbit/s, 360p ~400 kbit/s, 180p ~120 kbit/s.
LEVELS: tuple[QualityLevel, ...] = (
    QualityLevel(GOOD, min_kbps=1500, max_rtt_ms=400),
    QualityLevel(NORMAL, min_kbps=500, max_rtt_ms=800),
    QualityLevel(LOW, min_kbps=150, max_rtt_ms=1500),
)

VERDICTS = {
    GOOD: _("Your connection is good: video in good quality."),
    NORMAL: _("Your connection is fine: video in normal quality."),
    LOW: _("Weak connection: low-quality video. We will turn on weak-link mode for you."),
    AUDIO: _(
        "Very weak connection: the visit will be audio only. If you can, move closer to a "
        "window or to a place with better mobile signal."
    ),
}


def expected_quality(*, down_kbps: float, up_kbps: float, rtt_ms: float) -> str:
    """The quality to expect ("good", "normal", "low" or "audio") from a measured link."""
    slower = min(down_kbps, up_kbps)
    for level in LEVELS:
        if slower >= level.min_kbps and rtt_ms <= level.max_rtt_ms:
            return level.name
    return AUDIO


def levels_for_browser() -> list[dict[str, Any]]:
    """The thresholds as the device check script reads them."""
    return [asdict(level) for level in LEVELS]


def verdicts_for_browser() -> dict[str, str]:
    return {name: str(text) for name, text in VERDICTS.items()}
