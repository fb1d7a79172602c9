"""The webhook rules that need no network: which addresses may be called (checked where the
check is made, so that no test sends a packet anywhere, even if the check were broken), the
subscription's input, what it wants, the body and id, backoff and Retry-After."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ticker.core.addresses import check_destination, parse_allowed, refused
from ticker.core.errors import ValidationError
from ticker.core.webhooks import Subscription, check_url, event_body, message_id, subscription
from ticker.node.outbound import Sender, backoff, retry_after_of
from ticker.node.webhooks import MAX_BACKOFF, key_of, place_of

NONE = parse_allowed("")

INTERNAL = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "169.254.169.254",  # the cloud metadata service
    "169.254.0.1", "100.64.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "255.255.255.255",
    "192.0.2.1", "198.18.0.1", "240.0.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:8.8.8.8",  # IPv4-mapped: refused whatever it maps
    "64:ff9b::a00:1", "2002:a00:1::1", "2001::1", "2001:db8::1", "fec0::1",
    "fd00:ec2::254",  # AWS's IPv6 metadata address
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450::1"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refused(ipaddress.ip_address(address))
    with pytest.raises(ValidationError) as caught:
        check_destination("hooks.example", [address], NONE)
    assert caught.value.field == "url" and "internal address" in caught.value.message


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert check_destination("hooks.example", [address], NONE) == [address]


def test_a_name_is_refused_if_any_address_it_resolves_to_is_internal() -> None:
    with pytest.raises(ValidationError, match=r"169\.254\.169\.254"):
        check_destination("metadata.example", ["8.8.8.8", "169.254.169.254"], NONE)
    with pytest.raises(ValidationError, match="does not resolve"):
        check_destination("nothing.example", [], NONE)


def test_what_an_operator_allows() -> None:
    allowed = parse_allowed(" 127.0.0.1 , 10.2.0.0/16, Hooks.Internal., [::1] ")
    assert check_destination("x", ["127.0.0.1"], allowed) == ["127.0.0.1"]
    assert check_destination("x", ["10.2.3.4", "::1"], allowed) == ["10.2.3.4", "::1"]
    with pytest.raises(ValidationError):
        check_destination("x", ["10.3.0.1"], allowed)  # outside the allowed network
    with pytest.raises(ValidationError):
        check_destination("x", ["169.254.169.254"], allowed)
    # An allowed name passes whatever it resolves to (the operator named it).
    assert check_destination("hooks.internal", ["10.9.9.9"], allowed) == ["10.9.9.9"]
    for bad in ("not a host!", "10.0.0.0/33", "héllo.example"):
        with pytest.raises(ValidationError) as caught:
            parse_allowed(bad)
        assert caught.value.field == "TICKER_WEBHOOK_ALLOW"


def test_the_sender_checks_what_a_name_resolves_to_before_anything_is_sent() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"metadata.example": ["169.254.169.254"], "lan.example": ["192.168.0.10"],
                "public.example": ["93.184.216.34"]}[host]

    async def check() -> None:
        sender = Sender(NONE, 5.0, resolver)
        try:
            for host in ("metadata.example", "lan.example", "169.254.169.254", "[::1]",
                         "10.0.0.1"):
                with pytest.raises(ValidationError):
                    await sender.addresses(host, 443)
            assert await sender.addresses("public.example", 443) == ["93.184.216.34"]
        finally:
            await sender.close()

    asyncio.run(check())


def test_subscription_input() -> None:
    sub = subscription(" https://push.example/t?x=1 ", ["ar", "en", "en"], ("en", "ar"),
                       ["FLASH", "urgent"], ["kill", "publish"], by="maria", created=5)
    assert sub.url == "https://push.example/t?x=1"
    assert sub.channels == ("en", "ar") and sub.urgencies == ("flash", "urgent")
    assert sub.ops == ("publish", "kill") and sub.id.startswith("wh_")
    assert Subscription.loads(sub.dumps()) == sub
    bad = {
        "javascript:alert(1)": "https://", "https://u:p@x.example/": "user name",
        "https://x.example/a b": "without spaces", "https://x.example/#f": "fragment",
        "https://": "host", "https://x.example:0/": "port 0", "https://x.example:99999/":
        "not a valid URL", "https://bad_host!.example/": "host",
        "https://x.example/\u00e9": "printable ASCII",
    }
    for url, why in bad.items():
        with pytest.raises(ValidationError) as caught:
            check_url(url)
        assert caught.value.field == "url" and why in caught.value.message, url
    for channels, urgencies, ops, field in ((["fr"], [], [], "channels"),
                                            ([], [], [], "channels"),
                                            (["en"], ["huge"], [], "urgencies"),
                                            (["en"], [], ["confirm"], "ops"),
                                            (["en"], [5], [], "urgencies")):
        with pytest.raises(ValidationError) as caught:
            subscription("https://x.example/", channels, ("en",), urgencies, ops, by="x",
                         created=0)
        assert caught.value.field == field


def test_what_a_subscription_wants_and_what_it_is_sent() -> None:
    sub = Subscription(id="wh_abcdefghijkmnpqr", url="https://x.example/", channels=("en",),
                       urgencies=("flash",), ops=("publish", "kill"))
    assert sub.wants("en", "publish", "flash")
    assert not sub.wants("en", "publish", "breaking")
    assert not sub.wants("ar", "publish", "flash")
    assert not sub.wants("en", "correct", "flash")
    everything = Subscription(id=sub.id, url=sub.url, channels=("en",))
    assert everything.wants("en", "versions", None)
    event = {"op": "kill", "cursor": "5-0", "id": "1-0"}
    assert json.loads(event_body("en", event)) == {"type": "item.killed", "channel": "en",
                                                   **event}
    assert message_id(sub.id, "en", "5-0.2") == "msg_abcdefghijkmnpqr_en_5-0.2"
    assert key_of(place_of((5, 0, 2))) == (5, 0, 2) and place_of((5, 1, 0)) == "5-1"


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    for attempts in range(8):
        delay = backoff(attempts, 1.0, None)
        assert 2 ** attempts / 2 <= delay <= 2 ** attempts
    assert backoff(40, 1.0, None) <= MAX_BACKOFF
    assert backoff(0, 1.0, 120.0) == 120.0
    now = datetime(2026, 12, 5, tzinfo=UTC)
    assert retry_after_of("30", now.timestamp()) == 30.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_of(later, now.timestamp()) == pytest.approx(90.0)
    assert retry_after_of("soon", now.timestamp()) is None
    assert retry_after_of(None, now.timestamp()) is None
