#!/usr/bin/env bash
# The GPU checks and benchmarks in two phases: everything is built on a machine without a GPU and packed into one
# xz archive small enough to travel with the working tree (under 64 MiB together); a GPU machine then unpacks it
# and runs the checks (or a benchmark) without building anything or reaching a network.
#
#   scripts/gpu-check.sh build                        # here: compile and link the CUDA build only (what CI runs)
#   scripts/gpu-check.sh bundle [--no-python]        # here: build with CUDA, pack target/gpu-bundle/bundle.tar.xz
#   scripts/gpu-check.sh run [--device cuda:0] [checks.py options]       # on the GPU machine: PASS/FAIL table
#   scripts/gpu-check.sh bench encode|train [--device cuda:0] [options]  # scripts/bench/gpu_{encode,train_step}.py
#
# build compiles and links, with scripts/setup-cuda.sh's toolchain, the `llm2vec` binary (--features cuda) and the
# tests of llm2vec-cli and llm2vec-train, llm2vec-train's `device` test executable among them; CI runs it so that
# the CUDA code keeps building. bundle builds those and the Python package with CUDA (maturin; skip it with
# --no-python); it installs, for the GPU machine's Python 3.12, the reference's packages that its PyTorch
# environment lacks or has at other versions (llm2vec 0.2.3, transformers 4.44.2, tokenizers 0.19.1,
# huggingface_hub 0.24.6, peft 0.12.0, accelerate 0.33.0) and writes the data files (scripts/gpu/bundle_data.py).
# Set CARGO_TARGET_DIR to a folder kept for CUDA builds: the first build, and again the Python package's (its
# dependencies resolve other features), compiles candle's CUDA kernels, ~25 minutes on 2 cores (nvcc uses one).
#
# run and bench unpack into $GPU_CHECK_WORK (default /tmp/llm2vec-gpu), put the bundle's packages on PYTHONPATH
# for $GPU_PYTHON (default python3; the reference's stack only where that python lacks llm2vec), put the CUDA
# libraries on LD_LIBRARY_PATH ($CUDA_LIB, else the python environment's nvidia/cu13/lib, else $CUDA_ROOT/lib, else
# setup-cuda.sh's cache) and write results to $OUT when set, else target/gpu-check. The tiny fixture models travel with the
# working tree; the SmolLM2- and Mistral-7B-shaped models are made there with torch (random weights).
# On a machine without a GPU, `run --device cpu` runs the same checks against the CPU (the binaries then load
# against the link-time driver stub packed for that purpose).
#
# On a GPU machine, with target/gpu-bundle copied along with the working tree, each of these is one short run:
#   scripts/gpu-check.sh run --device cuda:0                  the checks, within 8 minutes (--budget, default 450 s)
#   scripts/gpu-check.sh bench encode [--workloads a,b]       gpu_encode.json (the 7B shape's 14.5 GB made first)
#   scripts/gpu-check.sh bench train [--cases a,b]            gpu_train_step.json (needs `llm2vec train --device`)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bundle_dir=${GPU_BUNDLE:-$repo/target/gpu-bundle}
archive=$bundle_dir/bundle.tar.xz
limit_mib=56  # the working tree travels too (~5 MiB), within 64 MiB

log() { echo "gpu-check: $*" >&2; }
die() { log "error: $*"; exit 1; }

reference_packages=(llm2vec==0.2.3 transformers==4.44.2 tokenizers==0.19.1 huggingface_hub==0.24.6 peft==0.12.0
    accelerate==0.33.0)

# The executable of one test target of a package, from cargo's JSON messages.
test_executable() {
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}

# Compiles and links, with CUDA, the `llm2vec` binary and the tests of llm2vec-cli and llm2vec-train (one cargo
# call, so that their dependencies build once); copies the binary and the `device` test executable into the
# staging folder $1 when given.
build() {
    local stage=${1:-} exe
    eval "$(scripts/setup-cuda.sh)"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
    log "building llm2vec and its tests with CUDA in $CARGO_TARGET_DIR"
    exe=$(cargo test --release -p llm2vec-cli -p llm2vec-train --features cuda --no-run --message-format=json \
        | test_executable device)
    [ -n "$exe" ] || die "cargo built no \`device\` test executable"
    [ -x "$CARGO_TARGET_DIR/release/llm2vec" ] || die "cargo built no \`llm2vec\` binary"
    if [ -n "$stage" ]; then
        mkdir -p "$stage/bin" "$stage/tests" "$stage/stub"
        cp "$CARGO_TARGET_DIR/release/llm2vec" "$stage/bin/"
        cp "$exe" "$stage/tests/device"
        cp "$CUDA_ROOT/lib/stubs/libcuda.so.1" "$stage/stub/"
    fi
    log "CUDA build: $CARGO_TARGET_DIR/release/llm2vec and $exe"
}

# The Python package built with CUDA, installed into $1/site-ours (wheels are zip files: xz packs the files better).
build_python_package() {
    local stage=$1 venv=$repo/.venv-py wheels
    [ -x "$venv/bin/maturin" ] || { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q "maturin>=1.7,<2"; }
    wheels=$(mktemp -d)
    # auditwheel off: the wheel links the CUDA libraries of the machine it runs on.
    "$venv/bin/maturin" build --release --features cuda --auditwheel skip --interpreter "$venv/bin/python" \
        --out "$wheels" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
        --no-compile --target "$stage/site-ours" "$wheels"/llm2vec_rs-*.whl
    rm -rf "$wheels"
}

