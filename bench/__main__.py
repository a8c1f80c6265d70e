"""Run every benchmark module, print one table, write JSON. See bench/__init__.py."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

from . import Figure

AREAS = ["bench_models", "bench_synth", "bench_audio", "bench_latency", "bench_turns", "bench_game",
         "bench_firmware"]
LIBRARIES = ["numpy", "ai-edge-litert", "tflite-runtime", "gpiozero", "mido", "pyalsaaudio",
             "python-rtmidi"]


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "libraries": libs,
            "date": time.strftime("%Y-%m-%d %H:%M")}


def _num(x: float) -> str:
    """Four significant figures, no exponent for the ranges we print."""
    return f"{x:.4g}"


def table_rows(figures: list[Figure]) -> list[str]:
    """The table: each figure with its unit, the target in the same unit, met or not."""
    rows = [f"{'area':<9} {'figure':<46} {'measured':>19} {'target':>22}  met"]
    for f in figures:
        if f.value != f.value:                     # NaN: the area could not run here
            rows.append(f"{f.area:<9} {f.name:<46} {'skipped':>19} {'':>22}  -")
            continue
        unit = f" {f.unit}" if f.unit else ""
        tgt = ("" if f.target is None
               else f"{'<=' if f.sense == 'max' else '>='} {_num(f.target)}{unit}")
        met = {None: "-", True: "yes", False: "NO"}[f.ok]
        rows.append(f"{f.area:<9} {f.name:<46} {_num(f.value) + unit:>19} {tgt:>22}  {met}"
                    + (f"  ({f.note})" if f.note else ""))
    return rows


def summary_line(figures: list[Figure], info: dict, failed_areas: list[str]) -> str:
    """One line: how many targets were met, where, and how busy the machine was."""
    held = [f for f in figures if f.ok is not None]
    met = sum(1 for f in held if f.ok)
    line = (f"{met} of {len(held)} targets met on {info['cpu'] or info['arch']} "
            f"({info['cores']} cores, {info['arch']}), load {info['load']:.2f}")
    missed = [f"{f.area}: {f.name}" for f in held if not f.ok]
    if missed:
        line += "; missed: " + ", ".join(missed)
    if failed_areas:
        line += "; crashed: " + ", ".join(failed_areas)
    return line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--json", type=Path, default=Path("out/bench.json"),
                    help="where the figures go as JSON (default: out/bench.json)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke)")
    ap.add_argument("--only", nargs="*", help="run only these areas, e.g. bench_synth")
    ap.add_argument("--no-fail", action="store_true",
                    help="exit 0 even when a target is missed (an area that crashes still fails)")
    args = ap.parse_args(argv)
    figures: list[Figure] = []
    failed = []
    for area in args.only or AREAS:
        try:
            mod = importlib.import_module(f"bench.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{area}":
                continue
            raise
        print(f"... {area}", file=sys.stderr, flush=True)
        try:
            figures += mod.run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(area)
    info = machine()
    info["load"] = os.getloadavg()[0]      # 1-minute load average, as the runs ended
    print(f"\nPiano Buddy benchmarks on {info['cpu']} ({info['cores']} cores, {info['arch']}), "
          f"Python {info['python']}")
    for row in table_rows(figures):
        print(row)
    summary = summary_line(figures, info, failed)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "figures": [f.as_dict() for f in figures],
                                     "failed_areas": failed, "summary": summary}, indent=2))
    print(f"\nwritten {args.json}")
    print(summary)
    missed = any(f.ok is False for f in figures)
    return 1 if failed or (missed and not args.no_fail) else 0


if __name__ == "__main__":
    sys.exit(main())
