# wgpmp in a container beside wg-easy v15 (compose.example.yml): the daemon must live in wg-easy's
# network namespace (network_mode: service:wg-easy), where wg0 and its peers are.
#   scripts/build-deb.sh dist && docker build -t wgpmp .
# The image installs the same Debian package as a host install (dist/wgpmp_<version>_all.deb).
# BASE needs apt sources for what it lacks of nodejs (>= 18.19), nftables, wireguard-tools, conntrack;
# the test (test/integration/container.test.ts) uses a debootstrapped Debian 13 that has them all.
ARG BASE=debian:trixie-slim
FROM ${BASE}
RUN set -e; need=""; \
    command -v node >/dev/null || need="$need nodejs"; \
    command -v nft >/dev/null || need="$need nftables"; \
    command -v wg >/dev/null || need="$need wireguard-tools"; \
    command -v conntrack >/dev/null || need="$need conntrack"; \
    if [ -n "$need" ]; then apt-get update && apt-get install -y --no-install-recommends $need && rm -rf /var/lib/apt/lists/*; fi
COPY dist/wgpmp_*_all.deb /tmp/
RUN dpkg -i /tmp/wgpmp_*_all.deb && rm /tmp/wgpmp_*_all.deb
VOLUME /var/lib/wgpmp
ENTRYPOINT ["/usr/bin/wgpmp"]
CMD ["--config", "/etc/wgpmp/config.json"]
