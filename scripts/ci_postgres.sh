#!/usr/bin/env bash
# A throwaway PostgreSQL server for the live journal's tests (issue 18).
#
#   eval "$(scripts/ci_postgres.sh start)"   # prints export MOOLA_TEST_PG_URL=... and MOOLA_PG_DIR=...
#   scripts/ci_postgres.sh stop              # stops it and removes its folder
#
# start: initdb's a cluster in MOOLA_PG_DIR (or a new mktemp folder), starts postgres on
# 127.0.0.1 on a free port (unix socket inside that folder, trust auth, nothing else
# listens), creates the database moola_test (single-user mode: only initdb, postgres and
# pg_ctl are needed) and prints the two export lines on stdout
# (everything else goes to stderr). As root it runs the server as the system user
# `postgres` (created when missing), since postgres refuses to run as root. When initdb
# is not found (on PATH or under /usr/lib/postgresql/*/bin) it installs Debian's
# `postgresql` package with apt-get.
# stop: stops the server of MOOLA_PG_DIR (or the folder given as $2) and removes the folder.
set -euo pipefail

log() { echo "ci_postgres: $*" >&2; }

find_bindir() {
    local initdb
    initdb=$(command -v initdb 2>/dev/null || true)
    if [ -z "$initdb" ]; then
        initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    [ -n "$initdb" ] && dirname "$initdb"
}

install_postgres() {
    log "initdb not found: installing Debian's postgresql package"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends postgresql >&2
}

free_port() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
            return
        fi
    done
    echo $((20000 + RANDOM % 20000))
}

# Run "$@" as the server's user (postgres when we are root, else ourselves).
as_user() {
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$RUN_AS" -- "$@"
        else
            su -s /bin/sh "$RUN_AS" -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

# Print the log, remove the half-made cluster folder and fail.
give_up() {
    cat "$2" >&2 || true
    rm -rf "$1"
    exit 1
}

start() {
    local bindir dir port
    bindir=$(find_bindir || true)
    if [ -z "$bindir" ]; then
        install_postgres
        bindir=$(find_bindir || true)
        [ -n "$bindir" ] || { log "initdb still not found after installing postgresql"; exit 1; }
    fi
    dir=${MOOLA_PG_DIR:-}
    if [ -z "$dir" ]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/moola-pg.XXXXXX")
    else
        mkdir -p "$dir"
        [ -z "$(ls -A "$dir")" ] || { log "MOOLA_PG_DIR $dir is not empty"; exit 1; }
    fi
    RUN_AS=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
        RUN_AS=postgres
        if ! id postgres >/dev/null 2>&1; then
            log "creating the system user postgres (the server refuses to run as root)"
            useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        fi
        chown "$RUN_AS" "$dir"
        chmod 700 "$dir"
    fi
    port=$(free_port)
    log "cluster in $dir, port $port, binaries in $bindir, user $RUN_AS"
    as_user "$bindir/initdb" -D "$dir/data" -U moola --auth=trust -E UTF8 --locale=C \
        --no-sync >"$dir/initdb.log" 2>&1 || give_up "$dir" "$dir/initdb.log"
    # The database is made in single-user mode, before the server starts: that needs the
    # postgres binary only (not every installation has createdb or psql next to it).
    echo "CREATE DATABASE moola_test;" | as_user "$bindir/postgres" --single -D "$dir/data" \
        -j template1 >"$dir/createdb.log" 2>&1 || give_up "$dir" "$dir/createdb.log"
    as_user mkdir -p "$dir/socket"
    as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c max_connections=50" \
        start >&2 || give_up "$dir" "$dir/server.log"
    echo "$port" >"$dir/port"
    echo "$bindir" >"$dir/bindir"
    echo "export MOOLA_PG_DIR=$dir"
    echo "export MOOLA_TEST_PG_URL=postgresql+psycopg://moola@127.0.0.1:$port/moola_test"
}

stop() {
    local dir=${1:-${MOOLA_PG_DIR:-}}
    [ -n "$dir" ] || { log "stop: set MOOLA_PG_DIR (printed by start) or give the folder"; exit 1; }
    [ -d "$dir" ] || { log "stop: $dir does not exist (already stopped?)"; return 0; }
    RUN_AS=$(stat -c %U "$dir")
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_user "$(cat "$dir/bindir")/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    log "stopped and removed $dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *)
        echo "usage: $0 start | stop [DIR]" >&2
        exit 2
        ;;
esac
