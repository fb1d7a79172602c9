"""The quick way of ticker.transport.upgrade against the library's way, request by request.

Every head of a corpus (plain ones, near-plain ones and broken ones, built from variations of
what browsers and tools send) is read both ways. Whatever the quick way reads, httptools
reads alike; whatever the quick way accepts, the library accepts with the same accept key;
and the requests readers send are the ones it accepts.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidHandshake

from ticker.transport import upgrade
from ticker.transport.websocket import VALIDATOR, parse_request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example
LOADGEN = (f"GET /ws/en HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n")
CHROME = ("GET /ws/en?cursor=1732662001000-0 HTTP/1.1\r\nHost: news.example\r\n"
          "Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
          "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/156.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n"
          "Origin: https://news.example\r\nSec-WebSocket-Version: 13\r\n"
          "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: ar,en;q=0.9\r\n"
          "Cookie: session=abc; theme=dark\r\n"
          f"Sec-WebSocket-Key: {KEY}\r\n"
          "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
FIREFOX = ("GET /ws/es HTTP/1.1\r\nHost: news.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux "
           "x86_64; rv:140.0) Gecko/20100101 Firefox/140.0\r\nAccept: */*\r\n"
           "Accept-Language: es-ES,es;q=0.8\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
           "Sec-WebSocket-Version: 13\r\nOrigin: https://news.example\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\nConnection: keep-alive, Upgrade\r\n"
           "Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\n"
           "Pragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n")
READERS = [LOADGEN, CHROME, FIREFOX]
# What deploy/nginx.conf passes on: its own headers first (a request ID for every request),
# then the client's.
NGINX = ("GET /ws/en HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
         "Host: news.example\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
         "X-Request-ID: 5d41402abc4b2a76b9719d911017c592\r\n"
         "Origin: https://news.example\r\nSec-WebSocket-Version: 13\r\n"
         f"Sec-WebSocket-Key: {KEY}\r\n\r\n")
REQUEST_ID = "5d41402abc4b2a76b9719d911017c592"

# Each a change to one line of a request: (what it replaces, what with).
HEADER_CHANGES = [
    ("Upgrade: websocket", "Upgrade: WebSocket"), ("Upgrade: websocket", "upgrade:websocket"),
    ("Upgrade: websocket", "Upgrade: h2c"), ("Upgrade: websocket", "Upgrade: websocket, h2c"),
    ("Upgrade: websocket", "Upgrade: websocket/13"), ("Upgrade: websocket", ""),
    ("Upgrade: websocket", "Upgrade: websocket\r\nUpgrade: websocket"),
    ("Upgrade: websocket", "Upgrade: websocket "), ("Upgrade: websocket", "Upgrade:\twebsocket"),
    ("Upgrade: websocket", "Upgrade : websocket"), ("Upgrade: websocket", "Upgrade: web socket"),
    ("Connection: Upgrade", "Connection: upgrade"), ("Connection: Upgrade", "Connection: close"),
    ("Connection: Upgrade", "Connection: Upgrade, keep-alive"),
    ("Connection: Upgrade", "Connection: keep-alive\r\nConnection: Upgrade"),
    ("Connection: Upgrade", "Connection: Upgrade,,"), ("Connection: Upgrade", "Connection: ,"),
    ("Connection: Upgrade", "Connection: Up grade"), ("Connection: Upgrade", ""),
    ("Connection: Upgrade", "Connection: Upgrade\r\n continued"),
    ("Connection: Upgrade", "Connection: Upgr\xe4de"),
    ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
    ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13, 8"),
    ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13"),
    ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 013"),
    ("Sec-WebSocket-Version: 13", ""), ("Sec-WebSocket-Version: 13", "sec-websocket-version: 13"),
    (f"Sec-WebSocket-Key: {KEY}", ""),
    (f"Sec-WebSocket-Key: {KEY}", f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: {KEY}"),
    (f"Sec-WebSocket-Key: {KEY}", f"sec-websocket-key:{KEY}"),
    (f"Sec-WebSocket-Key: {KEY}", f"Sec-WebSocket-Key:   {KEY}"),
    (f"Sec-WebSocket-Key: {KEY}", f"Sec-WebSocket-Key: {KEY} "),
    ("Host: ", "Host:"), ("Host: ", "Host: \r\nHost: "), ("Host: ", "X-Host: "),
    ("GET ", "POST "), ("GET ", "get "), ("GET ", "GET  "), (" HTTP/1.1", " HTTP/1.0"),
    (" HTTP/1.1", " HTTP/2.0"), (" HTTP/1.1", " http/1.1"), ("/ws/", "/ws/%20"),
    ("/ws/", "/ws/\xe9"), ("/ws/", "/ws/{x}/"), ("/ws/", "/ws/\"x\"/"), ("/ws/", "//ws/"),
    ("\r\n\r\n", "\r\nOrigin: https://a.example\r\nOrigin: https://b.example\r\n\r\n"),
    ("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n"),
    ("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat,, \"x\"\r\n\r\n"),
    ("\r\n\r\n", "\r\nSec-WebSocket-Extensions: ;;;\r\n\r\n"),
    ("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"), ("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\n"),
    ("\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("\r\n\r\n", "\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"),
    ("\r\n\r\n", "\r\nX-Empty:\r\n\r\n"), ("\r\n\r\n", "\r\nX-Bare\r\n\r\n"),
    ("\r\n\r\n", "\r\n: no name\r\n\r\n"), ("\r\n\r\n", "\r\nX-Ctl: a\x01b\r\n\r\n"),
    ("\r\n\r\n", "\r\nX-Del: a\x7fb\r\n\r\n"), ("\r\n\r\n", "\r\nX-Lf: a\nb\r\n\r\n"),
    ("\r\n\r\n", "\r\nX-Cr: a\rb\r\n\r\n"), ("\r\n\r\n", "\r\nX(y): z\r\n\r\n"),
    ("\r\n\r\n", "\r\nX-Tab: \ta\tb\r\n\r\n"), ("\r\n", "\n"),
]


def variants() -> Iterator[str]:
    """Every reader's request, each with one change and with each pair of changes."""
    rng = random.Random(6455)
    for base in READERS:
        yield base
        changes = [(a, b) for a, b in HEADER_CHANGES if a in base]
        for old, new in changes:
            yield base.replace(old, new, 1)
        for (old1, new1), (old2, new2) in rng.sample(list(itertools.combinations(changes, 2)),
                                                      400):
            yield base.replace(old1, new1, 1).replace(old2, new2, 1)


