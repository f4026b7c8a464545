#!/usr/bin/env bash
# Bring up a Podman engine with a Docker-compatible API socket, for machines without
# Docker. Safe to run again: it installs, configures and starts only what is missing.
# Prints the socket path (only that) on stdout; progress goes to stderr.
#
#   RQ_SANDBOX_PODMAN_DIR   folder for containers.conf, the socket, pid and log
#                           (default /tmp/rq-sandbox-podman)
set -euo pipefail

dir="${RQ_SANDBOX_PODMAN_DIR:-/tmp/rq-sandbox-podman}"
sock="$dir/podman.sock"
conf="$dir/containers.conf"
pidfile="$dir/podman.pid"
log="$dir/podman.log"

say() { echo "podman-setup: $*" >&2; }

if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    say "installing podman and runc"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >&2
fi

mkdir -p "$dir"

# crun and the default ulimits fail inside this kind of sandbox; runc with cgroupfs works.
cat > "$conf.tmp" <<'CONF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$conf"

running() {
    [[ -S "$sock" && -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

if running; then
    say "service already running (pid $(cat "$pidfile"))"
else
    rm -f "$sock"
    say "starting podman system service on $sock"
    setsid nohup podman system service --time=0 "unix://$sock" >"$log" 2>&1 </dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
        [[ -S "$sock" ]] && break
        sleep 0.1
    done
    if ! running; then
        say "the service did not come up; its log ($log):"
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
fi

echo "$sock"
