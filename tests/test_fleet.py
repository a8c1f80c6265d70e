"""The fleet's Ansible (deploy/ansible): lint-clean at ansible-lint's production profile, both
playbooks pass --syntax-check, the config template renders configs the firmware accepts, the
rolling update stops at the first failed box, and (slow, root, after `make pi-check`) the
playbooks provision the emulated arm64 root through the chroot connection.

The tools live in their own venv (``make ansible-venv``, which ``make test`` builds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from piano_buddy import config, museum

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
ANSIBLE_BIN = Path(os.environ.get("ANSIBLE_VENV", REPO / ".venv-ansible")).resolve() / "bin"
PI_ROOT = Path(os.environ.get("PI_ROOT", REPO / "build" / "pi-root"))

needs_ansible = pytest.mark.skipif(
    not (ANSIBLE_BIN / "ansible-playbook").exists(),
    reason=f"no Ansible venv at {ANSIBLE_BIN.parent} (make ansible-venv; make test builds it)")


def ansible(tool: str, *args: str, cwd: Path = ANSIBLE_DIR, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PATH=f"{ANSIBLE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                       ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
                       **(env or {}))
    return subprocess.run([str(ANSIBLE_BIN / tool), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=environment)


def yaml_load(path: Path):
    """YAML through the Ansible venv's PyYAML (the firmware's venv has none)."""
    code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    r = subprocess.run([str(ANSIBLE_BIN / "python"), "-c", code, str(path)], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


@needs_ansible
def test_ansible_lint_is_clean_at_the_production_profile():
    r = ansible("ansible-lint", "--nocolor")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


@needs_ansible
def test_both_playbooks_pass_syntax_check():
    r = ansible("ansible-playbook", "--syntax-check", "-i", "inventory.example.yml",
                "site.yml", "update.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "playbook: site.yml" in r.stdout and "playbook: update.yml" in r.stdout


@needs_ansible
def test_syntax_check_does_catch_a_broken_playbook(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text((ANSIBLE_DIR / "update.yml").read_text().replace(
        "  serial: 1\n", "  serial: 1\n  rolez: []\n"))
    r = ansible("ansible-playbook", "--syntax-check", "-i", "inventory.example.yml", str(broken))
    assert r.returncode != 0 and "rolez" in r.stdout + r.stderr


@needs_ansible
def test_the_rolling_update_goes_one_box_at_a_time_and_stops_at_a_failure():
    (play,) = yaml_load(ANSIBLE_DIR / "update.yml")
    assert play["serial"] == 1
    assert play["any_errors_fatal"] is True and play["max_fail_percentage"] == 0
    checks = [t for t in play["post_tasks"]
              if t.get("ansible.builtin.include_role", {}).get("name") == "health_check"]
    assert len(checks) == 2, "a health check on the writable root and on the read-only one"
    tasks = yaml_load(ANSIBLE_DIR / "roles/health_check/tasks/main.yml")
    text = (ANSIBLE_DIR / "roles/health_check/tasks/main.yml").read_text()
    assert " check\"" in text and "timeout {{ health_check_ready_seconds }} systemctl restart" in text
    defaults = yaml_load(ANSIBLE_DIR / "group_vars/all.yml")
    assert defaults["piano_buddy_ready_seconds"] == 10
    assert tasks[0]["ansible.builtin.command"].endswith("check")


@needs_ansible
@pytest.mark.parametrize("host", ["box01.museum.lan", "box02.museum.lan", "box03.museum.lan"])
def test_the_config_template_renders_what_the_firmware_accepts(tmp_path, host):
    """The example inventory's museum-wide config and each box's changes, through the role's
    real template (ansible's template module, locally), then the firmware's own loader."""
    dest = tmp_path / "config.toml"
    r = ansible("ansible", host, "-i", "inventory.example.yml", "-c", "local",
                "-e", "ansible_become=false", "-e", "ansible_python_interpreter=" + sys.executable,
                "-m", "ansible.builtin.template",
                "-a", f"src=roles/piano_buddy/templates/config.toml.j2 dest={dest} mode=0644")
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = config.load(dest)
    assert (cfg.museum.opens, cfg.museum.closes, cfg.museum.days) == ("10:00", "18:00", "Tue..Sun")
    assert museum.hours(cfg.museum).early == 30
    assert cfg.museum.max_volume == (0.5 if host == "box02.museum.lan" else 0.8)
    assert cfg.audio.device == ("plughw:CARD=Device" if host == "box03.museum.lan" else "default")
    assert cfg.audio.ceiling_dbfs == -6.0


needs_pi_root = pytest.mark.skipif(
    not (PI_ROOT / ".pi-root-ready").exists() or os.geteuid() != 0,
    reason=f"needs root and the emulated root at {PI_ROOT} (sudo make pi-check builds it)")


@needs_ansible
@needs_pi_root
@pytest.mark.slow
def test_the_playbooks_provision_and_update_the_emulated_root():
    """deploy/ansible/tests/chroot.sh: site.yml, site.yml again with nothing changed,
    update.yml, then the files checked in the root (minutes under qemu)."""
    if shutil.which("chroot") is None:
        pytest.skip("no chroot command")
    r = subprocess.run(["bash", str(ANSIBLE_DIR / "tests/chroot.sh"), str(PI_ROOT)],
                       capture_output=True, text=True, timeout=3000,
                       env=dict(os.environ, PATH=f"{ANSIBLE_BIN}{os.pathsep}{os.environ['PATH']}"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "fleet-check passed" in r.stdout




def test_the_role_installs_the_files_install_sh_installs():
    """Two installers, one set of files: every unit and the generator install.sh puts in place
    is one the role copies, from the same systemd/ folder."""
    role = (ANSIBLE_DIR / "roles/piano_buddy/tasks/main.yml").read_text()
    install = (REPO / "systemd/install.sh").read_text()
    for name in ("piano-buddy-open.service", "piano-buddy-close.service"):
        assert name.replace("piano-buddy", "$NAME") in install
        assert name.replace("piano-buddy", "{{ piano_buddy_name }}") in role
    assert "$NAME-hours-generator" in install and "{{ piano_buddy_name }}-hours-generator" in role
    assert "PYPI=1" in install and 'PYPI: "1"' in role


def test_the_packed_firmware_carries_what_its_links_point_at():
    """Defect found by fleet-check: firmware/piano_buddy/pins.toml links to hardware/pins.toml;
    packed without its target, the link dangled on the box and the config check crashed."""
    role = (ANSIBLE_DIR / "roles/piano_buddy/tasks/main.yml").read_text()
    links = [p for p in (REPO / "firmware").rglob("*") if p.is_symlink()]
    assert links, "the pin table link is gone: this test has nothing to check"
    for link in links:
        target = link.resolve().relative_to(REPO)
        inside = any(parent == REPO / "firmware" for parent in link.resolve().parents)
        assert inside or f"{{{{ piano_buddy_source }}}}/{target}" in role, \
            f"{link.relative_to(REPO)} -> {target} is not packed with the firmware"
