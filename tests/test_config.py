"""Config: defaults from the pin table, and every mistake named with key, value and range."""

import tomllib

import pytest

from piano_buddy import config
from piano_buddy.config import Config, ConfigError, from_dict, load

ROOT = config.PIN_TABLE.resolve().parents[0]


def test_defaults_come_from_the_one_pin_table():
    with open(config.PIN_TABLE.resolve(), "rb") as f:
        pins = tomllib.load(f)
    cfg = Config()
    assert list(cfg.panel.buttons) == pins["buttons"]
    assert list(cfg.panel.button_leds) == pins["button_leds"]
    assert cfg.panel.turn_led == pins["turn_led"]
    assert config.PIN_TABLE.resolve().parent.name == "hardware"


def test_missing_default_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "nope.toml")
    assert load() == Config()


def test_a_file_overrides_some_keys(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[turns]\npause = 1.5\n[audio]\ndevice = "hw:1"\n')
    cfg = load(p)
    assert cfg.turns.pause == 1.5 and cfg.audio.device == "hw:1"
    assert cfg.turns.temperature == 1.0


@pytest.mark.parametrize("doc, words", [
    ({"turns": {"pause": -1}}, ["turns.pause", "-1", "0.1 to 10.0"]),
    ({"turns": {"pause": "long"}}, ["turns.pause", "'long'", "number"]),
    ({"turns": {"paus": 1.0}}, ["turns.paus", "pause"]),
    ({"sound": {}}, ["[sound]", "turns"]),
    ({"audio": {"sample_rate": 22050}}, ["audio.sample_rate", "22050", "48000"]),
    ({"audio": {"voices": 1.5}}, ["audio.voices", "integer"]),
    ({"midi": {"enabled": "yes"}}, ["midi.enabled", "true or false"]),
    ({"panel": {"buttons": [4, 17, 27]}}, ["panel.buttons", "exactly 8"]),
    ({"panel": {"turn_led": 4}}, ["panel.turn_led", "GPIO 4", "panel.buttons"]),
    ({"panel": {"turn_led": 40}}, ["panel.turn_led", "GPIO 40", "2 to 27"]),
    ({"turns": {"reply_min": 9.0, "reply_max": 3.0}}, ["reply_min", "reply_max"]),
    ({"midi": {"ai_channel": 1}}, ["midi.ai_channel", "player_channel"]),
    ({"turns": {"temperature": float("nan")}}, ["turns.temperature", "nan"]),
])
def test_errors_name_key_value_and_what_is_allowed(doc, words):
    with pytest.raises(ConfigError) as err:
        from_dict(doc)
    for w in words:
        assert w in str(err.value)


def test_syntax_error_and_missing_file_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[turns\npause = 1")
    with pytest.raises(ConfigError, match="bad.toml.*not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="missing.toml does not exist"):
        load(tmp_path / "missing.toml")
    bad.write_text("[turns]\npause = 100\n")
    with pytest.raises(ConfigError, match=r"bad.toml: turns.pause = 100"):
        load(bad)


def test_described_defaults_round_trip():
    """The commented example the installer copies parses back to the defaults."""
    assert from_dict(tomllib.loads(config.describe())) == Config()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_the_example_config_is_up_to_date():
    """config.example.toml (what `make install` copies to /etc) matches the code's table."""
    example = config.PIN_TABLE.with_name("config.example.toml")
    assert example.read_text() == config.describe(), \
        "regenerate: python -c 'from piano_buddy.config import describe; print(describe(), end=\"\")'"


def test_config_option_works_before_and_after_the_command(tmp_path):
    from piano_buddy.cli import _parser
    p = tmp_path / "c.toml"
    assert _parser().parse_args(["--config", str(p), "run"]).config == p
    assert _parser().parse_args(["run", "--config", str(p)]).config == p
    assert _parser().parse_args(["run"]).config is None


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    """Defect: a config saved as Latin-1 gave a traceback and exit 1."""
    path = tmp_path / "config.toml"
    path.write_bytes('[midi]\noutput_name = "Klavier Sälchen"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


def test_the_cli_exits_2_for_a_file_that_is_not_utf8(tmp_path, capsys):
    from piano_buddy import cli
    path = tmp_path / "config.toml"
    path.write_bytes(b"[turns]\npause = 0.8 # \xe9\n")
    assert cli.main(["--config", str(path), "run", "--mode", "demo"]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_a_moved_key_says_where_it_went():
    with pytest.raises(ConfigError, match="turns.session_idle"):
        from_dict({"recording": {"idle_seconds": 120}})


def test_every_config_key_has_a_reader():
    """A setting nobody reads is a lie in the documentation: each key of each section is
    read somewhere in the firmware as ``<section>.<key>`` (e.g. ``cfg.audio.volume``,
    ``a.volume`` after ``a = cfg.audio``) or passed on by name."""
    import dataclasses
    import re
    from pathlib import Path

    source = "\n".join(p.read_text() for p in Path(config.__file__).parent.rglob("*.py")
                       if p.name != "config.py")
    missing = []
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):
            if not re.search(rf"\.{f.name}\b", source):
                missing.append(f"{section.name}.{f.name}")
    assert not missing, f"config keys nothing reads: {missing}"
