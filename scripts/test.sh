#!/usr/bin/env bash
# Installs everything Ferry's tests need on a fresh Debian machine, then runs
# the whole suite. Run as root: the tests create network namespaces, links,
# nftables tables and qdiscs, and remove them again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (the tests create network namespaces)" >&2
  exit 1
fi

packages=(
  containernetworking-plugins # the reference Go plugins in /usr/lib/cni, our differential peers
  iproute2 iputils-ping nftables iptables strace jq curl iperf3
  docker.io busybox-static    # a real dockerd for ferryd's Docker tests (started by the tests)
  netavark                    # a peer of the benchmark's smoke run
  protobuf-compiler           # protoc, to build the etcd client (ferry-cluster)
  etcd-server                 # etcd for ferry-cluster's tests (started by the tests)
  dnsmasq-base                # the DHCP server of the dhcp IPAM tests; the DNS tests' upstream
  bind9-dnsutils              # dig, the client of ferryd's DNS tests
  systemd man-db              # systemd-analyze verify (and man for Documentation=) of the units ferry install writes
  chromium chromium-driver    # a headless browser for the topology page test (WebDriver)
  dnsperf aardvark-dns        # the DNS benchmark (scenario 11): the load and a peer
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # With recommends: dockerd is tested here as Debian installs it.
  apt-get install -y -qq "${missing[@]}"
fi

export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
