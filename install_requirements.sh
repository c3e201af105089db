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
T0=$SECONDS
STEP="start"
STEP_T0=$SECONDS
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

parse_args() {
  for arg in "$@"; do
    case "$arg" in
      --check) CHECK_ONLY=1 ;;
      -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
      *) echo "install_requirements.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
  done
}

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
pip_install() { "$PY" -m pip install -q --no-input --progress-bar off "$@"; }
torch_version() { "$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true; }
torch_cuda() { "$PY" -c "import torch; print(torch.version.cuda or '')"; }
nvcc_path() { command -v nvcc || { [[ -n ${CUDA_HOME:-} && -x ${CUDA_HOME}/bin/nvcc ]] && echo "$CUDA_HOME/bin/nvcc"; } || true; }

# Requirements as the matrix writes them (NAME, NAME==VERSION, NAME>=VERSION), checked with the standard
# library only: no pip internals, and nothing to install before the first check.
REQUIREMENTS_PY='
import re, sys
from importlib import metadata

def parse_requirement(text):
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(==|>=)\s*(\d[0-9A-Za-z.+!-]*))?", text.strip())
    if m is None:
        sys.exit(f"install_requirements.sh: cannot read requirement {text!r} (NAME, NAME==V or NAME>=V)")
    return m.group(1), m.group(2), m.group(3)

