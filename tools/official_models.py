"""The official model code of the five papers, imported from checkouts outside this repository: the
importer (:class:`Official`), stand-ins for Spatial-Mamba's CUDA-only extensions, and builders of every
published variant by this project's model name. Used by ``tools/make_parity_fixtures.py`` (fixtures, FLOPs) and
``benchmarks/bench_models.py --official-root`` (speed against the official code); never by the package, and its
tests need no official code. ``python tools/official_models.py --official-root DIR --stage OUT`` copies the files
the importer reads into ``OUT`` (for a machine without network, e.g. a lent GPU; see benchmarks/GPU.md).

The official code runs unmodified, here on CPU (benchmarks/GPU.md stages it for a lent GPU, where it has not run
yet). Two CUDA-only extensions of Spatial-Mamba get reference stand-ins written here (not copied from anywhere):
``selective_scan_cuda_oflex_rh`` (the state-returning selective scan as a sequential recurrence with autograd for
its backward) and ``Dwconv.dwconv_layer.DepthwiseFunction`` (the eval-mode depthwise conv with replicate padding, as
``F.pad(mode='replicate')`` + ``F.conv2d``). For the FLOP counts of P2T, whose pooled sizes are computed with
Python's ``round`` on traced sizes, the module-level ``round`` of the official file is wrapped in an ``int`` cast so
that ``torch.jit.trace`` (fvcore) can run it.
"""
from __future__ import annotations

import argparse
import builtins
import contextlib
import copy
import importlib
import importlib.util
import math
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# What :class:`Official` reads from each checkout (files, or folders it imports as packages): all that
# ``--stage`` copies for a machine without network
IMPORTED = {
    "PPMA": ["classification/models/PPMA.py", "classification/models/RMT.py"],
    "P2T": ["p2t.py"],
    "PaCaViT": ["models"],
    "MPViT": ["mpvit.py"],
    "Spatial-Mamba": ["classification/models"],
}
OFFICIAL_REPOS = {
    "PPMA": "https://github.com/zhongchenzhao/PPMA",
    "P2T": "https://github.com/yuhuan-wu/P2T",
    "PaCaViT": "https://github.com/iVMCL/PaCaViT",
    "MPViT": "https://github.com/youngwanLEE/MPViT",
    "Spatial-Mamba": "https://github.com/EdwardChasel/Spatial-Mamba",
}


@contextlib.contextmanager
def _no_timm_registration():
    """The official files ``@register_model`` names that this project also registers with timm (``p2t_tiny``,
    ``mpvit_tiny``, ...). Importing them must not overwrite ours, so registration is a no-op meanwhile."""
    import timm.models
    import timm.models._registry as reg
    import timm.models.registry as reg_shim
    targets = [(reg, "register_model"), (reg_shim, "register_model"), (timm.models, "register_model")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in targets if hasattr(obj, name)]
    try:
        for obj, name, _ in saved:
            setattr(obj, name, lambda fn=None, *a, **k: fn)
        yield
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)


def _import_path(module_name: str, path: Path, package_dir: Path | None = None) -> types.ModuleType:
    """Imports ``path`` as ``module_name`` (a package if ``package_dir`` is given, so relative imports work)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    kwargs = {"submodule_search_locations": [str(package_dir)]} if package_dir is not None else {}
    spec = importlib.util.spec_from_file_location(module_name, path, **kwargs)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    with _no_timm_registration():
        spec.loader.exec_module(module)
    return module


def _scan_reference(u, delta, A, B, delta_bias, delta_softplus):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, all states returned: (b, D, N, L). Sequential, in the inputs'
    dtype; dt = softplus(delta + bias) (threshold 20, as the CUDA kernel)."""
    dt = delta + delta_bias[None, :, None] if delta_bias is not None else delta
    if delta_softplus:
        dt = F.softplus(dt)
    Bm = B[:, 0] if B.dim() == 4 else B  # (b, N, L)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    states = []
    for t in range(u.shape[-1]):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * Bm[:, None, :, t]
        states.append(h)
    return torch.stack(states, dim=-1)


