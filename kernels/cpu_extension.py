"""Loading the kernels' compiled CPU extensions (built in place by ``python -m kernels.build_cpu``). An op's
compiled path holds a :class:`CompiledExtension`, which keeps the reason when its modules do not import, so that
the op can fall back to its PyTorch path and ``impl="cpp"`` can say what is wrong."""
from __future__ import annotations

import importlib

__all__ = ["CompiledExtension"]


class CompiledExtension:
    def __init__(self, what: str, *modules: str):
        self.what = what
        try:
            self.modules = tuple(importlib.import_module(name) for name in modules)
            self.reason = ""
        except ImportError as err:  # not built, or built against another torch (undefined symbols)
            self.modules = None
            self.reason = str(err)

    @property
    def available(self) -> bool:
        return self.modules is not None

    def require(self) -> tuple:
        if self.modules is None:
            raise RuntimeError(f"the compiled CPU {self.what} is not built (run `python -m kernels.build_cpu`; "
                               f"install_requirements.sh does): {self.reason}")
        return self.modules
