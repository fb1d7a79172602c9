"""The wheel is installable and carries the widget and pages, and the `ticker` command."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_web_assets_and_console_script(tmp_path: Path) -> None:
    # The build backend is the exact one pyproject.toml's [build-system] pins.
    proc = subprocess.run(
        [uv_path(), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("ticker-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    for asset in ("ticker.js", "index.html"):
        assert f"ticker/web/{asset}" in names
    assert "ticker/ops/app.py" in names and "ticker/transport/websocket.py" in names
    assert "ticker = ticker.ops.cli:main" in scripts


def uv_path() -> str:
    uv = shutil.which("uv")
    assert uv is not None, "uv is put on PATH by scripts/setup.sh"
    return uv


def locked(*args: str) -> dict[str, str]:
    """{name: version} of what uv.lock installs with these `uv export` options."""
    proc = subprocess.run(
        [uv_path(), "export", "--locked", "--no-emit-project", "--no-hashes", "--no-header",
         "--no-annotate", "--format", "requirements.txt", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pins = {}
    for line in proc.stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            pins[normalise(requirement.name)] = spec.version
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(python: Path | str) -> dict[str, str]:
    proc = subprocess.run(
        [uv_path(), "pip", "list", "--python", str(python), "--format", "json"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {normalise(d["name"]): d["version"] for d in json.loads(proc.stdout)
            if normalise(d["name"]) != "ticker"}


def test_the_test_environment_is_exactly_the_lock() -> None:
    # The locked set for this interpreter (markers such as sys_platform applied).
    want = locked("--extra", "test")
    assert want, "uv export gave no packages"
    assert installed(sys.executable) == want


def test_a_runtime_install_from_the_lock_is_exactly_the_locked_runtime_set(
        tmp_path: Path) -> None:
    # What the Dockerfile's build stage runs, into a fresh environment.
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "env")}
    proc = subprocess.run([uv_path(), "sync", "--locked", "--no-dev", "--no-editable", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    python = tmp_path / "env" / "bin" / "python"
    runtime = installed(python)
    assert runtime == locked()
    assert "pytest" not in runtime and "uvicorn" in runtime
    help_text = subprocess.run([str(tmp_path / "env" / "bin" / "ticker"), "serve", "--help"],
                               capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "--workers" in help_text.stdout


def test_a_dependency_added_without_a_lock_update_fails_setup_with_a_clear_message(
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "uv.lock", project / "uv.lock")
    shutil.copy(ROOT / "README.md", project / "README.md")
    text = (ROOT / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text.replace('dependencies = [\n', 'dependencies = [\n    "six>=1.16",\n', 1))
    proc = subprocess.run([uv_path(), "lock", "--check"], cwd=project,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "needs to be updated" in proc.stderr
    # And the unchanged project passes the same check (scripts/setup.sh's `sync --locked`).
    proc = subprocess.run([uv_path(), "lock", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_lower_bounds_are_the_locked_versions() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "lockbounds.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    # The check can fail: a bound below the lock is reported.
    spec = importlib.util.spec_from_file_location("lockbounds", ROOT / "scripts" / "lockbounds.py")
    assert spec is not None and spec.loader is not None
    lockbounds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lockbounds)
    text = '[project]\ndependencies = [\n    "redis>=5",\n    "x==1",\n]\n[project.scripts]\n'
    new, moved = lockbounds.raise_bounds(text, {"redis": "8.2.0", "x": "2"})
    assert moved == ["redis: >=5 -> >=8.2.0"]
    assert '"redis>=8.2.0",' in new and '"x==1"' in new


def test_the_dockerfile_installs_the_lock_and_resolves_nothing() -> None:
    text = (ROOT / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.+?)(?<!\\)$", text, re.M | re.S)
    installs = [r for r in runs if "pip install" in r or "uv " in r]
    assert installs
    for command in installs:
        if "pip install" in command:
            assert "--require-hashes" in command and "uv.requirements.txt" in command
        else:
            assert command.startswith("uv sync --locked"), command
    assert re.search(r"^COPY .*\buv\.lock\b", text, re.M)
