"""Settings from an environment mapping and flag overrides; channel specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticker.core.channels import Channel
from ticker.core.errors import ConfigError
from ticker.process.settings import RTL_LANGUAGES, SETTINGS, Settings, parse_channels


def config_error(env: dict[str, str], overrides: dict[str, object] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Settings.load(env, overrides)
    assert info.value.message
    return info.value


# -- defaults and environment -------------------------------------------------------------


def test_defaults() -> None:
    s = Settings.load({})
    assert s == Settings()
    assert s.host == "127.0.0.1"
    assert s.port == 8000
    assert s.redis_url == ""
    assert s.data_dir == Path("ticker-data")
    assert s.embedded_redis_port == 0
    assert s.channels == (Channel("en", "en", "ltr", "Breaking"),)
    assert s.key_prefix == "ticker"
    assert s.max_items == 20
    assert s.stream_maxlen == 10000
    assert s.allowed_origins == ()
    assert s.ping_interval == 20.0
    assert s.client_buffer == 256 * 1024
    assert s.socket_sndbuf == 0
    assert s.slow_timeout == 30.0
    assert s.max_body == 16 * 1024
    assert s.read_count == 500
    assert s.read_block_ms == 1000
    assert s.log_level == "info"
    assert s.channel_names == ("en",)


def test_settings_table_matches_the_dataclass() -> None:
    for setting in SETTINGS:
        assert setting.env == "TICKER_" + setting.attr.upper()
        assert setting.flag == "--" + setting.attr.replace("_", "-")
    assert len({s.attr for s in SETTINGS}) == len(SETTINGS) == len(Settings.__slots__)
    # The documented defaults are the dataclass defaults.
    assert Settings.build({s.attr: s.default for s in SETTINGS}) == Settings()
    assert Settings.load({s.env: str(s.default) for s in SETTINGS}) == Settings()


def test_env_overrides() -> None:
    s = Settings.load(
        {
            "TICKER_HOST": "0.0.0.0",
            "TICKER_PORT": "9000",
            "TICKER_REDIS_URL": "redis://cache:6379/2",
            "TICKER_DATA_DIR": "/var/lib/ticker",
            "TICKER_CHANNELS": "en,ar",
            "TICKER_KEY_PREFIX": "news.prod",
            "TICKER_MAX_ITEMS": "5",
            "TICKER_STREAM_MAXLEN": "500",
            "TICKER_ALLOWED_ORIGINS": "https://a.example/, https://b.example ,,",
            "TICKER_PING_INTERVAL": "2.5",
            "TICKER_CLIENT_BUFFER": "1024",
            "TICKER_SOCKET_SNDBUF": "65536",
            "TICKER_SLOW_TIMEOUT": "0.5",
            "TICKER_MAX_BODY": "2048",
            "TICKER_READ_COUNT": "100",
            "TICKER_READ_BLOCK_MS": "250",
            "TICKER_LOG_LEVEL": "debug",
            "TICKER_EMBEDDED_REDIS_PORT": "6390",
            "UNRELATED": "x",
            "TICKER_UNKNOWN": "ignored",
        }
    )
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.redis_url == "redis://cache:6379/2"
    assert s.data_dir == Path("/var/lib/ticker")
    assert s.channel_names == ("en", "ar")
    assert s.key_prefix == "news.prod"
    assert s.max_items == 5
    assert s.stream_maxlen == 500
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.ping_interval == 2.5
    assert s.client_buffer == 1024
    assert s.socket_sndbuf == 65536
    assert s.slow_timeout == 0.5
    assert s.max_body == 2048
    assert s.read_count == 100
    assert s.read_block_ms == 250
    assert s.log_level == "debug"
    assert s.embedded_redis_port == 6390


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKER_PORT", "9123")
    monkeypatch.setenv("TICKER_CHANNELS", "es")
    s = Settings.load()
    assert s.port == 9123 and s.channel_names == ("es",)
    # An explicit mapping is the only source: os.environ is not consulted.
    assert Settings.load({}).port == 8000


@pytest.mark.parametrize(
    ("var", "value"),
    [("TICKER_PORT", "abc"), ("TICKER_MAX_ITEMS", "1e3"), ("TICKER_PING_INTERVAL", "soon")],
)
def test_bad_number_names_the_variable(var: str, value: str) -> None:
    err = config_error({var: value})
    assert var in err.message
    assert repr(value) in err.message
    # ConfigError: "`field` is the environment variable or flag".
    assert err.field == var


def test_bad_number_in_a_flag_names_the_flag() -> None:
    err = config_error({}, {"port": "eighty"})
    assert err.field == "--port"
    assert "--port" in err.message


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("TICKER_PORT", "80.5"),
        ("TICKER_PORT", ""),
        ("TICKER_READ_COUNT", "1e3"),
        ("TICKER_SLOW_TIMEOUT", "30s"),
        ("TICKER_CLIENT_BUFFER", "256k"),
    ],
)
def test_bad_numbers_are_config_errors(var: str, value: str) -> None:
    err = config_error({var: value})
    assert var in err.message
    assert err.field is not None


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TICKER_PORT": "-1"}, "port"),
        ({"TICKER_PORT": "65536"}, "port"),
        ({"TICKER_MAX_ITEMS": "0"}, "max_items"),
        ({"TICKER_STREAM_MAXLEN": "-5"}, "stream_maxlen"),
        ({"TICKER_CLIENT_BUFFER": "0"}, "client_buffer"),
        ({"TICKER_SOCKET_SNDBUF": "-1"}, "socket_sndbuf"),
        ({"TICKER_MAX_BODY": "0"}, "max_body"),
        ({"TICKER_READ_COUNT": "0"}, "read_count"),
        ({"TICKER_READ_BLOCK_MS": "0"}, "read_block_ms"),
        ({"TICKER_READ_BLOCK_MS": "5000"}, "read_block_ms"),
        ({"TICKER_REDIS_TIMEOUT": "0"}, "redis_timeout"),
        ({"TICKER_REDIS_TIMEOUT": "61"}, "redis_timeout"),
        ({"TICKER_CLIENT_TIMEOUT": "-1"}, "client_timeout"),
        ({"TICKER_CLIENT_TIMEOUT": "3601"}, "client_timeout"),
        ({"TICKER_LOG_LEVEL": "verbose"}, "log_level"),
        ({"TICKER_LOG_LEVEL": "INFO"}, "log_level"),
        ({"TICKER_KEY_PREFIX": "has space"}, "key_prefix"),
        ({"TICKER_KEY_PREFIX": ""}, "key_prefix"),
        ({"TICKER_KEY_PREFIX": "k" * 65}, "key_prefix"),
        ({"TICKER_REDIS_URL": "http://localhost:6379"}, "redis_url"),
        ({"TICKER_REDIS_URL": "localhost:6379"}, "redis_url"),
    ],
)
def test_values_that_cannot_work(env: dict[str, str], name: str) -> None:
    err = config_error(env)
    assert err.field is not None
    assert "TICKER_" + name.upper() in err.message


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://u:p@host:6380", "unix:///tmp/redis.sock"]
)
def test_redis_urls(url: str) -> None:
    assert Settings.load({"TICKER_REDIS_URL": url}).redis_url == url


def test_edge_values_that_work() -> None:
    s = Settings.load(
        {
            "TICKER_PORT": "0",
            "TICKER_READ_BLOCK_MS": "4999",
            "TICKER_PING_INTERVAL": "0",
            "TICKER_KEY_PREFIX": "a:b_c-d.e",
        }
    )
    assert (s.port, s.read_block_ms, s.ping_interval, s.key_prefix) == (0, 4999, 0.0, "a:b_c-d.e")
    assert Settings.load({"TICKER_PORT": "65535"}).port == 65535


def test_allowed_origins_star() -> None:
    assert Settings.load({"TICKER_ALLOWED_ORIGINS": "*"}).allowed_origins == ("*",)


def test_bad_channels_in_env_name_the_variable() -> None:
    err = config_error({"TICKER_CHANNELS": "en,EN!"})
    assert err.field == "TICKER_CHANNELS"


# -- overrides (command-line flags) --------------------------------------------------------


def test_flag_overrides_beat_env() -> None:
    env = {
        "TICKER_PORT": "9000",
        "TICKER_CHANNELS": "en",
        "TICKER_HOST": "0.0.0.0",
        "TICKER_PING_INTERVAL": "5",
    }
    s = Settings.load(env, {"port": 9100, "channels": "fr,he", "ping_interval": None})
    assert s.port == 9100
    assert s.channel_names == ("fr", "he")
    assert s.channel("he") == Channel("he", "he", "rtl", "Breaking")
    assert s.host == "0.0.0.0"  # not overridden
    assert s.ping_interval == 5.0  # None means: not given on the command line


def test_flag_overrides_are_converted() -> None:
    s = Settings.load({}, {"port": "8123", "slow_timeout": 3, "data_dir": "d", "read_block_ms": 10})
    assert s.port == 8123 and isinstance(s.port, int)
    assert s.slow_timeout == 3.0 and isinstance(s.slow_timeout, float)
    assert s.data_dir == Path("d")
    assert s.read_block_ms == 10


def test_flag_override_values_are_checked() -> None:
    err = config_error({"TICKER_MAX_ITEMS": "5"}, {"max_items": 0})
    assert err.field is not None
    assert "TICKER_MAX_ITEMS" in err.message


def test_with_and_channel_lookup() -> None:
    s = Settings.load({"TICKER_CHANNELS": "en,ar"})
    t = s.with_(port=1234)
    assert t.port == 1234 and s.port == 8000
    assert s.channel("ar") == Channel("ar", "ar", "rtl", "Breaking")
    assert s.channel("xx") is None


def test_build_accepts_typed_values() -> None:
    s = Settings.build({"channels": "en", "allowed_origins": "https://x.example/"})
    assert s.allowed_origins == ("https://x.example",)
    with pytest.raises(ConfigError):
        Settings.build({"max_items": -1})


# -- parse_channels -----------------------------------------------------------------------


def test_en_ar() -> None:
    en, ar = parse_channels("en,ar")
    assert en == Channel(name="en", lang="en", dir="ltr", title="Breaking")
    assert ar == Channel(name="ar", lang="ar", dir="rtl", title="Breaking")
    assert ar.info() == {"name": "ar", "lang": "ar", "dir": "rtl", "title": "Breaking"}


def test_full_form() -> None:
    assert parse_channels("x:fr:ltr:Flash info") == (
        Channel(name="x", lang="fr", dir="ltr", title="Flash info"),
    )


def test_title_may_contain_colons_and_unicode() -> None:
    (ch,) = parse_channels("ar-live:ar::عاجل: الآن")
    assert ch == Channel(name="ar-live", lang="ar", dir="rtl", title="عاجل: الآن")


@pytest.mark.parametrize(
    ("spec", "lang", "direction"),
    [
        ("news:he", "he", "rtl"),
        ("news:fa-IR", "fa-IR", "rtl"),
        ("news:ur", "ur", "rtl"),
        ("news:en-GB", "en-GB", "ltr"),
        ("news:ar:ltr", "ar", "ltr"),  # explicit direction wins
        ("news:en:rtl", "en", "rtl"),
        ("news", "news", "ltr"),
        ("news::", "news", "ltr"),
    ],
)
def test_direction_follows_language(spec: str, lang: str, direction: str) -> None:
    (ch,) = parse_channels(spec)
    assert (ch.lang, ch.dir) == (lang, direction)


def test_rtl_languages() -> None:
    assert {"ar", "he", "fa", "ur"} <= RTL_LANGUAGES
    assert "en" not in RTL_LANGUAGES


def test_whitespace_and_empty_entries() -> None:
    chans = parse_channels("  en , ar : ar : rtl : Breaking News ,, es ,")
    assert [c.name for c in chans] == ["en", "ar", "es"]
    assert chans[1].title == "Breaking News"


@pytest.mark.parametrize("spec", ["en,en", "en,ar,en:fr", "en, en"])
def test_duplicates_rejected(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_channels(spec)
    assert info.value.field == "TICKER_CHANNELS"
    assert "twice" in info.value.message


@pytest.mark.parametrize(
    "spec",
    ["EN", "-en", "_en", "e n", "é", "en/ar", "a" * 33, ":en", "en.us", "en;ar"],
)
def test_bad_names_rejected(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_channels(spec)
    assert info.value.field == "TICKER_CHANNELS"


def test_name_limits() -> None:
    assert parse_channels("a" * 32)[0].name == "a" * 32
    assert parse_channels("0_x-y")[0].name == "0_x-y"


@pytest.mark.parametrize("spec", ["en:en:up", "en:en:LTR", "en:en:auto"])
def test_bad_direction_rejected(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_channels(spec)
    assert info.value.field == "TICKER_CHANNELS"


@pytest.mark.parametrize("spec", ["", " ", ",", " , ,"])
def test_no_channels_rejected(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_channels(spec)
    assert info.value.field == "TICKER_CHANNELS"


def test_a_reply_is_awaited_beyond_the_longest_wait_a_command_asks_for() -> None:
    """redis-py has one socket timeout for every command (ticker.redis.connection): it must
    outlast the XREAD BLOCK and, when writes wait for replicas, the WAIT."""
    assert Settings().redis_block_ms == 1000
    assert Settings.build({"redis_wait_timeout": 4000}).redis_block_ms == 1000  # no WAIT
    waiting = Settings.build({"redis_wait_replicas": 1, "redis_wait_timeout": 4000})
    assert waiting.redis_block_ms == 4000
