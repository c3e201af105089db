"""Builds the parity fixtures of ``tests/test_parity.py`` from the official code, and prints the official fvcore
FLOP counts that ``tests/test_flops.py`` asserts.

Never run by the tests or CI: it needs the five official repositories, checked out outside this repository,
and einops (which only the official code uses; PaCaViT also imports mmengine and mmcv, which
install_requirements.sh installs). Run from the repository root::

    ROOT=/tmp/official            # any folder outside the repository
    git clone https://github.com/zhongchenzhao/PPMA          $ROOT/PPMA           # PPMA and its RMT baselines
    git clone https://github.com/yuhuan-wu/P2T               $ROOT/P2T
    git clone https://github.com/iVMCL/PaCaViT               $ROOT/PaCaViT
    git clone https://github.com/youngwanLEE/MPViT           $ROOT/MPViT
    git clone https://github.com/EdwardChasel/Spatial-Mamba  $ROOT/Spatial-Mamba
    pip install einops            # or: pip install --target $ROOT/pylib einops  and  --pylib $ROOT/pylib

    python tools/make_parity_fixtures.py --official-root $ROOT            # writes tests/fixtures/parity/*.pt
    python tools/make_parity_fixtures.py --official-root $ROOT --only ppma rmt
    python tools/make_parity_fixtures.py --official-root $ROOT --flops    # official FLOPs of every variant

What a fixture holds (``torch.save`` of plain containers, loadable with ``torch.load(weights_only=True)``):

- ``model``: the official model's ``state_dict()`` in the official layout (the container key the official
  trainers write), so the file itself is a checkpoint that ``pretrained_cfg_overlay=dict(file=...)`` loads;
- ``parity``: provenance (official repository URL, commit, file, class and constructor kwargs; our model name
  and kwargs; seeds; torch / timm / fvcore versions), the input (an odd, non-square size, batch 2), the
  official eval logits, the official train-mode logits, the fixed weights ``w`` of the loss
  ``sum(logits * w)``, the official gradients of that loss w.r.t. the input and every parameter (keyed by
  official parameter name), the names of the gradients that are zero by construction (rounding noise only,
  checked against the largest gradient), the tolerances the test applies, the errors our model had when the
  fixture was written, and the smallest distance of any ReLU / Hardswish input to its kink in the official
  train-mode forward (a seed whose gradients could hinge on a kink is rejected; the next seed is tried).
  Tensors are stored as views into one storage per container (``packed``), which keeps the files small.

The official models are reduced in size (few blocks, narrow stages, 10 classes) but exercise every
architecture switch the published variants use; stochastic depth and dropout are off. Weights are
"realistic": the official initialisation, then every weight matrix / kernel re-drawn with std 1/sqrt(fan_in),
every constant-initialised tensor (norm scales and biases, biases, layer scales, state-fusion kernels and
mixing weights, ...) perturbed, BatchNorm running statistics set to non-trivial values; nothing is left at a
symmetric or degenerate value that could hide a wrong term. PaCa-ViT's cluster-logit layers are scaled up so
that the clusters are distinct (see ``_distinct_paca_clusters``: nearly identical clusters make the key
gradients ill-conditioned in fp32, in the official code as in ours).

The official code runs unmodified, on CPU, in fp32, imported by ``tools/official_models.py`` (with its
stand-ins for Spatial-Mamba's CUDA-only extensions, the fp64 sequential scan here).
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_models import OFFICIAL_REPOS, Official, variant_builders  # noqa: E402  (a sibling file)

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO / "tests" / "fixtures" / "parity"
FORMAT_VERSION = 1


# Tolerances of the test, relative to the largest magnitude of the official tensor:
# max|ours - official| <= tol * max|official|, per tensor (every gradient tensor on its own). Gradients that are
# zero by construction (a bias in front of a train-mode BatchNorm, which removes any per-channel constant) are
# rounding noise in both codes; for them ("zero_grads") max|ours - official| <= tol * G, G the largest
# official gradient of all parameters.
DEFAULT_TOLERANCES = {"eval_logits": 2e-5, "train_logits": 2e-5, "grad_input": 1e-4, "grads": 1e-4,
                      "zero_grads": 1e-5}
# An official gradient below ZERO_GRAD * G is rounding noise of a structurally zero gradient (the real ones in
# the fixtures are >= 4e-5 G, the noise <= 3e-7 G).
ZERO_GRAD = 1e-6
# A ReLU / Hardswish input of the train-mode forward closer than this to a kink, relative to the input's
# largest magnitude, rejects the seed: fp32 differences between two correct implementations are ~1e-7 of
# that scale there, so no gradient of the fixture can flip on a kink. (Eval forwards do not matter: the
# activations are continuous.)
KINK_MARGIN = 1e-5


# ------------------------------------------------------------------------------------------------------------
# Fixture specifications: one reduced official model per architecture switch
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Spec:
    name: str
    repo: str                      # key of OFFICIAL_REPOS
    file: str                      # official file, relative to the repository
    cls: str                       # official class name
    official_kwargs: dict          # constructor kwargs of the official class (JSON-like)
    ours: str                      # timm name of our model
    our_kwargs: dict               # kwargs of timm.create_model (JSON-like)
    input_size: tuple              # (B, C, H, W): odd, non-square
    seed: int = 0
    tolerances: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    build: Callable | None = None  # (Official, Spec) -> official nn.Module; default: module.<cls>(**kwargs)
    adjust: Callable | None = None  # (official nn.Module) -> None, after realistic_weights_ (conditioning)


_PPMA_ARCH = dict(embed_dims=[8, 16, 16, 24], depths=[1, 1, 2, 1], num_heads=[2, 2, 2, 3],
                  init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
                  chunkwise_recurrents=[True, False, True, False], layerscales=[False, False, True, True],
                  layer_init_values=1e-6, projection=32, drop_path_rate=0.0, num_classes=10)

_PACA_ARCH = dict(embed_dims=[8, 16, 16, 24], num_heads=[2, 2, 2, 3], mlp_ratios=[2, 2, 2, 2], depths=[2, 2, 3, 2])
_PACA_NORM = dict(type="LN", eps=1e-6)


def _paca_official(clustering: str, clusters, onsite, kernels, teacher_depths=None) -> dict:
    kw = dict(
        num_classes=10,
        arch_cfg=dict(_PACA_ARCH),
        paca_cfg=dict(type=clustering, clusters=list(clusters), onsite_clustering=list(onsite),
                      clustering_kernel_size=list(kernels), cluster_norm_cfg=dict(_PACA_NORM), cluster_pos_embed=False,
                      norm_cfg1=dict(_PACA_NORM), norm_cfg2=dict(_PACA_NORM), mlp_func="Mlp", with_dwconv_in_mlp=True,
                      with_shortcut_in_mlp=True),
        drop_path_rate=0.0, attn_drop=0.0, drop=0.0, layer_scale=None,
    )
    if teacher_depths is not None:
        kw["paca_teacher_cfg"] = dict(type="PaCaTeacher_ConvMixer", stem_cfg=None,
                                      embed_dims=list(_PACA_ARCH["embed_dims"]), depths=list(teacher_depths),
                                      kernel_size=7, norm_cfg=dict(type="BN"), act_cfg=dict(type="GELU"),
                                      drop_path_rate=0.0, return_outs=True)
    return kw


def _paca_ours(clustering: str, clusters, onsite, kernels, teacher_depths=None) -> dict:
    kw = dict(_PACA_ARCH, clustering=clustering, num_clusters=list(clusters), onsite_clustering=list(onsite),
              clustering_kernel_size=list(kernels), drop_path_rate=0.0, num_classes=10)
    if teacher_depths is not None:
        kw["teacher_depths"] = list(teacher_depths)
    return kw


def _paca_spec(name, official_type, our_type, clusters, onsite, kernels, teacher_depths=None, seed=0) -> Spec:
    return Spec(name, "PaCaViT", "models/paca_vit.py", "PaCaViT",
                _paca_official(official_type, clusters, onsite, kernels, teacher_depths),
                "pacavit_convmixer_tiny_100" if teacher_depths else "pacavit_tiny_p2cconv_100_0",
                _paca_ours(our_type, clusters, onsite, kernels, teacher_depths), (2, 3, 45, 37), seed=seed,
                adjust=_distinct_paca_clusters)


def _build_paca(off: Official, spec: Spec) -> nn.Module:
    return off.paca().PaCaViT(**copy.deepcopy(spec.official_kwargs))  # the official code pops from its cfg dicts


PACA_CLUSTER_GAIN = 4.0


@torch.no_grad()
def _distinct_paca_clusters(model: nn.Module) -> None:
    """Scales the layer that produces the cluster logits (the last layer of every clustering module, the
    teacher's ``to_clusters{i}``) by PACA_CLUSTER_GAIN. With 1/sqrt(fan_in) weights the logits are O(0.3), the
    softmax over the tokens nearly uniform and all clusters nearly the mean token; the gradients of the key
    projections, sums over clusters of terms that cancel for identical clusters, then lose ~3 digits in fp32
    in the official code and ours alike (measured against fp64). Trained models have distinct clusters."""
    for name, m in model.named_modules():
        if name.endswith("clustering.clustering"):
            last = [c for c in m if isinstance(c, (nn.Conv2d, nn.Linear))][-1]
            last.weight.mul_(PACA_CLUSTER_GAIN)
        elif name.split(".")[-1].startswith("to_clusters") and isinstance(m, nn.Conv2d):
            m.weight.mul_(PACA_CLUSTER_GAIN)


SPECS = [
    # PPMA: criss-cross (stages 1, 3) and full polyline attention (stages 2, 4), layer scale in stages 3-4
    Spec("ppma", "PPMA", "classification/models/PPMA.py", "PPMAViT", dict(_PPMA_ARCH),
         "ppma_tiny", dict(_PPMA_ARCH), (2, 3, 49, 35)),
    # RMT (PPMA's baselines, PPMA's copy of RMT.py): decomposed and full Manhattan-decay attention
    Spec("rmt", "PPMA", "classification/models/RMT.py", "VisRetNet", dict(_PPMA_ARCH),
         "rmt_tiny", dict(_PPMA_ARCH), (2, 3, 49, 35)),
    Spec("p2t", "P2T", "p2t.py", "PyramidPoolingTransformer",
         dict(embed_dims=[8, 16, 16, 24], num_heads=[1, 2, 2, 3], mlp_ratios=[8, 8, 4, 4], depths=[1, 1, 2, 1],
              drop_path_rate=0.0, num_classes=10),
         "p2t_tiny", dict(embed_dims=[8, 16, 16, 24], num_heads=[1, 2, 2, 3], mlp_ratios=[8, 8, 4, 4],
                          depths=[1, 1, 2, 1], drop_path_rate=0.0, num_classes=10), (2, 3, 65, 75)),
    Spec("mpvit", "MPViT", "mpvit.py", "MPViT",
         dict(num_stages=4, num_path=[2, 3, 2, 2], num_layers=[1, 2, 1, 1], embed_dims=[8, 16, 16, 16],
              mlp_ratios=[2, 2, 2, 2], num_heads=[8, 8, 8, 8], drop_path_rate=0.0, num_classes=10),
         "mpvit_tiny", dict(num_path=[2, 3, 2, 2], num_layers=[1, 2, 1, 1], embed_dims=[8, 16, 16, 16],
                            mlp_ratios=[2, 2, 2, 2], num_heads=[8, 8, 8, 8], drop_path_rate=0.0, num_classes=10),
         (2, 3, 45, 37)),
    # Spatial-Mamba: selective scan (d_state 1) + structure-aware state fusion (three-branch in training,
    # folded 11x11 with replicate padding in eval)
    Spec("spatial_mamba", "Spatial-Mamba", "classification/models/spatialmamba.py", "SpatialMamba",
         dict(dims=4, depths=[1, 1, 2, 1], d_state=1, mlp_ratio=2.0, drop_path_rate=0.0, num_classes=10),
         "spatial_mamba_tiny", dict(dims=4, depths=[1, 1, 2, 1], d_state=1, mlp_ratio=2.0, drop_path_rate=0.0,
                                    num_classes=10), (2, 3, 43, 35)),
    # PaCa-ViT: conv clustering, stage-wise (z of block 0 reused), M = 0 (plain MHSA) in stage 4
    _paca_spec("pacavit_conv_stagewise", "P2CConv2d", "conv", [5, 4, 3, 0], [0, 0, 0, 0], [7, 5, 3, 3]),
    # conv clustering, block-wise (stages 1, 2, 4) and every 2 blocks (stage 3), clusters in all four stages
    _paca_spec("pacavit_conv_blockwise", "P2CConv2d", "conv", [5, 4, 3, 2], [1, 1, 2, 1], [7, 5, 3, 3]),
    _paca_spec("pacavit_mlp", "P2CMlp", "mlp", [5, 4, 3, 0], [0, 0, 0, 0], [7, 7, 7, 7]),
    _paca_spec("pacavit_linear", "P2CLinear", "linear", [5, 4, 3, 0], [0, 0, 0, 0], [7, 7, 7, 7]),
    # external ConvMixer + FPN clustering teacher (BatchNorm: batch statistics in train mode)
    _paca_spec("pacavit_teacher", "P2CConv2d", "teacher", [5, 4, 3, 2], [0, 0, 0, 0], [7, 7, 7, 7],
               teacher_depths=[1, 1, 1, 1]),
]
for _s in SPECS:
    if _s.repo == "PaCaViT":
        _s.build = _build_paca


def _official_module(off: Official, spec: Spec):
    return {"PPMA.py": off.ppma, "RMT.py": off.rmt, "p2t.py": off.p2t, "mpvit.py": off.mpvit,
            "paca_vit.py": off.paca, "spatialmamba.py": off.spatial_mamba}[Path(spec.file).name]()


def build_official(off: Official, spec: Spec) -> nn.Module:
    if spec.build is not None:
        return spec.build(off, spec)
    return getattr(_official_module(off, spec), spec.cls)(**copy.deepcopy(spec.official_kwargs))


# ------------------------------------------------------------------------------------------------------------
# Realistic weights
# ------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def realistic_weights_(model: nn.Module, seed: int) -> None:
    """Replaces the official initialisation with trained-looking values, in place (shared tensors stay shared).

    - every tensor with >= 2 dims that is not constant (weight matrices, conv kernels): N(0, 1/fan_in);
    - constant tensors (norm scales / biases, zero biases, layer scales, all-ones state-fusion kernels and alpha,
      A_logs of zeros, ...): their value plus noise of std max(0.1 |value|, 0.05) (layer scales of 1e-6 become
      O(0.05), so the branches they gate matter);
    - other 1-d tensors (PPMA's dt_bias / A_log, Spatial-Mamba's dt bias, already random): kept;
    - BatchNorm running_mean ~ N(0, 0.1^2), running_var ~ U(0.5, 2); other buffers (RoPE angles, fixed decays,
      blur filters) kept.
    """
    g = torch.Generator().manual_seed(seed)
    for _, p in model.named_parameters():
        flat = p.detach().flatten()
        constant = bool((flat == flat[0]).all())
        if constant:
            c = float(flat[0])
            p.copy_(c + max(0.1 * abs(c), 0.05) * torch.randn(p.shape, generator=g))
        elif p.dim() >= 2:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + 1.5 * torch.rand(b.shape, generator=g))


# ------------------------------------------------------------------------------------------------------------
# Running the official model
# ------------------------------------------------------------------------------------------------------------
class KinkMonitor:
    """Smallest distance, relative to the input's max magnitude, of any ReLU / Hardswish input to a point where
    the activation's derivative jumps (ReLU: 0; Hardswish: -3 and 3)."""

    def __init__(self, model: nn.Module):
        self.margin = math.inf
        self.handles = []
        for m in model.modules():
            if isinstance(m, nn.ReLU):
                self.handles.append(m.register_forward_hook(self._hook((0.0,))))
            elif isinstance(m, nn.ReLU6):
                self.handles.append(m.register_forward_hook(self._hook((0.0, 6.0))))
            elif isinstance(m, nn.Hardswish):
                self.handles.append(m.register_forward_hook(self._hook((-3.0, 3.0))))

    def _hook(self, kinks):
        def hook(module, inputs, output):
            x = inputs[0].detach()
            scale = float(x.abs().max()) or 1.0
            for k in kinks:
                self.margin = min(self.margin, float((x - k).abs().min()) / scale)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def run_official(model: nn.Module, x: torch.Tensor, seed: int) -> dict:
    """Eval logits, train logits, the loss weights and the gradients of sum(logits * w) (official keys)."""
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    model.train()
    monitor = KinkMonitor(model)
    xg = x.clone().requires_grad_(True)
    train_logits = model(xg)
    w = torch.randn(train_logits.shape, generator=torch.Generator().manual_seed(seed + 1))
    (train_logits * w).sum().backward()
    monitor.close()
    grads = {}
    for n, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"official parameter {n} gets no gradient: the fixture would not check it")
        grads[n] = p.grad.detach().clone()
    scale = max(float(g.abs().max()) for g in grads.values())
    zero = sorted(n for n, g in grads.items() if float(g.abs().max()) <= ZERO_GRAD * scale)
    return dict(eval_logits=eval_logits.detach().clone(), train_logits=train_logits.detach().clone(),
                loss_weight=w, grad_input=xg.grad.detach().clone(), grads=grads, grad_scale=scale,
                zero_grads=zero, kink_margin=monitor.margin)


