"""The Genie's training-window rules that shape how the box feels (genie_data): one press per
key per onset, and repeated keys thinned by the gap before them. Pure numpy, no corpus."""

from __future__ import annotations

import numpy as np
import pytest

from models_tflite.training import genie_data as gd
from piano_buddy import encoding as enc


def piece(onsets, pitches):
    return gd.Piece("test/x", "test", "keyboard", "train", np.asarray(onsets, np.float32),
                    np.asarray(pitches, np.int16))


def test_a_unison_is_one_press():
    p = gd.drop_unisons(piece([0, 0, 0, 1, 1, 2], [60, 60, 64, 64, 67, 64]))
    assert p.pitches.tolist() == [60, 64, 64, 67, 64]  # the 60 sung twice at 0 is one key
    assert p.onsets.tolist() == [0, 0, 1, 1, 2]        # a repeat at a new onset stays
    same = piece([0, 1], [60, 61])
    assert gd.drop_unisons(same) is same


def window(keys, seconds):
    s = np.asarray(seconds, np.float32)
    dt = np.diff(s, prepend=s[0])
    return gd.Window(np.asarray(keys, np.int32),
                     np.round(dt * enc.DT_BINS_PER_SECOND).astype(np.int32), s)


def test_fast_repeats_go_slow_ones_stay_at_the_set_rate():
    rng = np.random.default_rng(0)
    # alternating fast repeats (0.1 s) and slow repeats (0.8 s) of one key, then a new key
    n = 4000
    secs = np.cumsum(np.where(np.arange(n) % 2, 0.1, 0.8))
    keys = np.full(n, 40)
    keys[::50] = 41  # now and then another key, so repeats restart
    w = gd.thin_repeats(window(keys, secs), 0.5, rng)
    gaps = np.diff(w.seconds.astype(np.float64))
    same = np.diff(w.keys) == 0
    assert not np.any(same & (gaps <= gd.REPEAT_FAST_S + 1e-6))  # no fast repeat survives
    kept_slow = np.mean(same[gaps > gd.REPEAT_SLOW_S]) if np.any(gaps > gd.REPEAT_SLOW_S) else 0
    assert 0.3 < kept_slow <= 1.0
    assert len(w.keys) < 0.6 * n


def test_thinning_recomputes_the_time_since_the_kept_note():
    rng = np.random.default_rng(1)
    w = gd.thin_repeats(window([40, 40, 40, 45], [0.0, 0.05, 0.1, 0.3]), 0.5, rng)
    assert w.keys.tolist() == [40, 45]       # the fast repeats are gone
    assert w.dt_bins.tolist() == [0, round(0.3 * enc.DT_BINS_PER_SECOND)]
    other = window([40, 42, 40, 42], [0.0, 0.1, 0.2, 0.3])
    same = gd.thin_repeats(other, 0.0, rng)  # nothing repeats: nothing changes
    assert same.keys.tolist() == other.keys.tolist()
    assert same.dt_bins.tolist() == other.dt_bins.tolist()


def test_the_recipe_reads_its_settings(monkeypatch):
    monkeypatch.setenv("GENIE_REPEAT_KEEP", "off")
    assert gd.Recipe.from_env().repeat_keep is None
    monkeypatch.setenv("GENIE_REPEAT_KEEP", "0.25")
    assert gd.Recipe.from_env().repeat_keep == pytest.approx(0.25)
    monkeypatch.delenv("GENIE_REPEAT_KEEP")
    assert gd.Recipe.from_env().repeat_keep == gd.Recipe().repeat_keep


def test_unisons_are_a_recipe_choice(monkeypatch):
    monkeypatch.setenv("GENIE_DROP_UNISONS", "1")
    assert gd.Recipe.from_env().drop_unisons
    monkeypatch.setenv("GENIE_DROP_UNISONS", "0")
    assert not gd.Recipe.from_env().drop_unisons


def test_a_build_into_a_folder_with_a_manifest_can_load_what_it_wrote(tmp_path):
    """genie_train writes the models, then measures them through the firmware, which checks
    each file against MANIFEST.sha256: the build rewrites the manifest in between (a full
    build into models_tflite/ once died there after 30 minutes of training)."""
    from models_tflite.training import genie_train
    from piano_buddy.errors import ModelError
    from piano_buddy.tflite import check_against_manifest, write_manifest
    model = tmp_path / "genie.tflite"
    model.write_bytes(b"old model")
    write_manifest(tmp_path)
    model.write_bytes(b"new model")
    with pytest.raises(ModelError, match="checksum"):
        check_against_manifest(model, model.read_bytes())
    genie_train._refresh_manifest(tmp_path)
    check_against_manifest(model, model.read_bytes())
    bare = tmp_path / "bare"
    bare.mkdir()
    genie_train._refresh_manifest(bare)  # no manifest there: none is made
    assert not any(bare.iterdir())


def test_the_tempo_range_is_a_recipe_choice(monkeypatch):
    """GENIE_TEMPO="lo,hi" seconds per quarter (log-uniform with GENIE_LOG_TEMPO=1), and the
    performed window keeps every quarter-note gap inside that range (drift +-25% aside)."""
    assert gd.Recipe().tempo == gd.TEMPO_DEFAULT
    monkeypatch.setenv("GENIE_TEMPO", "0.15,1.2")
    monkeypatch.setenv("GENIE_LOG_TEMPO", "1")
    r = gd.Recipe.from_env()
    assert r.tempo == (0.15, 1.2) and r.log_tempo
    monkeypatch.setenv("GENIE_TEMPO", "1,0.5")
    with pytest.raises(ValueError, match="GENIE_TEMPO"):
        gd.Recipe.from_env()
    rng = np.random.default_rng(3)
    firsts = []
    for _ in range(300):
        w = gd.perform(np.arange(8, dtype=np.float32), np.full(8, 60, np.int16), rng,
                       transpose="none", tempo=(0.15, 1.2), log_tempo=True)
        firsts.append(float(w.seconds[1] - w.seconds[0]))
    firsts = np.array(firsts)
    assert firsts.min() > 0.15 * 0.75 - 0.06 and firsts.max() < 1.2 * 1.25 + 0.06
    assert np.median(firsts) < 0.55  # log-uniform: the geometric middle is 0.42 s


def test_the_committed_recipe_is_the_default():
    """`make models` trains with the defaults: unisons dropped, fast repeats thinned and
    every slow one kept (1.0), the decoder's interval bias on, the range penalty at weight
    10, 1500 + 1000 steps (the committed genie.tflite's recipe)."""
    from models_tflite.training import genie_train
    r = gd.Recipe()
    assert r.drop_unisons and r.repeat_keep == 1.0 and r.transpose == "keyboard"
    cfg = genie_train.Config()
    assert cfg.interval_bias and (cfg.steps, cfg.baseline_steps) == (1500, 1000)
    assert cfg.range_weight == 10.0
