#!/usr/bin/env bash
# All of wgpmp's tests: typecheck, lint, unit tests, then the end-to-end tests that build network
# namespaces with WireGuard (those need root; without it they are skipped and say so).
# Prints one closing line: "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
else
  echo "test: not root: end-to-end tests will be skipped (run: sudo $0)" >&2
  [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p test/artifacts
set +e
npm test -- --reporter=default --reporter=json --outputFile.json=test/artifacts/vitest.json
rc=$?
set -e
node -e '
  const fs = require("node:fs")
  try {
    const r = JSON.parse(fs.readFileSync("test/artifacts/vitest.json", "utf8"))
    const skipped = r.numPendingTests + r.numTodoTests
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
  } catch { console.log("tests: 0 passed, 1 failed (no test report: typecheck, lint or build failed)") }
'
exit $rc
