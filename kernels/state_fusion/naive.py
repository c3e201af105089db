"""Structure-aware state fusion (SASF) of Spatial-Mamba in pure PyTorch: the training form and the folded form.

Training form (``dilated``): three per-channel 3x3 depthwise convolutions with dilations 1, 3 and 5, each on
the states replicate-padded by its dilation, mixed by three scalars alpha:

    out = alpha_0 * (K1 *_1 h) + alpha_1 * (K3 *_3 h) + alpha_2 * (K5 *_5 h)

Folded form (``folded``): the same map as ONE 11x11 depthwise kernel (25 non-zero taps) on the states
replicate-padded by 5:

    W11[5 + k*a, 5 + k*b] += alpha_k * K^(k)[a+1, b+1]      for k in {1, 3, 5}, a, b in {-1, 0, 1}

Both are exactly the same function of (h, K1, K3, K5, alpha) - clamping indices commutes with offsetting, so
replicate padding by 5 and sampling at +-k equals padding by k - including the borders (with zero padding the
borders would differ). :func:`fold_kernel` is differentiable, so the folded form has gradients for every
parameter, and it is always derived from the weights it is given (nothing is cached).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["DILATIONS", "fold_kernel", "state_fusion_dilated", "state_fusion_folded", "state_fusion_ref"]

DILATIONS = (1, 3, 5)


def state_fusion_dilated(h, k1, k3, k5, alpha):
    """h: (b, C, H, W); k1, k3, k5: (C, 1, 3, 3); alpha: (3,). Three replicate-padded dilated depthwise convs."""
    C = h.shape[1]
    out = None
    for i, (k, dil) in enumerate(zip((k1, k3, k5), DILATIONS)):
        y = F.conv2d(F.pad(h, (dil, dil, dil, dil), mode='replicate'), k.to(h.dtype), dilation=dil, groups=C)
        y = alpha[i].to(h.dtype) * y
        out = y if out is None else out + y
    return out


def fold_kernel(k1, k3, k5, alpha):
    """The equivalent 11x11 depthwise kernel (C, 1, 11, 11) of the three dilated 3x3 kernels mixed by alpha."""
    C = k1.shape[0]
    w = k1.new_zeros(C, 1, 11, 11)
    idx = torch.arange(3, device=k1.device)
    for i, (k, dil) in enumerate(zip((k1, k3, k5), DILATIONS)):
        pos = 5 + dil * (idx - 1)
        # index_put with accumulate: the three centre taps all land on [5, 5]
        w = w.index_put((torch.arange(C, device=k1.device)[:, None, None], torch.zeros((), dtype=torch.long,
                                                                                       device=k1.device),
                         pos[None, :, None], pos[None, None, :]),
                        alpha[i] * k[:, 0], accumulate=True)
    return w


def state_fusion_folded(h, k1, k3, k5, alpha):
    """Same map as :func:`state_fusion_dilated` through the folded 11x11 kernel (replicate padding 5)."""
    w = fold_kernel(k1, k3, k5, alpha).to(h.dtype)
    return F.conv2d(F.pad(h, (5, 5, 5, 5), mode='replicate'), w, groups=h.shape[1])


def state_fusion_ref(h, k1, k3, k5, alpha):
    """Readable per-pixel reference: sum over the 27 taps with clamped (replicate) indices."""
    b, C, H, W = h.shape
    out = torch.zeros_like(h)
    rows = torch.arange(H, device=h.device)
    cols = torch.arange(W, device=h.device)
    for i, (k, dil) in enumerate(zip((k1, k3, k5), DILATIONS)):
        for a in (-1, 0, 1):
            for c in (-1, 0, 1):
                r = (rows + dil * a).clamp(0, H - 1)
                q = (cols + dil * c).clamp(0, W - 1)
                tap = h[:, :, r][:, :, :, q]
                out = out + alpha[i] * k[:, 0, a + 1, c + 1].view(1, C, 1, 1) * tap
    return out


def _replicate_pad_backward(gp, p):
    """Adjoint of F.pad(x, (p, p, p, p), 'replicate'): folds the padded border gradients onto the edges."""
    if p == 0:
        return gp
    H, W = gp.shape[-2] - 2 * p, gp.shape[-1] - 2 * p
    g = gp[..., p:p + H, :].clone()
    g[..., 0:1, :] += gp[..., :p, :].sum(-2, keepdim=True)
    g[..., H - 1:H, :] += gp[..., p + H:, :].sum(-2, keepdim=True)
    out = g[..., p:p + W].clone()
    out[..., 0:1] += g[..., :p].sum(-1, keepdim=True)
    out[..., W - 1:W] += g[..., p + W:].sum(-1, keepdim=True)
    return out


def _depthwise_weight_grad(hp, g, dil):
    """``conv2d_weight(hp, (C, 1, 3, 3), g, dilation=dil, groups=C)`` for a 3x3 depthwise conv, computed for
    dil > 1 as ONE undilated weight gradient over the dil x dil phases of the grid (output pixel
    (ri + dil i, rj + dil j) reads only phase (ri, rj) of hp, an undilated 3x3 window there): oneDNN's dilated
    depthwise weight gradient is several times slower than the undilated one. g is zero-padded to whole phases
    (those pixels contribute nothing)."""
    from torch.nn.grad import conv2d_weight

    b, C, H, W = g.shape
    if dil == 1:
        return conv2d_weight(hp, (C, 1, 3, 3), g, groups=C)
    hq, wq = -(-H // dil), -(-W // dil)
    gz = F.pad(g, (0, wq * dil - W, 0, hq * dil - H))
    hz = F.pad(hp, (0, wq * dil - W, 0, hq * dil - H))  # ((hq + 2) dil, (wq + 2) dil)
    g_ph = gz.view(b, C, hq, dil, wq, dil).permute(0, 3, 5, 1, 2, 4).reshape(b * dil * dil, C, hq, wq)
    h_ph = hz.view(b, C, hq + 2, dil, wq + 2, dil).permute(0, 3, 5, 1, 2, 4).reshape(b * dil * dil, C, hq + 2, wq + 2)
    return conv2d_weight(h_ph, (C, 1, 3, 3), g_ph, groups=C)


def state_fusion_bwd(g, h, k1, k3, k5, alpha, folded=False):
    """Explicit backward of either form (no autograd graph): returns (dh, dk1, dk3, dk5, dalpha)."""
    from torch.nn.grad import conv2d_input, conv2d_weight

    C = h.shape[1]
    if folded:
        w = fold_kernel(k1, k3, k5, alpha).to(h.dtype)
        hp = F.pad(h, (5, 5, 5, 5), mode='replicate')
        dh = _replicate_pad_backward(conv2d_input(hp.shape, w, g, groups=C), 5)
        dw = conv2d_weight(hp, w.shape, g, groups=C)[:, 0]
        dks, dalpha = [], []
        idx = torch.arange(3, device=h.device)
        for i, (k, dil) in enumerate(zip((k1, k3, k5), DILATIONS)):
            pos = 5 + dil * (idx - 1)
            dwk = dw[:, pos][:, :, pos]  # (C, 3, 3)
            dks.append((alpha[i].to(dwk.dtype) * dwk).unsqueeze(1))
            dalpha.append((dwk * k[:, 0].to(dwk.dtype)).sum())
    else:
        dh = None
        dks, dalpha = [], []
        for i, (k, dil) in enumerate(zip((k1, k3, k5), DILATIONS)):
            hp = F.pad(h, (dil, dil, dil, dil), mode='replicate')
            kk = k.to(h.dtype)
            a = alpha[i].to(h.dtype)
            # input adjoint of the dilated depthwise conv = forward conv of the zero-padded gradient with the
            # flipped kernel (oneDNN's forward path is several times faster than its dilated backward-data);
            # alpha scales the 3x3 kernel, not the gradient
            dhp = F.conv2d(F.pad(g, (2 * dil,) * 4), (a * kk).flip(-1, -2), dilation=dil, groups=C)
            dhi = _replicate_pad_backward(dhp, dil)
            dh = dhi if dh is None else dh.add_(dhi)
            # d(out)/dK_i = alpha_i * G_i and d(out)/dalpha_i = <K_i, G_i> with G_i = sum over pixels of
            # g * shifted taps of h (the weight gradient of the unscaled conv): no forward conv recomputed
            gw = _depthwise_weight_grad(hp, g, dil)
            dks.append(a * gw)
            dalpha.append((gw * kk).sum())
    return (dh.to(h.dtype), dks[0].to(k1.dtype), dks[1].to(k3.dtype), dks[2].to(k5.dtype),
            torch.stack(dalpha).to(alpha.dtype))
