#!/usr/bin/env bash
# The Python client test: grpcio stubs generated from proto/ at test time,
# run against the real auth-service and document-service binaries.
#
#   cargo build --workspace && bash clients/python/run.sh
#
# Settings (environment):
#   DOCVERIFY_VENV        the virtual environment, created or reused
#                         (default $HOME/.cache/docverify-venv)
#   AUTH_SERVICE_BIN      default ${CARGO_TARGET_DIR:-<repo>/target}/debug/auth-service
#   DOCUMENT_SERVICE_BIN  default ${CARGO_TARGET_DIR:-<repo>/target}/debug/document-service
#   PYTHON                the interpreter that makes the venv (default python3)
#   DOCVERIFY_TEST_POSTGRES
#                         a PostgreSQL server URL (postgres://postgres@127.0.0.1:5432):
#                         run on fresh databases there, created and dropped with psql,
#                         instead of SQLite; set but empty is an error. Unset: SQLite.
#
# It prints which database it used; the last line printed is "N passed, N
# failed"; the exit status is non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

venv="${DOCVERIFY_VENV:-$HOME/.cache/docverify-venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"
export AUTH_SERVICE_BIN="${AUTH_SERVICE_BIN:-$target/debug/auth-service}"
export DOCUMENT_SERVICE_BIN="${DOCUMENT_SERVICE_BIN:-$target/debug/document-service}"
export DOCVERIFY_REPO="$repo"

setup_failed() {
    echo "python client: $1" >&2
    echo "0 passed, 1 failed"
    exit 1
}

for bin in "$AUTH_SERVICE_BIN" "$DOCUMENT_SERVICE_BIN"; do
    [ -x "$bin" ] || setup_failed "no executable at $bin (run 'cargo build --workspace' first, or set AUTH_SERVICE_BIN / DOCUMENT_SERVICE_BIN)"
done

# Reuse the venv unless it is missing or broken (for example its Python was removed).
if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv" || setup_failed "could not create the virtual environment at $venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" \
    || setup_failed "pip install -r clients/python/requirements.txt failed"

cd "$here"
exec "$venv/bin/python" -u "$here/test_story.py"
