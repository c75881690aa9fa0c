"""Hypothesis strategies that feed parsers bad input: arbitrary bytes, byte-level mutations
of valid serialized objects, and msgpack or JSON structures of the wrong shape and types.

`mutated(valid)` damages bytes the way storage, transport or an attacker would (bit flips,
truncation, extension, splices); `reshaped(value)` damages a decoded structure the way a
buggy or hostile writer holding the key would (a field of the wrong type, a field missing
or added, a list too short or too long), so that the parser's own checks are what is tested.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import strategies as st

#: The integers msgpack can encode.
MSGPACK_INTEGERS = st.integers(-(2**63), 2**64 - 1)

#: Integers that sit near the edges parsers care about (sizes, 32-bit fields, signs).
EDGE_INTEGERS = st.sampled_from(
    [-(2**63), -(2**31), -1, 0, 1, 2, 31, 32, 33, 2**31 - 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
)

msgpack_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    MSGPACK_INTEGERS,
    EDGE_INTEGERS,
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.binary(min_size=32, max_size=32),  # the size of a blob ID, so checks beyond it run
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
)

#: Any value msgpack can pack: scalars, lists and maps (str or bytes keys) of them.
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    msgpack_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.binary(max_size=8)), children, max_size=6
        ),
    ),
    max_leaves=16,
)


def pack_value(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def deeply_nested_msgpack(depth: int) -> bytes:
    """`depth` one-element arrays inside each other: past Python's recursion limit."""
    return b"\x91" * depth + b"\xc0"


def deeply_nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


#: Arbitrary bytes, and the pathological shapes random bytes seldom hit.
arbitrary_bytes: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=200),
    st.binary(min_size=200, max_size=2048),
    st.integers(1, 3000).map(deeply_nested_msgpack),
    st.integers(1, 3000).map(deeply_nested_json),
    msgpack_values.map(pack_value),
)


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with one to four byte-level changes; never `valid` itself."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "truncate", "extend", "insert", "delete", "set"]))
        at = draw(st.integers(0, len(data)))
        if edit == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif edit == "truncate":
            del data[at:]
        elif edit == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "set" and data:
            i = min(at, len(data) - 1)
            data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCF, 0xDD, 0xDF, 0xFF]))
    if bytes(data) == valid:
        data += b"\x00"
    return bytes(data)


def _reshape(draw: st.DrawFn, value: Any, leaves: st.SearchStrategy[Any]) -> Any:
    """One change somewhere inside `value`: descend at random, then replace, drop or add."""
    if isinstance(value, list | tuple) and value and draw(st.integers(0, 3)):
        items = list(value)
        i = draw(st.integers(0, len(items) - 1))
        items[i] = _reshape(draw, items[i], leaves)
        return items
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value, key=repr)))
        return {**value, key: _reshape(draw, value[key], leaves)}
    edit = draw(st.sampled_from(["replace", "drop", "add", "wrap"]))
    if edit == "drop" and isinstance(value, list | tuple) and value:
        items = list(value)
        del items[draw(st.integers(0, len(items) - 1))]
        return items
    if edit == "drop" and isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value, key=repr)))
        return {k: v for k, v in value.items() if k != key}
    if edit == "add" and isinstance(value, list | tuple):
        return [*value, draw(leaves)]
    if edit == "add" and isinstance(value, dict):
        key = draw(st.one_of(st.text(max_size=8), st.sampled_from(sorted(map(str, value)) or [""])))
        return {**value, key: draw(leaves)}
    if edit == "wrap":
        return [value]
    return draw(leaves)


@st.composite
def reshaped(draw: st.DrawFn, value: Any, leaves: st.SearchStrategy[Any] = msgpack_values) -> Any:
    """`value` (a decoded msgpack or JSON structure) with one to three changes inside it,
    new values drawn from `leaves`."""
    for _ in range(draw(st.integers(1, 3))):
        value = _reshape(draw, value, leaves)
    return value
