"""Fidelity with the official code, as a regression test.

Each fixture in ``tests/fixtures/parity/`` was written by ``tools/make_parity_fixtures.py`` from the official
repository of one family (commit recorded in the fixture): a reduced-size official model with seeded
realistic weights, its ``state_dict`` in the official layout, an input of an odd non-square size, the official
eval logits, train-mode logits (BatchNorm on batch statistics; stochastic depth and dropout off) and the
gradients of ``sum(train_logits * w)`` w.r.t. the input and every official parameter.

Here our model is built through the public API, ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=fixture), **reduced_kwargs)`` (the fixture is itself an official-layout
checkpoint), and has to reproduce all of it: the official gradients are mapped to our parameters through the
family's checkpoint key filter, and every parameter of ours must have one. Errors are measured per tensor,
relative to the official tensor's largest magnitude, against the tolerances recorded in the fixture.

``test_planted_gradient_bug_is_caught`` checks that the comparison is sharp enough to matter: a backward that
is wrong in one term only (the forward untouched) must fail it.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import pytest
import timm
import torch

import models  # noqa: F401  (registers the models with timm)

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "parity"
FIXTURES = sorted(FIXTURE_DIR.glob("*.pt"))
# Upper bound for the tolerances a fixture may ask for (a regenerated fixture cannot quietly loosen the test).
MAX_TOLERANCE = 1e-3
# Expected fixtures (tools/make_parity_fixtures.py SPECS): a missing file fails instead of silently shrinking
# the test.
EXPECTED = {"ppma", "rmt", "p2t", "mpvit", "spatial_mamba", "pacavit_conv_stagewise", "pacavit_conv_blockwise",
            "pacavit_mlp", "pacavit_linear", "pacavit_teacher"}


def load_fixture(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def build_model(path: Path, fx: dict) -> torch.nn.Module:
    """Our model with the fixture's official weights, through the public API."""
    ours = fx["parity"]["ours"]
    kwargs = dict(ours["kwargs"])
    overlay = dict(file=str(path), num_classes=kwargs.get("num_classes", 1000))  # keep the fixture's head
    return timm.create_model(ours["name"], pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def _rel_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    if ours.shape != official.shape:
        return float("inf")
    scale = float(official.abs().max())
    err = float((ours.double() - official.double()).abs().max())
    return err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))


def run_ours(model: torch.nn.Module, fx: dict) -> dict:
    """Eval logits, train logits and the gradients of sum(train_logits * w), as the fixture holds them."""
    p = fx["parity"]
    model.eval()
    with torch.no_grad():
        eval_logits = model(p["input"])
    model.train()
    model.zero_grad(set_to_none=True)
    x = p["input"].clone().requires_grad_(True)
    train_logits = model(x)
    (train_logits * p["loss_weight"]).sum().backward()
    grads = {n: q.grad for n, q in model.named_parameters()}
    return dict(eval_logits=eval_logits, train_logits=train_logits.detach(), grad_input=x.grad, grads=grads)


def errors_vs_fixture(path: Path, fx: dict, model: torch.nn.Module | None = None) -> dict[str, float]:
    """Relative errors of our model against the fixture: ``eval_logits``, ``train_logits``, ``grad_input`` and
    ``grads.<our parameter name>`` (inf for a parameter without an official gradient or vice versa), or
    ``zero_grads.<name>`` for a gradient that is zero by construction (relative to the largest gradient)."""
    model = build_model(path, fx) if model is None else model
    res = run_ours(model, fx)
    p = fx["parity"]
    errors = {k: _rel_error(res[k], p[k]) for k in ("eval_logits", "train_logits", "grad_input")}
    # official gradients, keyed by official parameter name, mapped like the checkpoint keys
    key_filter = importlib.import_module(type(model).__module__).checkpoint_filter_fn
    official = key_filter(dict(p["grads"]), model)
    zero = set(key_filter({n: p["grads"][n] for n in p["zero_grads"]}, model)) if p["zero_grads"] else set()
    for name, g in res["grads"].items():
        if name not in official or g is None:
            errors[f"grads.{name}"] = float("inf")
        elif name in zero:  # zero by construction: rounding noise in both codes, measured against all gradients
            errors[f"zero_grads.{name}"] = float((g - official[name]).abs().max()) / p["grad_scale"]
        else:
            errors[f"grads.{name}"] = _rel_error(g, official[name])
    for name in set(official) - set(res["grads"]):
        errors[f"grads.{name} (official only)"] = float("inf")
    return errors


def failures(errors: dict[str, float], tolerances: dict[str, float]) -> list[str]:
    out = []
    for k, err in errors.items():
        tol = tolerances[k.split(".")[0]]
        if not err <= tol:
            out.append(f"{k}: relative error {err:.3e} > {tol:.0e}")
    return out


@pytest.fixture(scope="module", params=FIXTURES, ids=lambda p: p.stem)
def fixture_path(request) -> Path:
    return request.param


