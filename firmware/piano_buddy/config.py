"""The box's settings: TOML in, frozen dataclasses out, every mistake named.

A technician edits ``/etc/piano-buddy/config.toml`` with a text editor; a typo must not turn
into a silent default or a traceback. Every error names the key, the bad value and what is
allowed (:class:`ConfigError`, exit code 2), and unknown keys are errors too. The default
pins come from the one pin table, ``hardware/pins.toml`` (linked as ``pins.toml`` here).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from .encoding import NUM_BUTTONS, PIANO_HIGHEST, PIANO_LOWEST
from .errors import ConfigError
from .styles import CHOICES as STYLE_CHOICES, GENERAL as GENERAL_STYLE

DEFAULT_PATH = Path("/etc/piano-buddy/config.toml")
PIN_TABLE = Path(__file__).with_name("pins.toml")
VALID_GPIOS = range(2, 28)  # BCM numbers on the 40-pin header


def _pin_table() -> dict[str, Any]:
    with PIN_TABLE.open("rb") as f:
        return tomllib.load(f)


def reserved_pins() -> dict[int, str]:
    """GPIO -> what owns it (the amplifier's I2S, I2C, the UART, the HAT ID bus): the
    ``[reserved]`` table of the pin table, the same one the wiring drawing shows."""
    return {int(gpio): str(what) for gpio, what in _pin_table().get("reserved", {}).items()}


def _spec(default=dataclasses.MISSING, *, lo=None, hi=None, choices=None, help="",
          default_factory=dataclasses.MISSING):
    """A field with its allowed range, kept next to the default so docs and checks agree."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "help": help}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PanelConfig:
    """The eight buttons and their LEDs (BCM pins, lowest note first)."""
    buttons: tuple[int, ...] = _spec(default_factory=lambda: tuple(_pin_table()["buttons"]),
                                     help="eight button pins, lowest note first")
    button_leds: tuple[int, ...] = _spec(
        default_factory=lambda: tuple(_pin_table()["button_leds"]),
        help="eight LED pins, one inside each button")
    turn_led: int = _spec(default_factory=lambda: int(_pin_table()["turn_led"]),
                          help="pin of the LED that shows the AI's turn")
    volume_encoder: tuple[int, ...] = _spec(
        default_factory=lambda: tuple(_pin_table()["volume_encoder"]),
        help="rotary encoder A and B pins ([] for none)")
    bounce_ms: float = _spec(10.0, lo=0.0, hi=200.0, help="button debounce time")
    velocity: int = _spec(90, lo=1, hi=127, help="MIDI velocity of button notes")
    small_hands: bool = _spec(False, help="four buttons (1, 3, 6 and 8) instead of eight; the "
                                         "others stay dark. Holding 1 and 8 for 2 s switches")


@dataclass(frozen=True)
class TurnsConfig:
    """When the AI answers, and how."""
    mode: str = _spec("duet", choices=("duet", "copy"),
                      help="duet: the AI answers; copy: the copy-me game (buttons 1 and 2 "
                           "held for 2 s switch it on the box)")
    style: str = _spec(GENERAL_STYLE, choices=STYLE_CHOICES,
                       help="how the AI answers: all (every tune), dance (Irish and American "
                            "dance tunes), airs (Scottish airs and songs), chorale (Bach "
                            "chorale melodies), auto (the style the phrase sounds most like); "
                            "buttons 2 and 7 held for 2 s step through them")
    pause: float = _spec(0.8, lo=0.1, hi=10.0, help="seconds of silence that end the phrase")
    creativity_low: float = _spec(0.6, lo=0.2, hi=1.0,
                                  help="the least adventurous AI (button 8 held + the knob): "
                                       "temperature and reply length times this")
    creativity_high: float = _spec(1.4, lo=1.0, hi=2.5,
                                   help="the most adventurous AI: temperature and reply length "
                                        "times this (each kept within its own range)")
    reply_ratio: float = _spec(1.0, lo=0.1, hi=4.0, help="reply length / phrase length")
    reply_min: float = _spec(2.0, lo=0.5, hi=30.0, help="shortest reply, seconds")
    reply_max: float = _spec(8.0, lo=0.5, hi=30.0, help="longest reply, seconds")
    temperature: float = _spec(1.0, lo=0.05, hi=2.0, help="melody sampling temperature")
    genie_temperature: float = _spec(0.25, lo=0.0, hi=1.0,
                                     help="button decoder temperature (0 = always the likeliest key)")
    fallback_qpm: float = _spec(120.0, lo=30.0, hi=300.0,
                                help="tempo when the phrase is too short to estimate one")
    lowest_key: int = _spec(PIANO_LOWEST, lo=PIANO_LOWEST, hi=PIANO_HIGHEST,
                            help="lowest MIDI note the buttons may play")
    highest_key: int = _spec(PIANO_HIGHEST, lo=PIANO_LOWEST, hi=PIANO_HIGHEST,
                             help="highest MIDI note the buttons may play")
    session_idle: float = _spec(60.0, lo=5.0, hi=3600.0,
                                help="seconds without play that end the session: its recording "
                                     "is written and the next visitor starts fresh")
    max_hold: float = _spec(60.0, lo=5.0, hi=3600.0,
                            help="a key held longer than this is released (a lost key-off or "
                                 "a wedged button)")
    pedal_timeout: float = _spec(10.0, lo=1.0, hi=600.0,
                                 help="a sustain pedal held this long with no key played "
                                      "counts as up (a pedal of the other polarity)")


@dataclass(frozen=True)
class AudioConfig:
    device: str = _spec("default", help="ALSA device name")
    sample_rate: int = _spec(48000, choices=(44100, 48000), help="frames per second")
    # 64 x 3 by measurement (bench/README.md): button edge -> DAC p99 6.0 ms, where 128 x 2
    # gave 8.3 and 128 x 4 gave 14
    period_frames: int = _spec(64, choices=(64, 128, 256, 512), help="ALSA period size")
    periods: int = _spec(3, lo=2, hi=8, help="ALSA periods in the buffer: the latency is "
                                            "period_frames x periods; raise periods first if "
                                            "it underruns")
    voices: int = _spec(16, lo=1, hi=64, help="polyphony")
    ceiling_dbfs: float = _spec(-6.0, lo=-40.0, hi=0.0, help="output never exceeds this level")
    volume: float = _spec(0.8, lo=0.0, hi=1.0, help="master volume at start")
    reverb: bool = _spec(True, help="a small room around the piano (mono-compatible)")
    reverb_amount: float = _spec(0.25, lo=0.0, hi=1.0, help="how much of the room is heard")
    retry_seconds: float = _spec(3.0, lo=0.5, hi=60.0, help="how often a missing device is retried")
    wav_fallback: str = _spec("", help="WAV file to write when there is no ALSA device "
                                      "('' = play silently until the device returns)")


@dataclass(frozen=True)
class ModelsConfig:
    directory: str = _spec("", help="folder with genie.tflite and melody.tflite ('' = built-in)")
    threads: int = _spec(1, lo=1, hi=4, help="interpreter threads per model")


@dataclass(frozen=True)
class MidiConfig:
    enabled: bool = _spec(True, help="use MIDI keyboards and send MIDI out")
    input_pattern: str = _spec("", help="only MIDI inputs whose name contains this")
    output_name: str = _spec("Piano Buddy", help="name of the MIDI output port")
    player_channel: int = _spec(1, lo=1, hi=16, help="MIDI channel of the player's notes")
    ai_channel: int = _spec(2, lo=1, hi=16, help="MIDI channel of the AI's notes")


@dataclass(frozen=True)
class RecordingConfig:
    enabled: bool = _spec(True, help="write every session as a .mid file")
    folder: str = _spec("/var/lib/piano-buddy/recordings", help="where recordings go")
    max_mb: float = _spec(200.0, lo=1.0, hi=100000.0, help="folder size cap; oldest removed")


@dataclass(frozen=True)
class KeysConfig:
    """USB keyboards or a Makey Makey as the eight buttons (key_buttons.py)."""
    enabled: bool = _spec(True, help="a plugged-in USB keyboard or Makey Makey plays the buttons")
    map: tuple[str, ...] = _spec(
        default_factory=lambda: ("KEY_LEFT", "KEY_UP", "KEY_DOWN", "KEY_RIGHT", "KEY_SPACE",
                                 "BTN_LEFT", "KEY_W", "KEY_A"),
        help="the keys of buttons 1-8 (Linux key names; the default is a Makey Makey's "
             "front: arrows, space, click, then w and a)")
    devices: tuple[str, ...] = _spec(
        default_factory=lambda: ("/dev/input/by-id/*-event-kbd",
                                 "/dev/input/by-id/*-event-mouse"),
        help="input devices looked for every 2 s (glob patterns)")


@dataclass(frozen=True)
class HarmonyConfig:
    """The AI accompanying the player: a bass note and a chord under the melody."""
    enabled: bool = _spec(False, help="accompany the player (buttons 7 and 8 held for 2 s "
                                      "switch it on the box)")
    level: float = _spec(0.5, lo=0.1, hi=0.9, help="the accompaniment's loudness against the "
                                                   "melody's (velocity ratio)")
    reply: bool = _spec(True, help="harmonize the AI's reply the same way")


@dataclass(frozen=True)
class AttractConfig:
    """A museum box with nobody at it invites the next visitor."""
    after_minutes: float = _spec(5.0, lo=0.0, hi=1440.0,
                                 help="minutes without play before the lamps chase and the box "
                                      "invites a visitor (0 = never)")
    phrase_every_minutes: float = _spec(3.0, lo=0.5, hi=120.0,
                                        help="minutes between the short quiet phrases it plays")
    velocity: int = _spec(40, lo=1, hi=90, help="loudness of those phrases (MIDI velocity)")


@dataclass(frozen=True)
class StatsConfig:
    enabled: bool = _spec(True, help="keep visitor counts (piano-buddy stats; node_exporter)")
    folder: str = _spec("", help="where counts.json and piano_buddy.prom are written ('' = "
                                 "recording.folder/stats, on the data partition; "
                                 "node_exporter's textfile collector reads it)")


@dataclass(frozen=True)
class MuseumConfig:
    """Opening hours and the volume cap (piano_buddy.museum; systemd timers do the timing)."""
    opens: str = _spec("", help="opening time, HH:MM local time; the box starts then "
                                "('' with closes '' = no hours: it plays whenever it is on)")
    closes: str = _spec("", help="closing time, HH:MM, after opens: the box stops then and "
                                 "stays silent until the next opening")
    days: str = _spec("Mon..Sun", help="opening days as systemd writes them, e.g. "
                                       "\"Tue..Sun\" or \"Mon..Fri,Sun\"")
    early_minutes: int = _spec(0, lo=0, hi=240,
                               help="the box starts this many minutes before opening, with "
                                    "the lower early_ceiling_dbfs (staff setting up)")
    early_ceiling_dbfs: float = _spec(-20.0, lo=-40.0, hi=0.0,
                                      help="output ceiling before opening (the lower of this "
                                           "and audio.ceiling_dbfs)")
    max_volume: float = _spec(1.0, lo=0.0, hi=1.0,
                              help="the volume knob stops here at all hours; a higher "
                                   "audio.volume starts at this cap")


@dataclass(frozen=True)
class Config:
    panel: PanelConfig = field(default_factory=PanelConfig)
    turns: TurnsConfig = field(default_factory=TurnsConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    midi: MidiConfig = field(default_factory=MidiConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    harmony: HarmonyConfig = field(default_factory=HarmonyConfig)
    attract: AttractConfig = field(default_factory=AttractConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    museum: MuseumConfig = field(default_factory=MuseumConfig)


def _check_value(key: str, value: Any, hint: Any, meta: dict) -> Any:
    """Convert and check one value against its annotation and range; name it on failure."""
    origin = get_origin(hint)
    if origin is tuple and get_args(hint)[0] is str:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} = {value!r}: expected a list of strings in quotes")
        return tuple(value)
    if origin is tuple:
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key} = {value!r}: expected a list of integers")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r}: expected a number")
        value = float(value)
        if value != value:
            raise ConfigError(f"{key} = nan: expected a number")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string in quotes")
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} = {value!r}: allowed values are "
                          + ", ".join(map(str, choices)))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key} = {value!r}: allowed range is {lo} to {hi}")
    return value


