# The ondol binary on a small Debian image.
#   docker build -t ondol .
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ondol \
 && install -D target/release/ondol /out/ondol

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/ondol --create-home ondol
COPY --from=build /out/ondol /usr/local/bin/ondol
COPY config/ /etc/ondol/
USER ondol
WORKDIR /var/lib/ondol
ENV ONDOL_STORAGE__DATA_DIR=/var/lib/ondol \
    ONDOL_REGISTRY__FILE=/etc/ondol/registry.toml
EXPOSE 1883
ENTRYPOINT ["ondol"]
CMD ["run", "--config", "/etc/ondol/ondol.toml"]
