#!/usr/bin/env bash
# Creates (or completes) the Python environment of the encode benchmark's llama.cpp side
# (scripts/bench/encode_stsb.py --llamacpp-venv): llama-cpp-python 0.3.36, built from its source
# distribution (it compiles its vendored llama.cpp, ggml-org/llama.cpp@0c1e57098, with CMake for this CPU),
# plus numpy.
#
#   scripts/bench/setup-llamacpp-venv.sh [VENV_DIR]   (default: $LLAMACPP_VENV, else ~/.cache/llm2vec/venv-llamacpp)
#
# Idempotent: an existing venv is reused and pip only installs what is missing or at another version.
# The build takes a while (tens of minutes on two cores); run it under `nice` on a shared machine.
# Environment: PYTHON (interpreter for the venv, default python3), CMAKE_BUILD_PARALLEL_LEVEL (compile jobs,
#              default 2), CMAKE_ARGS (passed to llama.cpp's CMake, e.g. "-DGGML_NATIVE=OFF"; by default
#              llama.cpp is built for the native CPU, as a user would build it).
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec
venv=${1:-${LLAMACPP_VENV:-$cache/venv-llamacpp}}
python=${PYTHON:-python3}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$python" -m venv "$venv"
fi
# CMake and Ninja from PyPI inside the venv (scikit-build-core finds them on PATH), then the binding from its
# sdist without build isolation so those are the ones used.
"$venv/bin/python" -m pip install -q "cmake==4.4.5" "ninja==1.13.2" "scikit-build-core==1.1.2" "numpy==2.4.6"
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pip install -q --no-build-isolation --no-binary llama-cpp-python \
  "llama-cpp-python==0.3.36"

"$venv/bin/python" - <<'EOF'
import importlib.metadata as md
assert md.version("llama-cpp-python") == "0.3.36", md.version("llama-cpp-python")
assert md.version("numpy") == "2.4.6", md.version("numpy")
import numpy  # noqa: F401
import llama_cpp
print("llama.cpp venv ready:", {"llama-cpp-python": llama_cpp.__version__, "numpy": md.version("numpy"),
      "llama_set_causal_attn": hasattr(llama_cpp, "llama_set_causal_attn")})
EOF
echo "use: scripts/bench/run-encode-bench.sh (finds $venv), or encode_stsb.py --llamacpp-venv $venv"
