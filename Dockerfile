# syntax=docker/dockerfile:1
#
# Container images for every Warble binary: one build, one small runtime image
# per binary (distroless, non-root). Build one with its target name:
#
#   docker build --target tweet-svc -t ghcr.io/warble-social/tweet-svc:0.1.0 .
#
# Targets: tweet-svc, graph-svc, timeline-svc, fanout-svc, notify-svc, search-svc,
# media-svc, gateway, and warble (the launcher; `warble dev` runs the whole
# stack on embedded stores).
# All targets share the builder stages, so building them one after another
# compiles the workspace once. Dependencies are compiled in their own layer
# (cargo-chef) that is reused until Cargo.toml/Cargo.lock change.
#
# The builder and the runtime must share a Debian release (glibc): bookworm
# and distroless' debian12.

ARG RUST_VERSION=1.91
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src
# Line tables keep panics' backtraces readable at a fraction of full debug info.
ENV CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# The dependency graph only: this layer's output changes when manifests do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Every dependency, compiled once and cached as a layer.
RUN cargo chef cook --release --locked --recipe-path recipe.json
# Then only Warble's own crates (protos compile with protox: no protoc needed).
COPY . .
# The product binaries only: the load generator (warble-bench) is not built or shipped.
RUN cargo build --release --locked \
      -p warble-tweet-svc -p warble-graph-svc -p warble-timeline-svc \
      -p warble-fanout-svc -p warble-notify-svc -p warble-search-svc -p warble-media-svc \
      -p warble-gateway -p warble-launcher \
 && mkdir -p /out \
 && for binary in tweet-svc graph-svc timeline-svc fanout-svc notify-svc search-svc media-svc gateway warble; do \
      cp "target/release/$binary" /out/; \
    done

# distroless/cc: glibc, libgcc, CA certificates, nothing else (no shell).
# Runs as nonroot (65532:65532); the Helm chart mounts a writable /tmp and a
# data directory, the root filesystem stays read-only.
FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.source="https://github.com/warble-social/warble" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /home/nonroot

FROM runtime AS tweet-svc
COPY --from=builder /out/tweet-svc /usr/local/bin/tweet-svc
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/tweet-svc"]

FROM runtime AS graph-svc
COPY --from=builder /out/graph-svc /usr/local/bin/graph-svc
EXPOSE 50052
ENTRYPOINT ["/usr/local/bin/graph-svc"]

FROM runtime AS timeline-svc
COPY --from=builder /out/timeline-svc /usr/local/bin/timeline-svc
EXPOSE 50053
ENTRYPOINT ["/usr/local/bin/timeline-svc"]

FROM runtime AS fanout-svc
COPY --from=builder /out/fanout-svc /usr/local/bin/fanout-svc
EXPOSE 50054
ENTRYPOINT ["/usr/local/bin/fanout-svc"]

FROM runtime AS notify-svc
COPY --from=builder /out/notify-svc /usr/local/bin/notify-svc
EXPOSE 50055
ENTRYPOINT ["/usr/local/bin/notify-svc"]

# Its index lives under data_dir (WARBLE_DATA_DIR): the Helm chart mounts a
# volume per replica at /var/lib/warble.
FROM runtime AS search-svc
COPY --from=builder /out/search-svc /usr/local/bin/search-svc
EXPOSE 50056
ENTRYPOINT ["/usr/local/bin/search-svc"]

# Its files go to an S3-compatible bucket, or (filesystem mode) under
# data_dir (WARBLE_DATA_DIR), where the Helm chart mounts a volume at
# /var/lib/warble.
FROM runtime AS media-svc
COPY --from=builder /out/media-svc /usr/local/bin/media-svc
EXPOSE 50057
ENTRYPOINT ["/usr/local/bin/media-svc"]

FROM runtime AS gateway
COPY --from=builder /out/gateway /usr/local/bin/gateway
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]

# The whole stack in one process on embedded stores, for trying Warble out.
# A container must bind 0.0.0.0 to be reachable, and the dev stack lets
# anyone sign up, so it refuses to start until you opt in and give it a
# token secret of your own (the default one is public):
#   docker run --rm -p 8080:8080 -e WARBLE_ALLOW_REMOTE=true \
#     -e WARBLE_JWT_SECRET="$(openssl rand -hex 32)" ghcr.io/warble-social/warble:0.1.0
FROM runtime AS warble
COPY --from=builder /out/warble /usr/local/bin/warble
ENV WARBLE_HOST=0.0.0.0 \
    WARBLE_DATA_DIR=/home/nonroot/data
EXPOSE 8080 50051 50052 50053 50054
ENTRYPOINT ["/usr/local/bin/warble"]
CMD ["dev"]
