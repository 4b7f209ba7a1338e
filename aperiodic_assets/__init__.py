"""aperiodic-assets: a validated, monthly-partitioned Parquet warehouse of Aperiodic data.

``from aperiodic_assets import load_l1_imbalance`` is the public loader for downstream users;
``aperiodic_assets.AperiodicL1Imbalance`` is the Dagster Component a project adds in a
``defs.yaml``. Both are imported on first use, so importing the package stays light (no
dagster, no pyarrow).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.loader import load_l1_imbalance
    from .defs.component import AperiodicL1Imbalance

__all__ = ["AperiodicL1Imbalance", "load_l1_imbalance"]
_HOMES = {"load_l1_imbalance": ".core.loader", "AperiodicL1Imbalance": ".defs.component"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too: dg's component registry finds component types through ``dir()``."""
    return sorted([*globals(), *__all__])
