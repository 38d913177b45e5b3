# Both service binaries, built release and locked, in a small non-root image.
# The compose file picks the binary with `command:`. The root manifest is a
# package of its own (the local stack), so the services are named by package:
# `.ci/image-build` runs this very `cargo build` line, read from here, so the
# two cannot drift.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p auth-service -p document-service \
    && install -D -m 0755 target/release/auth-service target/release/document-service -t /out/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/docverify --create-home docverify \
    && install -d -o 10001 -g 10001 -m 0700 /run/docverify
COPY --from=build /out/auth-service /out/document-service /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/docverify
ENV AUTH_LISTEN_ADDR=0.0.0.0:50051 \
    DOCUMENT_LISTEN_ADDR=0.0.0.0:50052
EXPOSE 50051 50052
CMD ["auth-service"]