def library(head: bytes) -> bytes | str:
    """The library's way: the accept key, or what went wrong."""
    try:
        request = parse_request(head)
        accept, _, _ = VALIDATOR.process_request(request)
    except (ValueError, InvalidHandshake) as exc:
        return f"{type(exc).__name__}: {exc}"
    return accept.encode()


@pytest.fixture(autouse=True)
def fresh_shapes() -> Iterator[None]:
    saved, saved_heads = dict(upgrade.accepted), dict(upgrade.heads)
    upgrade.accepted.clear()
    upgrade.heads.clear()
    yield
    upgrade.accepted.clear()
    upgrade.accepted.update(saved)
    upgrade.heads.clear()
    upgrade.heads.update(saved_heads)


def test_what_the_quick_way_reads_httptools_reads_alike() -> None:
    plain = 0
    for text in variants():
        head = text.encode("latin-1")
        read = upgrade.read_plain(head)
        if read is None:
            continue
        plain += 1
        request = parse_request(head)  # httptools reads every plain head
        assert read.target == request.path, text
        expected: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            expected.setdefault(name.lower(), []).append(value)
        assert read.fields == expected, text  # each header's values, in order
        for name in ("Host", "Origin", "X-Forwarded-For", "Connection", "upgrade"):
            assert read.get_all(name) == request.headers.get_all(name), text
        assert upgrade.plain_shape(read.fields) == upgrade.shape(request.headers.get_all)
    assert plain > 300  # the corpus has plain heads, and most of the readers' variations are


def test_not_plain() -> None:
    for text in ["GET /ws/en HTTP/1.1\r\nHost: x\r\n\r\nrest",  # not the head alone
                 "GET /ws/en HTTP/1.1\r\nHost: x\r\n",
                 "GET /ws/en HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                 "GET /ws/en HTTP/1.1\nHost: x\r\n\r\n",
                 "GET /ws/en HTTP/1.1\r\nHost: x \r\n\r\n",
                 "GET /ws/en HTTP/1.1\r\nHost : x\r\n\r\n",
                 "GET /ws/é HTTP/1.1\r\nHost: x\r\n\r\n",
                 "GET /ws/en HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n"]:
        assert upgrade.read_plain(text.encode()) is None, text
    read = upgrade.read_plain(b"GET /ws/en?cursor=1-0 HTTP/1.1\r\nHost:x\r\nA: 1\r\na:  2\r\n\r\n")
    assert read is not None
    assert read.target == "/ws/en?cursor=1-0"
    assert read.fields == {"host": ["x"], "a": ["1", "2"]}


