"""Raise pyproject.toml's lower bounds to the versions uv.lock holds (run by scripts/upgrade).

The lower bound of each direct dependency says which release the project was tested with, so
after an upgrade it is raised to the locked version: `"redis>=5"` becomes `"redis>=8.2.0"`.
Only `>=` bounds are touched; an exact pin or an upper bound is a deliberate decision and is
left as it is. Prints what moved. Standard library only: it runs before the venv exists.

    python3 scripts/lockbounds.py [--check]

`--check` changes nothing and exits 1 when a lower bound is below the locked version.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One requirement string in pyproject.toml: "name[extras]>=version[, more]; marker".
REQUIREMENT = re.compile(
    r'"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<extras>\[[^\]]*\])?>=(?P<version>[^",;\s]+)'
)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_path: Path) -> dict[str, str]:
    lock = tomllib.loads(lock_path.read_text())
    return {normalise(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def raise_bounds(text: str, locked: dict[str, str]) -> tuple[str, list[str]]:
    moved: list[str] = []

    def bump(match: re.Match[str]) -> str:
        name = normalise(match["name"])
        new = locked.get(name)
        if new is None or new == match["version"]:
            return match[0]
        moved.append(f"{match['name']}: >={match['version']} -> >={new}")
        return f'"{match["name"]}{match["extras"] or ""}>={new}'

    # Only the dependency tables: the build-system pin and tool settings stay as written.
    head, sep, rest = text.partition("[project]")
    deps_end = rest.find("\n[project.scripts]")
    deps, tail = (rest, "") if deps_end < 0 else (rest[:deps_end], rest[deps_end:])
    return head + sep + REQUIREMENT.sub(bump, deps) + tail, moved


def main(argv: list[str]) -> int:
    pyproject = ROOT / "pyproject.toml"
    text, moved = raise_bounds(pyproject.read_text(), locked_versions(ROOT / "uv.lock"))
    for line in moved:
        print(f"lockbounds: {line}")
    if "--check" in argv:
        return 1 if moved else 0
    if moved:
        pyproject.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