def _scan_stand_in(exact: bool = True) -> types.ModuleType:
    """Stand-in for the official CUDA extension ``selective_scan_cuda_oflex_rh`` (fwd / bwd with its signature),
    computed with the sequential reference, in fp64 when ``exact`` (parity fixtures) or in the inputs' dtype
    (speed comparisons: the official code has no CPU scan, a plain loop is what it would run); results are
    returned in fp32 like the kernel."""
    mod = types.ModuleType("selective_scan_cuda_oflex_rh")

    def fwd(u, delta, A, B, D, delta_bias, delta_softplus, nrows, out_float):
        # under torch.jit.trace (fvcore) the official autograd Function is one PythonOp node; the tracer would
        # otherwise also record the L steps of the stand-in (minutes for a 224 input)
        tracing_state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            cast = (lambda t: t.double()) if exact else (lambda t: t)
            with torch.no_grad():
                h = _scan_reference(cast(u), cast(delta), cast(A), cast(B),
                                    None if delta_bias is None else cast(delta_bias), delta_softplus)
        finally:
            torch._C._set_tracing_state(tracing_state)
        n_chunks = max(1, math.ceil(u.shape[-1] / 2048))
        x = torch.zeros(u.shape[0], u.shape[1], n_chunks, 2 * A.shape[1], dtype=torch.float32)
        x[:, :, -1, 1::2] = h[..., -1].float()
        return [h.float() if out_float else h.to(u.dtype), x]

    def bwd(u, delta, A, B, D, delta_bias, dout, x, delta_softplus, nrows):
        cast = (lambda t: t.double()) if exact else (lambda t: t.float())
        ins = [cast(t.detach()).requires_grad_() for t in (u, delta, A, B)]
        bias = None if delta_bias is None else cast(delta_bias.detach()).requires_grad_()
        with torch.enable_grad():
            h = _scan_reference(*ins, bias, delta_softplus)
            grads = torch.autograd.grad(h, ins + ([bias] if bias is not None else []), cast(dout))
        du, ddelta, dA, dB = (g.to(t.dtype) for g, t in zip(grads[:4], (u, delta, A, B)))
        ddelta_bias = grads[4].to(delta_bias.dtype) if bias is not None else None
        return [du, ddelta, dA, dB, None, ddelta_bias]

    mod.fwd, mod.bwd = fwd, bwd
    return mod


def _dwconv_stand_in() -> tuple[types.ModuleType, types.ModuleType]:
    """Stand-in for the official eval-only CUDA extension ``Dwconv.dwconv_layer.DepthwiseFunction``: a stride-1
    depthwise conv with replicate padding."""
    pkg = types.ModuleType("Dwconv")
    pkg.__path__ = []
    layer = types.ModuleType("Dwconv.dwconv_layer")

    class DepthwiseFunction:
        @staticmethod
        def apply(x, weight, bias, pad_h, pad_w, is_bias):
            y = F.conv2d(F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="replicate"), weight,
                         bias if is_bias else None, groups=x.shape[1])
            return y

    layer.DepthwiseFunction = DepthwiseFunction
    pkg.dwconv_layer = layer
    return pkg, layer


