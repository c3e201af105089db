"""Small pieces shared by several model families."""
from torch import nn
from timm.layers import trunc_normal_


def init_weights_trunc_normal(m: nn.Module) -> None:
    """The official initialisation of the PPMA, P2T, MPViT and Spatial-Mamba transformers (``model.apply``):
    trunc-normal(std 0.02) Linear weights with zero biases, LayerNorm weight 1 / bias 0; every other module
    (convs, BN, SSM parameters) keeps its own initialisation."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
