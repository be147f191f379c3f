"""protoocc-health: prints a checkpoint's prototype health figures, says when the mapping is collapsed (exit 1),
and renders the prototype picture."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from protoocc_ros.tools import health


def test_bundled_checkpoint_reads_the_equations_literally_and_is_reported_collapsed(tmp_path: Path, capsys) -> None:
    """The bundled model was trained with Eqs. 1a/1b as printed: one vector a camera (the figures of issue 23)."""
    png = tmp_path / "prototypes.png"
    assert health.main(["--frames", "1", "--json", "--render", str(png)]) == 1
    figures = json.loads(capsys.readouterr().out)
    assert figures["layer0.proto_cosine"] > 0.95 and figures["layer0.dispatch_cosine"] > 0.95
    assert 0 < figures["cluster.entropy"] < figures["cluster.entropy_max"]
    assert figures["loss.cls"] > 0 and figures["loss.cls_chance"] > 1.0
    assert figures["render"] == str(png) and png.stat().st_size > 20_000


def test_console_script_prints_a_table_and_refuses_bad_paths(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "protoocc_ros.tools.health", "--checkpoint", str(tmp_path / "x.pt")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("protoocc-health: error:") and bad.stderr.count("\n") == 1