# The reference's stack for the GPU machine's Python 3.12, installed into $1/site-reference.
install_reference_stack() {
    local stage=$1 wheels
    wheels=$(mktemp -d)
    # llm2vec 0.2.3 is published as a source archive only.
    python3 -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheels" "${reference_packages[0]}"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
        --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --target "$stage/site-reference" "$wheels"/llm2vec-*.whl "${reference_packages[@]:1}"
    rm -rf "$wheels"
}

# Packs the staged folder $1 into $archive.
pack() {
    local stage=$1
    log "packing $archive"
    # The large files first, side by side: the binaries hold the same CUDA kernels (PTX), which a large window
    # packs once.
    (cd "$stage" && find . -type f -size +4M | sort && find . -type f ! -size +4M | sort) \
        | tar -C "$stage" --no-recursion -cf - -T - | xz -T0 --lzma2=preset=9e,dict=256MiB > "$archive.partial"
    mv "$archive.partial" "$archive"
}

bundle() {
    local python=1
    [ "${1:-}" = "--no-python" ] && python=0
    local stage=$bundle_dir/stage
    rm -rf "$stage"
    build "$stage"
    if [ $python = 1 ]; then build_python_package "$stage"; fi
    install_reference_stack "$stage"
    scripts/fetch-default-model.sh >&2
    local venv gguf=${LLM2VEC_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/models}
    gguf=$gguf/SmolLM2-135M-Instruct.Q4_1.gguf
    venv=$(scripts/reference/venv.sh)
    "$venv/bin/python" scripts/gpu/bundle_data.py --shared "$repo/../shared/data" --gguf "$gguf" --out "$stage"
    printf '{"commit": "%s", "built": "%s", "repo": "%s", "python_package": %s, "device_tests": %s}\n' \
        "$(git describe --always --dirty)" "$(date -u +%FT%TZ)" "$repo" "$([ $python = 1 ] && echo true || echo false)" \
        "$([ -e "$stage/tests/device" ] && echo true || echo false)" > "$stage/manifest.json"
    pack "$stage"
    rm -rf "$stage"
    local mib
    mib=$(( ($(stat -c %s "$archive") + 1048575) / 1048576 ))
    echo "bundle: $archive ($mib MiB; limit $limit_mib MiB)"
    [ "$mib" -le "$limit_mib" ] || die "the bundle is over $limit_mib MiB: it cannot travel with the working tree"
}

# The folder of the CUDA 13 runtime libraries (cudart, cuBLAS, cuRAND, NVRTC) for the binaries.
cuda_libraries() {
    local python=$1 dir find='import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))'
    for dir in "${CUDA_LIB:-}" "$("$python" -c "$find" 2>/dev/null)" \
        "${CUDA_ROOT:+$CUDA_ROOT/lib}" "${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/cuda-13.0/lib"; do
        if [ -n "$dir" ] && compgen -G "$dir/libcublas.so.13*" >/dev/null; then
            echo "$dir"
            return
        fi
    done
    die "no CUDA 13 libraries found (set CUDA_LIB to a folder with libcublas.so.13)"
}

# Unpacks the bundle and sets the environment (PYTHONPATH, LD_LIBRARY_PATH, GPU_PYTHON, GPU_WORK).
prepare() {
    local device=$1 work=${GPU_CHECK_WORK:-/tmp/llm2vec-gpu} python=${GPU_PYTHON:-python3}
    [ -f "$archive" ] || die "no bundle at $archive: run \`scripts/gpu-check.sh bundle\` first"
    rm -rf "$work" && mkdir -p "$work/bundle"
    xz -dc "$archive" | tar -C "$work/bundle" -xf -
    local site=$work/bundle/site-ours
    # The reference's stack only where that python lacks it (the GPU machine's has other versions, or none).
    "$python" -c 'import llm2vec' 2>/dev/null || site=$site:$work/bundle/site-reference
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    local libs
    libs=$(cuda_libraries "$python")
    if [ "$device" = cpu ] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
        libs=$libs:$work/bundle/stub  # no driver here: the stub lets the binaries load; nothing calls it on the CPU
    fi
    export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export GPU_PYTHON=$python GPU_WORK=$work
    log "unpacked in $work ($(cat "$work/bundle/manifest.json")); CUDA libraries: $libs"
}

# The value of --device in the arguments, cuda:0 when none.
device_of() {
    local device=cuda:0
    while [ $# -gt 0 ]; do
        if [ "$1" = --device ] && [ $# -gt 1 ]; then device=$2; fi
        shift
    done
    echo "$device"
}

run() {
    local device results=${OUT:-$repo/target/gpu-check}
    device=$(device_of "$@")
    prepare "$device"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null >&2 || true
    "$GPU_PYTHON" scripts/gpu/checks.py --bundle "$GPU_WORK/bundle" --work "$GPU_WORK" --results "$results" \
        --device "$device" "$@"
}

bench() {
    local which=${1:-} results=${OUT:-$repo/target/gpu-check} device
    shift || true
    device=$(device_of "$@")
    prepare "$device"
    local b=$GPU_WORK/bundle
    case $which in
        encode) "$GPU_PYTHON" scripts/bench/gpu_encode.py --data "$b/data" --tokenizer "$b/tokenizer" \
            --work "$GPU_WORK/bench" --output "$results/gpu_encode.json" --device "$device" "$@" ;;
        train) "$GPU_PYTHON" scripts/bench/gpu_train_step.py --llm2vec "$b/bin/llm2vec" --data "$b/data/train" \
            --tokenizer "$b/tokenizer" --work "$GPU_WORK/bench" --output "$results/gpu_train_step.json" \
            --device "$device" "$@" ;;
        *) die "bench needs encode or train" ;;
    esac
}

case ${1:-} in
    build) build ;;
    bundle) shift && bundle "$@" ;;
    run) shift && run "$@" ;;
    bench) shift && bench "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
