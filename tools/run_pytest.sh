#!/usr/bin/env bash
# Run the suite; pytest's exit code 5 (no tests collected) is a failure, not a pass.
set -u
python=${1:-python3}
shift || true
"$python" -m pytest -m "not gpu" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