def packed(tensors: dict) -> dict:
    """The same tensors (same keys, values, shapes) as views into one storage per dtype, so that the archive
    holds one record instead of one per tensor (~300 bytes each); tensors that share memory stay shared."""
    uniq: dict[tuple, str] = {}
    groups: dict[torch.dtype, list[str]] = {}
    for k, v in tensors.items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride(), v.dtype)
        if ident not in uniq:
            uniq[ident] = k
            groups.setdefault(v.dtype, []).append(k)
    views = {}
    for dtype, keys in groups.items():
        flat = torch.cat([tensors[k].detach().reshape(-1) for k in keys])
        offset = 0
        for k in keys:
            n = tensors[k].numel()
            views[k] = flat[offset:offset + n].view(tensors[k].shape)
            offset += n
    out = {}
    for k, v in tensors.items():
        out[k] = views[uniq[(v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride(),
                             v.dtype)]]
    return out


def make_fixture(off: Official, spec: Spec, max_seed_tries: int = 50) -> dict:
    import fvcore
    import timm
    for attempt in range(max_seed_tries):
        seed = spec.seed + 100 * attempt
        torch.manual_seed(seed)
        model = build_official(off, spec)
        realistic_weights_(model, seed)
        if spec.adjust is not None:
            spec.adjust(model)
        # deepcopy keeps tensors that the official module shares (MPViT's aliased CPE / CRPE) shared
        state = copy.deepcopy(model.state_dict())
        x = torch.randn(spec.input_size, generator=torch.Generator().manual_seed(seed + 2))
        res = run_official(model, x, seed)
        if res["kink_margin"] >= KINK_MARGIN:
            break
        print(f"  {spec.name}: seed {seed} puts an activation input {res['kink_margin']:.1e} from a kink; next seed",
              flush=True)
    else:
        raise RuntimeError(f"{spec.name}: no seed with a kink margin >= {KINK_MARGIN}")
    parity = dict(
        format=FORMAT_VERSION, name=spec.name,
        official=dict(repo=OFFICIAL_REPOS[spec.repo], commit=off.commit(spec.repo), file=spec.file, cls=spec.cls,
                      kwargs=copy.deepcopy(spec.official_kwargs)),
        ours=dict(name=spec.ours, kwargs=copy.deepcopy(spec.our_kwargs)),
        seed=seed, input=x, loss="sum(train_logits * loss_weight)",
        tolerances=dict(spec.tolerances), kink_margin=res["kink_margin"],
        versions=dict(torch=str(torch.__version__), timm=str(timm.__version__),
                      fvcore=str(getattr(fvcore, "__version__", "?"))),
        **{k: res[k] for k in ("eval_logits", "train_logits", "loss_weight", "grad_input", "grad_scale",
                               "zero_grads")},
        grads=packed(res["grads"]),
    )
    return {"model": packed(state), "parity": parity}


