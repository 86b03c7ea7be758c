# woostream — the two commands a newcomer needs are `make run` and `make test`.

CARGO       ?= cargo
TOOLS       ?= $(HOME)/.cache/woostream
TANSU_VER   := 0.6.0
TANSU_BIN   ?= $(TOOLS)/tansu-$(TANSU_VER)/bin/tansu
DENY_VER    := 0.20.2
DENY_BIN    ?= $(TOOLS)/cargo-deny-$(DENY_VER)/bin/cargo-deny
# The release: one version for the crates, the image and the chart (Cargo.toml's).
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REVISION    := $(shell git rev-parse HEAD 2>/dev/null)
IMAGE       ?= woostream
VENV        ?= $(TOOLS)/venv
PYTHON      := $(VENV)/bin/python

export TANSU_BIN
export WOOSTREAM_PYTHON := $(PYTHON)

# The real WooCommerce the tests run: WordPress and WooCommerce release archives, on Debian's PHP
# and MariaDB.
REALWOO_PACKAGES := php8.2-cli php8.2-mysql php8.2-curl php8.2-mbstring php8.2-xml php8.2-gd \
                    php8.2-intl php8.2-zip php8.2-bcmath mariadb-server

.PHONY: test-woocommerce release chart-schema docs image pin-base-images sbom audit deny run test lint unit bench bench-ingest bench-enrich bench-crm bench-backfill tools tansu python fuzz system-packages build-packages

.DEFAULT_GOAL := run

## Debian packages: to build, OpenSSL and libcurl headers (librdkafka's TLS, SCRAM and OIDC); to
## test, also stunnel (the TLS listener in front of Tansu in the TLS tests: Tansu 0.6 has none of
## its own), openssl (encrypts the test client key), Prometheus (promtool, the alert test) and
## Chromium with its WebDriver (the insight page in a real browser).
BUILD_PACKAGES := pkg-config libssl-dev libcurl4-openssl-dev
TEST_PACKAGES  := openssl stunnel4 prometheus chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
define install_missing
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef
build-packages:
	$(call install_missing,$(BUILD_PACKAGES))
system-packages:
	$(call install_missing,$(BUILD_PACKAGES) $(TEST_PACKAGES))

## The whole pipeline on the embedded Kafka with a simulated flash sale.
run: build-packages
	$(CARGO) run --release -p woostream -- run --simulate --history 3000

## Formatting, lints, unit tests, mock-cluster tests and end-to-end tests on a real broker.
test: tools lint
	$(CARGO) test --workspace --all-targets --no-fail-fast

## woostream against a genuine WooCommerce 10.0.2 on WordPress 6.8.8 (their release archives in
## WOOSTREAM_REALWOO_DIR; unpacked once into $(TOOLS)/../realwoo), driven through its REST API and
## delivering its own webhooks to the producer on Tansu.
test-woocommerce: tools
	@if [ ! -f "$$WOOSTREAM_REALWOO_DIR/wordpress-6.8.8.tar.gz" ] || [ ! -f "$$WOOSTREAM_REALWOO_DIR/woocommerce-10.0.2.tar.gz" ]; then \
	  echo "make test-woocommerce needs the release archives in WOOSTREAM_REALWOO_DIR:"; \
	  echo "  wordpress-6.8.8.tar.gz    WordPress 6.8.8 as released (wordpress.org)"; \
	  echo "  woocommerce-10.0.2.tar.gz WooCommerce 10.0.2 from wordpress.org (with its vendor/ folder), top folder woocommerce/"; \
	  exit 2; \
	fi
	$(call install_missing,$(REALWOO_PACKAGES))
	$(CARGO) test -p woostream-tests --test real_woocommerce -- --ignored --nocapture

## The binary the container image ships: the Dockerfile's build stage runs this target.
release: build-packages
	$(CARGO) build --release --locked -p woostream --bin woostream

## Formatting, clippy, and cargo-deny's licence, duplicate-version and source checks (deny.toml).
lint: deny
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(DENY_BIN) --log-level error check licenses bans sources

## Known vulnerabilities (RustSec): needs the advisory database from GitHub, so it is not part
## of `make lint` on machines without it; run it before every release.
audit: deny
	$(DENY_BIN) check advisories

