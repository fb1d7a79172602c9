"""HTTP fuzzing against our own OpenAPI description (schemathesis): no 500s, responses as
documented, invalid requests refused, and the reader never crashes meanwhile."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import httpx

from tests.conftest import TIMEOUT, make_settings, running_server


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a test dependency (pyproject [test])"
    return [found]


async def test_api_survives_schemathesis(redis_url: str, prefix: str, token: str,
                                         tmp_path: Path) -> None:
    settings = make_settings(redis_url, prefix)  # rate limit off: we want the logic, not 429s
    async with running_server(settings) as server:
        proc = await asyncio.create_subprocess_exec(
            *schemathesis_command(), "run", f"{server.http}/api/openapi.json",
            "-H", f"Authorization: Bearer {token}", "--checks", "all",
            # Our validation is stricter than JSON Schema can say (NFC, one line, no bidi
            # overrides...), so a schema-valid body may rightly get a 422.
            "--exclude-checks", "positive_data_acceptance",
            "--max-examples", "40", "--seed", "7", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path)  # its cache directory goes there, not into the checkout
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT * 18)
        report = out.decode(errors="replace")
        assert proc.returncode == 0, report[-6000:]
        assert "Tested: 14" in report
        # The fuzzing never hurt the node: the reader is alive and serving.
        assert server.runtime.reader.ready
        async with httpx.AsyncClient(base_url=server.http) as http:
            assert (await http.get("/readyz")).status_code == 200