# Keys that moved: the message says where (a typo and a renamed key both stop the box).
MOVED_KEYS = {"recording.idle_seconds": "turns.session_idle (one idle time ends both the "
                                        "visitor's session and its recording)"}


def _build_section(name: str, cls: type, table: Any):
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table, not {table!r}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    for key in unknown:
        if f"{name}.{key}" in MOVED_KEYS:
            raise ConfigError(f"{name}.{key} is no longer a setting: use "
                              f"{MOVED_KEYS[name + '.' + key]}")
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]}: [{name}] allows "
                          + ", ".join(sorted(known)))
    values = {k: _check_value(f"{name}.{k}", v, hints[k], known[k].metadata)
              for k, v in table.items()}
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Config:
    """Validate a parsed TOML document into a :class:`Config` (ConfigError on any problem)."""
    sections = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]: allowed sections are "
                          + ", ".join(sections))
    built = {name: _build_section(name, factory, data.get(name, {}))  # type: ignore[arg-type]
             for name, factory in sections.items()}
    cfg = Config(**built)
    _check_whole(cfg)
    return cfg


def _check_whole(cfg: Config) -> None:
    """Checks that involve more than one key."""
    p = cfg.panel
    for key, pins, n in (("panel.buttons", p.buttons, NUM_BUTTONS),
                         ("panel.button_leds", p.button_leds, NUM_BUTTONS)):
        if len(pins) != n:
            raise ConfigError(f"{key} = {list(pins)!r}: expected exactly {n} pins")
    if len(cfg.keys.map) != NUM_BUTTONS:
        raise ConfigError(f"keys.map = {list(cfg.keys.map)!r}: expected exactly "
                          f"{NUM_BUTTONS} key names")
    from .key_buttons import keycodes_for
    if len(keycodes_for(cfg.keys.map)) != NUM_BUTTONS:
        raise ConfigError(f"keys.map = {list(cfg.keys.map)!r}: a key is named twice")
    if p.volume_encoder and len(p.volume_encoder) != 2:
        raise ConfigError(f"panel.volume_encoder = {list(p.volume_encoder)!r}: "
                          "expected [A, B] or []")
    named = ([("panel.buttons", x) for x in p.buttons]
             + [("panel.button_leds", x) for x in p.button_leds]
             + [("panel.turn_led", p.turn_led)]
             + [("panel.volume_encoder", x) for x in p.volume_encoder])
    seen: dict[int, str] = {}
    reserved = reserved_pins()
    for key, pin in named:
        if pin not in VALID_GPIOS:
            raise ConfigError(f"{key}: GPIO {pin} is not a header GPIO (allowed 2 to 27)")
        if pin in reserved:
            raise ConfigError(f"{key}: GPIO {pin} is reserved for {reserved[pin]} "
                              "(see the [reserved] table in hardware/pins.toml)")
        if pin in seen:
            raise ConfigError(f"{key}: GPIO {pin} is already used by {seen[pin]}")
        seen[pin] = key
    t = cfg.turns
    if t.reply_min > t.reply_max:
        raise ConfigError(f"turns.reply_min = {t.reply_min} is above turns.reply_max = "
                          f"{t.reply_max}: allowed is reply_min <= reply_max")
    if t.highest_key - t.lowest_key < 11:
        raise ConfigError(f"turns.lowest_key = {t.lowest_key}, turns.highest_key = "
                          f"{t.highest_key}: the buttons need at least an octave")
    if cfg.midi.enabled and not cfg.midi.output_name.strip():
        raise ConfigError(f"midi.output_name = {cfg.midi.output_name!r}: the MIDI output "
                          "port needs a name (to turn MIDI off, set midi.enabled = false)")
    if cfg.midi.enabled and cfg.midi.player_channel == cfg.midi.ai_channel:
        raise ConfigError(f"midi.ai_channel = {cfg.midi.ai_channel}: must differ from "
                          "midi.player_channel so the two parts stay apart")
    from .museum import hours
    hours(cfg.museum)           # [museum]: times, days, and the keys that need each other


