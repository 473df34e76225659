"""store.transfer.progress: counters for a whole command, each model's share, and the bar."""

from __future__ import annotations

import io

from store.cli.renderers import bar_renderer
from store.transfer.progress import Progress


def test_each_model_has_its_own_share_of_the_command() -> None:
    seen = []
    progress = Progress(seen.append, interval=0)
    progress.add_total(3000)
    progress.begin("a:v1", 1000)
    progress.advance(1000)
    progress.begin("b:v1", 2000)
    progress.advance(400)
    progress.advance(400, first_time=False)  # fetched again: neither share nor done moves
    progress.advance(1600)
    progress.finish()
    last = {s.label: s for s in seen}
    assert (last["a:v1"].label_done, last["a:v1"].label_total) == (1000, 1000)
    assert (last["b:v1"].label_done, last["b:v1"].label_total) == (2000, 2000)
    assert (seen[-1].done, seen[-1].total, seen[-1].refetched) == (3000, 3000, 400)
    assert all(s.label for s in seen), "no snapshot before the first model is named"


def test_the_bar_shows_each_models_own_bytes_on_its_own_line() -> None:
    out = io.StringIO()
    progress = Progress(bar_renderer(out), interval=0)
    progress.add_total(3000)
    progress.begin("a:v1", 1000)
    progress.advance(1000)
    progress.begin("nothing-new:v1", 0)  # all its blobs came with a:v1: no bar
    progress.begin("b:v1", 2000)
    progress.advance(500)
    progress.advance(1500)
    progress.finish()
    lines = [line.rsplit("\r", 1)[-1] for line in out.getvalue().split("\n") if line]
    assert len(lines) == 2
    # IEC units, as all text output (spec/cli.md)
    assert lines[0].startswith("a:v1") and "1000 B/1000 B" in lines[0] and "100.0%" in lines[0]
    assert lines[1].startswith("b:v1") and "2.0 KiB/2.0 KiB" in lines[1] and "100.0%" in lines[1]


def test_the_bar_escapes_its_label() -> None:
    out = io.StringIO()
    progress = Progress(bar_renderer(out), interval=0)
    progress.add_total(10)
    progress.begin("evil\x1b]0;title\x07", 10)
    progress.advance(10)
    progress.finish()
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "evil\\x1b]0;title\\x07" in out.getvalue()
