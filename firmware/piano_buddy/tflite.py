"""Load a .tflite model through whichever interpreter is installed.

``tflite_runtime`` (2.14, Python <= 3.11, numpy < 2) is tried first, then its successor
``ai_edge_litert``. Every failure becomes a :class:`ModelError` that names the file and what
is wrong with it, so a technician reading the journal knows what to replace.

A model folder carries ``MANIFEST.sha256`` (``sha256sum`` format, written by ``make models``
and by :func:`write_manifest`): each model is checked against it at load, so a file with one
flipped bit - SD cards in museum boxes do corrupt - is refused like a truncated one instead of
playing with wrong weights. A folder without a manifest (a model under development) is loaded
unchecked; a model missing from a folder's manifest is refused.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import ModelError

_BACKENDS = (
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
)
FLATBUFFER_IDENTIFIER = b"TFL3"
MANIFEST_NAME = "MANIFEST.sha256"


def read_manifest(folder: Path) -> dict[str, str] | None:
    """{file name: sha256 hex} from ``folder``'s manifest, or None when it has none."""
    path = Path(folder) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"model manifest {path} cannot be read: {exc}") from None
    digests = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ModelError(f"model manifest {path}, line {number}: expected "
                             f"'<sha256>  <file>', got {line!r}")
        digests[name.strip()] = digest.lower()
    return digests


def write_manifest(folder: Path, names: Sequence[str] | None = None) -> Path:
    """Write ``folder``'s manifest for ``names`` (default: every .tflite there)."""
    folder = Path(folder)
    names = sorted(names if names is not None else (p.name for p in folder.glob("*.tflite")))
    lines = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names]
    path = folder / MANIFEST_NAME
    path.write_text("".join(lines), encoding="ascii")
    return path


def check_against_manifest(path: Path, data: bytes) -> None:
    digests = read_manifest(path.parent)
    if digests is None:
        return
    want = digests.get(path.name)
    if want is None:
        raise ModelError(f"model file {path} is not listed in {path.parent / MANIFEST_NAME}: "
                         f"not a model this firmware was shipped with")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ModelError(f"model file {path} does not match its checksum in "
                         f"{MANIFEST_NAME} (sha256 {got[:12]}..., expected {want[:12]}...): "
                         f"the file is corrupt; reinstall it")


def interpreter_class(prefer: str | None = None):
    """Return (backend name, Interpreter class). ``prefer`` forces one backend by name."""
    errors = []
    for name, module in _BACKENDS:
        if prefer and name != prefer:
            continue
        try:
            return name, importlib.import_module(module).Interpreter
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ModelError("no TFLite interpreter installed (pip install ai-edge-litert, or "
                     "tflite-runtime on Python <= 3.11): " + "; ".join(errors))


def load_interpreter(path: str | Path, *,
                     expect_inputs: Mapping[str, Sequence[int]] | None = None,
                     expect_outputs: Mapping[str, Sequence[int]] | None = None,
                     num_threads: int = 1, prefer: str | None = None) -> Any:
    """Open, check and allocate a model. ``expect_*`` map a tensor name fragment to a shape.

    The checks are cheap and catch the usual field faults: a missing file, a truncated copy
    (power cut during an update), a file that is not a TFLite flatbuffer, or a model built for
    another layout (names and shapes of inputs and outputs).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    data = path.read_bytes()
    if len(data) < 16 or data[4:8] != FLATBUFFER_IDENTIFIER:
        raise ModelError(f"model file {path} is not a TFLite model "
                         f"({len(data)} bytes, no 'TFL3' identifier): corrupt or truncated")
    check_against_manifest(path, data)
    backend, cls = interpreter_class(prefer)
    try:
        interp = cls(model_content=data, num_threads=num_threads)
        interp.allocate_tensors()
    except Exception as exc:  # the interpreters raise ValueError/RuntimeError with C++ text
        raise ModelError(f"model file {path} could not be loaded by {backend}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r} "
                         f"(corrupt or truncated?)") from exc
    for kind, details, expected in (("input", interp.get_input_details(), expect_inputs),
                                    ("output", interp.get_output_details(), expect_outputs)):
        for fragment, shape in (expected or {}).items():
            match = [d for d in details if fragment in d["name"]]
            if not match:
                names = ", ".join(d["name"] for d in details)
                raise ModelError(f"model file {path} has no {kind} named like {fragment!r} "
                                 f"(it has: {names}): wrong model for this firmware")
            got = tuple(int(x) for x in match[0]["shape"])
            if got != tuple(shape):
                raise ModelError(f"model file {path}: {kind} {match[0]['name']!r} has shape "
                                 f"{got}, expected {tuple(shape)}: wrong model for this firmware")
    return interp


def tensor_index(details: Sequence[Mapping[str, Any]], fragment: str) -> int:
    """Index of the tensor whose name contains ``fragment`` (names survive conversion)."""
    for d in details:
        if fragment in d["name"]:
            return d["index"]
    raise KeyError(fragment)
