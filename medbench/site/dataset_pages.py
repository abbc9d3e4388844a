"""One dataset's part of the site: its board, model pages, downloads and record copies.

``build_dataset`` is a pure function of its task (the dataset's input files, by content hash, and the
build context); it runs in a worker process when the build has several. Every model page has a key
(``page_key``): a page whose key and file are unchanged since the last build is kept as it is.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..data import DATASETS
from ..schema.literature import PublishedResult
from . import export, marks, meta, plots
from .explanations import load_explanations
from .load import Inputs, add_attack_record, add_entry, add_result
from .render import Writer, environment
from .table import Row, Track, build_board


class InputFile(NamedTuple):
    path: str
    sha256: str | None  # None: not hashed yet (new or changed since the last build)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def digest(*parts) -> str:
    """A build key: sha256 (128 bits of it) of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class DatasetTask:
    name: str  # a folder of the registry or the results: a dataset, or a stray folder (only its problems)
    out: Path
    registry: list[InputFile]  # <name>/*.yaml, sorted
    results: list[InputFile]  # <name>/*.json, sorted
    logs: list[InputFile]  # <name>/*.train.jsonl, sorted
    attacks: list[InputFile]  # verified attack records, <leaderboard>/attacks/<name>/*.json, sorted
    literature: list[PublishedResult]
    context: str  # key of everything besides the inputs that decides the pages (code, templates, versions)
    common: dict  # what every page shows besides its own data
    studies: Path  # the studies folder (the explanation-stability results shown on boards and model pages)
    cache: Path  # the build cache folder (``build.CACHE``): YAML values of registry files by sha256
    previous: dict[str, list] = field(default_factory=dict)  # the last build's records of this dataset's files

    @property
    def weight(self) -> int:
        return len(self.registry) + 2 * len(self.results)

    def key(self) -> str | None:
        """The key of the dataset's inputs (None while a file is not hashed: it must be loaded)."""
        files = [(os.path.basename(f.path), f.sha256) for f in self.registry + self.results + self.logs]
        files += [("attacks/" + os.path.basename(f.path), f.sha256) for f in self.attacks]
        if any(sha is None for _, sha in files):
            return None
        return digest(self.context, self.name, files, [p.model_dump(mode="json") for p in self.literature])


def _read(f: InputFile, hashes: dict) -> tuple[bytes | None, str | None]:
    """The file's bytes and sha256 (recorded in ``hashes`` with the stat taken before reading)."""
    try:
        st = os.stat(f.path)
        raw = Path(f.path).read_bytes()
    except OSError:
        return None, None
    sha = hashlib.sha256(raw).hexdigest()
    hashes[os.path.abspath(f.path)] = [st.st_size, st.st_mtime_ns, sha]
    return raw, sha


@contextmanager
def _collector_paused():
    """A dataset's registry and results load as ~a million small objects without reference cycles: the cyclic
    collector, re-scanning them at every threshold, made loading 1,000 results ~2.5x slower (1.1 s, 0.45 s
    without it), so it pauses while they are made (reference counting frees them as always)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_json(path: Path) -> dict:
    """A JSON object written by ``write_json`` ({} when it is missing or damaged: the cache costs work, never
    correctness)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(value, separators=(",", ":")), encoding="utf-8")
    os.replace(path.with_suffix(".tmp"), path)


def _json_exact(value) -> bool:
    """Whether JSON gives ``value`` back exactly (a YAML date, for one, does not: such a file is parsed again)."""
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def page_key(task: DatasetTask, row: Row, track: Track | None, shas: dict[str, str]) -> str:
    """Everything a model page shows: the context, its registry entry, result and training log (by content
    hash), its flags, the track it is ranked in and its rank."""
    log = f"{row.model_id}.train.jsonl"
    return digest(task.context, task.name, row.slug, shas.get(f"{row.model_id}.yaml") if row.entry else None,
                  sorted(r.file_sha256 + r.verified_at for r in row.records),
                  row.loaded.sha256 if row.loaded else None, [log, shas.get(log)] if row.loaded else None,
                  [[f.code, f.label, f.detail] for f in row.flags],
                  [track.size, track.protocol, track.rank_by] if track else None, row.rank)


