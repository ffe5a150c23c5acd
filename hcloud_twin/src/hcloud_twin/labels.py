"""Labels: validation of keys and values, and the API's label selector language.

Selector expressions, comma separated (commas inside parentheses belong to a set):
``k=v`` / ``k==v`` (equal), ``k!=v`` (not equal, or absent), ``k`` (present), ``!k`` (absent),
``k in (a,b)``, ``k notin (a,b)``. All expressions must hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Key: optional DNS-subdomain prefix and a name of up to 63 characters; value: up to 63 characters,
# alphanumeric at both ends (empty allowed) - the API's documented label format.
_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")

Matcher = Callable[[dict[str, str]], bool]


class SelectorError(ValueError):
    """An unparsable label selector."""


def label_problem(labels: object) -> str | None:
    """None when ``labels`` is a valid label map, else what is wrong with it."""
    if not isinstance(labels, dict):
        return "labels must be an object of string keys and string values"
    for key, value in labels.items():
        if not isinstance(key, str) or not _KEY_RE.match(key) or len(key.split("/")[0]) > 253:
            return f"label key {key!r} is invalid"
        if not isinstance(value, str) or not _VALUE_RE.match(value):
            return f"label value {value!r} of key {key!r} is invalid"
    return None


def _split(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _term(expr: str) -> Matcher:
    if not expr:
        raise SelectorError("empty expression")
    match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", expr)
    if match:
        key, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    match = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)", expr)
    if match:
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if re.fullmatch(r"![^=!\s(),]+", expr):
        key = expr[1:]
        return lambda labels: key not in labels
    if re.fullmatch(r"[^=!\s(),]+", expr):
        return lambda labels: expr in labels
    raise SelectorError(f"cannot parse {expr!r}")


def selector(text: str) -> Matcher:
    """Compile a label selector; raises SelectorError when it does not parse."""
    terms = [_term(part) for part in _split(text)]
    return lambda labels: all(term(labels) for term in terms)
