#!/usr/bin/env bash
# Install the peer gateways the benchmark compares Switchyard with, each in its own place under .tools/
# (gitignored), pinned, idempotently: a stamp file records what is installed, and a second run with the same
# versions does nothing.
#
#   bash benchmarks/peers_setup.sh            # both
#   bash benchmarks/peers_setup.sh litellm    # or just one: litellm | portkey
#
# Versions: override with LITELLM_VERSION=... / PORTKEY_VERSION=... (the stamp then no longer matches, so it
# reinstalls). Needs python3.11 (or $PEERS_PYTHON) for LiteLLM's venv and node + npm for Portkey. Only the package
# registries are used (PyPI, npm).
set -euo pipefail

LITELLM_VERSION="${LITELLM_VERSION:-1.106.2}"
PORTKEY_VERSION="${PORTKEY_VERSION:-1.15.2}"
HONO_NODE_SERVER_VERSION="${HONO_NODE_SERVER_VERSION:-1.13.5}"  # as in Portkey's package-lock.json (see portkey())
HONO_VERSION="${HONO_VERSION:-4.9.7}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
PY="${PEERS_PYTHON:-$(command -v python3.11 || command -v python3)}"

litellm() {
    local venv="$TOOLS/litellm-venv" stamp="$TOOLS/litellm-venv/.switchyard-stamp"
    local want="litellm[proxy]==$LITELLM_VERSION python=$("$PY" -c 'import platform; print(platform.python_version())')"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/litellm" ]]; then
        echo "litellm: $want already installed in $venv"
        return
    fi
    echo "litellm: installing $want into $venv"
    rm -rf "$venv"
    "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
    LITELLM_LOCAL_MODEL_COST_MAP=True "$venv/bin/litellm" --help >/dev/null
    echo "$want" >"$stamp"
    echo "litellm: done ($("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))'))"
}

portkey() {
    local dir="$TOOLS/portkey" stamp="$TOOLS/portkey/.switchyard-stamp"
    command -v node >/dev/null && command -v npm >/dev/null || { echo "portkey: node and npm are needed" >&2; exit 1; }
    # The gateway's package.json asks for "@hono/node-server": "^1.3.3" and "hono": "^4.9.7", so a plain
    # `npm install` takes the newest 1.x / 4.x. With @hono/node-server 1.19.x (and 1.14.2) every streamed chat
    # and every embeddings request fails in Node ("TypeError: immutable" in updateHeaders; Portkey-AI/gateway
    # issues 1389 and 1550). Portkey's own Docker image installs from its package-lock.json, which pins
    # @hono/node-server 1.13.5 and hono 4.9.7: we pin the same two with npm overrides.
    local want="@portkey-ai/gateway@$PORTKEY_VERSION @hono/node-server@$HONO_NODE_SERVER_VERSION hono@$HONO_VERSION node=$(node --version)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dir/node_modules/@portkey-ai/gateway/package.json" ]]; then
        echo "portkey: $want already installed in $dir"
        return
    fi
    echo "portkey: installing $want into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/package.json" <<JSON
{
  "private": true,
  "dependencies": { "@portkey-ai/gateway": "$PORTKEY_VERSION" },
  "overrides": { "@hono/node-server": "$HONO_NODE_SERVER_VERSION", "hono": "$HONO_VERSION" }
}
JSON
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error
    node -e 'const v=(p)=>require(process.argv[1]+"/node_modules/"+p+"/package.json").version;
             console.log("portkey: done (gateway "+v("@portkey-ai/gateway")+", @hono/node-server "+v("@hono/node-server")+", hono "+v("hono")+")")' "$dir"
    echo "$want" >"$stamp"
}

mkdir -p "$TOOLS"
case "${1:-all}" in
    litellm) litellm ;;
    portkey) portkey ;;
    all) litellm; portkey ;;
    *) echo "usage: $0 [litellm|portkey|all]" >&2; exit 2 ;;
esac
