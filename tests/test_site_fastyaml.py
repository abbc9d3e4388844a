"""The site's quick YAML constructor gives exactly what ``yaml.load(text, Loader=yaml.SafeLoader)`` gives."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from medbench.site import fastyaml
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


def _fast(text: str):
    try:
        return "ok", fastyaml.load(text)
    except yaml.YAMLError as exc:
        return "error", type(exc)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_documents_load_as_safeloader_loads_them(text):
    want, got = _reference(text), _fast(text)
    assert want[0] == got[0], (text, want, got)
    assert _same(want[1], got[1]) if want[0] == "ok" else want[1] == got[1], (text, want, got)


def test_every_registry_file_loads_as_safeloader_loads_it(tmp_path):
    files = sorted((REPO / "model_zoo").glob("*/*.yaml"))
    write_synthetic(tmp_path / "reg", tmp_path / "res", ["dermamnist"], 30, clean_n=5, hostile=True)
    files += sorted((tmp_path / "reg").glob("*/*.yaml"))
    assert len(files) > 30
    for path in files:
        text = path.read_text(encoding="utf-8")
        want, got = _reference(text), _fast(text)
        assert want[0] == got[0] == "ok" and _same(want[1], got[1]), path


def test_remembered_tags_and_values_never_change_a_result():
    """The loader remembers each scalar's tag and value: after every document was loaded (in both orders),
    each still loads exactly as SafeLoader loads it, quoted and plain spellings of one text included."""
    for text in TRICKY + TRICKY[::-1]:
        want, got = _reference(text), _fast(text)
        assert want[0] == got[0] and (_same(want[1], got[1]) if want[0] == "ok" else want[1] == got[1]), text
    mixed = fastyaml.load(TRICKY[-1])["same text, other tags"]
    assert [type(v) for v in mixed] == [str, int, str, bool, str, str, type(mixed[6]), str, float]


# --- the line-by-line reader of safe_dump's block style (fastyaml._block) ---------------------------------

KEYS = ["id", "dataset", "lr", "k_2", "yes", "No", "null", "on", "y", "true", "A", "_x", "a b", "k-ey", "1", "~"]
SCALARS = ["text", "0.001", "1e-3", "-0.5", "+1", "-1", "0x1F", "0o17", "017", "1_000", "1:30", "190:20:30.15", ".inf",
           "-.Inf", ".nan", "~", "null", "Null", "yes", "No", "on", "OFF", "true", "False", "2026-11-22",
           "2001-12-14t21:59:43.10-05:00", "'2026-11-22'", "'it''s'", "''", "'a'b'", "'unterminated", '"plain"',
           '"esc\\n"', '"q"q"', "a:b", "https://example.org/x?y=1", "a: b", "a #b", "a#b", "ends:", "- x", "-x",
           "[1, 2]", "{a: 1}", "*alias", "&anchor x", "!!str 1", "!tag x", "|", ">", "%x", "@x", "`x", "?x", ":x",
           "(x)", "/path", "0.5,0.75", "x0.1 at 50% and 75%", "Ünïcödé", "a\u2028b", "a\tb", "a ", "12e3", "1.",
           "=", "<<", ".5", "-", "- ", "x: ", "'a' b", "\"a\" b"]


def _random_document(rng) -> str:
    """A block-style document of random keys, scalars and nesting, now and then broken in one place."""
    lines: list[str] = []

    def mapping(indent: int, depth: int, first_prefix: str | None = None) -> None:
        for k in range(rng.integers(1, 4)):
            key = KEYS[rng.integers(len(KEYS))] if rng.random() < 0.3 else KEYS[rng.integers(4)]
            pad = first_prefix if (k == 0 and first_prefix is not None) else " " * indent
            r = rng.random()
            if depth < 3 and r < 0.25:
                lines.append(f"{pad}{key}:")
                mapping(indent + 2, depth + 1)
            elif depth < 3 and r < 0.45:
                lines.append(f"{pad}{key}:")
                sequence(indent + (2 if rng.random() < 0.5 else 0), depth + 1)
            elif r < 0.5:
                lines.append(f"{pad}{key}:")
            else:
                lines.append(f"{pad}{key}: {SCALARS[rng.integers(len(SCALARS))]}")

    def sequence(indent: int, depth: int) -> None:
        for _ in range(rng.integers(1, 4)):
            if depth < 3 and rng.random() < 0.3:
                mapping(indent + 2, depth + 1, first_prefix=" " * indent + "- ")
            else:
                lines.append(" " * indent + "- " + SCALARS[rng.integers(len(SCALARS))])

    mapping(0, 0) if rng.random() < 0.85 else sequence(0, 0)
    r = rng.random()
    if r < 0.4 and lines:  # one fault: an indentation off by one, a tab, a comment, a blank line, a marker...
        i = int(rng.integers(len(lines)))
        fault = rng.integers(8)
        lines[i] = [" " + lines[i], lines[i] + " ", lines[i].replace(" ", "\t", 1), lines[i] + " # note",
                    "", "---", lines[i][1:] if lines[i].startswith(" ") else "  " + lines[i], "  continued"][fault] \
            if fault != 7 else lines[i] + "\n  continued text"
    return "\n".join(lines) + ("\n" if rng.random() < 0.8 else "")


def test_block_style_documents_are_read_as_safeloader_reads_them_or_left_to_it():
    """Random block-style documents (tricky scalars and keys, nesting, compact and indented sequences, one
    fault now and then): whatever the line reader reads is exactly SafeLoader's value, types included; what
    SafeLoader refuses it never reads; and most well-formed documents are read by it (the fast path is used)."""
    import numpy as np

    rng = np.random.default_rng(7)
    read = well_formed = 0
    for _ in range(4000):
        text = _random_document(rng)
        want = _reference(text)
        got = fastyaml._block(text)
        if want[0] == "ok":
            well_formed += 1
        if got is fastyaml._NOT_BLOCK:
            continue
        read += 1
        assert want[0] == "ok", (text, want)
        assert _same(want[1], got), (text, want[1], got)
        assert _same(fastyaml.load(text), want[1])
    assert read > 0.2 * well_formed, (read, well_formed)


def test_safe_dumped_registry_entries_are_read_line_by_line():
    """What ``yaml.safe_dump`` writes for an entry (the zoo's and the synthetic registry's shape) takes the
    fast path, and reads back as SafeLoader reads it."""
    entry = {"id": "M1", "dataset": "breastmnist", "size": 28, "preprocessing": {"mean": [0.5], "std": [0.25]},
             "recipe": {"method": "erm", "lr": 0.001, "extra_data": False, "hyperparameters": {"momentum": "yes"}},
             "date_added": "2026-11-22", "description": "It's a model: see `medbench`.", "paper": None,
             "weights": {"sha256": "ab" * 32, "sources": [{"kind": "bundled", "filename": "M1.safetensors"},
                                                           {"kind": "hf", "repo": "org/m", "revision": "0" * 40}]},
             "tags": ["a", "yes", "1.5"]}
    text = yaml.safe_dump(entry, sort_keys=False)
    got = fastyaml._block(text)
    assert got is not fastyaml._NOT_BLOCK and _same(got, yaml.load(text, Loader=yaml.SafeLoader)) and got == entry
