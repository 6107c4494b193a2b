# The two commands a newcomer needs are `make run` and `make test`.
# Everything else here is what they install, idempotently, on a fresh Debian machine.

SHELL        := /bin/bash
PYTHON       ?= python3
VENV         ?= .venv
CACHE        ?= $(HOME)/.cache/govctl
# Latest 8.x release of the x-pack-free distribution that resolved here (2026-11).
ES_VERSION   ?= 8.19.21
ES_ZIP       := $(CACHE)/dist/elasticsearch-$(ES_VERSION).zip
SERVICE_USER ?= govctl
# The Pulumi engine, built from the Go module proxy (infra/engine pins it), cached outside the clone.
PULUMI_VERSION ?= v3.274.1
# The cache is keyed by the wrapper module's content, not by its files' times: a fresh clone reuses it.
ENGINE_KEY   := $(shell cat infra/engine/go.mod infra/engine/go.sum 2>/dev/null | sha256sum | cut -c1-12)
PULUMI_BIN   := $(CACHE)/pulumi-$(PULUMI_VERSION)-$(ENGINE_KEY)/bin/pulumi
GOENV        := GOFLAGS=-mod=mod GOPATH=$(CACHE)/go GOMODCACHE=$(CACHE)/go/pkg/mod GOCACHE=$(CACHE)/go/build
STAMP        := $(VENV)/.govctl-installed
export GOVCTL_CACHE := $(CACHE)

CONSOLE_ASSETS := control_plane/console/assets
# SeaweedFS (the cluster profile's S3 store), from the Go module proxy through infra/objectstore; the commit is in the path,
# so it is built once per version (about 13 minutes on 2 cores the first time), cached outside the clone.
SEAWEED_COMMIT := 7506e5f91cd6
SEAWEED_BIN  := $(CACHE)/seaweedfs-$(SEAWEED_COMMIT)/bin/weed
# Our SM4-GCM/CTR extension (Rust, pyo3, built by maturin from crates.io; GFNI and AVX-512 at run time, OpenSSL otherwise).
SM4_NATIVE   := control_plane/crypto/native
SM4_STAMP    := $(VENV)/.govctl-sm4-installed
.PHONY: run test setup system-packages service-user elasticsearch pulumi venv langhost sm4-native console-assets objectstore bench corpus clean-var

PROFILE      ?= single
run: setup
	$(VENV)/bin/govctl --profile $(PROFILE) up

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

setup: system-packages service-user elasticsearch pulumi objectstore venv langhost sm4-native console-assets

