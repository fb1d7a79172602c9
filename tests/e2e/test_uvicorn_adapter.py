"""Contract tests: one per uvicorn internal that ticker.ops.uvicorn_adapter relies on.

Each fails with a message that names the internal, so a uvicorn upgrade that breaks one says
which (scripts/upgrade runs these with everything else). The numbers are those of the
adapter's docstring. A test here checks that uvicorn still behaves as the adapter assumes;
what ticker builds on top is tested elsewhere.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import signal
import socket
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets

from tests.conftest import TIMEOUT, make_settings, recv_json, running_server
from tests.e2e.fleet import wait_for
from tests.e2e.ticker_node import node
from ticker.node.runtime import Runtime
from ticker.ops import uvicorn_adapter
from ticker.ops.server import uvicorn_config
from ticker.ops.uvicorn_adapter import TickerHttp, TickerServer, UvicornWebSocket
from ticker.ops.workers import listen_socket

REQUEST = (b"GET /ws/en HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def broken(internal: str, what: str) -> str:
    return (f"uvicorn {uvicorn.__version__} changed internal {internal} ({what}); "
            "ticker.ops.uvicorn_adapter relies on it: see its docstring")


async def raw_upgrade(port: int, request: bytes = REQUEST) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, request)
        return await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)


# -- 1. the protocol-class contract ------------------------------------------------------


def test_internal_1_config_takes_protocol_classes(redis_url: str, prefix: str) -> None:
    config = uvicorn_config(make_settings(redis_url, prefix))
    config.load()
    assert config.http_protocol_class is TickerHttp, broken(
        "1: Config(http=cls)", "a class given as http= is no longer the one used")
    assert config.ws_protocol_class is UvicornWebSocket, broken(
        "1: Config(ws=cls)", "a class given as ws= is no longer the one used")


async def test_internal_1_uvicorn_constructs_the_ws_class_on_its_own_upgrade_path(
        redis_url: str, prefix: str) -> None:
    # TICKER_UPGRADE_ROUTING=false (the fallback if internal 2 breaks): uvicorn's own
    # protocol sees the upgrade and must construct our class with config=, server_state=,
    # app_state= and replay the request to it.
    settings = make_settings(redis_url, prefix, upgrade_routing=False)
    assert uvicorn_config(settings).http == "httptools"
    async with node(settings) as server:
        answer = await raw_upgrade(server.port)
    assert answer.startswith(b"HTTP/1.1 101 "), broken(
        "1: ws= class construction", f"an upgrade through HttpToolsProtocol got {answer[:40]!r}")


async def test_internal_1_shutdown_is_called_on_every_connection(
        redis_url: str, prefix: str) -> None:
    async with node(make_settings(redis_url, prefix)) as server, \
            websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        connections = server.uvicorn.server_state.connections
        assert any(isinstance(c, UvicornWebSocket) for c in connections), broken(
            "1: ServerState.connections", "the ws= object is not in the set uvicorn keeps")
        await server.stop()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, broken(
        "1: shutdown()", "uvicorn no longer calls shutdown() on each connection as it stops")


# -- 2. HttpToolsProtocol and Config.ws_protocol_class ------------------------------------


def test_internal_2_httptools_protocol_takes_uvicorns_constructor_arguments() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    parameters = inspect.signature(HttpToolsProtocol).parameters
    assert {"config", "server_state", "app_state"} <= set(parameters), broken(
        "2: uvicorn.protocols.http.httptools_impl.HttpToolsProtocol",
        f"its constructor takes {list(parameters)}")
    assert uvicorn_adapter.HttpToolsProtocol is HttpToolsProtocol


def test_internal_2_ws_protocol_class_is_none_when_websockets_are_off(
        redis_url: str, prefix: str) -> None:
    config = uvicorn_config(make_settings(redis_url, prefix), ws="none")
    config.load()
    assert hasattr(config, "ws_protocol_class") and config.ws_protocol_class is None, broken(
        "2: Config.ws_protocol_class", "no longer None when ws='none'")


async def test_internal_2_plain_requests_reach_the_app_through_httptools(
        redis_url: str, prefix: str) -> None:
    async with running_server(make_settings(redis_url, prefix)) as server, \
            httpx.AsyncClient(base_url=server.http) as http:
        answer = await http.get("/healthz")
    assert answer.status_code == 200, broken(
        "2: HttpToolsProtocol handed a connection", f"GET /healthz answered {answer.status_code}")


# -- 3. main_loop, on_tick, should_exit ------------------------------------------------------


def test_internal_3_main_loop_and_on_tick_exist_as_the_adapter_overrides_them() -> None:
    assert inspect.iscoroutinefunction(uvicorn.Server.main_loop), broken(
        "3: Server.main_loop", "not a coroutine method")
    assert inspect.iscoroutinefunction(uvicorn.Server.on_tick), broken(
        "3: Server.on_tick", "not a coroutine method")
    assert list(inspect.signature(uvicorn.Server.on_tick).parameters) == ["self", "counter"], \
        broken("3: Server.on_tick(counter)", "its parameters changed")


async def test_internal_3_on_tick_answers_should_exit(redis_url: str, prefix: str) -> None:
    server = TickerServer(uvicorn_config(make_settings(redis_url, prefix)), client_timeout=0)
    server.config.load()
    assert await server.on_tick(0) is False, broken("3: Server.on_tick", "True while running")
    server.should_exit = True
    assert await server.on_tick(0) is True, broken(
        "3: Server.on_tick", "does not answer True once should_exit is set")


def test_internal_3_the_signal_handler_sets_should_exit(redis_url: str, prefix: str) -> None:
    server = TickerServer(uvicorn_config(make_settings(redis_url, prefix)), client_timeout=0)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit, broken(
        "3: Server.handle_exit / should_exit", "SIGTERM no longer sets should_exit")


async def test_internal_3_our_main_loop_stops_when_should_exit_is_set(
        redis_url: str, prefix: str) -> None:
    async with node(make_settings(redis_url, prefix)) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.stop()  # sets should_exit: the loop must wake at once, not next second
        assert loop.time() - started < 0.9, broken(
            "3: Server.main_loop", "should_exit did not wake the main loop")


# -- 4. servers, lifespan.state, startup, shutdown --------------------------------------


async def test_internal_4_servers_and_lifespan_state_after_startup(
        redis_url: str, prefix: str) -> None:
    async with node(make_settings(redis_url, prefix)) as server:
        servers = getattr(server.uvicorn, "servers", None)
        assert servers and all(hasattr(s, "close") for s in servers), broken(
            "4: Server.servers", "no list of asyncio servers after startup")
        state = server.uvicorn.lifespan.state
        assert isinstance(state.get("ticker"), Runtime), broken(
            "4: Server.lifespan.state", "the app's lifespan state is not there")
    for method in ("startup", "shutdown"):
        parameters = inspect.signature(getattr(uvicorn.Server, method)).parameters
        assert "sockets" in parameters, broken(f"4: Server.{method}(sockets)",
                                               f"takes {list(parameters)}")


async def test_internal_4_the_drain_runs_before_uvicorns_connection_shutdown(
        redis_url: str, prefix: str) -> None:
    # Drained readers are told 1012 while the listeners are already closed: a reconnect
    # must go elsewhere, never to the stopping node.
    async with node(make_settings(redis_url, prefix)) as server, \
            websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        stopping = asyncio.create_task(server.stop())
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        with pytest.raises(OSError):
            await raw_upgrade(server.port)
        await stopping
    assert server.runtime.draining, broken("4: Server.shutdown", "the drain step did not run")


async def test_the_client_timeout_is_on_every_listening_socket_whoever_made_it(
        redis_url: str, prefix: str) -> None:
    # Accepted connections inherit it from the listener (test_partitions.py shows the
    # effect): uvicorn's own socket from host and port, and a worker's handed in.
    def user_timeout(sock: socket.socket) -> int:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)

    settings = make_settings(redis_url, prefix, client_timeout=2.5)
    async with node(settings) as server:
        listeners = [sock for s in server.uvicorn.servers for sock in s.sockets]
        assert listeners and all(user_timeout(sock) == 2500 for sock in listeners)
    handed = listen_socket("127.0.0.1", 0, listen=False)
    worker = TickerServer(uvicorn_config(settings), client_timeout=settings.client_timeout)
    task = asyncio.create_task(worker.serve(sockets=[handed]))
    try:
        await wait_for(lambda: worker.started, "the worker's server to start")
        assert user_timeout(handed) == 2500
    finally:
        worker.should_exit = True
        await task
        handed.close()
    off = make_settings(redis_url, prefix, client_timeout=0.0)
    async with node(off) as server:  # 0: the kernel's own, left alone
        assert all(user_timeout(sock) == 0 for s in server.uvicorn.servers for sock in s.sockets)


# -- the boundary itself ------------------------------------------------------------------


def test_no_module_but_the_adapter_reaches_into_uvicorn() -> None:
    # `uvicorn` itself (Config, Server) is its public API; its submodules are not.
    package = Path(uvicorn_adapter.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "uvicorn_adapter.py":
            continue
        for stmt in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in stmt.names] if isinstance(stmt, ast.Import) else \
                [stmt.module or ""] if isinstance(stmt, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("uvicorn.")]
    assert offenders == [], "uvicorn internals outside ticker/ops/uvicorn_adapter.py"
