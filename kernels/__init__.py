"""Fast ops (polyline-mask attention, selective scan, state fusion): pure-PyTorch references and Triton paths."""