# Debian packages: Prometheus, node_exporter, Alertmanager, PostgreSQL with Patroni and etcd (the cluster profile),
# Chromium (the console's browser tests), the openssl CLI (interop tests),
# iproute2, sshd and nftables (the local pools' hosts and the response playbooks), a CJK font and
# Pango for the Chinese PDF report.
system-packages:
	@need=""; \
	command -v prometheus >/dev/null || need="$$need prometheus"; \
	command -v promtool >/dev/null || need="$$need prometheus"; \
	command -v prometheus-node-exporter >/dev/null || need="$$need prometheus-node-exporter"; \
	command -v prometheus-alertmanager >/dev/null || need="$$need prometheus-alertmanager"; \
	test -x /usr/bin/chromium || need="$$need chromium"; \
	command -v patroni >/dev/null || need="$$need patroni"; \
	command -v etcd >/dev/null || need="$$need etcd-server etcd-client"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v openssl >/dev/null || need="$$need openssl"; \
	command -v setpriv >/dev/null || need="$$need util-linux"; \
	command -v ip >/dev/null || need="$$need iproute2"; \
	command -v nft >/dev/null || need="$$need nftables"; \
	test -x /usr/sbin/sshd || need="$$need openssh-server"; \
	command -v ssh >/dev/null || need="$$need openssh-client"; \
	test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc || need="$$need fonts-wqy-microhei"; \
	command -v restic >/dev/null || need="$$need restic"; \
	ls /usr/lib/*/libpango-1.0.so.0 >/dev/null 2>&1 || need="$$need libpango-1.0-0 libpangoft2-1.0-0"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need >/dev/null; \
	fi

# Elasticsearch and PostgreSQL refuse to run as root: when we are root, they run as this system user.
service-user:
	@if [ "$$(id -u)" = 0 ] && ! id -u $(SERVICE_USER) >/dev/null 2>&1; then \
	  useradd --system --no-create-home --shell /usr/sbin/nologin $(SERVICE_USER); \
	  echo "created system user $(SERVICE_USER) for the local services"; \
	fi

# Elasticsearch 8.x, integ-test-zip distribution, from Maven Central, cached outside the clone.
elasticsearch: $(ES_ZIP)
$(ES_ZIP):
	@mkdir -p $(CACHE)/dist
	mvn -q -B dependency:copy \
	  -Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$(ES_VERSION):zip \
	  -DoutputDirectory=$(CACHE)/dist
	@test -s $@

# The Pulumi CLI from a small wrapper module (the upstream modules carry replace directives,
# so a plain `go install` refuses them). Only the CLI: the Python language host module is not
# served by the proxy; `govctl deploy` runs the program inline through the Automation API, and the
# standard CLI uses our own language host (infra/langhost.py, the `langhost` target below).
pulumi: $(PULUMI_BIN)
$(PULUMI_BIN):
	@mkdir -p $(dir $@)
	cd infra/engine && $(GOENV) go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$(PULUMI_VERSION)" \
	  -o $@.tmp github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
	@mv $@.tmp $@

objectstore: $(SEAWEED_BIN)
$(SEAWEED_BIN):
	@mkdir -p $(dir $@)
	cd infra/objectstore && $(GOENV) go build -trimpath -ldflags "-s -w" -o $@.tmp github.com/seaweedfs/seaweedfs/weed
	@mv $@.tmp $@

# The virtualenv, rebuilt only when pyproject.toml changes; the Pulumi CLI and the dynamic-provider
# host (which the engine looks for on PATH) are linked into its bin/.
venv: $(STAMP)
$(STAMP): pyproject.toml $(PULUMI_BIN)
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
	ln -sf $(PULUMI_BIN) $(VENV)/bin/pulumi
	printf '#!/bin/sh\n# Hosts Python dynamic providers for the Pulumi engine with this virtualenv.\nexec "%s" -u -m pulumi.dynamic "$$@"\n' \
	  "$(abspath $(VENV))/bin/python" > $(VENV)/bin/pulumi-resource-pulumi-python
	chmod +x $(VENV)/bin/pulumi-resource-pulumi-python
	@touch $@

# The language host the standard CLI starts for `pulumi preview` / `up` / `--policy-pack` at the repository root
# (infra/langhost.py: the Go one is not served by the module proxy).
LANGHOST     := $(VENV)/bin/pulumi-language-python
langhost: $(LANGHOST)
$(LANGHOST): $(STAMP) infra/langhost.py
	printf '#!/bin/sh\n# The Pulumi engine'"'"'s Python language host for this project (infra/langhost.py).\nexec "%s" -u -m infra.langhost "$$@"\n' \
	  "$(abspath $(VENV))/bin/python" > $@.tmp
	chmod +x $@.tmp
	mv $@.tmp $@

# Rebuilt when its sources change; cargo's build directory is kept outside the clone, so a rebuild compiles only our crate.
sm4-native: $(SM4_STAMP)
$(SM4_STAMP): $(STAMP) $(SM4_NATIVE)/Cargo.toml $(SM4_NATIVE)/Cargo.lock $(SM4_NATIVE)/pyproject.toml $(wildcard $(SM4_NATIVE)/src/*.rs)
	@PATH="$(HOME)/.cargo/bin:$$PATH" command -v cargo >/dev/null || { echo "the SM4 extension needs Rust's cargo (rustup or Debian's cargo)"; exit 1; }
	PATH="$(HOME)/.cargo/bin:$$PATH" CARGO_TARGET_DIR=$(CACHE)/cargo/sm4 $(VENV)/bin/python -m pip install -q --disable-pip-version-check ./$(SM4_NATIVE)
	@touch $@

# The console's browser assets (htmx, ECharts, asciinema-player, xterm.js, axe-core) from npm, exactly as the
# committed package-lock.json pins them, served locally (no CDN); reinstalled only when the lock file changes.
console-assets: $(CONSOLE_ASSETS)/node_modules/.govctl-installed
$(CONSOLE_ASSETS)/node_modules/.govctl-installed: $(CONSOLE_ASSETS)/package-lock.json
	cd $(CONSOLE_ASSETS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Regenerate the SOC's real-log corpus (tests/data/reallogs) from the real programs, in throw-away namespaces.
# Not part of `make test`: the corpus is committed; this is how it was made, and how to make it again.
corpus: venv
	@need=""; for t in rsyslogd sudo crontab auditd; do command -v $$t >/dev/null || test -x /usr/sbin/$$t || need="$$need $$t"; done; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq rsyslog sudo cron auditd >/dev/null; \
	fi
	$(VENV)/bin/python tests/data/reallogs/generate.py tests/data/reallogs

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean-var:
	-$(VENV)/bin/govctl services down
	rm -rf var
