"""A plain Server-Sent Events client over httpx streaming: what `EventSource` does, no library.

It parses the stream exactly as the HTML standard says (fields `id`, `data`, `retry`, comment
lines starting with ':'; a blank line ends a block) and hands back every block, so tests can
see the retry hints and heartbeats as well as the messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import TIMEOUT


@dataclass
class Block:
    """One blank-line-terminated block of the stream."""

    id: str | None = None
    data: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def message(self) -> dict[str, Any] | None:
        """The JSON message this block dispatches, if it has data."""
        if not self.data:
            return None
        value: dict[str, Any] = json.loads("\n".join(self.data))
        return value


class SSEStream:
    """Blocks of an open `text/event-stream` response, each within a bounded wait."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.ended = False

    async def block(self, timeout: float = TIMEOUT) -> Block:
        """The next block; raises EOFError when the server ended the stream."""
        block = Block()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = await asyncio.wait_for(self._lines.__anext__(),
                                              max(0.01, deadline - time.monotonic()))
            except StopAsyncIteration:
                self.ended = True
                raise EOFError("stream ended") from None
            if line == "":
                if block.data or block.id is not None or block.retry is not None \
                        or block.comments:
                    return block
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                block.comments.append(value)
            elif name == "id":
                block.id = value
            elif name == "data":
                block.data.append(value)
            elif name == "retry" and value.isdigit():
                block.retry = int(value)

    async def message(self, timeout: float = TIMEOUT) -> tuple[str | None, dict[str, Any]]:
        """(event id, JSON) of the next block that carries data."""
        deadline = time.monotonic() + timeout
        while True:
            block = await self.block(max(0.01, deadline - time.monotonic()))
            msg = block.message
            if msg is not None:
                return block.id, msg

    async def rest(self, timeout: float = TIMEOUT) -> list[Block]:
        """Every block until the server ends the stream."""
        blocks: list[Block] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                blocks.append(await self.block(max(0.01, deadline - time.monotonic())))
            except EOFError:
                return blocks
