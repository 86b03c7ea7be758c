# woostream's container image: one binary, the subcommand picks the role
# (`producer`, `enricher`, `slack run`, `crm run`, `check-config`, …).
#
#   make image            (docker build with the version and revision as labels)
#
# The build stage runs `make release`, the same target (and so the same system packages and
# cargo command) the repository's own checks build with.
#
# Base images: RUST_IMAGE and RUNTIME_IMAGE name them; `make pin-base-images` resolves each
# tag to its current digest (with skopeo, or docker buildx imagetools) and writes
# `name:tag@sha256:…` below, so a build takes exactly the bytes that were reviewed. Run it
# again to take a base image's security fixes, and commit the change.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
ARG REVISION=""
WORKDIR /src
COPY . .
# The build context has no .git: the revision comes as a build argument. The debug info is
# split off (woostream.debug, kept in this stage for symbolising a crash) so that the shipped
# binary carries only its symbols: 41 MB instead of 195 MB.
RUN WOOSTREAM_REVISION="${REVISION}" make release \
 && cp target/release/woostream /woostream \
 && objcopy --only-keep-debug /woostream /woostream.debug \
 && objcopy --strip-debug --add-gnu-debuglink=/woostream.debug /woostream

# Debian's OpenSSL and libcurl, linked dynamically: security fixes arrive with the base image.
FROM ${RUNTIME_IMAGE}
ARG VERSION=""
ARG REVISION=""
LABEL org.opencontainers.image.title="woostream" \
      org.opencontainers.image.description="WooCommerce events through Kafka to customer intelligence, Slack and the CRM" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/woostream/woostream" \
      org.opencontainers.image.documentation="https://github.com/woostream/woostream/blob/main/README.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Versions are Debian bookworm's current ones; pinning them would break every point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
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
