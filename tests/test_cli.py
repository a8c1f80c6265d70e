"""The ``piano-buddy`` command as an installer meets it: check, config, options with help, and
``run`` choosing its mode from standard input and saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from piano_buddy import cli

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models_tflite"


def run_cli(*args, cwd=None, timeout=120, stdin=subprocess.DEVNULL, env=None):
    return subprocess.run([sys.executable, "-m", "piano_buddy", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=stdin, env={**os.environ, **(env or {})})


def test_check_passes_on_the_defaults_and_says_what_it_checked():
    r = run_cli("check")
    assert r.returncode == 0, r.stdout + r.stderr
    for what in ("[ok] config", "[ok] pins", "genie.tflite", "melody.tflite", "all good"):
        assert what in r.stdout
    assert "same as hardware/pins.toml" in r.stdout


@pytest.mark.parametrize("body,words", [
    ("[panel]\nturn_led = 18\n", "GPIO 18 is reserved for I2S BCLK"),
    ("[turns]\npause = 100\n", "turns.pause = 100.0: allowed range is 0.1 to 10.0"),
    ('[midi]\noutput_name = ""\n', "midi.output_name"),
])
def test_check_exits_2_on_a_config_error_and_names_it(tmp_path, body, words):
    conf = tmp_path / "c.toml"
    conf.write_text(body)
    r = run_cli("check", "--config", conf)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "[FAIL] config" in r.stdout and words in r.stdout


def test_check_on_a_missing_file_is_a_config_error(tmp_path):
    r = run_cli("--config", tmp_path / "nope.toml", "check")
    assert r.returncode == 2 and "does not exist" in r.stdout


def test_check_exits_3_on_a_broken_model_and_names_the_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODELS / "melody.tflite", models)
    (models / "genie.tflite").write_bytes((MODELS / "genie.tflite").read_bytes()[:5000])
    conf = tmp_path / "c.toml"
    conf.write_text(f'[models]\ndirectory = "{models}"\n')
    r = run_cli("check", "--config", conf)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "[FAIL] model" in r.stdout and str(models / "genie.tflite") in r.stdout
    assert f"[ok] model: {models / 'melody.tflite'}" in r.stdout


def test_check_reports_pins_that_differ_from_the_drawing(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("[panel]\nvolume_encoder = [11, 10]\n")
    r = run_cli("check", "--config", conf)
    assert r.returncode == 0
    assert "differs from hardware/pins.toml" in r.stdout and "volume_encoder = [11, 10]" in r.stdout


def test_config_with_a_file_validates_it_and_shows_its_values(tmp_path):
    assert run_cli("--config", tmp_path / "nope.toml", "config").returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[turns]\npause = -1\n")
    r = run_cli("config", "--config", bad)
    assert r.returncode == 2 and "turns.pause" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text("[turns]\npause = 1.5\n")
    r = run_cli("config", "--config", good)
    assert r.returncode == 0
    assert "pause = 1.5    # changed; default 0.8" in r.stdout
    assert "changed" not in run_cli("config").stdout


def test_an_unknown_log_level_is_an_error_not_info():
    r = run_cli("--log-level", "LOUD", "config")
    assert r.returncode == 2 and "'LOUD' is not a log level" in r.stderr
    r = run_cli("config", env={"PIANO_BUDDY_LOG": "chatty"})
    assert r.returncode == 2 and "PIANO_BUDDY_LOG" in r.stderr
    assert run_cli("--log-level", "debug", "config").returncode == 0


def test_every_option_has_help_text():
    ap = cli._parser()
    parsers = [ap] + [p for a in ap._actions if isinstance(a, type(ap._subparsers._group_actions[0]))
                      for p in a.choices.values()]
    for p in parsers:
        for action in p._actions:
            if action.option_strings:
                assert action.help, f"{p.prog} {action.option_strings} has no help text"
    text = {name: p.format_help() for name, p in
            ap._subparsers._group_actions[0].choices.items()}
    assert "default: 7" in text["demo"] and "default: out" in text["demo"]
    assert "auto (default)" in text["run"]
    assert "recording.folder" in text["recordings"]


@pytest.mark.parametrize("gpio,tty,mode", [(True, True, "box"), (True, False, "box"),
                                           (False, True, "simulator"), (False, False, "demo")])
def test_run_auto_decides_by_gpio_then_stdin(gpio, tty, mode):
    chosen, why = cli.choose_mode(gpio, tty)
    assert chosen == mode
    assert ("GPIO chip is present" in why) == gpio
    if not gpio:
        assert "standard input" in why


def test_run_without_a_terminal_says_it_plays_the_demo_and_why(tmp_path, alsa_capture):
    conf = tmp_path / "c.toml"
    conf.write_text("[midi]\nenabled = false\n[recording]\nenabled = false\n")
    r = run_cli("--config", conf, "run", cwd=tmp_path, timeout=300, env=alsa_capture.env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert "standard input is not a terminal" in r.stderr and "built-in demo" in r.stderr
    assert (tmp_path / "out" / "duet.wav").exists()


def test_the_demo_without_a_sound_card_says_so_in_one_line(tmp_path):
    nocard = tmp_path / "nocard.conf"
    nocard.write_text('pcm.!default { type hw card "nosuchcard" }\n')
    r = run_cli("demo", "--out", tmp_path / "out", timeout=300,
                env={"ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{nocard}"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no audio device" in r.stdout and "listen to the WAV file" in r.stdout
    assert "ALSA lib" not in r.stderr
