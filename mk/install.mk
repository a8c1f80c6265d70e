# Deployment targets (included by the Makefile): the box as a systemd service, and a check of
# the project on an emulated Raspberry Pi OS (Debian bookworm arm64 under qemu-user-static).

PI_ROOT ?= build/pi-root

install:  ## install the box as a service (Pi OS Bookworm/Trixie; apt, /opt venv, user, unit; root)
	$(SUDO) systemd/install.sh install

uninstall:  ## remove the service, venv, unit and user; keeps recordings and an edited config
	$(SUDO) systemd/install.sh uninstall

pi-check:  ## install + test on an emulated aarch64 Debian bookworm (qemu, root; ~8 min first, ~3 min cached)
	$(SUDO) tests/pi/check.sh $(PI_ROOT)