def _load_test_module():
    spec = importlib.util.spec_from_file_location("_parity_test", REPO / "tests" / "test_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_fixtures(off: Official, names: list[str] | None, out: Path, allow_mismatch: bool) -> None:
    sys.path.insert(0, str(REPO))
    import models  # noqa: F401  (registers ours with timm)
    test = _load_test_module()
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for spec in SPECS:
        if names and spec.name not in names:
            continue
        print(f"{spec.name}: official {spec.repo}/{spec.file} {spec.cls}", flush=True)
        fx = make_fixture(off, spec)
        path = out / f"{spec.name}.pt"
        torch.save(fx, path)
        # our model, through the public API, against what was just written
        errors = test.errors_vs_fixture(path, test.load_fixture(path))
        fx["parity"]["measured"] = {k: v for k, v in errors.items() if "grads." not in k}
        for kind in ("grads", "zero_grads"):
            fx["parity"]["measured"][f"{kind}_max"] = max((v for k, v in errors.items() if k.startswith(kind + ".")),
                                                          default=0.0)
        torch.save(fx, path)
        bad = test.failures(errors, fx["parity"]["tolerances"])
        size = path.stat().st_size
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"  {shown}: {size / 1024:.0f} KiB, seed {fx['parity']['seed']}, "
              f"kink margin {fx['parity']['kink_margin']:.1e}, commit {fx['parity']['official']['commit'][:7]}")
        for k, v in fx["parity"]["measured"].items():
            print(f"    {k:14s} max rel. error {v:.2e}")
        if bad:
            failed.append(spec.name)
            print("  OUR MODEL DOES NOT MATCH:\n    " + "\n    ".join(bad[:20]))
    if failed and not allow_mismatch:
        raise SystemExit(f"our models do not match the official code for: {', '.join(failed)}")


