"""ModelEntry schema: valid entries parse; malformed ones are rejected with a message naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from medbench.schema import EntryError, ModelEntry, parse_entry, read_entry
from medbench.schema.export import DEFAULT_PATH, render
from medbench.schema.export import main as export_main

REPO = Path(__file__).resolve().parents[1]
SHA = "ab" * 32
REV = "0123456789abcdef0123456789abcdef01234567"


def good() -> dict:
    return {
        "id": "Baseline_ResNet18_TRADES", "dataset": "pneumoniamnist", "size": 28, "task": "binary-class",
        "architecture": "resnet18", "architecture_kwargs": {},
        "preprocessing": {"mean": [0.5], "std": [0.5]},
        "recipe": {"method": "trades", "epochs": 30, "optimizer": "sgd", "lr": 0.1, "batch_size": 128,
                   "seed": 1, "eps": 2 / 255, "steps": 5, "norm": "Linf", "hyperparameters": {"beta": 6.0}},
        "license": "CC-BY-4.0", "date_added": "2026-11-22",
        "weights": {"sha256": SHA, "size_bytes": 1000, "num_parameters": 11_000_000, "sources": [
            {"kind": "hub", "repo_id": "medbench/zoo", "filename": "pneumonia/trades.safetensors", "revision": REV},
            {"kind": "mirror", "url": "https://example.org/w/trades.safetensors"},
            {"kind": "bundled", "filename": "trades.safetensors"},
        ]},
        "reported": {"source": "paper, Table 2", "clean_accuracy": 0.9, "robust_accuracy": 0.7,
                     "eps": 2 / 255, "norm": "Linf"},
    }


def paper_entry() -> dict:
    e = good()
    e["id"] = "Smith2026Trades"
    e["paper"] = {"title": "Robust pneumonia", "url": "https://arxiv.org/abs/2601.00001",
                  "authors": ["A. Smith", "B. Jones"], "venue": "MICCAI", "year": 2026}
    return e


def rejected(entry: dict) -> str:
    with pytest.raises(EntryError) as info:
        parse_entry(entry, "bad.yaml")
    return str(info.value)


def test_valid_entries_parse():
    e = parse_entry(good())
    assert e.weights.sources[0].kind == "hub" and e.weights.sources[0].revision == REV
    assert e.recipe.hyperparameters == {"beta": 6.0}
    assert e.is_baseline and e.paper is None
    assert parse_entry(paper_entry()).paper.year == 2026


def test_round_trip_through_yaml(tmp_path):
    e = parse_entry(paper_entry())
    path = tmp_path / "Smith2026Trades.yaml"
    path.write_text(yaml.safe_dump(e.model_dump(mode="json")), encoding="utf-8")
    assert read_entry(path) == e


def _set(entry: dict, dotted: str, value) -> dict:
    entry = copy.deepcopy(entry)
    *parents, last = dotted.split(".")
    node = entry
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return entry


_DELETE = object()

MALFORMED = [
    # (what, dotted path, new value, text the message must contain)
    ("missing id", "id", _DELETE, "field 'id': required field is missing"),
    ("missing weights", "weights", _DELETE, "field 'weights': required field is missing"),
    ("missing sha256", "weights.sha256", _DELETE, "field 'weights.sha256': required field is missing"),
    ("missing recipe method", "recipe.method", _DELETE, "field 'recipe.method'"),
    ("epochs not an int", "recipe.epochs", "many", "field 'recipe.epochs'"),
    ("lr not a number", "recipe.lr", [0.1], "field 'recipe.lr'"),
    ("extra_data not a bool", "recipe.extra_data", "perhaps", "field 'recipe.extra_data'"),
    ("size_bytes negative", "weights.size_bytes", -3, "field 'weights.size_bytes'"),
    ("mean not a list", "preprocessing.mean", "half", "field 'preprocessing.mean'"),
    ("std zero", "preprocessing.std", [0.0], "field 'preprocessing.std'"),
    ("short sha256", "weights.sha256", "abc123", "field 'weights.sha256'"),
    ("branch as revision", "weights.sources.0.revision", "main", "field 'weights.sources.0.hub.revision'"),
    ("short revision", "weights.sources.0.revision", REV[:7], "40-character"),
    ("upper-case revision", "weights.sources.0.revision", REV.upper(), "field 'weights.sources.0.hub.revision'"),
    ("bad repo id", "weights.sources.0.repo_id", "no-slash", "field 'weights.sources.0.hub.repo_id'"),
    ("http mirror", "weights.sources.1.url", "http://example.org/w.safetensors", "https"),
    ("relative mirror url", "weights.sources.1.url", "w.safetensors", "field 'weights.sources.1.mirror.url'"),
    ("bundled traversal", "weights.sources.2.filename", "../../etc/passwd", "field 'weights.sources.2.bundled.filename'"),
    ("bundled absolute", "weights.sources.2.filename", "/tmp/w.safetensors", "field 'weights.sources.2.bundled.filename'"),
    ("unknown source kind", "weights.sources.1.kind", "gdrive", "field 'weights.sources.1'"),
    ("no sources", "weights.sources", [], "field 'weights.sources'"),
    ("pickle format", "weights.format", "pt", "field 'weights.format'"),
    ("lower-case id", "id", "resnet18_trades", "field 'id'"),
    ("id without year", "id", "SmithTrades", "field 'id'"),
    ("baseline id without recipe", "id", "Baseline_ResNet18", "field 'id'"),
    ("unknown method", "recipe.method", "magic", "field 'recipe.method'"),
    ("unknown dataset", "dataset", "cifar10", "field 'dataset'"),
    ("unknown top-level field", "accuracy", 0.99, "field 'accuracy': unknown field"),
    ("unknown nested field", "recipe.momentum_typo", 0.9, "field 'recipe.momentum_typo': unknown field"),
    ("unknown source field", "weights.sources.0.branch", "main", "field 'weights.sources.0.hub.branch'"),
    ("reported out of range", "reported.clean_accuracy", 93.0, "field 'reported.clean_accuracy'"),
    ("bad date", "date_added", "yesterday", "field 'date_added'"),
]


@pytest.mark.parametrize("what,path,value,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_entry_names_the_field(what, path, value, expected):
    assert expected in rejected(_set(good(), path, value))


@pytest.mark.parametrize("path,value,expected", [
    ("task", "multi-class", "task 'multi-class' does not match pneumoniamnist's task 'binary-class'"),
    ("size", 32, "size 32 is not available"),
    ("preprocessing.mean", [0.5, 0.5, 0.5], "preprocessing.mean has 3 values"),
    ("recipe.eps", None, "recipe.eps"),  # adversarial training needs its radius
])
def test_inconsistent_entry_is_rejected(path, value, expected):
    assert expected in rejected(_set(good(), path, value))


def test_paper_required_unless_baseline():
    e = paper_entry()
    del e["paper"]
    assert "paper is required" in rejected(e)
    e = paper_entry()
    del e["paper"]["year"]
    assert "field 'paper.year': required field is missing" in rejected(e)


def test_http_mirror_allowed_only_on_loopback():
    for url in ("http://127.0.0.1:8000/w.safetensors", "http://localhost/w", "http://[::1]:9/w"):
        assert parse_entry(_set(good(), "weights.sources.1.url", url)).weights.sources[1].url == url
    assert "https" in rejected(_set(good(), "weights.sources.1.url", "http://10.0.0.1/w"))


def test_several_problems_are_all_reported():
    e = _set(_set(good(), "id", "x"), "recipe.epochs", 0)
    msg = rejected(e)
    assert "field 'id'" in msg and "field 'recipe.epochs'" in msg


def test_non_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(EntryError, match="must be a YAML mapping"):
        parse_entry(["id"], "x.yaml")
    bad = tmp_path / "Bad.yaml"
    bad.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(EntryError, match="not valid YAML"):
        read_entry(bad)


def test_json_schema_in_repository_is_current():
    assert DEFAULT_PATH == REPO / "schemas" / "model_entry.schema.json"
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render(), \
        "schemas/model_entry.schema.json drifted from ModelEntry: run `python -m medbench.schema.export`"


def test_json_schema_check_command(tmp_path):
    stale = tmp_path / "schema.json"
    stale.write_text("{}", encoding="utf-8")
    args = ["--out", str(stale)]  # the same entry point as `python -m medbench.schema.export`
    assert export_main(args + ["--check"]) == 1
    assert export_main(args) == 0
    assert export_main(args + ["--check"]) == 0
    schema = json.loads(stale.read_text())
    assert schema["additionalProperties"] is False
    assert {"id", "dataset", "weights", "recipe"} <= set(schema["required"])
    assert ModelEntry.model_json_schema()["properties"]["id"]["pattern"]


def test_documented_example_entry_is_valid():
    import textwrap

    import medbench.schema.entry as module

    block = module.__doc__.split("::\n", 1)[1]
    example = textwrap.dedent(block).replace("<64 hex digits>", SHA).replace("<40-hex commit>", REV)
    entry = parse_entry(yaml.safe_load(example), "docstring example")
    assert [s.kind for s in entry.weights.sources] == ["hub", "mirror", "bundled"]
