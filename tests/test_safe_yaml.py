"""``safe_yaml``, the one YAML reader (zoo, submissions, site, literature, protocol): libyaml's CSafeLoader
with a guard. Every document loads exactly as PyYAML's ``SafeLoader`` loads it, except what the guard refuses
(repeated keys, deep nesting, aliases where they are not allowed), which is refused with the line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from medbench.safe_yaml import YamlError, load_yaml_text
from site_synthetic import write_synthetic

REPO = Path(__file__).resolve().parents[1]

TRICKY = [
    "",
    "# only a comment\n",
    "null\n",
    "a: 1\nb: [1, 2, {c: d}]\n",
    "flags: [yes, no, on, off, true, False, ~, null, Null]\n",
    "n: [0o17, 0x1F, 1_000, -0, +12, 1:30, 0b101, 017]\n",
    "f: [1.5, .inf, -.Inf, .nan, 1e3, 6.02e+23, 1_0.5, 190:20:30.15]\n",
    "d: 2026-11-22\nt: 2001-12-14t21:59:43.10-05:00\n",
    "s: ['1', \"2\", !!str 3, !!int '4', !!float '5', |\n  block\n  text\n, >\n  folded\n]\n",
    "b: !!binary aGVsbG8=\n",
    "dup: 1\ndup: 2\n",
    "base: &b {x: 1, y: 2}\nderived: {<<: *b, y: 3}\n",
    "a: &a [1, 2]\nb: *a\n",
    "s: &s text\nt: *s\n",
    "set: !!set {a, b}\n",
    "omap: !!omap [a: 1, b: 2]\n",
    "pairs: !!pairs [a: 1, a: 2]\n",
    "? [1, 2]\n: unhashable key\n",
    "? {a: 1}\n: unhashable key\n",
    "x: !!python/object:os.system echo\n",
    "x: !custom 1\n",
    "a: 1\n---\nb: 2\n",
    "a: &r [*r]\n",
    "- deeply: [[[[[[[[[[1]]]]]]]]]]\n",
    "key with spaces: value: with colon\n",
    "a: 'unterminated\n",
    "\ufeffbom: 1\n",
    "nested:\n  - {a: [1, {b: null}]}\n  - !!map {c: !!seq [1]}\n",
    "same text, other tags: ['12', 12, \"yes\", yes, !!str 12, '2026-11-22', 2026-11-22, '.nan', .nan]\n",
]


def _same(a, b, seen: set | None = None) -> bool:
    """Equal values and types, nan equal to nan, self-references (an alias inside itself) followed once."""
    seen = set() if seen is None else seen
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, (dict, list, tuple)):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k], seen) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, seen) for x, y in zip(a, b))
    if isinstance(a, set):
        return a == b
    return a == b


def _reference(text: str):
    try:
        return "ok", yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return "error", type(exc)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_documents_load_as_safeloader_loads_them_or_are_refused_by_the_guard(text):
    want = _reference(text)
    if text.startswith("dup:"):
        with pytest.raises(YamlError, match=r"t.yaml: duplicate key 'dup' \(first given at line 1\) at line 2"):
            load_yaml_text(text, where="t.yaml")
    elif want[0] == "error":
        with pytest.raises(YamlError, match=r"^t.yaml: .* line \d+"):
            load_yaml_text(text, where="t.yaml")
    else:
        assert _same(want[1], load_yaml_text(text, where="t.yaml"))


def test_every_registry_file_loads_as_safeloader_loads_it(tmp_path):
    files = sorted((REPO / "model_zoo").glob("*/*.yaml"))
    write_synthetic(tmp_path / "reg", tmp_path / "res", ["dermamnist"], 30, clean_n=5, hostile=True)
    files += sorted((tmp_path / "reg").glob("*/*.yaml"))
    assert len(files) > 30
    for path in files:
        text = path.read_text(encoding="utf-8")
        want = _reference(text)
        assert want[0] == "ok" and _same(want[1], load_yaml_text(text, where=path.name, aliases=False)), path


@pytest.mark.parametrize("text, message", [
    ("x: " + "[" * 17 + "]" * 17, "nested deeper than 16 levels at line 1"),
    ("x: " + "[" * 3000 + "]" * 3000, "exceeded maximum nesting depth"),  # (libyaml's own limit, before the guard)
    ("a: &a [1, 2]\nb: *a\n", "aliases (*name) are not allowed"),
    ("a: &r [*r]\n", "aliases (*name) are not allowed"),
    ("? [1, 2]\n: x\n", "a mapping key is itself a list or mapping at line 1"),
])
def test_the_guard_refuses_with_the_line_never_the_content(text, message):
    with pytest.raises(YamlError) as err:
        load_yaml_text(text, where="sub.yaml", aliases=False)
    assert message in str(err.value) and str(err.value).startswith("sub.yaml: ")


def test_nested_aliases_cost_their_size_not_their_expansion():
    """A "billion laughs" document: each node is walked once, and the constructed value shares its lists."""
    text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    value = load_yaml_text(text, where="laughs.yaml")
    assert value["a8"][0] is value["a7"]
