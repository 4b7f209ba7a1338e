"""Results of a validation: one ``RuleResult`` per rule, grouped into reported ``CheckResult``s.

Kept apart from the rules so that what a report says (verdict, counts, messages, JSON) can be
read without the numpy code that judges a table. Never imports dagster.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import numpy as np

Severity = Literal["error", "warn"]
Status = Literal["passed", "failed", "not_evaluated"]
#: JSON-like values: numbers, strings, and lists or dicts of them (gaps, examples).
Metadata = dict[str, Any]


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict; its severity is that of the check it belongs to.

    ``evaluated`` is False when the rule could not judge the table (a column it needs was
    rejected by the ``schema`` rule, or the file is empty): its cause is counted once, by
    ``schema`` or ``non_empty``, and not again as a violation here.
    """

    name: str
    check: str
    severity: Severity
    violations: int
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    metadata: Metadata = field(default_factory=dict)
    evaluated: bool = True

    @property
    def passed(self) -> bool:
        return self.evaluated and self.violations == 0

    @property
    def failed(self) -> bool:
        return self.evaluated and self.violations > 0

    @property
    def status(self) -> Status:
        if not self.evaluated:
            return "not_evaluated"
        return "passed" if self.passed else "failed"


@dataclass(frozen=True)
class CheckResult:
    """A reported check: its rules' results, summed up so one UI entry loses no detail.

    ``metadata`` holds every rule's violation count under the rule's name ("not evaluated" when
    it could not run), the first example of each failed rule under ``<rule>_example`` (JSON-safe:
    a NaN or inf value becomes a string), and what the rules add themselves (completeness
    figures, NaN counts per column).
    """

    name: str
    severity: Severity
    rules: tuple[RuleResult, ...]

    @property
    def passed(self) -> bool:
        """Every rule evaluated and passed; an error check that did not pass rejects the data."""
        return all(r.passed for r in self.rules)

    @property
    def failed(self) -> bool:
        """Some rule evaluated and found a problem."""
        return any(r.failed for r in self.rules)

    @property
    def status(self) -> Status:
        if self.failed:
            return "failed"
        return "passed" if self.passed else "not_evaluated"

    @property
    def evaluated(self) -> bool:
        return self.status != "not_evaluated"

    @property
    def violations(self) -> int:
        """Sum over the rules (each rule's own count, and its unit, is in ``metadata``)."""
        return sum(r.violations for r in self.rules)

    @property
    def failed_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if r.failed]

    @cached_property
    def message(self) -> str:
        """Every rule's message when passed, else each rule that did not pass, by name."""
        if self.passed:
            return "; ".join(r.message for r in self.rules)
        return "; ".join(f"{r.name}: {r.message}" for r in self.rules if not r.passed)

    @cached_property
    def examples(self) -> list[dict[str, Any]]:
        """The first example of each failed rule, tagged with the rule's name."""
        return [{"rule": r.name, **r.examples[0]} for r in self.failed_rules if r.examples]

    @cached_property
    def metadata(self) -> Metadata:
        metadata: Metadata = {
            r.name: r.violations if r.evaluated else "not evaluated" for r in self.rules
        }
        for r in self.rules:
            if r.failed and r.examples:
                metadata[f"{r.name}_example"] = _json_safe(r.examples[0])
            metadata |= r.metadata
        return metadata


@dataclass
class ValidationReport:
    instrument: str
    month: str
    rows: int
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        """Every error-severity check evaluated and passed: the partition may be written."""
        return all(c.passed for c in self.checks if c.severity == "error")

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "error" and c.failed]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "warn" and c.failed]

    @property
    def rules(self) -> list[RuleResult]:
        return [r for c in self.checks for r in c.rules]

    @property
    def not_evaluated(self) -> list[RuleResult]:
        """Rules that could not judge the table (see ``RuleResult``)."""
        return [r for r in self.rules if not r.evaluated]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks are {[c.name for c in self.checks]}")

    def rule(self, name: str) -> RuleResult:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"no rule {name!r}; rules are {[r.name for r in self.rules]}")

    def summary(self) -> str:
        """One line for logs: verdict, partition, each failed check with its rules' counts."""
        parts = [
            f"{'OK' if self.ok else 'REJECTED'} {self.instrument} {self.month} ({self.rows} rows)"
        ]
        for label, checks in (("errors", self.errors), ("warnings", self.warnings)):
            if checks:
                parts.append(f"{label}: " + ", ".join(_counts(c) for c in checks))
        if self.not_evaluated:
            parts.append("not evaluated: " + ", ".join(r.name for r in self.not_evaluated))
        return "; ".join(parts)

    def first_error_message(self) -> str | None:
        """The run failure message: partition, first failed rule, its count and first example."""
        if not self.errors:
            return None
        check = self.errors[0]
        rule = check.failed_rules[0]
        others = sum(len(c.failed_rules) for c in self.errors) - 1
        more = f" (and {others} more failed rules)" if others else ""
        return (
            f"{self.instrument} {self.month}: check {check.name} failed, rule {rule.name} "
            f"({rule.violations} violations): {rule.message}{more}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite floats become the strings "inf", "-inf", "nan"."""
        return _json_safe(
            {
                "instrument": self.instrument,
                "month": self.month,
                "rows": self.rows,
                "ok": self.ok,
                "summary": self.summary(),
                "checks": [
                    {
                        "name": c.name,
                        "severity": c.severity,
                        "status": c.status,
                        "passed": c.passed,
                        "evaluated": c.evaluated,
                        "violations": c.violations,
                        "message": c.message,
                        "examples": c.examples,
                        "metadata": c.metadata,
                        "rules": [
                            {
                                "name": r.name,
                                "status": r.status,
                                "violations": r.violations,
                                "message": r.message,
                                "examples": r.examples,
                            }
                            for r in c.rules
                        ],
                    }
                    for c in self.checks
                ],
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _counts(check: CheckResult) -> str:
    return (
        f"{check.name} (" + ", ".join(f"{r.name} {r.violations}" for r in check.failed_rules) + ")"
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value))
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
