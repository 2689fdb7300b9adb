#!/usr/bin/env bash
# Run the suite in a random order (pytest-randomly) whose seed is printed first, so that a failure
# can be replayed with  make test PYTEST_SEED=N.  pytest's exit code 5 (no tests collected) is a
# failure, not a pass.
set -u
python=${1:-python3}
shift || true
seed=${PYTEST_SEED:-$(( $(od -An -N4 -tu4 /dev/urandom) % 1000000000 ))}
echo "pytest order seed: $seed (replay: make test PYTEST_SEED=$seed)"
"$python" -m pytest -m "not gpu" -p randomly --randomly-seed="$seed" "$@"
rc=$?
echo "pytest order seed: $seed"
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
