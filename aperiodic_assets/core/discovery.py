"""Universes by rule: which of an exchange's listed symbols become instruments.

A universe file's ``discover:`` entries are rules over ``GET /metadata/symbols`` (exchanges,
intervals, quote currencies, shell-style globs), so a deployment that follows a whole exchange
never types a symbol, and a new listing joins without an edit. Parsing reports every mistake
by rule and key, like the explicit ``instruments:`` entries; :func:`resolve` turns the symbol
lists into instruments (explicit entries win over a rule's). Never imports dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .schema import INTERVALS, TIMESTAMP_MODES
from .universe import Instrument, field_problem, shown, unknown_keys

#: Keys of a ``discover:`` rule: the required ones first.
RULE_KEYS = ("exchanges", "intervals", "timestamp", "quote", "include", "exclude", "delisted")
_REQUIRED_RULE_KEYS = RULE_KEYS[:2]
_BOOLEANS = {"true": True, "false": False}


def quote_of(symbol: str) -> str:
    """The quote currency of an Atlas perpetual: ``USDT`` in ``perpetual-BTC-USDT:USDT``.

    Taken from the right, because a HIP-3 builder market's base carries a colon
    (``perpetual-XYZ:TSLA-USDC:USDC``); a symbol of another shape has no quote ("").
    """
    head, sep, tail = symbol.rpartition("-")
    return tail.split(":", 1)[0] if sep and head else ""


@dataclass(frozen=True)
class Rule:
    """One ``discover:`` entry: a symbol of ``exchanges`` that passes the filters becomes one
    instrument per interval."""

    exchanges: tuple[str, ...]
    intervals: tuple[str, ...]
    timestamp: str = TIMESTAMP_MODES[0]
    quote: tuple[str, ...] = ()
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    #: Keep instruments that stopped trading before the universe's start_month (closed ones).
    delisted: bool = False
    #: Where the rule was written (``discover[0]``), for messages.
    where: str = field(default="discover", compare=False)

    def matches(self, symbol: str) -> bool:
        """Whether ``symbol`` passes the quote, include and exclude filters."""
        if self.quote and quote_of(symbol) not in self.quote:
            return False
        if not any(fnmatchcase(symbol, pattern) for pattern in self.include):
            return False
        return not any(fnmatchcase(symbol, pattern) for pattern in self.exclude)

    def describe(self) -> str:
        """One line a person recognizes the rule by."""
        parts = [f"{','.join(self.exchanges)} at {','.join(self.intervals)}", self.timestamp]
        if self.quote:
            parts.append(f"quote {','.join(self.quote)}")
        if self.include != ("*",):
            parts.append(f"include {','.join(self.include)}")
        if self.exclude:
            parts.append(f"exclude {','.join(self.exclude)}")
        return f"{self.where}: " + ", ".join(parts)


def parse_rules(raw: Any, problems: list[str]) -> tuple[Rule, ...]:
    """The rules of a ``discover:`` value; each mistake is added to ``problems`` by place."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(
            "discover: expected a non-empty list of rules like {exchanges: [okx-perps],"
            f" intervals: [1h]}}, got {shown(raw)}"
        )
        return ()
    rules = [_rule(f"discover[{i}]", entry, problems) for i, entry in enumerate(raw)]
    return tuple(r for r in rules if r is not None)


def _rule(where: str, entry: Any, problems: list[str]) -> Rule | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping of {list(RULE_KEYS)}, got {shown(entry)}")
        return None
    found = unknown_keys(entry, RULE_KEYS)
    found += [f"missing key {k!r}" for k in _REQUIRED_RULE_KEYS if k not in entry]
    values: dict[str, Any] = {}
    for key in RULE_KEYS:
        if key not in entry:
            continue
        value, problem = _value(key, entry[key])
        if problem:
            found.append(f"{key}: {problem}")
        else:
            values[key] = value
    problems += [f"{where}: {problem}" for problem in found]
    return None if found else Rule(**values, where=where)


def _value(key: str, value: Any) -> tuple[Any, str | None]:
    """A rule key's value as the Rule holds it, or the problem with it."""
    if key == "delisted":
        flag = _BOOLEANS.get(str(value).lower()) if isinstance(value, (bool, str)) else None
        return (
            (flag, None) if flag is not None else (None, f"expected true or false, got {value!r}")
        )
    if key == "timestamp":
        if value not in TIMESTAMP_MODES:
            return None, f"expected one of {list(TIMESTAMP_MODES)}, got {shown(value)}"
        return value, None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        return None, f"expected a non-empty list of text, got {shown(value)}"
    if key == "exchanges":
        bad = [p for v in items if (p := field_problem("exchange", v))]
    elif key == "intervals":
        bad = [f"{v!r} is not one of {list(INTERVALS)}" for v in items if v not in INTERVALS]
    else:
        bad = [f"{v!r} is empty" for v in items if not v.strip()]
    return (None, "; ".join(bad)) if bad else (tuple(dict.fromkeys(items)), None)


@dataclass
class Resolution:
    """What the rules make of the symbol lists: candidates by key, and what they left out."""

    #: Instrument key -> the first rule that selected it, in rule order: an instrument once its
    #: files say it traded.
    candidates: dict[str, Rule] = field(default_factory=dict)
    #: Rule -> exchange -> interval -> how many symbols it selected.
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: Rule -> the first symbols it selected (for the doctor).
    examples: dict[str, list[str]] = field(default_factory=dict)
    #: Symbols no partition key can carry (``| , [ ] .``), by exchange.
    unusable: dict[str, list[str]] = field(default_factory=dict)

    def empty_rules(self, rules: Iterable[Rule]) -> list[Rule]:
        """The rules that selected nothing on the exchanges that answered."""
        return [r for r in rules if not any(self.examples.get(r.where, ()))]


def resolve(
    rules: Sequence[Rule], symbols: Mapping[str, Sequence[str]], examples: int = 5
) -> Resolution:
    """The candidates of ``rules`` over ``symbols`` (exchange -> listed symbols; an exchange
    missing from it did not answer, and its rules select nothing there this time)."""
    out = Resolution()
    for rule in rules:
        counts = out.counts.setdefault(rule.where, {})
        shown = out.examples.setdefault(rule.where, [])
        for exchange in rule.exchanges:
            for symbol in symbols.get(exchange, ()):
                if not rule.matches(symbol):
                    continue
                for interval in rule.intervals:
                    try:
                        instrument = Instrument(exchange, symbol, interval, rule.timestamp)
                    except ValueError:
                        unusable = out.unusable.setdefault(exchange, [])
                        if symbol not in unusable:
                            unusable.append(symbol)
                        continue
                    out.candidates.setdefault(instrument.key, rule)
                    by_interval = counts.setdefault(exchange, {})
                    by_interval[interval] = by_interval.get(interval, 0) + 1
                    if len(shown) < examples and symbol not in shown:
                        shown.append(symbol)
    return out
