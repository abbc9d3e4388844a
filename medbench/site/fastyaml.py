"""``load``: ``yaml.load(text, Loader=SafeLoader)`` for registry entries, with a quicker constructor.

PyYAML's libyaml loader parses in C but builds the Python objects in Python, one generator per
mapping; for a 1,000-entry registry that was most of the time spent reading it. Plain documents
(mappings, sequences and scalars, no anchors, aliases or merge keys) are built here by one recursive
function; every scalar is still built by PyYAML's own constructor for its resolved tag, so ``yes``,
dates, ``.inf`` and the rest mean exactly what they mean to ``SafeLoader``. Anything else falls back
to PyYAML's constructor, so the result is always that of ``yaml.load(text, Loader=SafeLoader)``.

Before that, documents in the block style that ``yaml.safe_dump`` writes (one ``key: value`` or
``- item`` per line, plain or simply quoted one-line scalars, no comments, flow collections, anchors,
tags or multi-line scalars) are read line by line (``_block``), ~2.5x quicker than libyaml's events and PyYAML's nodes; a
document with anything else in it, or anything out of place, goes to the loader above, which also
raises every error. Scalars and keys are resolved by the same resolver and constructors.
"""

from __future__ import annotations

import re

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
    value = _block(text)
    if value is not _NOT_BLOCK:
        return value
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


# --- the block style of yaml.safe_dump, line by line ---------------------------------------------------

_NOT_BLOCK = object()  # (``_block``: the document is not in the subset read here)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # plain keys (still resolved: ``yes`` or ``null`` are not read here)
_PLAIN_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/+(")
# characters libyaml reads as printable in a document (tab, CR, NEL, the BOM, line separators and the
# non-characters are left to it)
_ODD = re.compile("[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_TAGGER = _Loader("")  # (its resolver only: a scalar's tag depends on its text and quoting)


class _Unread(Exception):
    """Out of the subset (or malformed): the document goes to the loader."""


def _block(text: str):
    """The value of a block-style document of mappings, sequences and one-line scalars, or ``_NOT_BLOCK``."""
    if not text or _ODD.search(text) or "#" in text:  # (a comment anywhere: the loader decides)
        return _NOT_BLOCK
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    tokens = []  # (indent, kind, key, value): kind "map" (key: value / key:) or "seq" (- value, or - key: ...)
    for line in lines:
        if not line:
            continue  # (an empty line between block entries means nothing)
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if line[-1] == " " or not body:
            return _NOT_BLOCK
        if body[:2] == "- ":
            body = body[2:]
            if body[0] == " ":
                return _NOT_BLOCK
            item = _map_token(indent + 2, body)
            if item is None:
                tokens.append((indent, "seq", None, body))
            else:  # "- key: ...": a mapping starts in the item, its other keys two columns in
                tokens.append((indent, "seq", None, None))
                tokens.append(item)
            continue
        item = _map_token(indent, body)
        if item is None:
            return _NOT_BLOCK
        tokens.append(item)
    if not tokens or tokens[0][0] != 0:
        return _NOT_BLOCK
    try:
        value, i = _node(tokens, 0, 0)
    except (_Unread, yaml.YAMLError, ValueError, TypeError, KeyError):
        return _NOT_BLOCK
    return value if i == len(tokens) else _NOT_BLOCK


def _map_token(indent: int, body: str):
    """``key: value`` or ``key:`` as a token, or None when ``body`` is not one."""
    colon = body.find(":")
    if colon < 0 or not _KEY.match(body[:colon]):
        return None
    rest = body[colon + 1:]
    if rest and rest[0] != " ":
        return None
    return indent, "map", body[:colon], rest[1:] if rest else None


def _node(tokens: list, i: int, indent: int):
    """The mapping or sequence whose entries are the tokens from ``i`` on at ``indent``; (value, next token)."""
    if tokens[i][1] == "seq":
        return _sequence(tokens, i, indent)
    return _mapping(tokens, i, indent)


def _mapping(tokens: list, i: int, indent: int):
    out = {}
    n = len(tokens)
    while i < n:
        ind, kind, key, value = tokens[i]
        if ind < indent:
            break
        if ind > indent or kind != "map":
            raise _Unread  # (misplaced: libyaml decides what it means, or which error it is)
        if _TAGGER.resolve(ScalarNode, key, (True, False)) != _STR:
            raise _Unread  # (a key like yes, null or 1 is not a string)
        i += 1
        if value is not None:
            out[key] = _scalar(value)
        elif i < n and tokens[i][0] > indent:
            out[key], i = _node(tokens, i, tokens[i][0])
        elif i < n and tokens[i][0] == indent and tokens[i][1] == "seq":
            out[key], i = _sequence(tokens, i, indent)  # (the items of a key may start at its column)
        else:
            out[key] = None
    return out, i


def _sequence(tokens: list, i: int, indent: int):
    out = []
    n = len(tokens)
    while i < n and tokens[i][0] == indent and tokens[i][1] == "seq":
        value = tokens[i][3]
        i += 1
        if value is not None:
            out.append(_scalar(value))
        else:  # a mapping in the item: its first key is the next token, two columns in
            if i >= n or tokens[i][0] != indent + 2 or tokens[i][1] != "map":
                raise _Unread
            item, i = _mapping(tokens, i, indent + 2)
            out.append(item)
    if i < n and tokens[i][0] > indent:
        raise _Unread
    return out, i


def _scalar(text: str):
    """A one-line scalar: plain (resolved and built as SafeLoader builds it), 'single' or "double" quoted
    (without escapes)."""
    first = text[0]
    if first == "'":
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != "'" or "'" in inner.replace("''", ""):
            raise _Unread
        return inner.replace("''", "'")
    if first == '"':
        inner = text[1:-1]
        if len(text) < 2 or text[-1] != '"' or '"' in inner or "\\" in inner:
            raise _Unread
        return inner
    if (first not in _PLAIN_START and not (first == "-" and len(text) > 1 and text[1] != " ")) \
            or ": " in text or text[-1] == ":" or " #" in text:
        raise _Unread
    tag = _TAGGER.resolve(ScalarNode, text, (True, False))
    if tag == _STR:
        return text
    if tag not in _SCALARS:
        raise _Unread
    key = (tag, text)
    try:
        return _values[key]
    except KeyError:
        value = _TAGGER.yaml_constructors[tag](_TAGGER, ScalarNode(tag, text))
        if len(_values) < _MEMO_MAX:
            _values[key] = value
        return value