deny: $(DENY_BIN)
$(DENY_BIN):
	$(CARGO) install cargo-deny@$(DENY_VER) --locked --root $(TOOLS)/cargo-deny-$(DENY_VER)

## The chart's values.schema.json: its own values, and woostream's configuration schema from
## the binary (`woostream config schema`). `make test` fails when it is stale.
chart-schema:
	$(CARGO) build -p woostream --bin woostream
	python3 deploy/helm/generate_values_schema.py target/debug/woostream deploy/helm/woostream/values.schema.json

## The generated references under docs/reference/ (and the chart's schema). `make test` fails
## when one is stale.
docs: chart-schema
	target/debug/woostream config schema > docs/reference/config.schema.json
	target/debug/woostream config reference > docs/reference/configuration.md
	target/debug/woostream config commands > docs/reference/commands.md
	target/debug/woostream config answers > docs/reference/webhook-answers.md
	target/debug/woostream config topics > docs/reference/topics.md
	WOOSTREAM_WRITE_DOCS=1 $(CARGO) test -p woostream-tests --test docs the_metrics_reference_is_current

## The container image, labelled with the release and the revision (docker or podman).
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(VERSION) .

## Resolves the Dockerfile's base images to their current digests (skopeo, or docker buildx)
## and pins them; commit the change. Run it to take the base images' security fixes.
pin-base-images:
	@for arg in RUST_IMAGE RUNTIME_IMAGE; do \
	  ref=$$(sed -n "s/^ARG $$arg=//p" Dockerfile); name=$${ref%@*}; \
	  digest=$$(skopeo inspect --format '{{.Digest}}' docker://$$name 2>/dev/null || \
	            docker buildx imagetools inspect $$name --format '{{json .Manifest.Digest}}' | tr -d '"'); \
	  [ -n "$$digest" ] || { echo "cannot resolve $$name"; exit 1; }; \
	  sed -i "s|^ARG $$arg=.*|ARG $$arg=$$name@$$digest|" Dockerfile; echo "$$arg=$$name@$$digest"; \
	done

## The software bill of materials of the release (CycloneDX JSON, from Cargo.lock), for the
## image's registry and the release page.
sbom:
	command -v cargo-cyclonedx >/dev/null || $(CARGO) install cargo-cyclonedx --locked
	$(CARGO) cyclonedx --manifest-path crates/woostream/Cargo.toml --format json --spec-version 1.5 --override-filename woostream-$(VERSION).cdx
	@echo "crates/woostream/woostream-$(VERSION).cdx.json"

## Fuzzes what woostream reads from outside (webhook bodies, Avro records, spool segments,
## signatures) for FUZZ_SECONDS per target with cargo-fuzz (libFuzzer, AddressSanitizer).
## cargo-fuzz passes nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := webhook_normaliser avro_decoder spool_reader signature hubspot_signature crm_inbound_body
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t seeds/$$t; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 > fuzz-$$t.log 2>&1; status=$$?; \
	  printf '%-20s ' $$t; grep -E '^Done' fuzz-$$t.log || tail -30 fuzz-$$t.log; \
	  [ $$status -eq 0 ] || exit $$status; \
	done

## Load benchmarks with a plain-rdkafka baseline measured in the same run.
bench: bench-ingest bench-enrich bench-crm bench-backfill

bench-ingest: system-packages tansu
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(CARGO) run --release -p woostream-benches --bin bench-ingest

bench-enrich: system-packages tansu python
	$(CARGO) build --release -p woostream --bin woostream
	$(CARGO) run --release -p woostream-benches --bin bench-enrich

bench-backfill: system-packages tansu
	$(CARGO) run --release -p woostream-benches --bin bench-backfill

bench-crm: system-packages tansu
	$(CARGO) build --release -p woostream --bin woostream
	$(CARGO) run --release -p woostream-benches --bin bench-crm

## Test tools, installed once and reused: Tansu (a Kafka-protocol broker) and Python's
## confluent-kafka + fastavro for independent decoding.
tools: system-packages tansu python

tansu: $(TANSU_BIN)
$(TANSU_BIN):
	$(CARGO) install tansu@$(TANSU_VER) --locked --features dynostore,libsql --root $(TOOLS)/tansu-$(TANSU_VER)

python: $(VENV)/.installed
$(VENV)/.installed: tests/independent/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/independent/requirements.txt
	touch $@
