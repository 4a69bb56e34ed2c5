#!/bin/sh
# A real path MTU for the transport bench: a veth pair with MTU 1500 between this namespace
# (198.18.17.1) and a network namespace of its own (198.18.17.2). Needs root.
#   sh host/net/benches/veth.sh up [NS]     then, with the release bench binary:
#   ALLPEERS_BENCH_SERVER_NETNS=NS ALLPEERS_BENCH_SERVER_IP=198.18.17.2 \
#     ALLPEERS_BENCH_CLIENT_IP=198.18.17.1 target/release/deps/transport-… --size-mib 256
#   sh host/net/benches/veth.sh down [NS]
set -eu
ns=${2:-apbench}
case "${1:-}" in
up)
    ip netns add "$ns"
    ip link add "$ns-a" mtu 1500 type veth peer name "$ns-b" mtu 1500
    ip link set "$ns-b" netns "$ns"
    ip addr add 198.18.17.1/24 dev "$ns-a"
    ip link set "$ns-a" up
    ip -n "$ns" addr add 198.18.17.2/24 dev "$ns-b"
    ip -n "$ns" link set "$ns-b" up
    ip -n "$ns" link set lo up
    ;;
down)
    ip link del "$ns-a" 2>/dev/null || true
    ip netns del "$ns"
    ;;
*)
    echo "usage: $0 up|down [namespace]" >&2
    exit 2
    ;;
esac
