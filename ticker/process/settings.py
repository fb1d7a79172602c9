"""Settings, read once from `TICKER_*` environment variables (the only reader of os.environ).

Command-line flags override the environment; every setting is listed in `SETTINGS`, which
`ticker serve --help` prints, so the help text and the code cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ticker.core.addresses import parse_allowed
from ticker.core.channels import Channel
from ticker.core.errors import ConfigError, ValidationError
from ticker.core.items import CHANNEL_PATTERN

RTL_LANGUAGES = frozenset({"ar", "arc", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug", "ur", "yi"})
CHANNEL_NAME = re.compile(rf"^{CHANNEL_PATTERN}$")


def parse_channels(spec: str) -> tuple[Channel, ...]:
    """Parse `name[:lang[:dir[:title]]]` entries separated by commas.

    `en,ar` gives English left-to-right and Arabic right-to-left; `lang` defaults to the
    name, `dir` follows the language, `title` defaults to "Breaking".
    """
    channels: list[Channel] = []
    for raw in spec.split(","):
        raw = raw.strip()
        if not raw:
            continue
        parts = [p.strip() for p in raw.split(":", 3)]
        name = parts[0]
        if not CHANNEL_NAME.match(name):
            raise ConfigError(
                f"channel name {name!r} must be 1-32 of a-z, 0-9, '-', '_'",
                field="TICKER_CHANNELS",
            )
        lang = parts[1] if len(parts) > 1 and parts[1] else name
        direction = parts[2] if len(parts) > 2 and parts[2] else (
            "rtl" if lang.split("-")[0] in RTL_LANGUAGES else "ltr"
        )
        if direction not in ("ltr", "rtl"):
            raise ConfigError(
                f"channel {name!r}: direction must be ltr or rtl, not {direction!r}",
                field="TICKER_CHANNELS",
            )
        title = parts[3] if len(parts) > 3 and parts[3] else "Breaking"
        if any(c.name == name for c in channels):
            raise ConfigError(f"channel {name!r} is listed twice", field="TICKER_CHANNELS")
        channels.append(Channel(name=name, lang=lang, dir=direction, title=title))
    if not channels:
        raise ConfigError("at least one channel is needed", field="TICKER_CHANNELS")
    return tuple(channels)


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its attribute, environment variable, flag, kind and help text."""

    attr: str
    kind: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return "TICKER_" + self.attr.upper()

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)"),
    Setting("port", int, 8000, "port for HTTP, websockets and SSE"),
    Setting("redis_url", str, "",
            "Redis to use (redis://, rediss://, unix://, redis+sentinel://host:port,.../master"
            "[/db]); empty: start an embedded redis-server"),
    Setting("redis_cluster", bool, False,
            "the Redis URL is a Redis Cluster node (stream keys are hash-tagged per channel)"),
    Setting("data_dir", str, "ticker-data",
            "directory of the embedded Redis (AOF persistence) and its lock"),
    Setting("embedded_redis_port", int, 0,
            "TCP port of the embedded Redis on 127.0.0.1 (0: a free one)"),
    Setting("channels", str, "en", "editions as name[:lang[:dir[:title]]],... e.g. 'en,ar'"),
    Setting("key_prefix", str, "ticker", "prefix of every Redis key this server uses"),
    Setting("max_items", int, 20, "most items on air per channel"),
    Setting("stream_maxlen", int, 10000,
            "entries kept per channel stream (approximate); also the resume window"),
    Setting("allowed_origins", str, "",
            "extra origins allowed to open websockets, comma separated ('*': any)"),
    Setting("ping_interval", float, 20.0, "seconds between websocket pings (0: none)"),
    Setting("upgrade_routing", bool, True,
            "hand websocket upgrades to the endpoint before uvicorn parses them (less CPU per "
            "connect); false: uvicorn's own HTTP parser hands them over (no uvicorn internal "
            "beyond the protocol-class contract: a fallback if a uvicorn release breaks it)"),
    Setting("client_buffer", int, 256 * 1024,
            "bytes queued to one websocket before it counts as slow and stops getting live frames"),
    Setting("socket_sndbuf", int, 0,
            "kernel send buffer per websocket in bytes (0: kernel autotuning)"),
    Setting("slow_timeout", float, 30.0,
            "seconds a slow websocket may stay blocked before it is closed"),
    Setting("max_body", int, 16 * 1024, "largest accepted HTTP request body, in bytes"),
    Setting("frame_ancestors", str, "'self'",
            "who may frame our pages (CSP frame-ancestors), e.g. \"'self' https://news.example\""),
    Setting("max_connections_per_ip", int, 1000,
            "open websockets and SSE streams per client address (0: no cap; mind carrier NAT)"),
    Setting("rate_limit", float, 20.0,
            "HTTP requests per second per client address, sustained (0: no limit)"),
    Setting("rate_burst", int, 100, "HTTP requests per client address in a burst"),
    Setting("client_timeout", float, 30.0,
            "seconds a reader's connection may leave sent data unacknowledged before the kernel "
            "drops it (TCP_USER_TIMEOUT on the listening socket): finds readers that vanished "
            "without a close, SSE ones too; 0: the kernel's own (about 15 minutes)"),
    Setting("sse_heartbeat", float, 15.0,
            "seconds between the comment lines every SSE stream gets (keeps proxies open; a "
            "reader that vanished leaves them unacknowledged: TICKER_CLIENT_TIMEOUT)"),
    Setting("feed_items", int, 50, "most entries in a channel's JSON Feed, RSS and Atom feeds"),
    Setting("feed_max_age", int, 30,
            "seconds caches (CDNs, readers) may keep a feed: Cache-Control max-age and RSS ttl"),
    Setting("read_count", int, 500, "entries per XREAD (items read together go out together)"),
    Setting("read_block_ms", int, 1000, "XREAD BLOCK timeout in milliseconds"),
    Setting("redis_timeout", float, 2.0,
            "seconds a Redis connect, or a reply beyond the XREAD BLOCK, may take before Redis "
            "counts as unreachable: readers are told stale, requests answer 503"),
    Setting("log_level", str, "info", "debug, info, warning or error"),
    Setting("log_format", str, "text", "text, or json: one JSON object per line with request ids"),
    Setting("workers", int, 1,
            "processes sharing the port (SO_REUSEPORT), each reading the streams itself"),
    Setting("shutdown_timeout", float, 10.0,
            "seconds a stopping process gives its connections to close (SIGTERM drains)"),
    Setting("secret_key", str, "",
            "signs desk session cookies (32+ characters); empty: a random key made once and "
            "kept in Redis, shared by every node"),
    Setting("webhook_allow", str, "",
            "internal hosts or networks webhooks may call, comma separated (e.g. "
            "127.0.0.1,10.0.0.0/8,hooks.internal); empty: public addresses only"),
    Setting("webhook_key", str, "",
            "encrypts webhook secrets at rest (32+ characters); empty: a key kept in Redis, "
            "so a Redis dump alone reveals them"),
    Setting("webhook_timeout", float, 10.0,
            "seconds a webhook request may take in all (connecting: at most 5)"),
    Setting("webhook_retry_for", int, 24 * 3600,
            "seconds an event is retried before it becomes a dead letter"),
    Setting("webhook_retry_base", float, 1.0,
            "seconds before the first retry; doubled each time (with jitter), at most 30 min"),
    Setting("redis_wait_replicas", int, 0,
            "after each write, wait until this many replicas have it (Redis WAIT); 0: do "
            "not wait. Set it to 1 with a replica, so a failover keeps what was answered 201"),
    Setting("redis_wait_timeout", int, 500,
            "milliseconds a write waits for its replicas; then it answers anyway, saying how "
            "many had it"),
    Setting("push_key_file", str, "",
            "the VAPID private key for Web Push (PEM, made by `ticker push keys`); empty: "
            "push-vapid.pem in TICKER_DATA_DIR; no key: no push"),
    Setting("push_contact", str, "mailto:newsroom@localhost",
            "who push services may contact about our pushes: mailto:... or https://..."),
    Setting("push_urgent", str, "",
            "editions that also push urgent items, comma separated (flash always pushes)"),
    Setting("push_allow", str, "",
            "internal push endpoints allowed (hosts or networks, comma separated); empty: "
            "public https endpoints only"),
    Setting("push_rate", int, 20, "push subscriptions one address may make per hour"),
    Setting("trusted_proxies", str, "127.0.0.1,::1",
            "proxy addresses/networks whose X-Forwarded-For/-Proto are believed, comma "
            "separated (empty: none)"),
    Setting("session_ttl", int, 12 * 3600, "seconds a desk sign-in lasts"),
    Setting("login_limit_account", int, 5,
            "failed sign-ins per account name per window before it is locked for the window"),
    Setting("login_limit_ip", int, 30,
            "failed sign-ins per client address per window before it is locked for the window"),
    Setting("login_window", int, 15 * 60, "seconds of the sign-in rate-limit window"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, validated. Build with `Settings.load()`."""

    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str = ""
    redis_cluster: bool = False
    data_dir: Path = Path("ticker-data")
    embedded_redis_port: int = 0
    channels: tuple[Channel, ...] = field(default_factory=lambda: parse_channels("en"))
    key_prefix: str = "ticker"
    max_items: int = 20
    stream_maxlen: int = 10000
    allowed_origins: tuple[str, ...] = ()
    ping_interval: float = 20.0
    upgrade_routing: bool = True
    client_buffer: int = 256 * 1024
    socket_sndbuf: int = 0
    slow_timeout: float = 30.0
    max_body: int = 16 * 1024
    frame_ancestors: str = "'self'"
    max_connections_per_ip: int = 1000
    rate_limit: float = 20.0
    rate_burst: int = 100
    client_timeout: float = 30.0
    sse_heartbeat: float = 15.0
    feed_items: int = 50
    feed_max_age: int = 30
    read_count: int = 500
    read_block_ms: int = 1000
    redis_timeout: float = 2.0
    log_level: str = "info"
    log_format: str = "text"
    workers: int = 1
    shutdown_timeout: float = 10.0
    secret_key: str = ""
    webhook_allow: str = ""
    webhook_key: str = ""
    webhook_timeout: float = 10.0
    webhook_retry_for: int = 24 * 3600
    webhook_retry_base: float = 1.0
    redis_wait_replicas: int = 0
    redis_wait_timeout: int = 500
    push_key_file: str = ""
    push_contact: str = "mailto:newsroom@localhost"
    push_urgent: str = ""
    push_allow: str = ""
    push_rate: int = 20
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    session_ttl: int = 12 * 3600
    login_limit_account: int = 5
    login_limit_ip: int = 30
    login_window: int = 15 * 60

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, object] | None = None,
    ) -> Settings:
        """Read `TICKER_*` from `env` (default: os.environ), then apply non-None overrides."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        for setting in SETTINGS:
            raw: object = source.get(setting.env)
            origin = setting.env
            if overrides is not None and overrides.get(setting.attr) is not None:
                raw = overrides[setting.attr]
                origin = setting.flag
            if raw is None:
                continue
            values[setting.attr] = _convert(setting, raw, origin)
        return cls.build(values)

    @classmethod
    def build(cls, values: Mapping[str, object]) -> Settings:
        """Make Settings from already-typed values (strings allowed for channels/origins)."""
        vals = dict(values)
        if isinstance(vals.get("channels"), str):
            vals["channels"] = parse_channels(str(vals["channels"]))
        if isinstance(vals.get("allowed_origins"), str):
            vals["allowed_origins"] = tuple(
                o.strip().rstrip("/") for o in str(vals["allowed_origins"]).split(",") if o.strip()
            )
        if isinstance(vals.get("trusted_proxies"), str):
            vals["trusted_proxies"] = tuple(
                p.strip() for p in str(vals["trusted_proxies"]).split(",") if p.strip()
            )
        if isinstance(vals.get("data_dir"), str):
            vals["data_dir"] = Path(str(vals["data_dir"]))
        settings = cls(**vals)  # type: ignore[arg-type]
        settings.check()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def check(self) -> None:
        """Fail loudly, naming the variable, on a value that cannot work."""
        positive = ("port", "max_items", "stream_maxlen", "client_buffer",
                    "max_body", "read_count", "read_block_ms", "session_ttl",
                    "login_limit_account", "login_limit_ip", "login_window",
                    "sse_heartbeat", "feed_items")
        for name in positive:
            if getattr(self, name) <= 0 and not (name == "port" and self.port == 0):
                raise ConfigError(f"TICKER_{name.upper()} must be positive",
                                  field=f"TICKER_{name.upper()}")
        if self.feed_max_age < 0:
            raise ConfigError("TICKER_FEED_MAX_AGE must be 0 or more", field="TICKER_FEED_MAX_AGE")
        if not 0 < self.port < 65536 and self.port != 0:
            raise ConfigError("TICKER_PORT must be 0-65535", field="TICKER_PORT")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError("TICKER_LOG_LEVEL must be debug, info, warning or error",
                              field="TICKER_LOG_LEVEL")
        if not re.match(r"^[A-Za-z0-9_.:-]{1,64}$", self.key_prefix):
            raise ConfigError("TICKER_KEY_PREFIX: 1-64 of A-Z a-z 0-9 _ . : -",
                              field="TICKER_KEY_PREFIX")
        if self.redis_url and not re.match(r"^(redis|rediss|unix|redis\+sentinel|"
                                           r"rediss\+sentinel)://", self.redis_url):
            raise ConfigError("TICKER_REDIS_URL must start with redis://, rediss://, unix://, "
                              "redis+sentinel:// or rediss+sentinel://", field="TICKER_REDIS_URL")
        if self.redis_cluster and not re.match(r"^rediss?://", self.redis_url):
            raise ConfigError("TICKER_REDIS_CLUSTER needs a redis:// or rediss:// TICKER_REDIS_URL "
                              "(a cluster node)", field="TICKER_REDIS_CLUSTER")
        if self.log_format not in ("text", "json"):
            raise ConfigError("TICKER_LOG_FORMAT must be text or json", field="TICKER_LOG_FORMAT")
        if not 1 <= self.workers <= 256:
            raise ConfigError("TICKER_WORKERS must be 1-256", field="TICKER_WORKERS")
        if not 0 < self.shutdown_timeout <= 3600:
            raise ConfigError("TICKER_SHUTDOWN_TIMEOUT must be above 0 and at most 3600",
                              field="TICKER_SHUTDOWN_TIMEOUT")
        if self.secret_key and len(self.secret_key) < 32:
            raise ConfigError("TICKER_SECRET_KEY must be at least 32 characters (or empty)",
                              field="TICKER_SECRET_KEY")
        if not (0 < self.webhook_timeout <= 300 and 0 < self.webhook_retry_for <= 7 * 86400
                and 0 < self.webhook_retry_base <= 3600):
            raise ConfigError("TICKER_WEBHOOK_TIMEOUT (up to 300 s), TICKER_WEBHOOK_RETRY_FOR "
                              "(up to 7 days) and TICKER_WEBHOOK_RETRY_BASE must be positive",
                              field="TICKER_WEBHOOK_RETRY_FOR")
        if self.webhook_key and len(self.webhook_key) < 32:
            raise ConfigError("TICKER_WEBHOOK_KEY must be at least 32 characters (or empty)",
                              field="TICKER_WEBHOOK_KEY")
        for name in ("webhook_allow", "push_allow"):
            setting = f"TICKER_{name.upper()}"
            try:
                parse_allowed(getattr(self, name), setting)
            except ValidationError as exc:
                raise ConfigError(exc.message, field=setting) from None
        if not re.match(r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$", self.push_contact):
            raise ConfigError("TICKER_PUSH_CONTACT must be mailto:someone@example.com or an "
                              "https:// URL", field="TICKER_PUSH_CONTACT")
        unknown = set(self.push_urgent_editions) - {c.name for c in self.channels}
        if unknown:
            raise ConfigError(f"TICKER_PUSH_URGENT: {', '.join(sorted(unknown))} is not a "
                              "configured channel", field="TICKER_PUSH_URGENT")
        if not 0 <= self.redis_wait_replicas <= 16 or not 1 <= self.redis_wait_timeout <= 5000:
            raise ConfigError("TICKER_REDIS_WAIT_REPLICAS must be 0-16 and "
                              "TICKER_REDIS_WAIT_TIMEOUT 1-5000 ms",
                              field="TICKER_REDIS_WAIT_REPLICAS")
        if self.redis_wait_replicas and self.redis_cluster:
            raise ConfigError("TICKER_REDIS_WAIT_REPLICAS is not supported with "
                              "TICKER_REDIS_CLUSTER (each shard's replicas would need their "
                              "own WAIT)", field="TICKER_REDIS_WAIT_REPLICAS")
        if not 1 <= self.push_rate <= 10_000:
            raise ConfigError("TICKER_PUSH_RATE must be 1-10000", field="TICKER_PUSH_RATE")
        for proxy in self.trusted_proxies:
            if proxy == "*":
                continue  # uvicorn's "trust any peer": only behind a proxy that strips them
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(f"TICKER_TRUSTED_PROXIES: {proxy!r} is not an address or "
                                  "network", field="TICKER_TRUSTED_PROXIES") from None
        if not re.fullmatch(r"[A-Za-z0-9'*:/.\- ]{1,500}", self.frame_ancestors):
            raise ConfigError("TICKER_FRAME_ANCESTORS: CSP sources such as 'self', 'none' or "
                              "https://news.example, separated by spaces",
                              field="TICKER_FRAME_ANCESTORS")
        if self.max_connections_per_ip < 0 or self.rate_limit < 0 or self.rate_burst < 1:
            raise ConfigError("TICKER_MAX_CONNECTIONS_PER_IP and TICKER_RATE_LIMIT must be >= 0, "
                              "TICKER_RATE_BURST >= 1", field="TICKER_RATE_LIMIT")
        if not 0 <= self.socket_sndbuf <= 64 * 1024 * 1024:
            raise ConfigError("TICKER_SOCKET_SNDBUF must be 0 (autotuning) to 64 MiB",
                              field="TICKER_SOCKET_SNDBUF")
        if self.read_block_ms >= 5000:
            # redis-py's socket timeout must outlast the block; we set it, but keep it sane.
            raise ConfigError("TICKER_READ_BLOCK_MS must be below 5000",
                              field="TICKER_READ_BLOCK_MS")
        if not 0 <= self.client_timeout <= 3600:
            raise ConfigError("TICKER_CLIENT_TIMEOUT must be 0 (the kernel's) to 3600 seconds",
                              field="TICKER_CLIENT_TIMEOUT")
        if not 0.1 <= self.redis_timeout <= 60:
            raise ConfigError("TICKER_REDIS_TIMEOUT must be 0.1 to 60 seconds",
                              field="TICKER_REDIS_TIMEOUT")

    @property
    def redis_block_ms(self) -> int:
        """The longest a Redis command of ours waits on purpose: the reader's XREAD BLOCK, or
        WAIT for replicas after a write. A reply is awaited this, then TICKER_REDIS_TIMEOUT."""
        return max(self.read_block_ms, self.redis_wait_timeout if self.redis_wait_replicas else 0)

    def channel(self, name: str) -> Channel | None:
        for ch in self.channels:
            if ch.name == name:
                return ch
        return None

    @property
    def push_urgent_editions(self) -> frozenset[str]:
        return frozenset(e.strip() for e in self.push_urgent.split(",") if e.strip())

    @property
    def vapid_file(self) -> Path:
        """Where the Web Push (VAPID) private key is."""
        return Path(self.push_key_file) if self.push_key_file else (
            self.data_dir / "push-vapid.pem")

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)


KIND_NAMES: dict[type, str] = {int: "a whole number", float: "a number", str: "text",
                               bool: "true or false"}
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def _convert(setting: Setting, raw: object, origin: str) -> object:
    if setting.kind is str:
        return str(raw)
    if setting.kind is bool:
        word = str(raw).strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ConfigError(f"{origin} must be {KIND_NAMES[bool]}, not {raw!r}", field=origin)
    try:
        if setting.kind is int:
            return int(str(raw))
        if setting.kind is float:
            return float(str(raw))
    except ValueError:
        raise ConfigError(
            f"{origin} must be {KIND_NAMES[setting.kind]}, not {raw!r}", field=origin
        ) from None
    raise ConfigError(f"{origin}: unsupported kind", field=origin)
