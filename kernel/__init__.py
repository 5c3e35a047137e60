"""heimdall-synth kernel: the configuration table and the Numba attempt kernel.

Light names (configuration, layouts) import at once; the Numba-compiled parts load lazily on
first use so that ``import kernel`` stays fast for the service and the CLI.
"""

from .config import ConfigError, GenerationConfig
from .defaults import DEFAULT_RECEIVERS, PARAMETERS
from .layout import REJECT_REASONS, RX_FIELDS, SCALAR_FIELDS

__all__ = ["AttemptBatch", "ConfigError", "DEFAULT_RECEIVERS", "GenerationConfig", "PARAMETERS",
           "REJECT_REASONS", "RX_FIELDS", "SCALAR_FIELDS", "pack_config", "run_attempts"]

_LAZY = {"AttemptBatch": "batch", "run_attempts": "batch", "pack_config": "batch"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
