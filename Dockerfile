# syntax=docker/dockerfile:1
# One image, one binary: `proxy-injector webhook`, `proxy-init` and `network-validator`.
# proxy-init drives iptables, so the runtime keeps Debian's iptables; everything runs as a
# non-root user, and the init container gets NET_ADMIN/NET_RAW through file capabilities on the
# xtables binaries, as Linkerd's proxy image does.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package proxy-injector \
    && strip target/release/proxy-injector

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables=1.8.9-2 libcap2-bin=1:2.66-4+deb12u3+b1 \
    && setcap cap_net_raw,cap_net_admin+eip /usr/sbin/xtables-legacy-multi \
    && setcap cap_net_raw,cap_net_admin+eip /usr/sbin/xtables-nft-multi \
    && apt-get purge -y libcap2-bin \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/proxy-injector /usr/local/bin/proxy-injector
# mimalloc returns freed memory to the OS at once, so RSS comes back down after a burst.
ENV MIMALLOC_PURGE_DELAY=0 MIMALLOC_PURGE_DECOMMITS=1
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/proxy-injector"]
CMD ["webhook"]
