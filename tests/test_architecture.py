"""The layer contracts of docs/architecture.md, as `lint-imports` checks them.

The real tree keeps every contract; a copy of it with one import that breaks each rule is
refused, rule by rule (so the contracts can fail); the document and pyproject.toml name the
same layers in the same order.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def config() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        linter: dict[str, object] = tomllib.load(f)["tool"]["importlinter"]
    return linter


def contracts() -> list[dict[str, object]]:
    found = config()["contracts"]
    assert isinstance(found, list)
    return found


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's configuration over the `ticker` package in `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    for contract in contracts():
        assert f"{contract['name']} KEPT" in done.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    # the pure core reaching up into the node layer: a cycle, and Redis through it
    ("ticker/core/state.py", "import ticker.node.runtime", {0, 1, 2}),
    # the Redis edge importing a transport, inside a function (those count too)
    ("ticker/redis/reader.py", "def _late() -> None:\n    import ticker.transport.sse", {0, 2}),
    # the core importing Redis
    ("ticker/core/items.py", "import redis.asyncio", {1}),
    # a cycle inside one package: store imports keys, and now keys imports store
    ("ticker/redis/keys.py", "import ticker.redis.store", {2}),
])
def test_a_broken_rule_is_refused(tmp_path: Path, module: str, line: str,
                                  broken: set[int]) -> None:
    shutil.copytree(ROOT / "ticker", tmp_path / "ticker",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / module
    target.write_text(target.read_text() + "\n\n" + line + "\n")
    done = lint(tmp_path)
    assert done.returncode != 0, done.stdout
    for i, contract in enumerate(contracts()):
        verdict = "BROKEN" if i in broken else "KEPT"
        assert f"{contract['name']} {verdict}" in done.stdout, done.stdout


def test_the_document_lists_the_layers_and_contracts_of_the_configuration() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    assert isinstance(layers, list)
    stated = re.search(r"1\. \*\*Layers\*\*: (.*?);", text, re.S)
    assert stated is not None
    assert re.findall(r"`(ticker\.\w+)`", stated.group(1)) == layers
    forbidden = next(c for c in contracts() if c["type"] == "forbidden")["forbidden_modules"]
    assert isinstance(forbidden, list)
    for module in forbidden:
        assert f"`{module}`" in text
    for package in layers:
        assert (ROOT / package.replace(".", "/") / "__init__.py").is_file()
    # Every module lives in a layer: nothing but the entry points at the top.
    top = sorted(p.name for p in (ROOT / "ticker").glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
