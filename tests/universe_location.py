"""The code location as deployed for the discovered-universe daemon test: the package's own
definitions with the short client retries of the unattended week, and no automation-condition
sensor (300 downstream runs would queue ahead of the listings the test times)."""

from __future__ import annotations

from .unattended_location import deployed_with_short_retries

defs = deployed_with_short_retries()
