"""A short soak in CI: the whole firmware under museum traffic, JACK-paced (see bench/soak.py;
`make soak MINUTES=480` is the 8-hour run)."""

import pytest

from tests.audio_rig import jack_missing_reason


@pytest.mark.slow
def test_short_soak_keeps_every_promise():
    reason = jack_missing_reason()
    if reason:
        pytest.skip(reason)
    from bench import soak
    from tests.rig import TEST_BUFFER
    result = soak.run(minutes=1.0, seed=1,
                      buffer=(TEST_BUFFER["period_frames"], TEST_BUFFER["periods"]))
    assert result["cycles"] >= 2
    assert result["recordings"] >= result["cycles"]
    # xruns and device stalls are timing, reported here and held to 0 by `make soak`
    assert not result["failures"], result["failures"]
