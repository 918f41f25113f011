"""Endpoint filters: which events an endpoint gets, decided when an event is stored.

A filter is a JSON object over the event's envelope (`event`, `data.…` dotted paths). Each key
is a path mapped to a value (equality) or to operators (`$eq $ne $in $nin $gt $gte $lt $lte
$exists`), or one of `$and`, `$or` (lists of filters) and `$not` (a filter). All keys of an
object must hold.

    {"data.recipient": {"$in": ["bob", "carol"]}, "data.subject": {"$ne": ""}}

`check` refuses a filter that is not one, naming where; `matches` never raises: a condition that
cannot be evaluated on an event (its path is missing, the types do not compare) does not hold.

Hand-written, and kept small: the operators are MongoDB's, but no maintained Python library
evaluates MongoDB-style queries over plain dicts (the candidates are unmaintained or drag in a
database driver), and the language must stay exactly this one.
"""

from collections.abc import Mapping
from typing import Any

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", *COMPARISONS})
COMBINATORS = frozenset({"$and", "$or", "$not"})
MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_PATH = 256

_MISSING = object()


class FilterError(ValueError):
    """A filter that is not one; `where` is the place, as a dotted list of keys."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"Invalid filter at {where or 'the top'}: {message}")
        self.where = where


# -- checking -------------------------------------------------------------------------------


def check(filter_: Any) -> None:
    """FilterError unless `filter_` is a filter of this language, within its size limits."""
    counted = _check(filter_, "", 0)
    if counted > MAX_CONDITIONS:
        raise FilterError("", f"it has {counted} conditions; at most {MAX_CONDITIONS}")


def _check(node: Any, where: str, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise FilterError(where, f"it nests deeper than {MAX_DEPTH} levels")
    if not isinstance(node, Mapping):
        raise FilterError(where, "expected an object")
    if not node:
        raise FilterError(where, "an empty object matches nothing useful; use null for none")
    conditions = 0
    for key, value in node.items():
        here = f"{where}.{key}" if where else key
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(here, f"{key} takes a non-empty list of filters")
            for n, item in enumerate(value):
                conditions += _check(item, f"{here}[{n}]", depth + 1)
        elif key == "$not":
            conditions += _check(value, here, depth + 1)
        elif key.startswith("$"):
            raise FilterError(here, f"unknown operator {key}; paths come first, as in data.x")
        else:
            _check_path(key, here)
            conditions += _check_condition(value, here)
    return conditions


def _check_path(path: str, where: str) -> None:
    if len(path) > MAX_PATH or not path or any(part == "" for part in path.split(".")):
        raise FilterError(where, "a path is dotted names such as data.recipient")
    if path.split(".")[0] not in ("event", "data", "id", "timestamp"):
        raise FilterError(where, "a path starts with event, data, id or timestamp")


def _check_condition(value: Any, where: str) -> int:
    if not _is_operators(value, where):
        return 1  # equality with a value, an object included
    for operator, operand in value.items():
        here = f"{where}.{operator}"
        if operator not in OPERATORS:
            raise FilterError(here, f"unknown operator {operator}")
        if operator in ("$in", "$nin") and not isinstance(operand, list):
            raise FilterError(here, f"{operator} takes a list")
        if operator == "$exists" and not isinstance(operand, bool):
            raise FilterError(here, "$exists takes true or false")
        if operator in COMPARISONS and not (_is_number(operand) or isinstance(operand, str)):
            raise FilterError(here, f"{operator} takes a number or a string")
    return len(value)


def _is_operators(value: Any, where: str) -> bool:
    """An object of operators (every key starts with `$`); one mixing them with plain keys is
    refused, as it means neither."""
    if not isinstance(value, Mapping) or not value:
        return False
    dollars = [str(key).startswith("$") for key in value]
    if any(dollars) and not all(dollars):
        raise FilterError(where, "an object mixes operators and plain keys")
    return all(dollars)


# -- evaluating -----------------------------------------------------------------------------


def matches(filter_: Mapping[str, Any] | None, document: Mapping[str, Any]) -> bool:
    """Whether the event (its envelope) passes the filter; no filter passes everything."""
    if filter_ is None:
        return True
    try:
        return _matches(filter_, document)
    except (AttributeError, TypeError, ValueError, RecursionError):  # stored before a rule changed
        return False


def _matches(node: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    for key, value in node.items():
        if key == "$and":
            held = all(_matches(item, document) for item in value)
        elif key == "$or":
            held = any(_matches(item, document) for item in value)
        elif key == "$not":
            held = not _matches(value, document)
        else:
            held = _holds(_lookup(document, key), value)
        if not held:
            return False
    return True


def _lookup(document: Any, path: str) -> Any:
    found = document
    for part in path.split("."):
        if isinstance(found, Mapping) and part in found:
            found = found[part]
        elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        else:
            return _MISSING
    return found


def _holds(found: Any, condition: Any) -> bool:
    operators = (
        isinstance(condition, Mapping)
        and condition
        and all(str(key).startswith("$") for key in condition)
    )
    if not operators:
        return found is not _MISSING and _equal(found, condition)
    return all(_operator(found, op, operand) for op, operand in condition.items())


def _operator(found: Any, operator: str, operand: Any) -> bool:
    if operator == "$exists":
        return bool((found is not _MISSING) == operand)
    if found is _MISSING:
        return False  # a missing path cannot be evaluated: it does not match, even $ne
    if operator == "$eq":
        return _equal(found, operand)
    if operator == "$ne":
        return not _equal(found, operand)
    if operator == "$in":
        return any(_equal(found, item) for item in operand)
    if operator == "$nin":
        return not any(_equal(found, item) for item in operand)
    if not _comparable(found, operand):
        return False
    if operator == "$gt":
        return bool(found > operand)
    if operator == "$gte":
        return bool(found >= operand)
    if operator == "$lt":
        return bool(found < operand)
    return bool(found <= operand)  # $lte


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (isinstance(a, Mapping) and isinstance(b, Mapping)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)
