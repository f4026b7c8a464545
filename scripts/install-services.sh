#!/usr/bin/env bash
# Install the servers the local service backend runs (Redis, MariaDB, ClickHouse) and tmux
# on Debian. Idempotent: packages already present are left alone, and the package index is
# refreshed at most once, only when something is missing.
set -euo pipefail

# Each package with the command that proves it is installed.
declare -A PROBE=(
    [redis-server]=redis-server
    [mariadb-server]=mariadbd
    [clickhouse-server]=clickhouse-server
    [tmux]=tmux
)

missing=()
for package in redis-server mariadb-server clickhouse-server tmux; do
    # dpkg, not PATH: a redis-server shim from elsewhere must not hide a missing package.
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    elif ! command -v "${PROBE[$package]}" >/dev/null 2>&1 && [ ! -x "/usr/sbin/${PROBE[$package]}" ]; then
        missing+=("$package")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-services: all present (redis-server mariadb-server clickhouse-server tmux)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "install-services: installing ${missing[*]}"
# Another apt run (a second install script, unattended upgrades) holds the dpkg lock for a
# while: wait for it rather than fail.
APT_OPTIONS=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${APT_OPTIONS[@]}" update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTIONS[@]}" install -y -qq --no-install-recommends "${missing[@]}"

# Debian's packages may start system-wide instances on install; the sandbox runs private
# ones on free ports and never relies on (or stops) these.
echo "install-services: installed ${missing[*]}"
