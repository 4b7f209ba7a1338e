"""A local, Aperiodic-compatible server with synthetic data and fault injection.

The sandbox serves the same HTTP surface as the real API (file lists, symbols, presigned and
expiring file URLs that, like S3's, answer GET only), so the official ``aperiodic`` client and
our own client run against it unchanged; tests and the demo steer it (clock, listings,
republished months, corrupted or reshaped files, injected faults) in-process through
:class:`Sandbox` or across processes through :class:`RemoteSandbox`. Run it with
``python -m aperiodic_assets.sandbox``. Never imports dagster.

Modules: :mod:`.catalog` (what is published), :mod:`.atlas` (the realistic universe's symbols),
:mod:`.data` (what is in a file), :mod:`.corruption` (schema/content corruption modes, applied
to a file's table before encoding), :mod:`.shapes` (the same data in another representation,
applied after any corruption), :mod:`.signing` (presigned URLs), :mod:`.faults` (what goes
wrong), :mod:`.network` (round trips and bandwidth a reply pays, off by default), :mod:`.state`
(config and what a running sandbox remembers), :mod:`.steering` (the steering actions, once, for
the admin endpoints and both handles), :mod:`.handler` (HTTP server and routing),
:mod:`.messages` (requests, replies, error bodies), :mod:`.api` (Aperiodic's endpoints),
:mod:`.files` (the S3-like file host), :mod:`.handles` (:class:`Sandbox`, :class:`RemoteSandbox`).
"""

from __future__ import annotations

from .catalog import (
    LISTINGS,
    UNIVERSES,
    Calendar,
    FileSpan,
    Tenure,
    listing_date,
    realistic_listings,
    symbols,
    synthetic_symbol,
)
from .data import encode_parquet, generate, sample_amounts
from .faults import FAULTS
from .handles import RemoteSandbox, Sandbox
from .shapes import SHAPES
from .state import CORRUPTION_MODES, SHAPE_MODES, SandboxConfig, UnknownSymbol

__all__ = [
    "CORRUPTION_MODES",
    "FAULTS",
    "LISTINGS",
    "Calendar",
    "FileSpan",
    "RemoteSandbox",
    "Sandbox",
    "SHAPES",
    "SHAPE_MODES",
    "SandboxConfig",
    "Tenure",
    "UNIVERSES",
    "UnknownSymbol",
    "encode_parquet",
    "generate",
    "listing_date",
    "realistic_listings",
    "sample_amounts",
    "symbols",
    "synthetic_symbol",
]
