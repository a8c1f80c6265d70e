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

AREAS = ["bench_models", "bench_synth", "bench_audio", "bench_latency", "bench_firmware"]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--json", type=Path, default=Path("out/bench.json"))
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (CI smoke)")
    ap.add_argument("--only", nargs="*", help="run only these areas, e.g. bench_synth")
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
    print(f"\nPiano Buddy benchmarks on {info['cpu']} ({info['cores']} cores, {info['arch']}), "
          f"Python {info['python']}")
    print(f"{'area':<10} {'figure':<46} {'value':>10} {'target':>10}  ok")
    for f in figures:
        tgt = "" if f.target is None else f"{'<=' if f.sense == 'max' else '>='}{f.target:g}"
        ok = {None: "", True: "yes", False: "NO"}[f.ok]
        print(f"{f.area:<10} {f.name:<46} {f.value:>10.4g} {tgt:>10}  {ok} {f.unit}"
              + (f"  ({f.note})" if f.note else ""))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "figures": [f.as_dict() for f in figures],
                                     "failed_areas": failed}, indent=2))
    print(f"\nwritten {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
