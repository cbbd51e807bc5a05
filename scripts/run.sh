#!/usr/bin/env bash
# Builds Ferry and starts its main job on embedded defaults: installs the CNI
# plugins into /opt/cni/bin, then runs ferryd in the foreground, serving
# Docker's network and IPAM plugin protocol on /run/docker/plugins/ferry.sock
# (state in /var/lib/ferry, default pools 10.89.0.0/16 and fd00:89::/48).
# Run as root. Then: docker network create -d ferry --ipam-driver ferry mynet
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# The etcd client (ferry-cluster) needs protoc at build time.
if ! command -v protoc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler
fi
cargo build --release --locked --bins
# .cargo/config.toml builds for the host tuple explicitly (static binaries).
bin="${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/release"
"$bin/ferry" plugins install --dir /opt/cni/bin --force
exec "$bin/ferryd" "$@"
