"""store.cli.main: how the entry point ends (spec/cli.md, "Start-up")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from store.cli.main import main


def test_main_called_with_arguments_raises_system_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Only the program leaves by os._exit; a caller of main(argv) lives on.
    with pytest.raises(SystemExit) as done:
        main(["--store", str(tmp_path / "store"), "path", "nothere:v1"])
    assert done.value.code == 3
    assert capsys.readouterr().err.startswith("odai-store: error: no model named nothere:v1")


def test_the_program_flushes_its_output_before_it_leaves(tmp_path: Path) -> None:
    # os._exit skips the interpreter's own flush: the output must be complete anyway.
    store = tmp_path / "store"
    model = tmp_path / "model"
    model.mkdir()
    for i in range(300):
        (model / f"f{i:03}.bin").write_bytes(b"%d" % i)
    assert subprocess.run([sys.executable, "-m", "store", "--store", str(store), "add", "m:v1", str(model)], capture_output=True).returncode == 0
    done = subprocess.run([sys.executable, "-m", "store", "--store", str(store), "--json", "show", "m:v1"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.endswith("}\n") and done.stdout.count('"path"') == 300
