# woostream's container image: one binary, the subcommand picks the role
# (`producer`, `enricher`, `slack run`, `crm run`, `check-config`, …).
#
#   docker build -t woostream:0.1.0 .
#
# The build stage runs `make release`, the same target (and so the same system packages and
# cargo command) the repository's own checks build with.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN make release && cp target/release/woostream /woostream

# Debian's OpenSSL and libcurl, linked dynamically: security fixes arrive with the base image.
FROM debian:bookworm-slim
# Versions are Debian bookworm's current ones; pinning them would break every point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/woostream --shell /usr/sbin/nologin woostream \
 && mkdir -p /var/lib/woostream/spool \
 && chown -R 10001:10001 /var/lib/woostream
COPY --from=build /woostream /usr/local/bin/woostream
# Runs as a non-root user on a read-only root filesystem: what it writes (the producer's spool)
# goes to /var/lib/woostream, a mounted volume in Kubernetes. No HEALTHCHECK: Kubernetes probes
# /healthz and /readyz on the ops port.
USER 10001:10001
WORKDIR /var/lib/woostream
VOLUME ["/var/lib/woostream"]
# 8080: webhooks (producer); 9090: /metrics, /healthz, /readyz (every role).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/woostream"]
CMD ["--help"]
