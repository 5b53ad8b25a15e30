#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and the benchmark.
#
#   tools/pg-test-cluster.sh start DIR [--owner-pid PID] [-c NAME=VALUE]...
#   tools/pg-test-cluster.sh stop DIR
#   tools/pg-test-cluster.sh restart DIR [--immediate]
#
# start: initdb in DIR/data (DIR must exist and be empty, e.g. from
#   mktemp -d), then starts the server with its unix socket in DIR and a TCP
#   socket on 127.0.0.1 at a free port, trust authentication for both, and a
#   superuser named "bigfile".  It writes two connection strings:
#     DIR/conninfo      the unix socket (what the tests use)
#     DIR/conninfo-tcp  the loopback TCP socket (what the benchmark uses)
#   and prints the first on stdout.  With --owner-pid, a watchdog stops the
#   server and removes DIR when that process is gone, so that a test program
#   killed by its timeout leaves no server behind.  -c options go to the
#   server (postgres -c), after the script's own.
# stop: stops the server (fast shutdown) and removes DIR.
# restart: stops the server and starts it again on the same sockets; with
#   --immediate, the stop is a crash (pg_ctl -m immediate: no checkpoint,
#   recovery from the WAL at the start), as after a power cut of the server
#   alone.
#
# initdb and postgres refuse to run as root: as root, the server runs as the
# user "postgres" (made by Debian's postgresql package) or, without it,
# "nobody", and DIR is given to that user.  The clients (the tests, as root
# in CI) connect through the socket in DIR, which root can reach.
set -euo pipefail

bindir=${BIGFILE_PG_BINDIR:-}
if [ -z "$bindir" ]; then
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    bindir=$(pg_config --bindir)
  else
    # Debian keeps the server programs out of PATH.
    for d in /usr/lib/postgresql/*/bin; do
      [ -x "$d/initdb" ] && bindir=$d
    done
  fi
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg-test-cluster: initdb not found (Debian: apt-get install postgresql; or set BIGFILE_PG_BINDIR)" >&2
  exit 1
fi

usage() {
  echo "usage: $0 start DIR [--owner-pid PID] [-c NAME=VALUE]... | stop DIR | restart DIR [--immediate]" >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2

# Runs a command as the server's user.
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then
    pg_user=postgres
  else
    pg_user=nobody
  fi
  as_pg() { runuser -u "$pg_user" -- "$@"; }
else
  pg_user=$(id -un)
  as_pg() { "$@"; }
fi

pg_ctl_start() {
  local port=$1
  shift
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 $*"
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s -o "$opts" start
}

case "$cmd" in
  start)
    owner_pid=
    extra=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --owner-pid)
          owner_pid=$2
          shift 2
          ;;
        -c)
          extra+=("-c $2")
          shift 2
          ;;
        *) usage ;;
      esac
    done
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
      chown "$pg_user" "$dir"
    fi
    chmod 700 "$dir"
    as_pg "$bindir/initdb" -D "$dir/data" -U bigfile --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # The options of the tests' servers: enough connections for several test
    # programs at once (each file takes three), and quick shutdowns.  Durable
    # commits stay durable (fsync on): the benchmark measures them.
    base="-c max_connections=300 -c shared_buffers=128MB -c max_wal_size=2GB"
    base="$base -c log_min_messages=warning -c log_connections=off"
    # A free port: the server fails to start on a port that is taken, and
    # the next one is tried.
    started=0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      port=$((20000 + RANDOM % 30000))
      if pg_ctl_start "$port" "$base" "${extra[@]}" 2>>"$dir/start.log"; then
        started=1
        break
      fi
    done
    if [ "$started" = 0 ]; then
      echo "pg-test-cluster: the server did not start; its log:" >&2
      cat "$dir/server.log" "$dir/start.log" >&2 || true
      exit 1
    fi
    echo "$port" >"$dir/port"
    echo "$base ${extra[*]}" >"$dir/options"
    echo "host=$dir port=$port user=bigfile dbname=postgres gssencmode=disable" >"$dir/conninfo"
    echo "host=127.0.0.1 port=$port user=bigfile dbname=postgres gssencmode=disable sslmode=disable" \
      >"$dir/conninfo-tcp"
    if [ -n "$owner_pid" ]; then
      # The watchdog: detached from the caller's stdout (which a test
      # harness may wait on) and from its process group.
      setsid bash -c '
        # Gone too once the cluster was stopped (its data with it).
        while kill -0 "$1" 2>/dev/null && [ -d "$2/data" ]; do sleep 1; done
        if [ -d "$2/data" ]; then "$3" stop "$2"; fi
      ' watchdog "$owner_pid" "$dir" "$0" </dev/null >/dev/null 2>&1 &
    fi
    cat "$dir/conninfo"
    ;;

  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 -s stop || true
    fi
    rm -rf "$dir"
    ;;

  restart)
    mode=fast
    if [ "${1:-}" = --immediate ]; then
      mode=immediate
    fi
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 -s stop
    # shellcheck disable=SC2046 # the options are words
    pg_ctl_start "$(cat "$dir/port")" $(cat "$dir/options")
    ;;

  *) usage ;;
esac
