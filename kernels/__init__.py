"""Fast ops (polyline-mask attention, selective scan with hidden states, state fusion).

Each op lives in its own folder with a readable pure-PyTorch reference, the fast path(s) and one autograd
entry point with an ``impl="reference" | "torch" | "triton" | "auto"`` switch, registered with
``torch.library`` so that ``torch.compile`` sees a single op.
"""
from .polyline_attention import polyline_attention
from .selective_scan import selective_scan
from .state_fusion import state_fusion

__all__ = ["polyline_attention", "selective_scan", "state_fusion"]
