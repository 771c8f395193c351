#!/usr/bin/env bash
# Installs the pinned third-party MCP clients used by the interop tests into
#   ${CARGO_TARGET_DIR:-<repo>/target}/interop/
#     venv/   Python venv with mcp==2.3.0 (full closure pinned in requirements.txt)
#     node/   npm project with @modelcontextprotocol/sdk@1.32.2 (package.json + package-lock.json)
#     stamp   written last; its content names the pins and a hash of the pin files
# Idempotent: when the stamp matches and both installs are present, it does nothing.
# Needs python3 (>= 3.10, with the venv module) and node >= 18 with npm; network access only to
# PyPI and the npm registry. Progress goes to stderr; on success the interop dir is printed on stdout.
#
# Environment: CARGO_TARGET_DIR (as cargo), INTEROP_PYTHON (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
dir="$target/interop"
python="${INTEROP_PYTHON:-python3}"

MCP_PY_VERSION="2.3.0"
MCP_TS_VERSION="1.32.2"

log() { printf 'interop setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Bound a step even if a client ignores its own timeouts (coreutils timeout, when present).
bounded() {
  local secs="$1"; shift
  if command -v timeout >/dev/null 2>&1; then timeout --kill-after=10 "$secs" "$@"; else "$@"; fi
}

command -v "$python" >/dev/null 2>&1 || die "$python not found"
command -v node >/dev/null 2>&1 || die "node not found"
command -v npm >/dev/null 2>&1 || die "npm not found"

grep -qx "mcp==$MCP_PY_VERSION" "$here/requirements.txt" || die "requirements.txt does not pin mcp==$MCP_PY_VERSION"
grep -q "\"@modelcontextprotocol/sdk\": \"$MCP_TS_VERSION\"" "$here/node/package.json" \
  || die "node/package.json does not pin @modelcontextprotocol/sdk $MCP_TS_VERSION"

mkdir -p "$dir"

# Serialize concurrent runs (e.g. several test binaries calling setup at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.lock"
  flock 9
fi

py_version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$python is $py_version; mcp $MCP_PY_VERSION needs >= 3.10"
node_major="$(node -p 'process.versions.node.split(".")[0]')"

pins_hash="$(cat "$here/requirements.txt" "$here/node/package.json" "$here/node/package-lock.json" \
  "$here/node/sdk.mjs" | sha256sum | cut -d' ' -f1)"
stamp_content="mcp==$MCP_PY_VERSION
@modelcontextprotocol/sdk@$MCP_TS_VERSION
python=$py_version
node-major=$node_major
pins-sha256=$pins_hash"

stamp="$dir/stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_content" \
      && -x "$dir/venv/bin/python" \
      && -f "$dir/node/node_modules/@modelcontextprotocol/sdk/package.json" ]]; then
  log "up to date ($dir)"
  echo "$dir"
  exit 0
fi

rm -f "$stamp"
start=$SECONDS

# --- Python -------------------------------------------------------------------------------------
log "python: creating venv with $python $py_version"
rm -rf "$dir/venv"
"$python" -m venv "$dir/venv" \
  || die "'$python -m venv' failed (on Debian's own python install python3-venv)"
log "python: installing mcp==$MCP_PY_VERSION (pinned closure from requirements.txt)"
bounded 900 "$dir/venv/bin/python" -m pip install \
  --timeout 60 --retries 3 --disable-pip-version-check --no-input --quiet \
  -r "$here/requirements.txt" >&2
installed="$("$dir/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')"
[[ "$installed" == "$MCP_PY_VERSION" ]] || die "venv has mcp $installed, want $MCP_PY_VERSION"

# --- Node ---------------------------------------------------------------------------------------
log "node: installing @modelcontextprotocol/sdk@$MCP_TS_VERSION with npm $(npm --version 2>/dev/null)"
rm -rf "$dir/node"
mkdir -p "$dir/node"
cp "$here/node/package.json" "$here/node/package-lock.json" "$here/node/sdk.mjs" "$dir/node/"
(
  cd "$dir/node"
  bounded 900 npm install --no-audit --no-fund --ignore-scripts --no-update-notifier \
    --fetch-timeout=60000 --fetch-retries=3 --loglevel=error >&2
)
installed="$(node -p 'require(process.argv[1]).version' \
  "$dir/node/node_modules/@modelcontextprotocol/sdk/package.json")"
[[ "$installed" == "$MCP_TS_VERSION" ]] || die "node project has sdk $installed, want $MCP_TS_VERSION"

printf '%s\n' "$stamp_content" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
log "done in $((SECONDS - start)) s ($dir)"
echo "$dir"
