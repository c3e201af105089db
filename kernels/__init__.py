"""Fast ops (polyline-mask attention, RMT's Manhattan-decay attention, selective scan with hidden states, state
fusion, the depthwise convolution's weight gradient on the CPU).

Each op lives in its own folder with a readable pure-PyTorch reference, the fast path(s) and one autograd
entry point with an ``impl="reference" | "torch" | "cpp" | "triton" | "auto"`` switch (the paths each op has),
registered with ``torch.library`` so that ``torch.compile`` sees a single op.

The Manhattan attention is imported from its package (``from kernels.manhattan_attention import
manhattan_attention``): re-exporting the function here would shadow the subpackage of the same name, as the
three below do (``import kernels.polyline_attention.cpp_impl as m`` fails; ``from ... import`` works). So is
the depthwise convolution (``from kernels.depthwise_conv import depthwise_conv2d``), which the models use as a
module (``models._layers.DepthwiseConv2d``).
"""
from .polyline_attention import polyline_attention
from .selective_scan import selective_scan
from .state_fusion import state_fusion

__all__ = ["polyline_attention", "selective_scan", "state_fusion"]