def test_what_the_quick_way_accepts_the_library_accepts_alike() -> None:
    corpus = [text.encode("latin-1") for text in variants()]
    verdicts = {head: library(head) for head in corpus}
    # What a process has seen: the library accepted some of it (and only that is kept).
    for head, verdict in verdicts.items():
        if isinstance(verdict, bytes):
            upgrade.remember(parse_request(head))
    assert 1 < len(upgrade.accepted) < 100
    quick = 0
    for head in corpus:
        read = upgrade.read_plain(head)
        accept = None if read is None else upgrade.known_accept(read)
        if accept is not None:
            quick += 1
            assert verdicts[head] == accept, head
    assert quick > 150
    for text in READERS:  # what readers send is answered the quick way
        read = upgrade.read_plain(text.encode())
        assert read is not None and upgrade.known_accept(read) == verdicts[text.encode()]


def test_a_shape_the_library_refused_is_not_remembered() -> None:
    refused = LOADGEN.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8").encode()
    assert not isinstance(library(refused), bytes)
    read = upgrade.read_plain(refused)
    assert read is not None and upgrade.known_accept(read) is None
    upgrade.remember(parse_request(LOADGEN.encode()))
    assert upgrade.known_accept(read) is None  # another shape


def keys() -> Iterator[str]:
    rng = random.Random(4)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for n in (0, 1, 8, 15, 16, 17, 18, 24, 32):
        yield base64.b64encode(os.urandom(n)).decode()
    for _ in range(3000):
        key = list(base64.b64encode(os.urandom(16)).decode())
        for _ in range(rng.randint(0, 2)):
            spot = rng.randrange(len(key))
            key[spot] = rng.choice(alphabet + "=-_.!*~ \t\xe9")
        if rng.random() < 0.2:
            del key[rng.randrange(len(key))]
        if rng.random() < 0.2:
            key.insert(rng.randrange(len(key) + 1), rng.choice(alphabet + "="))
        yield "".join(key)
    yield "dGhlIHNhbXBsZSBub25jZR=="  # non-zero bits after the last byte
    yield "dGhlIHNhbXBsZSBub25jZQ="
    yield "dGhlIHNhbXBsZSBub25jZQ"


def test_the_key_is_checked_as_the_library_checks_it() -> None:
    upgrade.remember(parse_request(LOADGEN.encode()))
    accepted = refused = 0
    for key in keys():
        head = LOADGEN.replace(KEY, key).encode("latin-1")
        verdict = library(head)
        read = upgrade.read_plain(head)
        quick = None if read is None else upgrade.known_accept(read)
        if isinstance(verdict, bytes):
            accepted += 1
            # A key with spaces inside is not plain; everything the library takes is else.
            assert quick == verdict or (quick is None and (" " in key or "\t" in key)), key
        else:
            refused += 1
            assert quick is None, (key, verdict)
    assert accepted > 500 and refused > 500


def test_the_shapes_kept_are_bounded() -> None:
    for n in range(upgrade.MAX_SHAPES + 50):
        upgrade.remember(parse_request(
            LOADGEN.replace("Connection: Upgrade", f"Connection: Upgrade, x{n}").encode()))
    assert len(upgrade.accepted) == upgrade.MAX_SHAPES


def test_the_accept_key_is_rfc_6455s() -> None:
    assert upgrade.accept_key(KEY.encode()) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


def known_head(head: bytes) -> tuple[upgrade.PlainHead, bytes] | None:
    """`head` looked up among the remembered heads, as `TickerWebSocket._upgrade` does."""
    parts = upgrade.cut(head)
    return None if parts is None else upgrade.known_head(parts)


def quick(head: bytes) -> bytes | None:
    """The websocket's quick way (`TickerWebSocket._upgrade`): from a remembered head, else
    read and judged by shape, then remembered."""
    known = known_head(head)
    if known is not None:
        return known[1]
    read = upgrade.read_plain(head)
    accept = None if read is None else upgrade.known_accept(read)
    parts = upgrade.cut(head)
    if read is not None and accept is not None and parts is not None:
        upgrade.remember_head(parts[0], read)
    return accept


