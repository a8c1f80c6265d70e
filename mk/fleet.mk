# The fleet (included by the Makefile): Ansible roles and playbooks in deploy/ansible, their
# tools in a venv of their own (.venv-ansible, about 570 MB: the ansible package carries its
# collections), and their checks.

ANSIBLE_VENV ?= .venv-ansible
ANSIBLE_BIN  := $(abspath $(ANSIBLE_VENV))/bin

$(ANSIBLE_VENV)/.stamp: deploy/ansible/requirements.txt
	$(PYTHON) -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/pip install -q --upgrade pip
	$(ANSIBLE_VENV)/bin/pip install -q -r deploy/ansible/requirements.txt
	touch $@

ansible-venv: $(ANSIBLE_VENV)/.stamp

fleet-lint: ansible-venv  ## ansible-lint (production profile) and --syntax-check of deploy/ansible
	cd deploy/ansible && PATH="$(ANSIBLE_BIN):$$PATH" ansible-lint --nocolor -q
	cd deploy/ansible && PATH="$(ANSIBLE_BIN):$$PATH" ansible-playbook --syntax-check \
	    -i inventory.example.yml site.yml update.yml

fleet-check: fleet-lint  ## the playbooks applied to pi-check's emulated root via chroot (root; run make pi-check first)
	$(SUDO) env PATH="$(ANSIBLE_BIN):$$PATH" deploy/ansible/tests/chroot.sh $(PI_ROOT)

.PHONY: ansible-venv fleet-lint fleet-check
