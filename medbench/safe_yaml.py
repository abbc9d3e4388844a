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


MAX_DEPTH = 16  # a model entry nests 5 levels; PyYAML's composer recurses and overflows near 1000


class GuardedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that bounds nesting and can refuse aliases (``*name``: they blow up into huge documents)."""

    allow_aliases = True

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if not self.allow_aliases and self.check_event(yaml.AliasEvent):
            raise ComposerError(None, None, "YAML aliases (*name) are not allowed; write every value out in full",
                                self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"values are nested deeper than {MAX_DEPTH} levels",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        # PyYAML keeps the last of repeated keys: a reviewer would read one value while the code uses another.
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise ConstructorError(None, None, "a mapping key is itself a list or mapping",
                                       key_node.start_mark) from None
            if first is not None:
                raise ConstructorError(None, None, f"duplicate key {str(key)[:40]!r} (first given at line {first})",
                                       key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _NoAliasLoader(GuardedLoader):
    allow_aliases = False


def load_yaml_text(text: str, *, where: str, aliases: bool = True) -> Any:
    """Parse one YAML document with :class:`GuardedLoader`; raise :class:`YamlError` naming the line."""
    loader = (GuardedLoader if aliases else _NoAliasLoader)(text)
    try:
        return loader.get_single_data()
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
