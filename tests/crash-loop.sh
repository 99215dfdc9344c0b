#!/usr/bin/env bash
# Longer crash loops than CI's (50 iterations on sled, 20 on PostgreSQL, 20 over two
# pool processes on one PostgreSQL): SIGKILL a pool N times at random points while
# jobs run, on each backend and in the two-process cluster, then check every
# accepted job completes and nothing is credited or paid twice.
# Usage: tests/crash-loop.sh [ITERATIONS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export ZKPOOL_CRASH_ITERATIONS="${1:-300}"
if [ -n "${2:-}" ]; then export ZKPOOL_CRASH_SEED="$2"; fi
exec cargo test -p zkpool-tests --test e2e crash_loop -- --nocapture
