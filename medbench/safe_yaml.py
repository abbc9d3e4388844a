"""Reading YAML that others wrote: safe tags only, optionally no aliases, errors that never quote the file.

>>> data = load_yaml_text(text, where="submissions/Smith2026Trades.yaml", aliases=False)
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from .errors import MedbenchError


class YamlError(MedbenchError, ValueError):
    """A YAML text that cannot be read; the message names the line, never the line's content."""


MAX_DEPTH = 16  # a model entry nests 5 levels

# libyaml parses and composes in C (~10x PyYAML's pure-Python loader); the guard walks the composed nodes
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _guard(root: yaml.Node, aliases: bool) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH``, aliases (unless allowed) and repeated mapping keys.

    An alias (``*name``) is a node met twice in the walk; each node is walked once, so a document of
    nested aliases ("billion laughs") costs its size, not its expansion."""
    seen: set[int] = set()
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            if not aliases:
                raise ComposerError(None, None, "YAML aliases (*name) are not allowed, and an alias repeats "
                                    "this value: write every value out in full", node.start_mark)
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            raise ComposerError(None, None, f"values are nested deeper than {MAX_DEPTH} levels", node.start_mark)
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            # PyYAML keeps the last of repeated keys: a reviewer would read one value while the code uses another
            first: dict = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise ConstructorError(None, None, "a mapping key is itself a list or mapping", key.start_mark)
                if (key.tag, key.value) in first:
                    raise ConstructorError(None, None, f"duplicate key {key.value[:40]!r} (first given at line "
                                           f"{first[key.tag, key.value]})", key.start_mark)
                first[key.tag, key.value] = key.start_mark.line + 1
                stack.append((value, depth + 1))


def load_yaml_text(text: str, *, where: str, aliases: bool = True) -> Any:
    """Parse one YAML document safely (libyaml's ``CSafeLoader``, then ``_guard``: depth, aliases, duplicate
    keys); raise :class:`YamlError` naming the line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _guard(node, aliases)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise YamlError(f"{where}: {describe_yaml_error(exc)}") from None
    finally:
        loader.dispose()


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without PyYAML's snippet of the offending line."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        text = f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark else what
        if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            text += f" ({exc.context} from line {exc.context_mark.line + 1})"
        return text
    return type(exc).__name__
