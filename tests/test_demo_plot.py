"""docs/duet.png as a reader needs it: note names on the pitch axis, the interrupt marked,
the grid behind the bars; drawn from a real offline duet."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

from piano_buddy.config import Config
from piano_buddy.demo import piano_roll_figure, render_duet, write_piano_roll


def test_the_piano_roll_names_notes_marks_the_interrupt_and_keeps_the_grid_behind(tmp_path):
    import matplotlib.pyplot as plt

    _, notes, stats = render_duet(Config(), seed=7)
    assert stats["interrupts"] == 1 and len(stats["interrupt_times"]) == 1
    t = stats["interrupt_times"][0]
    ai = [n for n in notes.notes if n[4]]
    assert min(n[2] for n in ai) < t, "the interrupt comes while the AI is answering"
    fig = piano_roll_figure(notes.notes, interrupts=stats["interrupt_times"])
    ax = fig.axes[0]
    labels = [lbl.get_text() for lbl in ax.get_yticklabels()]
    assert labels and all(re.fullmatch(r"[A-G]\d", s) for s in labels), labels
    assert "C4" in labels
    lines = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [t, t]]
    assert lines and lines[0].get_linestyle() == "--"
    assert any("interrupt" in txt.get_text() for txt in ax.texts)
    assert ax.get_axisbelow() is True
    bars = ax.collections
    assert bars and all(b.get_zorder() > 1 for b in bars)
    plt.close(fig)
    assert write_piano_roll(tmp_path / "d.png", notes.notes, interrupts=[t])
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
