"""``load``: ``yaml.load(text, Loader=SafeLoader)`` for registry entries, with a quicker constructor.

PyYAML's libyaml loader parses in C but builds the Python objects in Python, one generator per
mapping; for a 1,000-entry registry that was most of the time spent reading it. Plain documents
(mappings, sequences and scalars, no anchors, aliases or merge keys) are built here by one recursive
function; every scalar is still built by PyYAML's own constructor for its resolved tag, so ``yes``,
dates, ``.inf`` and the rest mean exactly what they mean to ``SafeLoader``. Anything else falls back
to PyYAML's constructor, so the result is always that of ``yaml.load(text, Loader=SafeLoader)``.
"""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same result, faster parse
_MEMO_MAX = 100_000  # entries in each memo below (a registry repeats its keys and values: few distinct ones)


class _Loader(_Base):
    """``SafeLoader`` whose implicit tag resolution is remembered: a scalar's tag depends only on its kind,
    text and quoting (SafeLoader has no path resolvers), and the regexes that decide it were a third of
    the time spent reading a registry."""

    _tags: dict = {}

    def resolve(self, kind, value, implicit):
        if self.yaml_path_resolvers:  # path-dependent resolution (never set by medbench): not remembered
            return super().resolve(kind, value, implicit)
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._tags) < _MEMO_MAX:
                self._tags[key] = tag
        return tag


_values: dict = {}  # (tag, text) -> the immutable value PyYAML's constructor builds for a plain scalar
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
# the scalar tags whose SafeConstructor method returns the value (not a generator, as for collections)
_SCALARS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "binary", "timestamp"))


class _Unusual(Exception):
    """The document needs PyYAML's constructor (aliases, merge keys, other tags, unhashable keys)."""


def load(text: str):
    """The Python value of a one-document YAML ``text``, exactly as ``yaml.load(text, SafeLoader)`` gives it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _build(node, loader, set())
        except _Unusual:
            return loader.construct_document(node)
    finally:
        loader.dispose()


def _build(node, loader, seen: set):
    if node.__class__ is ScalarNode:
        if node.tag == _STR:
            return node.value
        if node.tag not in _SCALARS:
            raise _Unusual
        key = (node.tag, node.value)
        try:
            return _values[key]
        except KeyError:
            value = loader.yaml_constructors[node.tag](loader, node)
            if len(_values) < _MEMO_MAX:  # (None, bools, numbers, bytes, dates: immutable, so shared safely)
                _values[key] = value
            return value
    if id(node) in seen:  # the same node twice: an alias
        raise _Unusual
    seen.add(id(node))
    if node.__class__ is SequenceNode and node.tag == _SEQ:
        return [_build(child, loader, seen) for child in node.value]
    if node.__class__ is MappingNode and node.tag == _MAP:
        out = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Unusual
            key = _build(key_node, loader, seen)
            try:
                hash(key)
            except TypeError:
                raise _Unusual from None
            out[key] = _build(value_node, loader, seen)
        return out
    raise _Unusual
