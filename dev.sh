#!/usr/bin/env bash
# The one entry point for people and CI. Creates ./.venv on first use (Python 3.11+ only).
#   ./dev.sh demo [args]   set up, then run `pooler demo` (devnet + Pooler + miners, a few blocks)
#   ./dev.sh test [args]   set up (also the Debian packages the tests drive), then run the whole test suite
#   ./dev.sh provision     install the Debian packages the tests drive (redis-server, chromium) if missing
#   ./dev.sh web           build the dashboard's front-end files (npm; also done by demo, test and pooler)
#   ./dev.sh lint          ruff + mypy --strict
#   ./dev.sh pooler ARGS   any pooler subcommand inside the venv
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

setup() {
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "kale-pooler needs Python 3.11 or newer; '$PY' is $("$PY" --version 2>&1)" >&2
    exit 1
  fi
  local stamp="$VENV/.installed"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setting up $VENV (first run only; log in $VENV/setup.log)..." >&2
    if ! { "$VENV/bin/python" -m pip install --upgrade pip && "$VENV/bin/python" -m pip install -e '.[test]'; } \
        >"$VENV/setup.log" 2>&1; then
      tail -n 30 "$VENV/setup.log" >&2
      echo "setup failed; full log: $VENV/setup.log" >&2
      exit 1
    fi
    touch "$stamp"
  fi
}

# Debian packages: installed with apt-get when missing and we may (root, or sudo without a password);
# otherwise one line says what to install and nothing starts. $1: what needs them; the rest: packages.
apt_install() {
  local why=$1; shift
  local missing=("$@")
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      echo "$why need Debian packages that are missing: ${missing[*]}; install them with:" \
        "sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  mkdir -p "$VENV"
  echo "installing ${missing[*]} for $why (first run only; log in $VENV/apt.log)..." >&2
  if ! { $sudo apt-get update && $sudo apt-get install -y "${missing[@]}"; } \
      >"$VENV/apt.log" 2>&1; then
    tail -n 20 "$VENV/apt.log" >&2
    echo "could not install ${missing[*]} (full log: $VENV/apt.log); install them by hand:" \
      "apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

# The suite drives real programs, not mocks: Debian's redis-server (scale-out tests), chromium (the
# dashboard's browser tests, through playwright, whose own browser download does not work here) and
# make + g++ (the kale-miner bridge tests build the real binary).
provision() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then missing+=(chromium); fi
  # the kale-miner bridge tests build the real binary (tests/support/kale_miner.py)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "the tests" "${missing[@]}"
}

# The dashboard's charting library (uPlot) comes from the npm registry, pinned by
# frontend/package-lock.json, and is copied into pooler/web/static/vendor/ (frontend/build.sh).
# Rebuilt when the lock file is newer than the copy; npm comes from Debian when missing.
web() {
  local stamp=pooler/web/static/vendor/.built
  if [ -f "$stamp" ] && [ ! frontend/package-lock.json -nt "$stamp" ]; then return 0; fi
  command -v npm >/dev/null 2>&1 || apt_install "the dashboard's front-end build" npm
  mkdir -p "$VENV"
  echo "building the dashboard's front-end files (npm; log in $VENV/web.log)..." >&2
  if ! frontend/build.sh >"$VENV/web.log" 2>&1; then
    tail -n 20 "$VENV/web.log" >&2
    echo "the front-end build failed (full log: $VENV/web.log)" >&2
    exit 1
  fi
  touch "$stamp"
}

# The whole suite (no arguments) runs in two pytest processes side by side, because most of its
# time is waiting on devnet blocks, not CPU: lane 2 is the end-to-end tier (subprocess Poolers and
# devnets) plus the two slowest component modules, lane 1 the rest; lane 2's report is printed after
# lane 1's, and the suite fails if either does. With arguments: one pytest run of exactly those.
LANE2=(tests/e2e tests/component/test_bench_quick.py tests/component/test_reliability_unknown_outcomes.py)
suite() {
  local py="$VENV/bin/python"
  if [ $# -gt 0 ]; then exec "$py" -m pytest "$@"; fi
  local ignore=() path rc1=0 rc2=0
  for path in "${LANE2[@]}"; do ignore+=("--ignore=$path"); done
  LANE2_LOG=$(mktemp)
  "$py" -m pytest -o cache_dir=.pytest_cache/lane2 "${LANE2[@]}" >"$LANE2_LOG" 2>&1 &
  LANE2_PID=$!
  trap 'kill "$LANE2_PID" 2>/dev/null || true; rm -f "$LANE2_LOG"' EXIT
  echo "lane 2 (${LANE2[*]}) runs beside this one; its report follows this one's" >&2
  "$py" -m pytest -o cache_dir=.pytest_cache/lane1 "${ignore[@]}" || rc1=$?
  wait "$LANE2_PID" || rc2=$?
  echo "============================ lane 2: ${LANE2[*]} ============================"
  cat "$LANE2_LOG"
  echo "lane 1 exit $rc1, lane 2 exit $rc2"
  [ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ]
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)   setup; web; exec "$VENV/bin/pooler" demo "$@" ;;
  test)   setup; provision; web; suite "$@" ;;
  provision) provision ;;
  web)    web ;;
  lint)   setup
          dirs=$(for d in protocol pooler tests examples bench; do [ -d "$d" ] && echo "$d"; done)
          # shellcheck disable=SC2086  # word splitting of the folder list is intended
          "$VENV/bin/ruff" check $dirs && "$VENV/bin/ruff" format --check $dirs && exec "$VENV/bin/mypy" ;;
  pooler) setup; web; exec "$VENV/bin/pooler" "$@" ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
