"""Reading infra/*.tf as data with python-hcl2: variable values (defaults, or a .tfvars
file), and the few expression forms the module uses, evaluated: `var.NAME`, `VAR[*]`
(a null as [], a value as [value]), `ITERATOR.value[.FIELD]` in dynamic blocks, and string
interpolation of those. Anything else raises, so a change to another form fails loudly
instead of being compared wrongly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2

INFRA = Path(__file__).resolve().parents[3] / "infra"

_REFERENCE = re.compile(r"^(?P<root>var|[a-z_]+)\.(?P<path>[a-z_.]+?)(?P<splat>\[\*\])?$")


def load(name: str) -> dict[str, Any]:
    with (INFRA / name).open() as f:
        return dict(hcl2.load(f))


def unquote(name: str) -> str:
    """hcl2 keeps the quotes of block labels and string literals."""
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def variable_defaults() -> dict[str, Any]:
    values = {}
    for block in load("variables.tf")["variable"]:
        for label, body in block.items():
            values[unquote(label)] = plain(body.get("default"))
    return values


def tfvars(name: str) -> dict[str, Any]:
    return {k: plain(v) for k, v in load(name).items() if not k.startswith("__")}


def plain(value: Any) -> Any:
    """A literal value without hcl2's quoting."""
    if isinstance(value, str):
        return unquote(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if not k.startswith("__")}
    return value


def resource(kind: str, name: str) -> dict[str, Any]:
    for block in load("main.tf")["resource"]:
        if f'"{kind}"' in block and f'"{name}"' in block[f'"{kind}"']:
            body: dict[str, Any] = block[f'"{kind}"'][f'"{name}"']
            return body
    raise KeyError(f"{kind}.{name} not in infra/main.tf")


class Scope:
    """Values of `var.*` and of the iterators of the dynamic blocks being expanded."""

    def __init__(self, variables: dict[str, Any], iterators: dict[str, Any] | None = None):
        self.variables = variables
        self.iterators = iterators or {}

    def with_iterator(self, name: str, value: Any) -> Scope:
        return Scope(self.variables, {**self.iterators, name: value})

    def expression(self, text: str) -> Any:
        match = _REFERENCE.match(text.strip())
        if match is None:
            raise ValueError(f"expression form the test cannot evaluate: {text!r}")
        root, path = match["root"], match["path"].split(".")
        if root == "var":
            value = self.variables[path[0]]
            path = path[1:]
        elif root in self.iterators and path[0] == "value":
            value = self.iterators[root]
            path = path[1:]
        else:
            raise ValueError(f"unknown reference {text!r}")
        for key in path:
            value = value[key]
        if match["splat"]:
            return [] if value is None else [value]
        return value

    def value(self, raw: Any) -> Any:
        """An attribute's value: a literal, one `${expression}`, or an interpolated string."""
        if not isinstance(raw, str):
            return raw
        if raw.startswith("${") and raw.endswith("}") and raw.count("${") == 1:
            return self.expression(raw[2:-1])
        if not (raw.startswith('"') and raw.endswith('"')):
            raise ValueError(f"attribute form the test cannot evaluate: {raw!r}")
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(self.expression(m[1])), raw[1:-1])


def expand_blocks(body: dict[str, Any], block_type: str, scope: Scope) -> list[dict[str, Any]]:
    """Every `block_type` block in `body`, static ones first, then dynamic ones expanded,
    each as {attribute: value, nested block type: [blocks]} with expressions evaluated."""
    blocks = [(b, scope) for b in body.get(block_type, ())]
    for dynamic in body.get("dynamic", ()):
        for label, spec in dynamic.items():
            if unquote(label) != block_type:
                continue
            for item in scope.expression(spec["for_each"][2:-1]):
                inner = scope.with_iterator(block_type, item)
                blocks += [(content, inner) for content in spec["content"]]
    return [evaluate_block(b, s) for b, s in blocks]


def evaluate_block(body: dict[str, Any], scope: Scope) -> dict[str, Any]:
    out: dict[str, Any] = {}
    nested = {k for k, v in body.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    nested |= {unquote(label) for d in body.get("dynamic", ()) for label in d}
    nested.discard("dynamic")
    for key, raw in body.items():
        if key.startswith("__") or key == "dynamic" or key in nested:
            continue
        out[key] = scope.value(raw)
    for block_type in nested:
        out[block_type] = expand_blocks(body, block_type, scope)
    return out