def test_a_head_remembered_but_for_its_key_is_answered_as_the_library_answers() -> None:
    for text in READERS:
        upgrade.remember(parse_request(text.encode()))
        assert quick(text.encode()) is not None
    assert len(upgrade.heads) == len(READERS)
    for text in READERS:
        accepted = refused = 0
        for key in keys():
            head = text.replace(KEY, key).encode("latin-1")
            verdict = library(head)
            known = known_head(head)
            if isinstance(verdict, bytes):
                accepted += 1
                # A key with spaces in it is read again (it is not plain).
                assert known is not None or " " in key or "\t" in key, key
            else:
                refused += 1
                assert known is None, (key, verdict)
            if known is not None:
                read, accept = known
                assert accept == verdict, key
                request = parse_request(head)
                assert read.target == request.path
                for name in ("Host", "Origin", "X-Forwarded-For"):
                    assert read.get_all(name) == request.headers.get_all(name)
        assert accepted > 500 and refused > 500


def test_a_head_that_differs_in_more_than_its_key_is_read_again() -> None:
    for text in READERS:
        upgrade.remember(parse_request(text.encode()))
        quick(text.encode())
    other = "AAAAAAAAAAAAAAAAAAAAAA=="
    changed = [text for text in variants() if text not in READERS]
    for text in changed:
        assert known_head(text.encode("latin-1")) is None, text
        # The same change with another key: not from memory either.
        assert known_head(text.replace(KEY, other).encode("latin-1")) is None, text
    # Each answered the quick way (and so remembered) as the library answers it; a head seen
    # again (the corpus repeats some) then from memory, alike.
    answered = 0
    for text in changed:
        again = text.replace(KEY, other).encode("latin-1")
        accept = quick(again)
        if accept is not None:
            answered += 1
            assert accept == library(again), text
    assert answered > 100
    # The key spelled otherwise than browsers spell it: never from memory.
    for spelling in ("sec-websocket-key: ", "Sec-WebSocket-Key:", "Sec-WebSocket-Key:  "):
        head = LOADGEN.replace("Sec-WebSocket-Key: ", spelling).encode()
        assert known_head(head) is None, spelling


def test_the_heads_kept_are_bounded_and_the_oldest_goes_first() -> None:
    upgrade.remember(parse_request(LOADGEN.encode()))
    targets = [f"/ws/en?cursor={n}-0" for n in range(upgrade.MAX_HEADS + 10)]
    for target in targets:
        head = LOADGEN.replace("/ws/en", target).encode()
        assert quick(head) is not None
    assert len(upgrade.heads) == upgrade.MAX_HEADS
    newest = LOADGEN.replace("/ws/en", targets[-1]).replace(KEY, "A" * 22 + "==").encode()
    oldest = LOADGEN.replace("/ws/en", targets[0]).replace(KEY, "A" * 22 + "==").encode()
    assert known_head(newest) is not None
    assert known_head(oldest) is None


def request_ids() -> Iterator[str]:
    rng = random.Random(19)
    yield from ("", "x", "a b", " a", "a ", "a\tb", "a\x01b", "a\x7fb", "caf\xe9", "a" * 300,
                "0f" * 16, "a\rb", "a\nb", "a:b", "\t")
    for _ in range(300):
        alphabet = "0123456789abcdef -_\t:\x00\xe9"
        yield "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def test_a_balancers_request_id_is_cut_like_the_key() -> None:
    # nginx gives every request its own ID: without the cut no head behind it is ever known.
    key_first = NGINX.replace(f"X-Request-ID: {REQUEST_ID}\r\n", "").replace(
        "\r\n\r\n", f"\r\nX-Request-ID: {REQUEST_ID}\r\n\r\n")
    for text in (NGINX, key_first):
        upgrade.remember(parse_request(text.encode()))
        assert quick(text.encode()) is not None
    assert len(upgrade.heads) == 2
    remembered = upgrade.read_plain(NGINX.encode())
    assert remembered is not None
    known = 0
    for text in (NGINX, key_first):
        for n, rid in enumerate(request_ids()):
            key = base64.b64encode(n.to_bytes(16, "big")).decode()
            head = text.replace(REQUEST_ID, rid).replace(KEY, key).encode("latin-1")
            verdict = library(head)
            read = upgrade.read_plain(head)
            found = known_head(head)
            if found is None:
                # Not from memory only where the head is not plain (read, then the library).
                assert read is None, rid
                continue
            known += 1
            assert read is not None, rid  # from memory: a plain head, as httptools reads it
            assert found[1] == verdict, rid
            for name in ("Host", "Origin", "X-Forwarded-For"):
                assert found[0].get_all(name) == read.get_all(name) == remembered.get_all(name)
            assert found[0].target == read.target
    assert known > 150