def test_every_fixture_is_present():
    assert {p.stem for p in FIXTURES} == EXPECTED


def test_fixture_provenance(fixture_path):
    fx = load_fixture(fixture_path)
    p = fx["parity"]
    assert p["name"] == fixture_path.stem
    assert p["official"]["repo"].startswith("https://github.com/") and len(p["official"]["commit"]) == 40
    assert p["input"].shape[0] >= 2 and p["input"].shape[-1] % 2 == 1 and p["input"].shape[-2] != p["input"].shape[-1]
    assert p["kink_margin"] > 0
    assert all(0 < t <= MAX_TOLERANCE for t in p["tolerances"].values()), p["tolerances"]
    assert fixture_path.stat().st_size < 1024 * 1024


def test_matches_official(fixture_path):
    """Eval logits, train-mode logits, input gradient and the gradient of every parameter."""
    fx = load_fixture(fixture_path)
    errors = errors_vs_fixture(fixture_path, fx)
    bad = failures(errors, fx["parity"]["tolerances"])
    worst = max((v, k) for k, v in errors.items() if "grads." in k)
    summary = ", ".join(f"{k} {errors[k]:.1e}" for k in ("eval_logits", "train_logits", "grad_input"))
    assert not bad, f"{fixture_path.stem} ({summary}, worst gradient {worst[1]} {worst[0]:.1e}):\n" + "\n".join(bad)


# ------------------------------------------------------------------------------------------------------------
# The test must catch a gradient that is wrong in one term only
# ------------------------------------------------------------------------------------------------------------
class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward; multiplies the gradient by ``factor`` in the backward (a planted bug)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


PLANTED_FACTOR = 1 + 1e-3  # far below any real bug, yet far above the tolerances


@contextlib.contextmanager
def _planted_kernel_bug(model, monkeypatch, family: str):
    """Scales the gradient that flows into one input of one term of the family's core op."""
    f = PLANTED_FACTOR
    if family in ("ppma",):
        import models.ppma as mod
        inner = mod.polyline_attention

        def bugged(q, k, v, log_a, log_b, **kw):  # d loss / d log_beta of the polyline mask
            return inner(q, k, v, log_a, _ScaleGrad.apply(log_b, f), **kw)
        monkeypatch.setattr(mod, "polyline_attention", bugged)
    elif family == "spatial_mamba":
        import models.spatial_mamba as mod
        inner = mod.selective_scan

        def bugged(u, delta, *a, **kw):  # d loss / d delta of the selective scan
            return inner(u, _ScaleGrad.apply(delta, f), *a, **kw)
        monkeypatch.setattr(mod, "selective_scan", bugged)
    else:
        # the gradient through one branch: RMT's LePE, P2T's shared pooling conv of one pyramid level,
        # MPViT's conv relative position encoding, PaCa's cluster logits
        target = {"rmt": "layers.1.blocks.0.retention.lepe", "p2t": "stages.0.pool_convs.1",
                  "mpvit": "mhca_stages.1.mhca_blks.0.crpe"}.get(family, "stage1.0.attn.clustering")
        if family == "pacavit" and model.clustering == "teacher":
            target = "paca_teacher.to_clusters1"
        module = model.get_submodule(target)
        handle = module.register_forward_hook(lambda m, i, out: _ScaleGrad.apply(out, f))
        try:
            yield target
        finally:
            handle.remove()
        return
    yield family


def _family(fx) -> str:
    name = fx["parity"]["ours"]["name"]
    return next(f for f in ("ppma", "rmt", "p2t", "mpvit", "spatial_mamba", "pacavit") if name.startswith(f))


def test_planted_gradient_bug_is_caught(fixture_path, monkeypatch):
    fx = load_fixture(fixture_path)
    model = build_model(fixture_path, fx)
    with _planted_kernel_bug(model, monkeypatch, _family(fx)) as where:
        errors = errors_vs_fixture(fixture_path, fx, model)
    bad = failures(errors, fx["parity"]["tolerances"])
    assert bad, f"a {PLANTED_FACTOR - 1:.0e} relative error in the gradient through {where} went unnoticed"
    assert all(k.startswith(("grads.", "zero_grads.", "grad_input")) for k in (b.split(":")[0] for b in bad)), bad
    # one parameter's gradient alone, perturbed by the same relative amount (a fresh model: the train-mode
    # forward above moved the BatchNorm running statistics)
    monkeypatch.undo()
    model = build_model(fixture_path, fx)
    name, param = next((n, q) for n, q in model.named_parameters() if q.dim() >= 2)
    handle = param.register_hook(lambda g: g * PLANTED_FACTOR)
    try:
        bad = failures(errors_vs_fixture(fixture_path, fx, model), fx["parity"]["tolerances"])
    finally:
        handle.remove()
    assert [b.split(":")[0] for b in bad] == [f"grads.{name}"], bad
