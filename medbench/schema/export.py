"""Export the JSON Schema of ``ModelEntry`` to ``schemas/model_entry.schema.json``.

Regenerate after changing the schema: ``python -m medbench.schema.export`` (``--check`` only compares).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..paths import PACKAGE, source_checkout
from .entry import ModelEntry

SCHEMA_ID = "https://medbench.invalid/schemas/model_entry.schema.json"
DEFAULT_PATH = PACKAGE.parent / "schemas" / "model_entry.schema.json"  # (in the source checkout)


def entry_json_schema() -> dict:
    schema = ModelEntry.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render() -> str:
    return json.dumps(entry_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from the schema")
    args = ap.parse_args(argv)
    if args.out == DEFAULT_PATH and source_checkout() is None:
        ap.error("not running from a source checkout: pass --out FILE")
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run `python -m medbench.schema.export`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
