"""Stack test: proves that the installed environment really works, not only that it imports.

- Triton kernels run (compiled on a GPU, under TRITON_INTERPRET=1 on CPU tensors) and match torch.
- mmcv's compiled ops (RoIAlign, NMS) and torchvision's run on CPU and give known answers.
- One training step of mmdet's Mask R-CNN (R-50-FPN) and of mmseg's UperNet (R-50) produces finite
  losses and finite, non-zero gradients.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Project packaging and the dependency direction kernels <- models <- task folders
# --------------------------------------------------------------------------------------------
def test_models_and_kernels_import_from_anywhere_without_openmmlab(tmp_path):
    """`import models, kernels` works outside the repository (editable install) and needs no mm* package."""
    code = (
        "import sys, models, kernels\n"
        "mm = sorted(m for m in sys.modules if m.split('.')[0] in ('mmcv', 'mmdet', 'mmseg', 'mmengine'))\n"
        "assert not mm, f'import models/kernels pulled OpenMMLab modules: {mm}'\n"
        "print(models.__file__)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve().is_relative_to(REPO_ROOT), res.stdout


# --------------------------------------------------------------------------------------------
# Triton
# --------------------------------------------------------------------------------------------
import triton  # noqa: E402  (part of the pinned stack: a missing triton is a failure, not a skip)
tl = triton.language


@triton.jit
def _compose_affine(a1, b1, a2, b2):
    """(a2, b2) applied after (a1, b1): h -> a2 * (a1 * h + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _linear_recurrence_kernel(a_ptr, b_ptr, h_ptr, L, BLOCK_L: tl.constexpr):
    """h[t] = a[t] * h[t-1] + b[t] along one row per program, with a parallel associative scan."""
    row = tl.program_id(0)
    t = tl.arange(0, BLOCK_L)
    mask = t < L
    a = tl.load(a_ptr + row * L + t, mask=mask, other=1.0)
    b = tl.load(b_ptr + row * L + t, mask=mask, other=0.0)
    _, h = tl.associative_scan((a, b), 0, _compose_affine)
    tl.store(h_ptr + row * L + t, h, mask=mask)


@triton.jit
def _matmul_kernel(x_ptr, y_ptr, out_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        x = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        y = tl.load(y_ptr + rk[:, None] * N + rn[None, :], mask=(rk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(x, y)
    tl.store(out_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@pytest.mark.triton
def test_triton_associative_scan_matches_sequential_recurrence():
    rows, L = 3, 37  # L not a power of two: exercises the masked tail
    a = torch.rand(rows, L, device=DEVICE) * 0.9 + 0.05
    b = torch.randn(rows, L, device=DEVICE)
    h = torch.empty_like(b)
    _linear_recurrence_kernel[(rows,)](a, b, h, L, BLOCK_L=triton.next_power_of_2(L))

    ref = torch.empty_like(b)
    state = torch.zeros(rows, device=DEVICE)
    for t in range(L):
        state = a[:, t] * state + b[:, t]
        ref[:, t] = state
    assert_close(h, ref, 1e-5, 1e-5, what="associative_scan recurrence")


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_dot_matches_torch_matmul(dtype):
    M, N, K = 33, 20, 50  # awkward sizes: every block boundary is masked
    x = torch.randn(M, K, device=DEVICE, dtype=dtype)
    y = torch.randn(K, N, device=DEVICE, dtype=dtype)
    out = torch.empty(M, N, device=DEVICE, dtype=torch.float32)
    grid = (triton.cdiv(M, 16), triton.cdiv(N, 16))
    _matmul_kernel[grid](x, y, out, M, N, K, BM=16, BN=16, BK=16)
    ref = x.float() @ y.float()
    # tf32 may be used on GPUs for fp32 dots
    atol = 5e-2 if (dtype == torch.float16 or DEVICE == "cuda") else 1e-4
    assert_close(out, ref, atol, 1e-3, what=f"tl.dot {dtype}")


# --------------------------------------------------------------------------------------------
# Compiled detection ops: mmcv.ops and torchvision.ops
# --------------------------------------------------------------------------------------------
def test_mmcv_ops_are_compiled():
    import mmcv
    from mmcv import _ext  # noqa: F401  (fails if mmcv was installed without ops)

    assert mmcv.__version__ == "2.1.0"


def test_mmcv_nms_known_answer_and_agrees_with_torchvision():
    from mmcv.ops import nms
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)  # IoU(0, 1) = 81 / 119 > 0.5
    assert keep.tolist() == [0, 2]
    assert_close(dets[:, 4], scores[[0, 2]], 0, what="nms scores")

    xy = torch.rand(200, 2) * 100
    wh = torch.rand(200, 2) * 30 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(200)
    _, keep_mmcv = nms(boxes, scores, iou_threshold=0.3)
    keep_tv = torchvision.ops.nms(boxes, scores, iou_threshold=0.3)
    assert 0 < len(keep_tv) < 200
    assert keep_mmcv.tolist() == keep_tv.tolist()


def test_roi_align_exact_on_linear_ramp_and_mmcv_agrees_with_torchvision():
    from mmcv.ops import roi_align as mmcv_roi_align
    from torchvision.ops import roi_align as tv_roi_align

    # f(x, y) = x + 4y: bilinear sampling is exact on a linear function, so each bin's average is
    # the value at its centre. aligned=True shifts the box by half a pixel: [0.5, 2.5] -> [0, 2].
    feat = torch.arange(16.0).view(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.5, 0.5, 2.5, 2.5]])
    expected = torch.tensor([[[[2.5, 3.5], [6.5, 7.5]]]])
    out_mmcv = mmcv_roi_align(feat, rois, (2, 2), 1.0, 2, "avg", True)
    out_tv = tv_roi_align(feat, rois, (2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    assert_close(out_mmcv, expected, 1e-6, what="mmcv roi_align")
    assert_close(out_tv, expected, 1e-6, what="torchvision roi_align")

    feat = torch.randn(2, 8, 24, 20)
    xy = torch.rand(10, 2) * 60
    rois = torch.cat([torch.randint(0, 2, (10, 1)).float(), xy, xy + torch.rand(10, 2) * 40 + 2], dim=1)
    out_mmcv = mmcv_roi_align(feat, rois, (7, 7), 0.25, 2, "avg", True)
    out_tv = tv_roi_align(feat, rois, (7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    assert_close(out_mmcv, out_tv, 1e-5, what="mmcv vs torchvision roi_align")


# --------------------------------------------------------------------------------------------
# One training step of mmdet's Mask R-CNN and mmseg's UperNet on CPU
# --------------------------------------------------------------------------------------------
def _packaged_config(package, rel_path):
    """Path of a config shipped inside an OpenMMLab package (its .mim folder)."""
    root = Path(importlib.util.find_spec(package).origin).parent
    path = root / ".mim" / "configs" / rel_path
    assert path.is_file(), f"{package} does not ship {rel_path}"
    return str(path)


def _check_step(model, losses):
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values()), log_vars
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, g in grads.items() if g is None]
    bad = [n for n, g in grads.items() if g is not None and not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    with_grad = [g for g in grads.values() if g is not None]
    assert len(with_grad) > 0.9 * len(grads), f"{len(missing)} parameters got no gradient: {missing[:5]}"
    assert sum(g.abs().sum() for g in with_grad) > 0
    return log_vars


@pytest.mark.slow
def test_mmdet_mask_rcnn_r50_one_training_step_on_cpu():
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(_packaged_config("mmdet", "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py"))
    cfg.model.backbone.init_cfg = None  # nothing may be downloaded
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()

    size, n_obj, inputs, samples = 128, 3, [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
        xy = torch.rand(n_obj, 2) * 64
        boxes = torch.cat([xy, xy + torch.rand(n_obj, 2) * 48 + 16], dim=1).clamp(max=size - 1)
        masks = torch.zeros(n_obj, size, size, dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.randint(0, 80, (n_obj,)), masks=BitmapMasks(masks.numpy(), size, size)
        )
        samples.append(sample)

    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode="loss")
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"} <= set(losses)
    _check_step(model, losses)


@pytest.mark.slow
def test_mmseg_upernet_r50_one_training_step_on_cpu():
    from mmengine.config import Config
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(_packaged_config("mmseg", "_base_/models/upernet_r50.py"))
    cfg.model.pretrained = None  # nothing may be downloaded
    bn = dict(type="BN", requires_grad=True)  # SyncBN needs a process group
    for part in ("backbone", "decode_head", "auxiliary_head"):
        cfg.model[part].norm_cfg = bn
    size = 64
    cfg.model.data_preprocessor.size = (size, size)  # the crop size, set by mmseg's dataset configs
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()

    inputs, samples = [], []
    for _ in range(2):  # batch 2: the 1x1 pyramid-pooling branch needs more than one value per BN channel
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, size, size)))
        samples.append(sample)

    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    losses = model(**data, mode="loss")
    assert {"decode.loss_ce", "aux.loss_ce"} <= set(losses)
    _check_step(model, losses)
