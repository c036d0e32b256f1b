"""Is a message schema backward compatible with the one last released? (issue 17)

Consumers must keep accepting every message a producer built against a released schema,
until a new release says otherwise. :func:`breaking_changes` lists the ways a message valid
under the *released* JSON Schema of a message could be refused under the *current* one.
It is a pragmatic subset of JSON Schema, enough for what pydantic generates here:

- a property removed (the models forbid unknown fields), a property newly required;
- a property's type narrowed: a JSON type or ``anyOf`` alternative dropped (``null``
  included), a ``$ref`` now pointing to another model, a ``const``, ``format`` or
  ``pattern`` added or changed;
- a bound tightened: ``minimum``/``maximum`` (and exclusive ones), ``minLength``/``maxLength``;
- an ``enum`` value dropped (inline or of a model such as ``DeclineReason``);
- a per-currency maximum (``allOf`` of ``if currency in [...] then amount_minor maximum``) lowered,
  or any other ``allOf`` rule added or changed;
- ``additionalProperties`` turned off.

The baseline lives in ``contracts/released/<version>/`` and moves only on a release
(``scripts/export_contracts.py --release``); ``--check`` and the unit tests compare against it.
"""

from __future__ import annotations

from typing import Any

JsonDict = dict[str, Any]

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")
_EXACT = ("const", "format", "pattern")


def parse_version(text: str) -> tuple[int, ...]:
    """``"0.2.0"`` -> ``(0, 2, 0)``; ValueError for anything else."""
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        msg = f"not a release version (MAJOR.MINOR.PATCH): {text!r}"
        raise ValueError(msg)
    return tuple(int(p) for p in parts)


def _alternatives(schema: JsonDict) -> tuple[set[str], set[str]]:
    """What a property takes: its JSON types and the models it refers to, ``anyOf``/``oneOf`` flattened."""
    kinds: set[str] = set()
    refs: set[str] = set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        option_kinds, option_refs = _alternatives(option)
        kinds |= option_kinds
        refs |= option_refs
    if "$ref" in schema:
        refs.add(str(schema["$ref"]).rsplit("/", 1)[-1])
    declared = schema.get("type")
    if isinstance(declared, str):
        kinds.add(declared)
    elif isinstance(declared, list):
        kinds |= {str(t) for t in declared}
    return kinds, refs


def _enum(where: str, old: JsonDict, new: JsonDict) -> list[str]:
    if "enum" not in new:
        return []
    if "enum" not in old:
        return [f"{where}: restricted to {len(new['enum'])} enum values"]
    return [f"{where}: enum value {v!r} removed" for v in old["enum"] if v not in new["enum"]]


def _shown(values: list[Any], limit: int = 5) -> str:
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _conditional_maxima(rules: list[Any]) -> dict[tuple[str, str, Any], Any] | None:
    """``{(selector, property, value): maximum}`` from ``if selector in [...] then property maximum``; None if other rules."""
    maxima: dict[tuple[str, str, Any], Any] = {}
    for rule in rules:
        try:
            ((selector, condition),) = rule["if"]["properties"].items()
            ((target, bound),) = rule["then"]["properties"].items()
            values, maximum = condition["enum"], bound["maximum"]
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        for value in values:
            maxima[(selector, target, value)] = maximum
    return maxima


def _compare_rules(where: str, old: JsonDict, new: JsonDict) -> list[str]:
    old_rules, new_rules = old.get("allOf", []), new.get("allOf", [])
    if old_rules == new_rules:
        return []
    old_max, new_max = _conditional_maxima(old_rules), _conditional_maxima(new_rules)
    if old_max is None or new_max is None:
        return [f"{where}: allOf rules added or changed"]
    lowered: dict[tuple[str, str, Any, Any], list[Any]] = {}
    for (selector, target, value), maximum in new_max.items():
        before = old_max.get((selector, target, value))
        if before is None or maximum < before:
            lowered.setdefault((selector, target, maximum, before), []).append(value)
    return [
        f"{where}.{target}: maximum lowered to {maximum} (was {'unset' if before is None else before}) "
        f"for {selector} {_shown(sorted(values, key=str))}"
        for (selector, target, maximum, before), values in sorted(lowered.items(), key=str)
    ]


