"""Compiles the kernels' CPU extensions (C++ with ATen's thread pool) next to their sources, as mmcv builds its
ops at install time::

    python -m kernels.build_cpu              # ~2 min on 2 cores
    python -m kernels.build_cpu --if-stale   # only when a .so is missing, does not import, or is older than its
                                             # sources (install_requirements.sh runs this)
    python -m kernels.build_cpu --check      # exit status 1 unless every extension imports

Each extension is optional at run time: an op whose extension is missing or stale (built against another torch)
runs its PyTorch path instead, and ``impl="cpp"`` names the problem and this command. Needs a C++ compiler
with OpenMP (gcc on Linux); the object files go to a temporary folder and only the ``.so`` stays (git ignores it).
"""
from __future__ import annotations

import argparse
import glob
import importlib
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (importable module name, C++ source relative to the repository root, headers it includes)
EXTENSIONS = [("kernels.selective_scan._scan_cpu", "kernels/selective_scan/scan_cpu.cpp", ["kernels/cpu_math.h"]),
              ("kernels.polyline_attention._criss_cross_cpu", "kernels/polyline_attention/criss_cross_cpu.cpp",
               ["kernels/cpu_math.h", "kernels/cpu_tiles.h",
                "kernels/cpu_inputs.h"]),
              ("kernels.polyline_attention._full_cpu", "kernels/polyline_attention/full_cpu.cpp",
               ["kernels/cpu_math.h", "kernels/cpu_tiles.h",
                "kernels/cpu_inputs.h"]),
              ("kernels.manhattan_attention._manhattan_cpu", "kernels/manhattan_attention/manhattan_cpu.cpp",
               ["kernels/cpu_math.h", "kernels/cpu_tiles.h", "kernels/cpu_inputs.h"]),
              ("kernels.depthwise_conv._weight_grad_cpu", "kernels/depthwise_conv/weight_grad_cpu.cpp",
               ["kernels/cpu_math.h"])]
# -fopenmp: at::parallel_for's OpenMP pragmas (and `omp simd`) are compiled into these files; -fno-trapping-math
# (as torch is built): without it GCC keeps floating-point selects as branches and does not vectorise them
FLAGS = ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]


def build() -> None:
    from setuptools import setup
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # depends: setuptools rebuilds an extension only when one of these is newer than its .so (headers included)
    modules = [CppExtension(name, [os.path.join(ROOT, src)], depends=[os.path.join(ROOT, h) for h in headers],
                            extra_compile_args=FLAGS, extra_link_args=["-fopenmp"])
               for name, src, headers in EXTENSIONS]
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # (not the repository root: setuptools would read the project's pyproject.toml)
        try:
            # --build-lib ROOT: each .so lands beside its source, at its module's path under the root
            setup(name="vision-backbones-cpu-kernels", ext_modules=modules,
                  cmdclass={"build_ext": BuildExtension.with_options(use_ninja=False)},
                  script_args=["-q", "build_ext", "--build-lib", ROOT, "--build-temp", tmp])
        finally:
            os.chdir(cwd)


def stale() -> list[str]:
    """Names of the extensions whose built file is missing or older than one of its sources."""
    out = []
    for name, src, headers in EXTENSIONS:
        folder = os.path.join(ROOT, *name.split(".")[:-1])
        built = glob.glob(os.path.join(folder, name.split(".")[-1] + ".*.so"))
        newest = max(os.path.getmtime(os.path.join(ROOT, f)) for f in [src] + headers)
        if not built or max(os.path.getmtime(f) for f in built) < newest:
            out.append(name)
    return out


def check() -> list[str]:
    """Names of the extensions that do not import, each with the reason."""
    failed = []
    for name, _, _ in EXTENSIONS:
        try:
            importlib.import_module(name)
        except ImportError as err:
            failed.append(f"{name}: {err}")
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only import the built extensions")
    parser.add_argument("--if-stale", action="store_true",
                        help="build only if an extension is missing, older than its sources or does not import")
    args = parser.parse_args(argv)
    if args.if_stale and not stale() and not check():
        print("CPU extensions up to date")
    elif not args.check:
        build()
    failed = check()
    for line in failed:
        print(f"not built: {line}", file=sys.stderr)
    if not failed:
        print("CPU extensions: " + ", ".join(name for name, _, _ in EXTENSIONS))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
