# shellcheck shell=bash
# Shell helpers shared by scripts/test, scripts/bench-e2e and interop/*/run; source it, do not
# run it.
# Needs bash; the caller sets its own `set -euo pipefail`.

# as_root COMMAND...: COMMAND as root, through sudo unless this already is root.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# need_debs PACKAGE...: installs those Debian packages that are not installed yet. The package
# lists are updated at most once, for this process and the processes it starts afterwards.
need_debs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -qx 'install ok installed' ||
      missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "installing: ${missing[*]}"
  if [ -z "${NEED_DEBS_UPDATED:-}" ]; then
    as_root apt-get update -qq
    export NEED_DEBS_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for WHAT SECONDS LOG COMMAND...: runs COMMAND every 0.1 s until it succeeds. After SECONDS
# it fails loudly: WHAT did not come up, followed by the last lines of LOG (the service's log).
wait_for() {
  local what=$1 seconds=$2 log=$3
  local deadline=$((SECONDS + seconds))
  shift 3
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: $what did not come up within ${seconds}s; last lines of $log:" >&2
      tail -n 50 "$log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
}

# stop_pid PID: TERM, then up to 10 s for it to exit, then KILL; reaps it if it is our child.
stop_pid() {
  if kill "$1" 2>/dev/null; then
    for _ in $(seq 100); do
      kill -0 "$1" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}

# cargo_executable KIND NAME CARGO_BUILD_ARGS...: builds the target NAME of KIND (example, bench,
# bin) and prints the path of its executable, as cargo reports it.
cargo_executable() {
  local kind=$1 name=$2
  shift 2
  cargo build "--$kind" "$name" "$@" --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
kind, name, found = sys.argv[1], sys.argv[2], []
for line in sys.stdin:
    message = json.loads(line)
    target = message.get("target") or {}
    if (message.get("reason") == "compiler-artifact" and target.get("name") == name
            and kind in target.get("kind", []) and message.get("executable")):
        found.append(message["executable"])
if not found:
    sys.exit(f"cargo reported no executable for the {kind} {name}")
print(found[-1])
' "$kind" "$name"
}