class Official:
    """Lazy importer of the official model files under ``root``."""

    def __init__(self, root: Path, pylib: Path | None = None, exact_scan: bool = True):
        self.root = root
        self.exact_scan = exact_scan
        if pylib is not None:
            sys.path.insert(0, str(pylib))
        try:
            import einops  # noqa: F401
        except ImportError as err:
            raise SystemExit("the official code needs einops: pip install einops (or --pylib DIR)") from err

    def dir(self, repo: str) -> Path:
        d = self.root / repo
        if not d.is_dir():
            raise SystemExit(f"official repository {OFFICIAL_REPOS[repo]} not found at {d} (see the docstring)")
        return d

    def commit(self, repo: str) -> str:
        return subprocess.run(["git", "-C", str(self.dir(repo)), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()

    def ppma(self):
        return _import_path("official_ppma", self.dir("PPMA") / "classification/models/PPMA.py")

    def rmt(self):
        return _import_path("official_rmt", self.dir("PPMA") / "classification/models/RMT.py")

    def p2t(self):
        return _import_path("official_p2t", self.dir("P2T") / "p2t.py")

    def mpvit(self):
        return _import_path("official_mpvit", self.dir("MPViT") / "mpvit.py")

    def paca(self):
        pkg = self.dir("PaCaViT") / "models"
        _import_path("official_paca", pkg / "__init__.py", package_dir=pkg)
        mod = importlib.import_module("official_paca.paca_vit")
        mod.has_xformers = False  # the CPU path (F.multi_head_attention_forward), as the spec of the repo says
        return mod

    def spatial_mamba(self):
        sys.modules.setdefault("selective_scan_cuda_oflex_rh", _scan_stand_in(self.exact_scan))
        if "Dwconv" not in sys.modules:
            pkg, layer = _dwconv_stand_in()
            sys.modules["Dwconv"], sys.modules["Dwconv.dwconv_layer"] = pkg, layer
        pkg = self.dir("Spatial-Mamba") / "classification/models"
        _import_path("official_spatial_mamba", pkg / "__init__.py", package_dir=pkg)
        return importlib.import_module("official_spatial_mamba.spatialmamba")


def variant_builders(off: Official) -> dict[str, Callable[[], tuple]]:
    """Published variant name (this project's) -> a builder of the official model: () -> (model, the fvcore op
    handles its repository counts FLOPs with or None, whether it counts them on the train-mode graph)."""
    builders: dict[str, Callable[[], tuple]] = {}
    ppma, rmt = (lambda: off.ppma()), (lambda: off.rmt())
    for size, (p_fn, r_fn) in {"tiny": ("PPMAViT_T", "RMT_T"), "small": ("PPMAViT_S", "RMT_S"),
                               "base": ("PPMAViT_B", "RMT_B")}.items():
        builders[f"ppma_{size}"] = lambda f=p_fn: (getattr(ppma(), f)(None), None, False)
        builders[f"rmt_{size}"] = lambda f=r_fn: (getattr(rmt(), f)(None), None, False)
    for size in ("tiny", "small", "base", "large"):
        builders[f"p2t_{size}"] = lambda s=size: (_p2t_traceable(off, s), None, False)
    for size in ("tiny", "xsmall", "small", "base"):
        builders[f"mpvit_{size}"] = lambda s=size: (getattr(off.mpvit(), f"mpvit_{s}")(), None, False)
    paca_names = ["pacavit_tiny_p2cconv_100_0", "pacavit_small_p2cconv_100_0", "pacavit_base_p2cconv_100_0",
                  "pacavit_small_p2cmlp_100_0", "pacavit_small_p2cconv_2_0", "pacavit_small_p2cconv_49_0",
                  "pacavit_small_p2cconv_49_100", "pacavit_small_p2cconv_100_49", "pacavit_small_p2cconv_100",
                  "pacavit_small_p2cconv_100_blockwise", "pacavit_convmixer_tiny_100", "pacavit_convmixer_small_100",
                  "pacavit_convmixer_base_100"]
    for n in paca_names:
        builders[n] = lambda n=n: (_paca_variant(off, n), None, False)
    sm_cfg = {"tiny": dict(dims=64, depths=[2, 4, 8, 4], drop_path_rate=0.2),
              "small": dict(dims=64, depths=[2, 4, 21, 5], drop_path_rate=0.3),
              "base": dict(dims=96, depths=[2, 4, 21, 5], drop_path_rate=0.5)}
    for size, cfg in sm_cfg.items():
        def sm(cfg=cfg):
            mod = off.spatial_mamba()
            utils = importlib.import_module("official_spatial_mamba.utils")
            handles = {"aten::silu": None, "aten::neg": None, "aten::exp": None, "aten::flip": None,
                       "prim::PythonOp.SelectiveScanStateFn": utils.selective_scan_state_flop_jit}
            return mod.SpatialMamba(d_state=1, mlp_ratio=4.0, **cfg), handles, True
        builders[f"spatial_mamba_{size}"] = sm

    return builders


def _p2t_traceable(off: Official, size: str) -> nn.Module:
    mod = off.p2t()
    # pooled sizes: round(H / r) on traced sizes -> an int for adaptive_avg_pool2d (same values)
    mod.round = lambda v: builtins.round(float(v))
    return getattr(mod, f"p2t_{size}")()


def _paca_variant(off: Official, name: str) -> nn.Module:
    mod = off.paca()
    saved = copy.deepcopy(mod._arch_settings)  # the official factories pop from this shared table
    try:
        return getattr(mod, name)()
    finally:
        mod._arch_settings.clear()
        mod._arch_settings.update(saved)


def stage(root: Path, out: Path) -> list[str]:
    """Copies what :class:`Official` imports from each checkout under ``root`` into ``out``, in the same layout
    (``Official(out)`` then works): the official model code for a machine without network, such as a lent GPU
    (carry ``out``; a few hundred KB). Returns what it copied; a checkout that is not there is left out."""
    copied = []
    for repo, paths in IMPORTED.items():
        if not (root / repo).is_dir():
            continue
        for rel in paths:
            src, dst = root / repo / rel, out / repo / rel
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
            else:
                raise SystemExit(f"{src} is missing: is {root / repo} a checkout of {OFFICIAL_REPOS[repo]}?")
            copied.append(f"{repo}/{rel}")
    return copied


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Stage the official model code: python tools/official_models.py "
                                             "--official-root DIR --stage OUT")
    ap.add_argument("--official-root", required=True, type=Path, help="folder with the official checkouts")
    ap.add_argument("--stage", required=True, type=Path, help="where to copy the files the importer reads")
    args = ap.parse_args(argv)
    copied = stage(args.official_root, args.stage)
    if not copied:
        raise SystemExit(f"no official checkout under {args.official_root} (expected {', '.join(IMPORTED)})")
    print(f"staged under {args.stage}: " + ", ".join(copied))


if __name__ == "__main__":
    main()
