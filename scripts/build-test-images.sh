#!/usr/bin/env bash
# Build stand-in images for the compose file's services from this machine's own Debian
# binaries, tagged with the exact names compose/docker-compose.yaml uses, so that the
# Docker backend runs its real code path (pulling off) on an engine that reaches no
# registry. Each image is a small root filesystem: the server binary, the libraries
# `ldd` lists, busybox for a shell, and an entrypoint that serves like the real image
# does with the compose environment.
#
#   scripts/build-test-images.sh [--rebuild] [redis|mysql|clickhouse ...]
#
# Uses the podman CLI with the containers.conf that scripts/podman-setup.sh writes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
compose="${RQ_SANDBOX_COMPOSE:-$here/../compose/docker-compose.yaml}"
podman_dir="${RQ_SANDBOX_PODMAN_DIR:-/tmp/rq-sandbox-podman}"
if [[ -f "$podman_dir/containers.conf" ]]; then
    export CONTAINERS_CONF="$podman_dir/containers.conf"
fi

rebuild=0
services=()
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        redis|mysql|clickhouse) services+=("$arg") ;;
        *) echo "build-test-images: unknown argument $arg" >&2; exit 2 ;;
    esac
done
if [[ ${#services[@]} -eq 0 ]]; then
    services=(redis mysql clickhouse)
fi

say() { echo "build-test-images: $*" >&2; }

need_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        say "installing ${missing[*]}"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

need_packages podman busybox-static

# The image name comes from the compose file, so the two can never disagree.
image_of() {
    python3 - "$compose" "$1" <<'PY'
import sys, yaml
with open(sys.argv[1], encoding="utf-8") as fh:
    print(yaml.safe_load(fh)["services"][sys.argv[2]]["image"])
PY
}

# Docker Hub's canonical form of a short name, the name a real pull would store.
qualified() {
    local name="$1"
    case "$name" in
        */*/*) echo "$name" ;;
        */*) echo "docker.io/$name" ;;
        *) echo "docker.io/library/$name" ;;
    esac
}

root=""
new_root() {
    root="$(mktemp -d)"
    # Debian 12 merges /bin, /sbin and /lib into /usr; the image keeps that layout.
    mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,tmp,run,var/lib,var/log}
    chmod 1777 "$root/tmp"
    for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
    printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
    cp /bin/busybox "$root/usr/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ -e "$root/usr/bin/$applet" ]] || ln -s busybox "$root/usr/bin/$applet"
    done
}

# Copy a path, and whatever its symlinks point at, into the image.
add() {
    local path
    for path in "$@"; do
        [[ -e "$path" || -L "$path" ]] || continue
        cp -a --parents "$path" "$root" 2>/dev/null || true
        if [[ -L "$path" ]]; then
            add "$(readlink -f "$path")"
        fi
    done
}

