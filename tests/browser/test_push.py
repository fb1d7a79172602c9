"""Web Push in real Chromium, as far as Chromium goes offline (docs/push.md).

Chromium cannot reach a real push service here, so the page's PushManager.subscribe hands
back a subscription of the local push service (tests/e2e/pushservice.py), whose keys the
test holds; everything else is real: the bell, the permission asked on the click and never
before, the service worker registered from the ticker's origin, the subscription stored by
the server, the flash pushed, encrypted and signed to the push service, and the decrypted
payload delivered to the service worker (DevTools' ServiceWorker.deliverPushMessage, what
the browser does when its push service delivers), which shows the notification; the kill
then replaces it (the same tag).

What the worker shows is read from the worker itself (each showNotification call, and that
it resolved). Headless Chromium's notification store is not a reliable witness: now and then
getNotifications() stays empty after a showNotification that resolved."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, cast

import httpx
from playwright.async_api import Browser, Worker, expect
from redis.asyncio import Redis

from tests.conftest import ARTIFACTS, TIMEOUT, running_server
from tests.e2e.pushservice import push_service
from tests.e2e.test_push import push_settings
from ticker.core.push import topic
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens

FAKE_SUBSCRIBE = """
(sub) => {
  window.__permissionAsked = 0;
  const ask = Notification.requestPermission.bind(Notification);
  Notification.requestPermission = (...a) => { window.__permissionAsked += 1; return ask(...a); };
  const keyBytes = (b64) => Uint8Array.from(
    atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - b64.length % 4) % 4)),
    (c) => c.charCodeAt(0)).buffer;
  let current = null;
  PushManager.prototype.subscribe = async function (options) {
    window.__subscribedWith = options;
    current = {
      endpoint: sub.endpoint, expirationTime: null,
      getKey: (name) => keyBytes(sub.keys[name]),
      toJSON: () => sub,
      unsubscribe: async () => { current = null; return true; },
    };
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
}
"""


# Evaluated in the service worker: records each notification it shows, once shown.
WATCH_NOTIFICATIONS = """() => {
  self.__shown = [];
  const show = self.registration.showNotification.bind(self.registration);
  self.registration.showNotification = (title, options) => show(title, options).then(() => {
    const {body, tag, dir, data, renotify, silent} = options;
    self.__shown.push({title, body, tag, dir, data, renotify, silent});
  });
}"""


async def shown_after(worker: Worker, count: int) -> list[dict[str, Any]]:
    """The notifications the worker has shown, once there are `count` of them."""
    deadline = time.monotonic() + TIMEOUT
    while len(shown := await worker.evaluate("self.__shown")) < count:
        assert time.monotonic() < deadline, f"the worker showed {shown}"
        await asyncio.sleep(0.05)
    assert len(shown) == count, shown
    return cast(list[dict[str, Any]], shown)


async def test_opt_in_push_and_the_service_workers_notification(
    browser: Browser, redis: Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    token = await Tokens(redis, Keys(prefix)).create("push")
    settings = push_settings(redis_url, prefix, tmp_path)
    async with running_server(settings) as server, push_service() as service:
        reader = service.browser()
        context = await browser.new_context()
        try:
            await context.grant_permissions(["notifications"], origin=server.http)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # The init script cannot take arguments: the subscription is inlined as JSON.
            await page.add_init_script(
                f"({FAKE_SUBSCRIBE})({json.dumps(reader.subscription())})")
            await page.goto(server.http + "/?edition=en")
            ticker = page.locator("breaking-ticker")
            await expect(ticker).to_have_attribute("data-state", "live", timeout=10_000)
            bell = ticker.locator(".bell")
            await expect(bell).to_be_visible()
            await expect(bell).to_have_attribute("aria-pressed", "false")
            await expect(bell).to_have_accessible_name("Notify me of flash news")
            assert await page.evaluate("window.__permissionAsked") == 0  # nothing on load

            await bell.click()
            await expect(bell).to_have_attribute("aria-pressed", "true", timeout=10_000)
            await expect(bell).to_have_accessible_name(
                "Flash news notifications are on: turn off")
            assert await page.evaluate("window.__permissionAsked") == 1
            key = await page.evaluate(
                "btoa(String.fromCharCode(...new Uint8Array("
                "window.__subscribedWith.applicationServerKey)))")
            assert key.rstrip("=").replace("+", "-").replace("/", "_") == \
                server.runtime.push.public_key
            assert await server.runtime.push.store.count("en") == 1

            # A flash, pushed, encrypted and signed, to the push service.
            deadline = time.monotonic() + TIMEOUT
            while not server.runtime.push.leader:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(base_url=server.http,
                                         headers={"Authorization": f"Bearer {token}"}) as http:
                r = await http.post("/api/channels/en/items", json={
                    "text": "Three drones toward <Eilat>", "source": "Israeli media",
                    "urgency": "flash"})
                flash = r.json()["id"]
                (delivery,) = await service.wait_for(1)

                # The browser's push service hands it to the service worker.
                cdp = await context.new_cdp_session(page)
                registrations: list[dict[str, Any]] = []
                cdp.on("ServiceWorker.workerRegistrationUpdated",
                       lambda event: registrations.extend(event["registrations"]))
                await cdp.send("ServiceWorker.enable")
                deadline = time.monotonic() + TIMEOUT
                while not registrations:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                registration = registrations[0]["registrationId"]
                (worker,) = context.service_workers
                assert worker.url == server.http + "/ticker-sw.js"
                await worker.evaluate(WATCH_NOTIFICATIONS)
                await cdp.send("ServiceWorker.deliverPushMessage", {
                    "origin": server.http, "registrationId": registration,
                    "data": json.dumps(delivery.payload)})
                shown = await shown_after(worker, 1)
                assert shown == [{
                    "title": "Breaking", "body": "Israeli media: Three drones toward <Eilat>",
                    "tag": topic("en", flash), "dir": "ltr", "renotify": True, "silent": False,
                    "data": {"url": server.http + "/?edition=en", "id": flash,
                             "type": "flash"}}]

                # Killed: the withdrawal replaces the notification (same tag).
                r = await http.post(f"/api/channels/en/items/{flash}/kill",
                                    json={"reason": "not confirmed"})
                assert r.status_code == 201
                withdrawn = (await service.wait_for(2))[1]
                await cdp.send("ServiceWorker.deliverPushMessage", {
                    "origin": server.http, "registrationId": registration,
                    "data": json.dumps(withdrawn.payload)})
                withdrawal = (await shown_after(worker, 2))[1]
                assert withdrawal["tag"] == topic("en", flash)  # it replaces the flash
                assert withdrawal["body"] == \
                    "Withdrawn: Israeli media: Three drones toward <Eilat>"
                assert withdrawal["silent"] is True and withdrawal["renotify"] is False
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "push-bell.png"))

            # Turned off: the server forgets it.
            await bell.click()
            await expect(bell).to_have_attribute("aria-pressed", "false", timeout=10_000)
            assert await server.runtime.push.store.count("en") == 0
            assert not errors, errors
        finally:
            await context.close()


async def test_the_bell_stays_hidden_where_push_cannot_work(
    browser: Browser, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    async def bell_after_load(server_url: str, init: str = "") -> Any:
        context = await browser.new_context()
        page = await context.new_page()
        if init:
            await page.add_init_script(init)
        await page.goto(server_url + "/?edition=en")
        ticker = page.locator("breaking-ticker")
        await expect(ticker).to_have_attribute("data-state", "live", timeout=10_000)
        await page.wait_for_timeout(500)  # the key has been asked for
        return context, page, ticker.locator(".bell")

    settings = push_settings(redis_url, prefix, tmp_path)
    async with running_server(settings) as server:
        context, page, bell = await bell_after_load(server.http)
        try:
            await expect(bell).to_be_visible()
            # The page turns it off.
            await page.evaluate(
                "document.querySelector('breaking-ticker').setAttribute('notify', 'off')")
            await expect(bell).to_be_hidden()
        finally:
            await context.close()
        # The reader said no once: never asked again.
        context, _, bell = await bell_after_load(
            server.http,
            "Object.defineProperty(Notification, 'permission', {get: () => 'denied'})")
        try:
            await expect(bell).to_be_hidden()
        finally:
            await context.close()
        # The browser has no Push API.
        context, _, bell = await bell_after_load(server.http, "delete window.PushManager")
        try:
            await expect(bell).to_be_hidden()
        finally:
            await context.close()
    # The server has no push set up.
    async with running_server(settings.with_(push_key_file=str(tmp_path / "none.pem"))) \
            as server:
        context, _, bell = await bell_after_load(server.http)
        try:
            await expect(bell).to_be_hidden()
        finally:
            await context.close()
