#!/usr/bin/env bash
# Installs a CUDA 13.0 toolchain for `cargo build --features cuda` from the NVIDIA wheels on PyPI (no system CUDA,
# no root): the compiler (nvcc, ptxas, cicc), headers, cudart, cuBLAS and cuRAND, laid out as a CUDA prefix
# (bin/ include/ lib/ lib64 -> lib, nvvm/), with unversioned library links and a link-time stub libcuda.so
# (no wheel ships the driver; the stub only satisfies the linker, the machine's driver is used at run time).
# Then it checks nvcc by compiling a small kernel to PTX and prints the environment to use:
#
#   scripts/setup-cuda.sh [prefix]        # default: ${XDG_CACHE_HOME:-~/.cache}/llm2vec/cuda-13.0
#   eval "$(scripts/setup-cuda.sh)"       # the same, and the variables set in this shell
#
# Running it again reuses what is installed. To run a CUDA build, the GPU machine needs a driver for CUDA 13
# and the prefix's lib/ (or another CUDA 13 cuBLAS/cuRAND/cudart) on LD_LIBRARY_PATH.
set -euo pipefail
prefix=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/llm2vec/cuda-13.0}
python=${PYTHON:-python3}

# The set that `cuda-toolkit==13.0.1` pins (NVRTC too: candle's CUDA backend links it).
wheels=(
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
    nvidia-cuda-runtime==13.0.88 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)

log() { echo "setup-cuda: $*" >&2; }

install_wheels() {
    local staging=$prefix.partial
    rm -rf "$staging"
    log "installing ${#wheels[@]} wheels into $prefix"
    "$python" -m pip install -q --disable-pip-version-check --no-deps --target "$staging/site" "${wheels[@]}" >&2
    mv "$staging/site/nvidia/cu13" "$staging/cuda"
    rm -rf "$prefix"
    mv "$staging/cuda" "$prefix"
    rm -rf "$staging"
    echo "${wheels[*]}" > "$prefix/wheels.txt"
}

# libX.so -> libX.so.N for every versioned library, as a system CUDA install has them.
link_libraries() {
    local lib
    for lib in "$prefix"/lib/lib*.so.*; do
        ln -sfn "$(basename "$lib")" "${lib%%.so.*}.so"
    done
    ln -sfn lib "$prefix/lib64"
}

# A shared library that defines every driver function cuda.h declares, as empty functions: enough for the linker.
make_driver_stub() {
    local stubs=$prefix/lib/stubs
    mkdir -p "$stubs"
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' "$prefix/include/cuda.h" | tr -d ' (' | sort -u \
        | awk '{ print "void " $1 "(void) {}" }' > "$stubs/libcuda.c"
    # cuda.h maps the public names to versioned ones (cuMemAlloc -> cuMemAlloc_v2): define those too.
    grep -ohE '#define\s+cu[A-Za-z0-9_]+\s+cu[A-Za-z0-9_]+' "$prefix/include/cuda.h" | awk '{ print $3 }' | sort -u \
        | comm -13 <(sed -E 's/void ([A-Za-z0-9_]+).*/\1/' "$stubs/libcuda.c" | sort -u) - \
        | awk '{ print "void " $1 "(void) {}" }' >> "$stubs/libcuda.c"
    cc -shared -fPIC -o "$stubs/libcuda.so.1" "$stubs/libcuda.c" -Wl,-soname,libcuda.so.1
    ln -sfn libcuda.so.1 "$stubs/libcuda.so"
    rm "$stubs/libcuda.c"
}

check_nvcc() {
    local dir
    dir=$(mktemp -d)
    printf '__global__ void add(float *x, float y) { x[threadIdx.x] += y; }\n' > "$dir/add.cu"
    "$prefix/bin/nvcc" --ptx -arch=sm_90 -o "$dir/add.ptx" "$dir/add.cu"
    grep -q '.entry' "$dir/add.ptx" || { log "nvcc wrote no kernel to $dir/add.ptx"; exit 1; }
    rm -rf "$dir"
    log "$("$prefix/bin/nvcc" --version | tail -n 2 | head -n 1)"
}

# Reused only when it holds this wheel set and its stub.
[ "$(cat "$prefix/wheels.txt" 2>/dev/null)" = "${wheels[*]}" ] && [ -e "$prefix/lib/stubs/libcuda.so" ] || {
    install_wheels
    link_libraries
    make_driver_stub
}
check_nvcc

cat <<EOF
export CUDA_ROOT=$prefix
export CUDA_PATH=$prefix
export PATH=$prefix/bin:\$PATH
export LIBRARY_PATH=$prefix/lib:$prefix/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
EOF