def load(path: str | Path | None = None) -> Config:
    """Read and validate a config file; a missing default file means all defaults."""
    if path is None:
        if not DEFAULT_PATH.exists():
            return Config()
        path = DEFAULT_PATH
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: "
                          f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def describe(cfg: Config | None = None) -> str:
    """Every key with its default and allowed values, as a commented TOML document. Given a
    loaded ``cfg``, the values shown are its own, each change from the default marked."""
    lines = ["# Piano Buddy configuration. Every key is optional; shown are the defaults.", ""]
    if cfg is not None:
        lines[0] = ("# Piano Buddy configuration as loaded; a key that differs from the "
                    "default says so.")
    for sec in fields(Config):
        cls = sec.default_factory  # type: ignore[misc]
        inst = cls()
        lines.append(f"[{sec.name}]")
        for f in fields(cls):
            m = f.metadata
            allowed = (f" (one of {', '.join(map(str, m['choices']))})" if m.get("choices")
                       else f" ({m['lo']} to {m['hi']})" if m.get("lo") is not None else "")
            lines.append(f"# {m.get('help', '')}{allowed}")
            value = getattr(inst, f.name)
            if cfg is not None and getattr(getattr(cfg, sec.name), f.name) != value:
                lines.append(f"{f.name} = {_toml(getattr(getattr(cfg, sec.name), f.name))}"
                             f"    # changed; default {_toml(value)}")
            else:
                lines.append(f"{f.name} = {_toml(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(map(_toml, v)) + "]"
    return repr(v)
