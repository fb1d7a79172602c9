"""Every example in README.md and docs/ runs as written, against a real server.

Each fenced block in `sh`, `python` or `js` is one example. A comment on the line just before
its fence says how it is run:

- no comment: the block runs to its end and must exit 0 (shell blocks under `set -e`, so a
  failing line fails the example), with nothing on stderr that looks like a crash;
- `<!-- example: serves ... -->`: the block starts a server; it must answer `/healthz` on the
  port it was given, then it is stopped;
- `<!-- example: not run (why) -->`: a block of minutes (a benchmark); it is checked for
  syntax only, and the reason must be given.

Each example runs in a newsroom of its own: a `ticker serve` started as the README says
(embedded Redis, data in `ticker-data` in its working directory), in a scratch directory
where `.venv` points at the project's. The only rewriting is of the addresses the docs use
for "your server" and "your Redis" (`ADDRESSES`), which become the real ones. `$TOKEN` (a
publishing token) and `$PW` (a password) are set, as the surrounding prose tells a reader to.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT, free_port
from ticker.redis.embedded import running_url

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NODE_MODULES = ROOT / "tests" / "examples" / "node_modules"
LANGUAGES = {"sh", "python", "js"}
MARKER = re.compile(r"<!-- example: (?P<mode>serves|not run)(?P<why>[^>]*)-->")
PASSWORD = "correct horse battery staple 42"


@dataclass(frozen=True)
class Example:
    doc: Path
    line: int
    lang: str
    code: str
    mode: str  # "runs", "serves" or "not run"
    why: str

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        n = 0
        while n < len(lines):
            fence = re.fullmatch(r"```(\w*)", lines[n])
            if fence is None:
                n += 1
                continue
            end = lines.index("```", n + 1)
            marker = MARKER.search(lines[n - 1]) if n else None
            if fence.group(1) in LANGUAGES:
                found.append(Example(
                    doc, n + 1, fence.group(1), "\n".join(lines[n + 1:end]) + "\n",
                    marker["mode"] if marker else "runs",
                    marker["why"].strip(" ()") if marker else ""))
            n = end + 1
    return found


EXAMPLES = examples()


def test_the_docs_have_examples_of_every_kind() -> None:
    # The parser itself: a broken fence regex would make every test below vanish.
    kinds = {(e.lang, e.mode) for e in EXAMPLES}
    assert {("sh", "runs"), ("python", "runs"), ("js", "runs"), ("sh", "serves"),
            ("sh", "not run")} <= kinds
    assert len([e for e in EXAMPLES if e.mode == "runs"]) >= 6
    for e in EXAMPLES:
        if e.mode == "not run":
            assert e.why, f"{e.name}: say why the example is not run"


@dataclass
class Newsroom:
    cwd: Path
    url: str
    redis_url: str
    token: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
        env.update(PATH=f"{Path(sys.executable).parent}:{env['PATH']}", TOKEN=self.token,
                   PW=PASSWORD, NODE_PATH=str(NODE_MODULES), PYTHONPATH=str(ROOT))
        return env

    def rewrite(self, code: str) -> str:
        for pattern, new in ADDRESSES:
            code = re.sub(pattern, new.format(url=self.url, redis=self.redis_url), code)
        return code


# What the docs call "your server" and "your Redis".
ADDRESSES = [
    (r"https://ticker\.example", "{url}"),
    (r"http://127\.0\.0\.1:8000", "{url}"),
    (r"redis://127\.0\.0\.1:(?:6379|41234)/0", "{redis}"),
]


def wait_healthy(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in time")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture
def newsroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newsroom]:
    """A newsroom of its own for each example: each is what one reader of one page does."""
    cwd = tmp_path_factory.mktemp("newsroom")
    (cwd / ".venv").symlink_to(ROOT / ".venv")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    # docs/webhooks.md's receivers listen on loopback, which an operator must allow.
    env["TICKER_WEBHOOK_ALLOW"] = "127.0.0.1"
    log = (cwd / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ticker", "serve", "--port", str(port)], cwd=cwd, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, time.monotonic() + 3 * TIMEOUT)
        redis_url = running_url(cwd / "ticker-data")
        assert redis_url, "the embedded Redis writes its URL into the data directory"
        token = subprocess.run(
            [sys.executable, "-m", "ticker", "token", "create", "docs-examples"], cwd=cwd,
            env=env, capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout.strip()
        yield Newsroom(cwd, url, redis_url, token)
    finally:
        stop(process)
        log.close()


def command(example: Example, path: Path) -> list[str]:
    if example.lang == "sh":
        return ["bash", "-euo", "pipefail", str(path)]
    if example.lang == "python":
        return [sys.executable, str(path)]
    return ["node", str(path)]


def write(example: Example, directory: Path, code: str) -> Path:
    suffix = {"sh": ".sh", "python": ".py", "js": ".js"}[example.lang]
    path = directory / f"example-{example.line}{suffix}"
    path.write_text(code)
    return path


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.mode == "runs"],
                         ids=lambda e: e.name)
def test_example_runs(example: Example, newsroom: Newsroom, tmp_path: Path) -> None:
    path = write(example, tmp_path, newsroom.rewrite(example.code))
    proc = subprocess.run(command(example, path), cwd=newsroom.cwd, env=newsroom.env(),
                          input=f"{PASSWORD}\n", capture_output=True, text=True,
                          timeout=6 * TIMEOUT)
    assert proc.returncode == 0, f"{example.name} failed:\n{proc.stdout}\n{proc.stderr}"
    for crash in ("Traceback", "Error:", "ticker: "):
        assert crash not in proc.stderr.replace("token for", ""), (
            f"{example.name}:\n{proc.stderr}")


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.mode == "serves"],
                         ids=lambda e: e.name)
def test_example_serves(example: Example, tmp_path: Path) -> None:
    # Its own port and data directory.
    port = free_port()
    env = {**Newsroom(tmp_path, "", "", "").env(), "TICKER_PORT": str(port),
           "TICKER_DATA_DIR": str(tmp_path / "ticker-data")}
    path = write(example, tmp_path, example.code)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(["bash", "-euo", "pipefail", str(path)], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, time.monotonic() + 6 * TIMEOUT)
    finally:
        stop(process)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert f"serving http://127.0.0.1:{port}/" in output, output
    assert "Traceback" not in output, output


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.mode == "not run"],
                         ids=lambda e: e.name)
def test_example_not_run_is_still_valid(example: Example, tmp_path: Path) -> None:
    path = write(example, tmp_path, example.code)
    check = {"sh": ["bash", "-n"], "python": [sys.executable, "-m", "py_compile"],
             "js": ["node", "--check"]}[example.lang]
    proc = subprocess.run([*check, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The scripts it names exist, and their flags are ones they accept.
    for script, flags in re.findall(r"(benchmarks/\w+\.py)((?:\s+--[\w-]+(?:\s+[^-\s#]\S*)?)*)",
                                    example.code):
        assert (ROOT / script).is_file(), script
        help_text = subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=60)
        assert help_text.returncode == 0, help_text.stderr
        for flag in re.findall(r"--[\w-]+", flags):
            assert flag in help_text.stdout, f"{example.name}: {script} has no {flag}"


def test_node_examples_have_their_locked_packages() -> None:
    # scripts/setup.sh installs tests/examples/package-lock.json with `npm ci`.
    assert (NODE_MODULES / "ioredis" / "package.json").is_file(), "run scripts/setup.sh"
    proc = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("v")
