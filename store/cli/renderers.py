"""How a fetch's progress is shown on stderr (spec/fetching.md, "Progress"): a bar per model, or JSON lines."""

import json
from collections.abc import Callable

from ..transfer.progress import Snapshot
from .output import PEOPLE, escaped, human_bytes

__all__ = ["bar_renderer", "json_renderer"]


def bar_renderer(stream=PEOPLE, width: int = 28) -> Callable[[Snapshot], None]:
    """A one-line bar per model redrawn in place: its reference, its bytes and percent, speed, ETA."""
    shown: dict[str, object] = {"label": None, "ended": False}

    def render(s: Snapshot) -> None:
        if s.label != shown["label"]:
            if shown["label"] is not None and not shown["ended"]:
                stream.write("\n")  # keep the finished model's last state on its own line
            shown["label"], shown["ended"] = s.label, False
        if shown["ended"] or not s.label_total:  # nothing of its own to download: no bar
            return
        fraction = s.label_done / s.label_total
        filled = int(fraction * width)
        if s.elapsed < 1 or not s.rate:  # too early for a rate worth showing
            eta = "--:--"
        else:
            left = (s.label_total - s.label_done) / s.rate
            eta = f"{int(left // 60)}:{int(left % 60):02d}"
        stream.write(
            f"\r{escaped(s.label)[:24]:<24} [{'#' * filled}{'.' * (width - filled)}] {human_bytes(s.label_done)}/{human_bytes(s.label_total)} "
            f"{fraction * 100:5.1f}% {human_bytes(int(s.rate))}/s ETA {eta}"
        )
        if s.label_done >= s.label_total:
            stream.write("\n")
            shown["ended"] = True
        stream.flush()

    return render


def json_renderer(stream=PEOPLE) -> Callable[[Snapshot], None]:
    def render(s: Snapshot) -> None:
        stream.write(json.dumps(s.as_dict()) + "\n")
        stream.flush()

    return render