def _version_key(version):
    m = re.match(r"(\d+(?:\.\d+)*)(.*)", version.split("+")[0])  # a local "+cpu" matches, as in PEP 440
    release = [int(x) for x in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:  # 2.1 == 2.1.0
        release.pop()
    return tuple(release), m.group(2)

def satisfies(have, op, want):
    have, want = _version_key(have), _version_key(want)
    return have == want if op == "==" else have[0] >= want[0]

def installed_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
'

# Prints the requirements (given as arguments) that the environment does not satisfy, one per line,
# and the ones it does as "    found name==version" on stderr.
missing() {
  "$PY" -c "$REQUIREMENTS_PY"'
for text in sys.argv[1:]:
    name, op, want = parse_requirement(text)
    have = installed_version(name)
    if have is None or (op is not None and not satisfies(have, op, want)):
        print(text)
    else:
        print(f"    found {name}=={have}", file=sys.stderr)
' "$@"
}

# install_missing [PIP_FLAGS...] -- REQUIREMENTS...: one pip call, under the torch constraint, for
# whichever of the requirements are missing.
install_missing() {
  local flags=() todo todo_arr
  while [[ $1 != -- ]]; do flags+=("$1"); shift; done
  shift
  todo=$(missing "$@")
  [[ -z $todo ]] && return 0
  mapfile -t todo_arr <<<"$todo"
  echo "    installing: ${todo_arr[*]}"
  pip_install -c "$CONSTRAINTS" "${flags[@]}" "${todo_arr[@]}"
}

# ---- the steps, one function each ----------------------------------------------------------------
check_interpreter() {
  step "check the Python interpreter"
  command -v "$PY" >/dev/null || die "'$PY' not found; activate the environment to install into or set PYTHON=..."
  "$PY" -c "import sys; assert sys.version_info >= (3, 10), sys.version" 2>/dev/null \
    || die "Python >= 3.10 is required, '$PY' is $("$PY" -V 2>&1)"
  "$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for '$PY'"
  echo "    $("$PY" -V 2>&1) at $("$PY" -c 'import sys; print(sys.prefix)')"
  done_step
}

# No torch yet: exactly the pinned release (a local CPU wheel on CPU machines, the CUDA build from PyPI
# elsewhere); another torch: stop. Sets HAVE_TORCH and the constraints file every later pip call sees.
install_torch() {
  step "torch==$TORCH_VERSION (never replaced)"
  HAVE_TORCH=$(torch_version)
  if [[ -z $HAVE_TORCH ]]; then
    pip_install "torch==$TORCH_VERSION"
    HAVE_TORCH=$(torch_version)
    [[ -n $HAVE_TORCH ]] || die "torch was installed but does not import"
  elif [[ ${HAVE_TORCH%%+*} != "$TORCH_VERSION" ]]; then
    die "torch $HAVE_TORCH is installed but this project pins torch==$TORCH_VERSION. The script does not
  replace an existing torch: use a fresh virtual environment, or 'pip install torch==$TORCH_VERSION' yourself."
  else
    echo "    found torch==$HAVE_TORCH"
  fi
  CONSTRAINTS=$(mktemp)
  trap 'rm -f "$CONSTRAINTS"' EXIT
  echo "torch==$HAVE_TORCH" >"$CONSTRAINTS"
  done_step
}

install_build_tools() {
  step "build tools (${BUILD_TOOLS[*]})"
  install_missing -- "${BUILD_TOOLS[@]}"
  done_step
}

install_pinned() {
  step "pinned packages (torchvision, triton, timm, fvcore, pycocotools, opencv, numpy, ...)"
  install_missing --no-build-isolation -- "${PINNED[@]}"
  done_step
}

# torchvision's compiled ops on a CPU-only torch: torchvision_cpu_shim.sh (a no-op where they load).
fix_torchvision_ops() {
  step "torchvision compiled ops"
  PYTHON="$PY" bash "$REPO_ROOT/torchvision_cpu_shim.sh" || die "the torchvision CPU shim failed (see above)"
  done_step
}

# The pure-Python OpenMMLab packages, --no-deps: their dependencies are in PINNED.
install_openmmlab() {
  step "OpenMMLab packages (${OPENMMLAB[*]})"
  install_missing --no-deps -- "${OPENMMLAB[@]}"
  done_step
}

# 1 when mmcv's ops should be compiled with CUDA: MMCV_CUDA, else torch is a CUDA build and nvcc exists.
mmcv_wants_cuda() {
  local cuda want=${MMCV_CUDA:-auto}
  cuda=$(torch_cuda)
  if [[ $want == auto ]]; then
    if [[ -n $cuda && -n $(nvcc_path) ]]; then want=1; else want=0; fi
  fi
  [[ $want == 0 || -n $cuda ]] || die "MMCV_CUDA=1 but torch $HAVE_TORCH is not a CUDA build"
  echo "$want"
}

# mmcv's ops are usable when mmcv._ext loads; with CUDA wanted ($1 = 1) they must have been compiled with it.
mmcv_ok() {
  "$PY" - "$MMCV_VERSION" "$1" >/dev/null 2>&1 <<'PY'
import sys
import mmcv
from mmcv.ops import get_compiling_cuda_version
assert mmcv.__version__ == sys.argv[1], mmcv.__version__
assert sys.argv[2] == "0" or get_compiling_cuda_version() != "not available", "mmcv ops built without CUDA"
PY
}

# No mmcv wheel exists for torch 2.13: compiled from the sdist against the installed torch
# (--no-build-isolation: a build environment would compile against some other torch). pip caches the
# built wheel, so this takes ~20 min on 2 cores the first time and seconds afterwards.
build_mmcv() {
  local want_cuda=$1 cache_flag=() build_env
  if "$PY" -c "import mmcv" >/dev/null 2>&1; then
    # an mmcv without the wanted ops (mmcv-lite, another version, built against another torch or without
    # CUDA): rebuild it, bypassing pip's cached wheel
    echo "    an mmcv without usable ops is installed: rebuilding"
    "$PY" -m pip uninstall -y mmcv mmcv-lite >/dev/null 2>&1 || true
    cache_flag=(--no-cache-dir)
  fi
  if [[ -n $(torch_cuda) && -z $(nvcc_path) && $want_cuda == 0 ]]; then
    echo "    WARNING: torch is a CUDA $(torch_cuda) build but nvcc was not found: building CPU-only mmcv ops."
    echo "             Install the CUDA toolkit (or set CUDA_HOME) and rerun for CUDA ops."
  fi
  build_env=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
  if [[ $want_cuda == 1 ]]; then
    echo "    building CUDA + CPU ops (torch CUDA $(torch_cuda), nvcc at $(nvcc_path))"
    build_env+=(FORCE_CUDA=1)
  else
    echo "    building CPU ops (first build: ~20 min on 2 cores; pip caches the wheel)"
    # hide GPUs so that setup.py's torch.cuda.is_available() cannot switch to a CUDA build
    build_env+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
  fi
  env "${build_env[@]}" "$PY" -m pip install -q --no-input --progress-bar off \
    --no-deps --no-build-isolation "${cache_flag[@]}" "mmcv==$MMCV_VERSION"
}

install_mmcv() {
  step "mmcv==$MMCV_VERSION with compiled ops"
  local want_cuda
  want_cuda=$(mmcv_wants_cuda)
  if mmcv_ok "$want_cuda"; then
    echo "    found mmcv==$MMCV_VERSION with ops"
  else
    build_mmcv "$want_cuda"
    mmcv_ok "$want_cuda" || die "mmcv $MMCV_VERSION installed but its ops are not usable: $("$PY" -c 'import mmcv._ext' 2>&1 | tail -n 1).
  A stale cached wheel may be the cause: 'pip cache remove mmcv' and run again."
  fi
  done_step
}

# An editable install of this checkout that maps every package of pyproject.toml: one made before a package
# was added (openmmlab/) does not, and is made again.
install_project() {
  step "this project (editable install of models/, kernels/, openmmlab/ and the task folders)"
  if (cd / && PYTHONPATH= "$PY" - "$REPO_ROOT" <<'PY' 2>/dev/null)
import importlib.util, json, os, sys
from importlib import metadata
dist = metadata.distribution("vision-backbones")
url = json.loads(dist.read_text("direct_url.json") or "{}")
assert url.get("dir_info", {}).get("editable"), "not editable"
assert url["url"].removeprefix("file://") == sys.argv[1], url["url"]
for name in ("models", "kernels", "openmmlab", "classification", "detection", "segmentation"):
    spec = importlib.util.find_spec(name)
    assert spec and os.path.realpath(spec.origin).startswith(os.path.realpath(sys.argv[1]) + os.sep), name
PY
  then
    echo "    found editable install of $REPO_ROOT"
  else
    pip_install --no-deps --no-build-isolation -e "$REPO_ROOT"
  fi
  done_step
}

# The kernels' C++ CPU extensions (kernels/build_cpu.py), compiled in place like mmcv's ops; rebuilt only
# when missing, stale or built against another torch.
build_kernels() {
  step "CPU kernels (C++ extensions of kernels/, built in place)"
  (cd "$REPO_ROOT" && "$PY" -m kernels.build_cpu --if-stale) \
    || die "the C++ CPU kernels did not build (a C++ compiler with OpenMP is needed; see the output above)"
  done_step
}

verify_torch() {
  step "verify the pinned torch is untouched"
  local now
  now=$(torch_version)
  [[ $now == "$HAVE_TORCH" ]] || die "torch changed from $HAVE_TORCH to '$now' during the install"
  echo "    torch==$now"
  done_step
}

# ---- environment report (also the --check mode) ---------------------------------------------
read -r -d '' REPORT_PY <<'PY' || true
import os, subprocess, textwrap

problems = []
rows = [("python", sys.version.split()[0])]
for text in [f"torch=={sys.argv[1]}"] + sys.argv[2:]:
    name, op, want = parse_requirement(text)
    if op is None:  # unpinned helper dependencies are not worth a line each
        continue
    have = installed_version(name) or "MISSING"
    ok = have != "MISSING" and satisfies(have, op, want)
    if not ok:
        problems.append(f"{name}: want {op}{want}, have {have}")
    rows.append((name, have + ("" if ok else f"   <-- want {op}{want}")))

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
checks["CPU kernels"] = probe("""
    from kernels.build_cpu import check
    failed = check()
    assert not failed, "not built (python -m kernels.build_cpu): " + "; ".join(failed)
    print("selective scan, polyline attention (full, criss-cross), Manhattan attention compiled for the CPU")
""")

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

report() {
  "$PY" -c "$REQUIREMENTS_PY$REPORT_PY" "$TORCH_VERSION" "${PINNED[@]}" "${OPENMMLAB[@]}" "mmcv==$MMCV_VERSION"
}

main() {
  parse_args "$@"
  check_interpreter
  if [[ $CHECK_ONLY == 1 ]]; then
    step "report (--check: nothing installed)"
  else
    install_torch
    install_build_tools
    install_pinned
    fix_torchvision_ops
    install_openmmlab
    install_mmcv
    install_project
    build_kernels
    verify_torch
    step "report"
  fi
  report
  echo
  echo "install_requirements.sh: done in $((SECONDS - T0)) s"
}

main "$@"