class _Comparison:
    """One released schema against the current one; each side's ``$defs`` resolve its references."""

    def __init__(self, released: JsonDict, current: JsonDict) -> None:
        self.old_defs: JsonDict = released.get("$defs", {})
        self.new_defs: JsonDict = current.get("$defs", {})

    def model(self, name: str, old: JsonDict, new: JsonDict) -> list[str]:
        """Ways the ``new`` object schema accepts less than the ``old`` one."""
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        problems = [f"{name}.{p}: property removed" for p in sorted(old_props.keys() - new_props.keys())]
        old_required = set(old.get("required", []))
        problems += [
            f"{name}.{p}: required now, optional or absent before"
            for p in new.get("required", [])
            if p not in old_required
        ]
        problems += _enum(name, old, new)
        if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
            problems.append(f"{name}: additional properties are refused now")
        for prop in sorted(old_props.keys() & new_props.keys()):
            problems += self.value(f"{name}.{prop}", old_props[prop], new_props[prop])
        return problems + _compare_rules(name, old, new)

    def value(self, where: str, old: JsonDict, new: JsonDict) -> list[str]:
        """Ways ``new`` accepts less than ``old`` for one property."""
        problems = []
        (old_kinds, old_refs), (new_kinds, new_refs) = _alternatives(old), _alternatives(new)
        if (old_kinds or old_refs) and (new_kinds or new_refs):
            problems += [f"{where}: no longer accepts {kind}" for kind in sorted(old_kinds - new_kinds)]
            problems += self._refs(where, old_refs - new_refs, new_refs - old_refs)
        elif new_kinds or new_refs:
            problems.append(f"{where}: restricted to {', '.join(sorted(new_kinds | new_refs))}")
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                problems.append(f"{where}: {key} raised to {new[key]} (was {old.get(key, 'unset')})")
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                problems.append(f"{where}: {key} lowered to {new[key]} (was {old.get(key, 'unset')})")
        for key in _EXACT:
            if key in new and new.get(key) != old.get(key):
                problems.append(f"{where}: {key} is now {new[key]!r} (was {old.get(key, 'unset')!r})")
        return problems + _enum(where, old, new)

    def _refs(self, where: str, dropped: set[str], added: set[str]) -> list[str]:
        """One model replaced by another is fine when the new one accepts everything the old one did."""
        if len(dropped) == 1 and len(added) == 1:
            (old_name,), (new_name,) = dropped, added
            if old_name in self.old_defs and new_name in self.new_defs:
                old_model, new_model = self.old_defs[old_name], self.new_defs[new_name]
                return self.model(f"{where}<{old_name} now {new_name}>", old_model, new_model)
        return [f"{where}: no longer accepts {name}" for name in sorted(dropped)]


def breaking_changes(released: JsonDict, current: JsonDict) -> list[str]:
    """Ways a message valid under the ``released`` schema could be refused under the ``current`` one.

    Compares the envelope and every model both schemas define (by ``$defs`` name), following a
    property whose reference moved to another model. An empty list: compatible, as far as this
    checker can tell.
    """
    comparison = _Comparison(released, current)
    old_defs, new_defs = comparison.old_defs, comparison.new_defs
    payload_ref = released.get("properties", {}).get("payload", {}).get("$ref", "")
    payload = str(payload_ref).rsplit("/", 1)[-1]
    problems = [f"payload model {payload} no longer defined"] if payload and payload not in new_defs else []
    problems += comparison.model("envelope", released, current)
    for name in sorted(old_defs.keys() & new_defs.keys()):
        problems += comparison.model(name, old_defs[name], new_defs[name])
    return problems


def incompatibilities(released: dict[str, JsonDict], current: dict[str, JsonDict]) -> list[str]:
    """Every breaking change from a released set of schemas (by ``Type.vN`` name) to the current one."""
    problems = []
    for name, schema in sorted(released.items()):
        if name not in current:
            problems.append(f"{name}: message version removed; consumers must keep accepting it")
            continue
        problems += [f"{name}: {p}" for p in breaking_changes(schema, current[name])]
    return problems
