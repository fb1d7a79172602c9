"""The desk's urlencoded forms (sign-in, sign-out), parsed by Starlette's `request.form()`:
the body cap (413, Content-Length first, a stream cut off), 415 for another type, 400 for a
body that is not UTF-8 (raw or percent-decoded) or has too many fields, 422 naming an unknown
or repeated field; decoding exactly as before (raw and escaped UTF-8, `+`, malformed escapes
kept as text), and never a 500."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server
from tests.e2e.deskkit import Desk, add_user, login_form
from ticker.desk.pages import FORM_LIMIT

FORM = "application/x-www-form-urlencoded"
JSON = {"Accept": "application/json"}
ODD_PASSWORD = "pässwörd 😀 a+b 100%zz & ok=yes"


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as client:
        yield client


async def post(http: httpx.AsyncClient, path: str, body: bytes, ctype: str = FORM,
               accept_json: bool = True) -> httpx.Response:
    headers = {"Content-Type": ctype, **(JSON if accept_json else {})}
    return await http.post(path, content=body, headers=headers)


def echoed_username(page: str) -> str:
    """The user name the sign-in page shows again, as the browser reads it."""
    m = re.search(r'<input id="username" name="username" type="text" value="([^"]*)"', page)
    assert m is not None, page
    return html.unescape(m.group(1))


async def test_a_body_over_the_cap_is_413_and_one_at_the_cap_is_parsed(
    http: httpx.AsyncClient
) -> None:
    nonce = await login_form(http)
    head = f"csrf={nonce}&username=nobody&password=".encode()
    at_cap = head + b"x" * (FORM_LIMIT - len(head))
    r = await post(http, "/login", at_cap)
    assert r.status_code == 401, r.text  # parsed, checked, refused as a wrong password
    r = await post(http, "/login", at_cap + b"x")
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    assert str(FORM_LIMIT) in r.json()["message"]

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check
        yield head
        for _ in range(64):
            yield b"x" * 1024

    r = await http.post("/login", content=endless(), headers={"Content-Type": FORM, **JSON})
    assert r.status_code == 413
    r = await post(http, "/logout", b"csrf=" + b"x" * FORM_LIMIT)
    assert r.status_code == 413


async def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(
    server: Server
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Accept: application/json\r\n"
                     b"Content-Length: 10000000\r\n\r\n")
        await writer.drain()
        # Not one byte of the body sent: the answer comes from the header alone.
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert status.startswith(b"HTTP/1.1 413"), status
    finally:
        writer.close()


async def test_another_content_type_is_415(http: httpx.AsyncClient) -> None:
    for ctype in ("text/plain", "application/json", "multipart/form-data; boundary=x", ""):
        r = await post(http, "/login", b"username=alice&password=x", ctype)
        assert r.status_code == 415, (ctype, r.text)
        assert r.json()["error"] == "unsupported_media_type"
    r = await http.post("/login", files={"username": ("a.txt", b"alice")}, headers=JSON)
    assert r.status_code == 415
    # A charset parameter is fine (the form is UTF-8 whatever it says).
    r = await post(http, "/login", b"username=alice&password=x", FORM + "; charset=utf-8")
    assert r.status_code == 403 and r.json()["field"] == "csrf"


@pytest.mark.parametrize("username", [
    b"\xff",                 # a raw byte that is not UTF-8
    b"caf\xe9",              # Latin-1, raw
    b"caf%E9",               # Latin-1, percent-encoded
    b"%FF%FE",               # percent-encoded bytes that are no UTF-8 at all
    b"%C3",                  # a sequence cut short
    b"%ED%A0%80",            # an encoded surrogate
    b"%C0%AF",               # an overlong encoding
    b"\xc3%A9",              # half raw, half escaped: not one valid UTF-8 body
])
async def test_a_body_that_is_not_utf8_is_400(http: httpx.AsyncClient, username: bytes) -> None:
    nonce = await login_form(http)
    r = await post(http, "/login", b"csrf=" + nonce.encode() + b"&password=x&username=" + username)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "bad_request", "message": "form is not valid UTF-8"}
    r = await post(http, "/logout", b"csrf=" + username)
    assert r.status_code == 400


async def test_too_many_fields_is_400_and_one_extra_field_is_named(
    http: httpx.AsyncClient, server: Server, redis: Redis, prefix: str
) -> None:
    nonce = await login_form(http)
    five = {"csrf": nonce, "username": "a", "password": "b", "next": "/desk", "admin": "1"}
    r = await post(http, "/login", urlencode(five).encode())
    assert r.status_code == 422 and r.json()["field"] == "admin"  # named, not just counted
    r = await post(http, "/login", (urlencode(five) + "&more=2").encode())
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert "fields" in r.json()["message"].lower()
    r = await post(http, "/login", b"&".join([b"csrf=x"] * 1000))
    assert r.status_code == 400
    await add_user(redis, prefix, "alice")
    desk = await Desk.sign_in(server, "alice")
    try:
        r = await post(desk.http, "/logout", b"csrf=x&a=1&b=2")
        assert r.status_code == 400
        r = await post(desk.http, "/logout", b"csrf=x&a=1")
        assert r.status_code == 422 and r.json()["field"] == "a"
    finally:
        await desk.close()


async def test_unknown_and_repeated_fields_are_422_naming_the_field(
    http: httpx.AsyncClient, server: Server, redis: Redis, prefix: str
) -> None:
    nonce = await login_form(http)
    cases = [
        (f"csrf={nonce}&username=a&password=b&colour=red", "colour"),
        (f"csrf={nonce}&username=a&username=b&password=c", "username"),
        (f"csrf={nonce}&csrf={nonce}&username=a&password=b", "csrf"),
        (f"csrf={nonce}&username=a&password=b&{'x' * 100}=1", "x" * 40),
        (f"csrf={nonce}&username=a&password=b&%3Cscript%3E=1", "<script>"),
    ]
    for body, field in cases:
        r = await post(http, "/login", body.encode())
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"] == "invalid" and r.json()["field"] == field
    # The HTML form answers the same way: a 4xx, not a page that hides the problem.
    r = await post(http, "/login", cases[0][0].encode(), accept_json=False)
    assert r.status_code == 422 and r.json()["field"] == "colour"
    await add_user(redis, prefix, "alice")
    desk = await Desk.sign_in(server, "alice")
    try:
        r = await post(desk.http, "/logout", f"csrf={desk.csrf}&csrf={desk.csrf}".encode())
        assert r.status_code == 422 and r.json()["field"] == "csrf"
        r = await post(desk.http, "/logout", f"csrf={desk.csrf}".encode())
        assert r.status_code == 200 and r.json() == {"signed_out": True}
    finally:
        await desk.close()


async def test_raw_and_escaped_utf8_plus_and_malformed_escapes_decode_as_before(
    http: httpx.AsyncClient, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice", password=ODD_PASSWORD)
    # Escaped the browser's way, and raw UTF-8 as `curl -d` sends it: the same password.
    for password in (quote(ODD_PASSWORD, safe="").encode(),
                     ODD_PASSWORD.replace("%", "%25").replace("+", "%2B").replace("&", "%26")
                     .replace("=", "%3D").replace(" ", "+").encode()):
        http.cookies.clear()
        nonce = await login_form(http)
        r = await post(http, "/login",
                       b"csrf=" + nonce.encode() + b"&username=alice&password=" + password)
        assert r.status_code == 200 and r.json()["user"] == "alice", (password, r.text)
    http.cookies.clear()
    # What the sign-in page shows again is exactly what was decoded.
    for raw, shown in [
        ("jösé".encode(), "jösé"),
        (b"j%C3%B6s%C3%A9", "jösé"),
        ("j%C3%B6sé".encode(), "jösé"),
        (b"a+b%2Bc", "a b+c"),
        (b"100%zz%", "100%zz%"),            # not an escape: kept as typed
        (b"%4%G1%%41", "%4%G1%A"),
        (b"%3Cb%3E%22x%27", "<b>\"x'"),
        ("%EF%BF%BD\ufffd".encode(), "\ufffd\ufffd"),  # a real U+FFFD is text too
    ]:
        nonce = await login_form(http)
        r = await post(http, "/login", b"csrf=" + nonce.encode() + b"&password=wrong&username="
                       + raw, accept_json=False)
        assert r.status_code == 401, (raw, r.text)
        assert echoed_username(r.text) == shown, raw
    # A malformed escape in `next` is text that is not a desk path: 422, not 500.
    nonce = await login_form(http)
    r = await post(http, "/login", f"csrf={nonce}&username=alice&password=x&next=/desk%zz"
                   .encode())
    assert r.status_code == 422 and r.json()["field"] == "next"


async def test_odd_bodies_never_get_a_500(http: httpx.AsyncClient) -> None:
    nonce = await login_form(http)
    bodies = [b"", b"&", b"&&&&", b"=", b"==", b"csrf", b"csrf=", b"%", b"%%", b"%00",
              b"csrf=%00", b"\x00", b"a=b=c", b";;", b"+", b"%2", b"\xef\xbb\xbfcsrf=x",
              f"csrf={nonce}&username=%00&password=%00".encode(), b"csrf=" + b"%" * 5000]
    for body in bodies:
        for path in ("/login", "/logout"):
            r = await post(http, path, body)
            assert 200 <= r.status_code < 500, (path, body, r.status_code, r.text)
            if r.status_code >= 400:
                assert r.json()["message"]
