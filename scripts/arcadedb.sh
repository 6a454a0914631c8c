#!/usr/bin/env bash
# ArcadeDB as a Bolt server for the Neo4j adapter's tests (graph-svc).
#
#   scripts/arcadedb.sh fetch    download and unpack ArcadeDB (idempotent; .ci/run calls it)
#   scripts/arcadedb.sh start    start it in the background on a free port, print NEO4J_* lines
#   scripts/arcadedb.sh stop     stop what `start` started
#   scripts/arcadedb.sh status   say whether it is fetched and running
#
# The tests need only `fetch`: each test process starts its own server (see
# testkit/src/arcadedb.rs). `start` is for running things by hand, e.g.
#   eval "$(scripts/arcadedb.sh start)" && cargo nextest run -p warble-graph-svc store_neo4j
#
# ArcadeDB ships as the PyPI wheel `arcadedb-embedded`, which bundles the
# server jars, the Bolt plugin and a Java runtime: fetching is plain pip and
# unzip, and no system Java is needed. It is unpacked to $ARCADEDB_HOME
# (default: target/arcadedb in this repository), as jars/ and jre/.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
version="26.10.2.post1"
home="${ARCADEDB_HOME:-$repo/target/arcadedb}"
run="$home/run"
password="${ARCADEDB_PASSWORD:-warble-test-password}"

die() { echo "arcadedb.sh: $*" >&2; exit 1; }

fetched() {
  [ -x "$home/jre/bin/java" ] && [ -d "$home/jars" ] && [ "$(cat "$home/VERSION" 2>/dev/null)" = "$version" ]
}

fetch() {
  if fetched; then
    echo "ArcadeDB $version already in $home"
    return
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # The wheel is the same for every CPython; these flags pick the Linux x86-64 one
  # whatever the local Python is.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_34_x86_64 \
    --dest "$tmp" "arcadedb-embedded==$version"
  local wheel
  wheel="$(ls "$tmp"/arcadedb_embedded-*.whl)"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$wheel" 'arcadedb_embedded/jars/*' 'arcadedb_embedded/jre/*' -d "$tmp/x"
  else
    # Python's zipfile drops the executable bits; the runtime needs them back.
    python3 - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        if name.startswith(("arcadedb_embedded/jars/", "arcadedb_embedded/jre/")):
            wheel.extract(name, sys.argv[2])
PY
    chmod +x "$tmp"/x/arcadedb_embedded/jre/bin/* "$tmp"/x/arcadedb_embedded/jre/lib/jspawnhelper 2>/dev/null || true
  fi
  rm -rf "$home/jars" "$home/jre"
  mkdir -p "$home"
  mv "$tmp/x/arcadedb_embedded/jars" "$tmp/x/arcadedb_embedded/jre" "$home/"
  echo "$version" >"$home/VERSION"
  "$home/jre/bin/java" -version 2>&1 | head -1
  echo "ArcadeDB $version unpacked to $home ($(du -sh "$home" | cut -f1))"
}

running_pid() {
  local pid
  pid="$(cat "$run/server.pid" 2>/dev/null)" || return 1
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  fetched || die "not fetched: run scripts/arcadedb.sh fetch first"
  if pid="$(running_pid)"; then
    die "already running (pid $pid); scripts/arcadedb.sh stop first"
  fi
  local bolt_port="${ARCADEDB_BOLT_PORT:-$(free_port)}" http_port
  http_port="$(free_port)"
  rm -rf "$run"
  mkdir -p "$run"
  # The same settings as testkit/src/arcadedb.rs; from $run, where it writes log/.
  cd "$run"
  : >"$run/server.log"
  nohup "$home/jre/bin/java" -Xms64m -Xmx512m -cp "$home/jars/*" \
    -Darcadedb.server.rootPath="$run" \
    -Darcadedb.server.rootPassword="$password" \
    -Darcadedb.server.defaultDatabases='neo4j[root]' \
    -Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin \
    -Darcadedb.server.httpIncomingHost=127.0.0.1 \
    -Darcadedb.server.httpIncomingPort="$http_port" \
    -Darcadedb.bolt.host=127.0.0.1 \
    -Darcadedb.bolt.port="$bolt_port" \
    -Darcadedb.bolt.defaultDatabase=neo4j \
    com.arcadedb.server.ArcadeDBServer </dev/null >"$run/server.log" 2>&1 &
  echo $! >"$run/server.pid"
  local deadline=$((SECONDS + 60))
  # Bolt listens before the default database exists; this line comes after both.
  until grep -q "ArcadeDB Server started" "$run/server.log"; do
    # A failed start (the port taken, say) leaves the JVM running: look for it.
    if ! running_pid >/dev/null || grep -q 'Exception in thread "main"' "$run/server.log"; then
      grep -E 'SEVER|Exception' "$run/server.log" | head -5 >&2
      stop >/dev/null
      die "ArcadeDB failed to start (log: $run/server.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -20 "$run/server.log" >&2
      stop >/dev/null
      die "ArcadeDB did not start within 60 s"
    fi
    sleep 0.2
  done
  echo "# ArcadeDB (pid $(cat "$run/server.pid")) serves Bolt; log: $run/server.log" >&2
  echo "export NEO4J_URI=bolt://127.0.0.1:$bolt_port NEO4J_USER=root NEO4J_PASSWORD=$password NEO4J_DATABASE=neo4j"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "ArcadeDB is not running"
    rm -f "$run/server.pid"
    return
  fi
  kill "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$run/server.pid"
  echo "ArcadeDB (pid $pid) stopped"
}

status() {
  if fetched; then echo "fetched: ArcadeDB $version in $home"; else echo "not fetched ($home)"; fi
  if pid="$(running_pid)"; then echo "running: pid $pid (log: $run/server.log)"; else echo "not running"; fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
