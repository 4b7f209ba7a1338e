"""aperiodic-assets: a validated, monthly-partitioned Parquet warehouse of Aperiodic data.

``from aperiodic_assets import load_l1_imbalance`` is the public loader for downstream users.
It is imported on first use, so importing the package stays light (no dagster, no pyarrow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loader import load_l1_imbalance

__all__ = ["load_l1_imbalance"]


def __getattr__(name: str) -> Any:
    if name == "load_l1_imbalance":
        from .loader import load_l1_imbalance

        return load_l1_imbalance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
