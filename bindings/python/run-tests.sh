#!/usr/bin/env bash
# Test the Python binding: (re)uses bindings/python/.venv, installs the package from source
# (pip builds the Rust core with cargo and bundles libherald into the package), installs the
# test and example dependencies, and runs pytest. Extra arguments go to pytest.
# Needs: python3 (>= 3.9), cargo, network access to PyPI (first run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
    echo "run-tests.sh: creating $venv" >&2
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"

"$py" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-test.txt" -r "$repo/examples/python/requirements.txt"
# --force-reinstall: always rebuild from the current sources (cargo is incremental).
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$here"

cd "$here"
exec "$py" -m pytest -q "$@"
