"""The README as a newcomer uses it: every Python snippet runs as pasted, the config.txt
line appends only once however often it is run, and its links point at files that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("code", SNIPPETS, ids=[s.splitlines()[-1][:40] for s in SNIPPETS])
def test_each_python_snippet_runs_as_pasted(code, tmp_path):
    """In a fresh interpreter, in an empty folder, with nothing but the package importable:
    a missing import or an undefined name fails here."""
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"README snippet failed:\n{code}\n{r.stderr[-2000:]}"


def test_the_config_txt_line_appends_only_once(tmp_path):
    line = next(l for l in README.splitlines() if "hardware/config.txt" in l and "tee -a" in l)
    boot = tmp_path / "config.txt"
    boot.write_text("# the Pi's own settings\n[all]\n")
    cmd = (line.replace("/boot/firmware/config.txt", str(boot)).replace("sudo ", "")
           .replace("hardware/config.txt", str(ROOT / "hardware" / "config.txt")))
    for _ in range(3):
        subprocess.run(["sh", "-c", cmd], check=True, timeout=30)
    ours = (ROOT / "hardware" / "config.txt").read_text()
    assert boot.read_text() == "# the Pi's own settings\n[all]\n" + ours


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), f"README.md links to missing {target}"


def test_the_readme_names_every_command_and_make_target_it_promises():
    from piano_buddy.cli import _parser

    commands = _parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"`{name}`" in README, f"piano-buddy {name} is not in the README"
    makefile = (ROOT / "Makefile").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "mk").glob("*.mk")))
    for target in re.findall(r"`make ([a-z-]+)", README):
        assert re.search(rf"^{target}:", makefile, re.M), f"README names make {target}"