# ------------------------------------------------------------------------------------------------------------
# FLOPs of the official code (fvcore, batch 1, 224x224)
# ------------------------------------------------------------------------------------------------------------
def official_flops(off: Official, names: list[str] | None) -> dict[str, int]:
    """Integer fvcore counts of every published variant, as the official repositories count them:
    ``FlopCountAnalysis(model.eval(), randn(1, 3, 224, 224)).total()`` with fvcore's default handles, except
    Spatial-Mamba, whose ``SpatialMamba.flops()`` counts the train-mode graph with its own handles (the scan
    PythonOp as 7 B L D N; silu / neg / exp / flip ignored)."""
    from fvcore.nn import FlopCountAnalysis

    def count(model, handles=None, train=False):
        model.train(train)
        with torch.no_grad():
            fca = FlopCountAnalysis(model, (torch.randn(1, 3, 224, 224),))
            for k, v in (handles or {}).items():
                fca.set_op_handle(k, v)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(fca.total())

    builders = variant_builders(off)
    out = {}
    for name, build in builders.items():
        if names and name not in names:
            continue
        torch.manual_seed(0)
        model, handles, train = build()
        out[name] = count(model, handles, train)
        print(f"    {name!r}: {out[name]:_},", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-root", type=Path, required=True,
                    help="folder holding the official checkouts PPMA, P2T, PaCaViT, MPViT, Spatial-Mamba")
    ap.add_argument("--pylib", type=Path, help="extra import path for the official code's dependencies (einops)")
    ap.add_argument("--only", nargs="+", help="fixture names (or, with --flops, variant names)")
    ap.add_argument("--out", type=Path, default=FIXTURE_DIR)
    ap.add_argument("--flops", action="store_true", help="print the official FLOP counts instead of writing fixtures")
    ap.add_argument("--allow-mismatch", action="store_true",
                    help="write fixtures even if our models do not match them (to investigate)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    off = Official(args.official_root.resolve(), args.pylib)
    if args.flops:
        print("OFFICIAL_FLOPS = {")
        official_flops(off, args.only)
        print("}")
    else:
        write_fixtures(off, args.only, args.out, args.allow_mismatch)


if __name__ == "__main__":
    main()
