"""`make models`: every model from scratch: data -> melody -> styles -> genie -> export -> eval.

Each stage prints its own progress line (parsing, training steps with time left) and this
driver prints a line per stage with the time so far. Parsed data is cached under build/
(git-ignored), so a second run skips the parse. The stages write:

  models_tflite/melody.tflite, models_tflite/training/melody_reference.npz  (melody_train)
  models_tflite/melody-{dance,airs,chorale}.tflite,
  models_tflite/training/melody_styles_reference.npz                       (melody_styles)
  models_tflite/genie.tflite, models_tflite/genie_encoder.tflite,
  models_tflite/training/genie_reference.npz                               (genie_train)

``--smoke`` runs every stage on a tiny subset into the build folder (the committed models
are untouched); ``--only melody|genie`` runs one model; ``--no-eval`` skips the tables.
Budget on this 2-core machine: the whole build took 31.9 min from an empty build folder
(parse 3.8, melody 10.1, styles 8.3, Genie 9.1, eval 0.6) and reproduced every committed
file byte for byte; MODEL_CARD.md, "Reproducibility", has the run. ``GENIE_NONCOMMERCIAL=1 MELODY_NONCOMMERCIAL=1 make models``
adds the encodings whose licence forbids commercial use (a non-commercial installation: the
Genie's Palestrina and noted files, the melody's Essen folksongs); the committed models are
built without them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from . import common


def _stage(name: str, t0: float) -> None:
    print(f"\n=== {name} ({(time.monotonic() - t0) / 60:.1f} min so far)", flush=True)


def _run_module(module: str, *args: str) -> None:
    """Run one training stage in its own process: TensorFlow's thread settings and memory
    are per process, and one stage's TF session must not constrain the next."""
    cmd = [sys.executable, "-m", f"models_tflite.training.{module}", *args]
    res = subprocess.run(cmd, cwd=common.ROOT)
    if res.returncode:
        raise SystemExit(f"make models: {' '.join(cmd[2:])} failed (exit {res.returncode})")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny subset, few steps, build/ only")
    ap.add_argument("--only", choices=("melody", "genie"), default=None)
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    smoke = ["--smoke"] if args.smoke else []
    if args.smoke:
        os.environ["GENIE_SMOKE"] = os.environ["MELODY_SMOKE"] = "1"
    t0 = time.monotonic()
    print(f"make models: build folder {common.BUILD_DIR}", flush=True)
    if args.only in (None, "melody"):
        from . import melody_data
        _stage("melody data: music21 corpus -> 16th-note events", t0)
        data = melody_data.load_melodies(3 if args.smoke else None)
        print(melody_data.summary(data), flush=True)
        _stage("melody LSTM: Markov baseline, training, export, quantization", t0)
        _run_module("melody_train", *smoke)
        _stage("melody styles: fine-tuned from the general model, export, quantization", t0)
        _run_module("melody_styles", *smoke)
    if args.only in (None, "genie"):
        _stage("Piano Genie: data, autoencoder training, decoder export", t0)
        _run_module("genie_train", *smoke)
    if not args.smoke:                 # the firmware checks every model against it at load
        from piano_buddy.tflite import write_manifest
        print(f"checksums: {write_manifest(common.MODELS_DIR)}", flush=True)
    if not args.no_eval and not args.smoke:
        _stage("evaluation of the written models", t0)
        _run_module("evaluate", *(["--only", args.only] if args.only else []))
    _stage("done", t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
