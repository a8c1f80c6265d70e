"""`make bench`'s table and verdict: units beside figures, rounded targets, one summary line,
and a non-zero exit when a target is missed (unless --no-fail)."""

from __future__ import annotations

import json
import sys
import types

import pytest

import bench.__main__ as bench_main
from bench import Figure


@pytest.fixture
def fake_area(monkeypatch):
    """A benchmark area module whose figures the test chooses, run by the real main()."""
    module = types.ModuleType("bench.bench_fake")
    module.figures = []
    module.run = lambda quick=False: list(module.figures)
    monkeypatch.setitem(sys.modules, "bench.bench_fake", module)
    return module


def run(capsys, tmp_path, *extra):
    code = bench_main.main(["--only", "bench_fake", "--json", str(tmp_path / "b.json"), *extra])
    return code, capsys.readouterr().out, json.loads((tmp_path / "b.json").read_text())


def test_units_sit_beside_figures_and_targets_are_rounded(fake_area, capsys, tmp_path):
    fake_area.figures = [Figure("latency", "button edge -> stream, median", 1.234567, "ms",
                                target=11 / 3),
                         Figure("synth", "table memory", 2.75, "MiB"),
                         Figure("latency", "skipped: no jackd", float("nan"), "")]
    code, out, data = run(capsys, tmp_path)
    assert code == 0
    row = next(line for line in out.splitlines() if "button edge" in line)
    assert "1.235 ms" in row and "<= 3.667 ms" in row and row.rstrip().endswith("yes")
    assert "3.66667" not in out
    assert "skipped" in next(line for line in out.splitlines() if "no jackd" in line)
    last = out.strip().splitlines()[-1]
    assert last.startswith("1 of 1 targets met on ") and ", load " in last
    assert data["summary"] == last


def test_a_missed_target_fails_the_run_unless_no_fail(fake_area, capsys, tmp_path):
    fake_area.figures = [Figure("models", "Genie decode per press, p99", 250.0, "us",
                                target=200),
                         Figure("firmware", "idle CPU", 1.6, "% of one core", target=3),
                         Figure("synth", "voices", 40, "", target=32, sense="min")]
    code, out, _ = run(capsys, tmp_path)
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("2 of 3 targets met") and "missed: models: Genie decode" in last
    assert "250 us" in out and "NO" in out
    code, _, _ = run(capsys, tmp_path, "--no-fail")
    assert code == 0


def test_a_crashing_area_fails_even_with_no_fail(fake_area, capsys, tmp_path):
    def boom(quick=False):
        raise RuntimeError("no device")
    fake_area.run = boom
    code, out, data = run(capsys, tmp_path, "--no-fail")
    assert code == 1 and "crashed: bench_fake" in out and data["failed_areas"] == ["bench_fake"]