add_binary() {
    local bin="$1" lib
    add "$bin"
    for lib in $(ldd "$bin" | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'); do
        add "$lib"
    done
}

add_package() {
    local path
    while read -r path; do
        case "$path" in
            /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|/etc/init.d/*|/lib/systemd/*) continue ;;
        esac
        if [[ -f "$path" ]]; then
            if [[ -x "$path" ]] && ldd "$path" >/dev/null 2>&1; then
                add_binary "$path"
            else
                add "$path"
            fi
        fi
    done < <(dpkg -L "$1")
}

entrypoint() {
    mkdir -p "$root/usr/local/bin"
    cat > "$root/usr/local/bin/docker-entrypoint.sh"
    chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
}

# Images remember the script that built them, so an edit here rebuilds them.
build_id="$(sha256sum "$0" | cut -c1-16)"

import_image() {
    local name="$1"; shift
    local changes=(--change "LABEL io.rq-sandbox.test-image=$build_id")
    for change in "$@"; do changes+=(--change "$change"); done
    local previous
    previous="$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)"
    say "importing $name"
    tar -C "$root" -c . | podman import "${changes[@]}" - "$name" >/dev/null
    rm -rf "$root"
    # Drop the image this one replaces, unless a container still uses it (no --force).
    if [[ -n "$previous" ]]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
}

build_redis() {
    # redis-tools ships the server binary (redis-server is a name for redis-check-rdb)
    # without the system service that the redis-server package adds.
    need_packages redis-tools
    new_root
    add_binary /usr/bin/redis-check-rdb
    ln -s redis-check-rdb "$root/usr/bin/redis-server"
    add_binary /usr/bin/redis-cli
    mkdir -p "$root/data"
    # Like the official image, run whatever command compose gives, in /data.
    import_image "$1" 'CMD ["redis-server"]' 'WORKDIR /data' 'EXPOSE 6379'
}

build_mysql() {
    # The -core packages carry the server and its tools without a system service.
    need_packages mariadb-server-core mariadb-client-core mariadb-client
    new_root
    add_package mariadb-server-core
    add_binary /usr/bin/my_print_defaults
    add_binary /usr/bin/mariadb-admin
    ln -sf mariadb-admin "$root/usr/bin/mysqladmin"
    ln -sf mariadbd "$root/usr/sbin/mysqld"
    mkdir -p "$root/var/lib/mysql" "$root/run/mysqld"
    entrypoint <<'SH'
#!/bin/sh
# Serve MariaDB the way the mysql image serves MySQL: initialise an empty data folder,
# then make sure the root password, database and user from the environment exist.
set -e
if [ "$1" != "mysqld" ]; then
    exec "$@"
fi
shift

datadir=/var/lib/mysql
sq() { printf '%s' "$1" | sed "s/'/''/g"; }

if [ ! -d "$datadir/mysql" ]; then
    echo "Initializing database files in $datadir"
    mariadb-install-db --no-defaults --datadir="$datadir" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >/dev/null
fi

init=/run/mysqld/init.sql
root_pw="$(sq "${MYSQL_ROOT_PASSWORD:-}")"
{
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_pw';"
    echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$root_pw';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
        echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
    fi
    if [ -n "${MYSQL_USER:-}" ]; then
        echo "CREATE USER IF NOT EXISTS '$(sq "$MYSQL_USER")'@'%' IDENTIFIED BY '$(sq "${MYSQL_PASSWORD:-}")';"
        if [ -n "${MYSQL_DATABASE:-}" ]; then
            echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$(sq "$MYSQL_USER")'@'%';"
        fi
    fi
} > "$init"
chmod 600 "$init"

exec mariadbd --no-defaults --user=root --datadir="$datadir" --port=3306 \
    --bind-address=0.0.0.0 --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid --init-file="$init" "$@"
SH
    import_image "$1" 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["mysqld"]' 'EXPOSE 3306'
}

build_clickhouse() {
    need_packages clickhouse-server
    new_root
    add_binary /usr/sbin/clickhouse-server
    add /usr/share/zoneinfo
    # The server refuses to start without a local time zone; the official image runs in UTC.
    ln -s /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
    mkdir -p "$root/etc/clickhouse-server" "$root/var/lib/clickhouse" "$root/var/log/clickhouse-server"
    entrypoint <<'SH'
#!/bin/sh
# Serve ClickHouse the way the clickhouse-server image does: HTTP on 8123 for every
# interface, the user, password and database from the environment.
set -e
if [ "$1" != "clickhouse-server" ]; then
    exec "$@"
fi
shift

data=/var/lib/clickhouse
user="${CLICKHOUSE_USER:-default}"
database="${CLICKHOUSE_DB:-default}"
mkdir -p "$data/tmp" "$data/user_files" "$data/format_schemas" "$data/metadata" "$data/data"

xml() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }

cat > /etc/clickhouse-server/config.xml <<XML
<yandex>
    <logger>
        <level>information</level>
        <console>1</console>
    </logger>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <listen_host>0.0.0.0</listen_host>
    <listen_try>1</listen_try>
    <path>$data/</path>
    <tmp_path>$data/tmp/</tmp_path>
    <user_files_path>$data/user_files/</user_files_path>
    <format_schema_path>$data/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>5368709120</mark_cache_size>
</yandex>
XML

cat > /etc/clickhouse-server/users.xml <<XML
<yandex>
    <profiles><default></default></profiles>
    <quotas><default></default></quotas>
    <users>
        <$(xml "$user")>
            <password>$(xml "${CLICKHOUSE_PASSWORD:-}")</password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </$(xml "$user")>
    </users>
</yandex>
XML

# The server attaches every database described in metadata/ when it starts.
for db in default "$database"; do
    if [ ! -f "$data/metadata/$db.sql" ]; then
        mkdir -p "$data/metadata/$db" "$data/data/$db"
        printf 'ATTACH DATABASE %s\nENGINE = Ordinary\n' "$db" > "$data/metadata/$db.sql"
    fi
done

exec clickhouse-server --config-file=/etc/clickhouse-server/config.xml "$@"
SH
    import_image "$1" 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD ["clickhouse-server"]' 'EXPOSE 8123' 'EXPOSE 9000'
}

for service in "${services[@]}"; do
    name="$(qualified "$(image_of "$service")")"
    if [[ $rebuild -eq 0 ]] && podman image exists "$name" \
        && [[ "$(podman image inspect --format '{{index .Labels "io.rq-sandbox.test-image"}}' "$name")" == "$build_id" ]]; then
        say "$name already built by this script"
        continue
    fi
    started=$SECONDS
    "build_$service" "$name"
    say "built $name in $((SECONDS - started)) s"
done
