#!/bin/sh
# Runs the Deno KV store tests in real Deno (an in-memory Deno KV, no server needed).
# Usage: tests/stores/run_deno.sh [extra deno test flags]
set -eu
cd "$(dirname "$0")/../.."
exec node_modules/.bin/deno test --unstable-kv -A "$@" tests/stores/deno_kv_test.ts
