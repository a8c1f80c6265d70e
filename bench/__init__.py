"""`make bench`: every timing target of the project, measured, in one table.

Each ``bench_<area>.py`` module has ``run(quick: bool) -> list[Figure]``; ``python -m bench``
runs them all, prints one table with each target beside its figure, and writes the same
figures as JSON with the machine, Python and library versions. Method notes live in
bench/README.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One measured figure and the target it is held against (None: reported only)."""
    area: str
    name: str
    value: float
    unit: str
    target: float | None = None
    # "max": value must be <= target; "min": value must be >= target
    sense: str = "max"
    note: str = ""

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        return self.value <= self.target if self.sense == "max" else self.value >= self.target

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d
