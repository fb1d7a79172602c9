"""The wheel is installable and carries the widget and pages, and the `ticker` command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_web_assets_and_console_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("ticker-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    for asset in ("ticker.js", "index.html"):
        assert f"ticker/web/{asset}" in names
    assert "ticker/app.py" in names and "ticker/wsserver.py" in names
    assert "ticker = ticker.cli:main" in scripts