def build_dataset(task: DatasetTask) -> dict:
    """Load, rank and render one dataset; returns its ``key``, the ``hashes`` of the files it read, its
    ``summary`` (for the home page and the report), its ``line`` of results.json and ``csv`` rows, and the
    ``records`` of the files written or kept."""
    hashes: dict[str, list] = {}
    inputs = Inputs(literature=task.literature)
    shas = {}  # file name -> sha256

    def read(files):
        for f in files:
            raw, sha = (None, f.sha256) if f.sha256 else _read(f, hashes)
            shas[f.name] = sha or ""  # ("": unreadable, reported by the loader)
            yield Path(f.path), raw, sha

    entries = task.cache / "entries" / f"{task.name}.json"
    known = read_json(entries) if task.previous else {}  # (a first or full build parses every file)
    values = {}
    with _collector_paused():
        for path, raw, sha in read(task.registry):
            values[sha] = add_entry(path, raw, inputs, known.get(sha))
        n_registry = len(inputs.problems)
        for path, raw, sha in read(task.results):
            add_result(path, raw, sha, inputs)
    list(read(task.logs))
    for path, raw, _ in read(task.attacks):
        add_attack_record(path, raw, inputs)
    values = {sha: v for sha, v in values.items() if sha and v is not None and _json_exact(v)}
    if values != known:
        write_json(entries, values)
    task.registry, task.results, task.logs, task.attacks = ([InputFile(f.path, shas[f.name]) for f in files] for files
                                                            in (task.registry, task.results, task.logs, task.attacks))
    dates = [lr.result.provenance.started_at[:10] for lr in inputs.results.values() if lr.result.provenance.started_at]
    board = build_board(task.name, inputs) if task.name in DATASETS else None  # (adds the records' problems)
    summary = {"date": max(dates) if dates else None,
               "problems": [inputs.problems[:n_registry], inputs.problems[n_registry:]]}
    done = {"name": task.name, "key": task.key(), "hashes": hashes, "summary": summary, "line": None, "csv": None,
            "records": {}}
    if board is None:  # a stray folder: only its problems
        return done

    name, spec, common = task.name, DATASETS[task.name], task.common
    env = environment()
    explanations = load_explanations(task.studies)
    w = Writer(task.out, task.previous)
    w.write(f"{name}/index.html", env.get_template("dataset.html").render(
        root="../", board=board, spec=spec, explanations=explanations,
        scatters={t.key: plots.track_scatters(t) for t in board.tracks},
        **{**common, "build_date": meta.data_date([summary["date"]])}))
    line = export.record_line(name, export.board_record(board))
    w.write(f"data/{name}.json", export.join_record_lines([line], common["version"]))
    part = export.csv_part(board)
    w.write(f"data/{name}.csv", export.format_csv([part]))
    model = env.get_template("model.html")
    pages = [(t, r) for t in board.tracks for r in t.rows] + [(None, r) for r in board.unevaluated]
    kept = 0
    for track, row in pages:
        rel, key = f"{name}/{row.slug}.html", page_key(task, row, track, shas)
        log = f"{row.model_id}.train.jsonl" if row.loaded and f"{row.model_id}.train.jsonl" in shas else None
        if w.fresh(rel, key):
            kept += 1
        else:
            w.write(rel, model.render(root="../", board=board, spec=spec, row=row, track=track, train_log=log,
                                      explanations=explanations,
                                      figures=plots.model_figures(row.result) if row.result else {}, **common), key)
        for file, sha in ([(row.loaded.path, row.loaded.sha256)] if row.loaded else []) + \
                ([(Path(row.loaded.path.parent, log), shas[log])] if log else []):
            if not w.fresh(f"results/{name}/{file.name}", sha):
                w.publish(f"results/{name}/{file.name}", file, sha)
    top, first = marks.top_group(board), (board.rows + board.unevaluated)[:1]
    summary.update(
        n_rows=len(board.rows), tracks=bool(board.tracks), pages=1 + len(pages), kept=kept, csv_threats=part["threats"],
        best=board.best.model_id if board.best else None, first=first[0].model_id if first else None,
        top=None if top is None else {
            "rank_by": top.track.rank_by, "rows": [{"slug": r.slug, "model_id": r.model_id} for r in top.rows],
            "value": top.value, "low": top.low, "high": top.high, "chance": top.chance})
    done.update(line=line, csv=part, records=w.records)
    return done
