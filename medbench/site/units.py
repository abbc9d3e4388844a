"""One dataset's part of the site, built on its own: a *unit* is one folder name of the registry and the
results (``<dataset>/``) with its files. Loading a unit parses and ranks it; rendering it writes its
board page, its model pages, its downloads and copies of its records, and returns what the rest of
the site needs from it (``summary``), so that an unchanged unit need not be loaded at all.

Within a rendered unit, a model page is rendered again only when its key changed: the key holds
everything the page shows (see ``page_key``) and its rank. A page whose rank alone changed (one
re-evaluated model moves every model between its old and new place) gets the new rank written into
the last build's bytes, which is what rendering it again would give; the pages of the others are kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..data import DATASETS
from ..schema.literature import PublishedResult
from . import export, marks, meta, plots
from .load import UNPARSED, Inputs, add_entry, add_result
from .render import Writer, rank_badge
from .state import InputFile, digest, read_hashed, stat_of
from .table import DatasetBoard, Row, Track, build_board


@dataclass
class Unit:
    name: str  # folder name (a dataset, or a stray folder whose files are only reported)
    registry: list[InputFile] = field(default_factory=list)  # <name>/*.yaml, sorted
    results: list[InputFile] = field(default_factory=list)  # <name>/*.json, sorted
    logs: dict[str, InputFile] = field(default_factory=dict)  # file name -> <name>/<id>.train.jsonl
    literature: list[PublishedResult] = field(default_factory=list)
    key: str = ""  # of the unit's inputs (set by ``seal``)
    code: str = ""  # the build's code key (``seal``)
    hashed: dict[str, list] = field(default_factory=dict)  # after ``load``: state records of the files it hashed
    parsed: dict[str, object] = field(default_factory=dict)  # after ``load``: registry YAML values by sha256
    board: DatasetBoard | None = None  # after ``load``
    summary: dict = field(default_factory=dict)  # after ``load`` (and completed by ``render``)
    record_line: str = ""  # after ``render``: the unit's line of results.json
    csv_part: dict | None = None  # after ``render``: its rows of results.csv (``export.csv_part``)
    cost: int = 0  # an estimate of the work of loading and rendering it (``_scan_unit``), to order the work
    rebuilt: bool = False  # whether an earlier build into the same output built it (its parsed entries are kept)

    @property
    def is_dataset(self) -> bool:
        return self.name in DATASETS

    @property
    def weight(self) -> int:
        return len(self.registry) + 2 * len(self.results)

    def seal(self, code: str) -> None:
        """Set the key of the unit's inputs ("" while some file is not hashed yet: the unit must be loaded)."""
        self.code = code
        files = [(f.name, f.sha256) for f in self.registry + self.results + list(self.logs.values())]
        if any(sha is None for _, sha in files):
            self.key = ""
            return
        self.key = digest(code, self.name, files, [p.model_dump(mode="json") for p in self.literature])

    def load(self, parsed: dict | None = None) -> dict:
        """Parse and rank the unit; returns the part of its summary the build needs before rendering.

        Files the scan left unhashed are hashed here from the bytes parsed (``hashed`` gets their state
        records, and the unit its key). ``parsed`` holds registry files as an earlier build parsed them
        (YAML values by sha256; such a file is not read again, but validated as always); ``self.parsed``
        gets the values of this unit's registry files."""
        inputs = Inputs(literature=self.literature)
        self.hashed = {}
        parsed = parsed or {}
        self.parsed = {}

        def read(f: InputFile) -> tuple[bytes | None, InputFile]:
            if f.sha256 is not None:
                return None, f
            data, record = read_hashed(f.path)
            if record is None:
                return None, InputFile(f.folder, f.name, "")  # the loader reports why it cannot be read
            self.hashed[os.path.abspath(f.folder) + os.sep + f.name] = record
            return data, InputFile(f.folder, f.name, record[2])

        registry, results = [], []
        for f in self.registry:
            raw, f = read(f)
            registry.append(f)
            value = add_entry(f.path, raw, inputs, parsed.get(f.sha256, UNPARSED) if f.sha256 else UNPARSED)
            if f.sha256 and value is not None:
                self.parsed[f.sha256] = value
        n_registry = len(inputs.problems)
        for f in self.results:
            raw, f = read(f)
            results.append(f)
            add_result(f.path, raw, f.sha256 or None, inputs)
        self.registry, self.results = registry, results
        self.logs = {name: read(f)[1] for name, f in self.logs.items()}
        if not self.key:
            self.seal(self.code)
        dates = [lr.result.provenance.started_at[:10] for lr in inputs.results.values()
                 if lr.result.provenance.started_at]
        self.board = build_board(self.name, inputs) if self.is_dataset else None
        self.summary = {"date": max(dates) if dates else None,
                        "problems": [inputs.problems[:n_registry], inputs.problems[n_registry:]]}
        return self.summary

    def page_key(self, context: str, row: Row, track: Track | None) -> str:
        """Everything a model page shows but its rank: the build context, the row's registry entry and
        result files, its training log, its flags, and the track it is ranked in (not its tie group: the
        page does not show it). The page's full key is this key and the rank (``_full_key``)."""
        if not hasattr(self, "_entry_sha"):
            self._entry_sha = {f.stem: f.sha256 for f in self.registry}
        entry = self._entry_sha.get(row.model_id) if row.entry else None
        log = self.logs.get(f"{row.model_id}.train.jsonl") if row.loaded else None
        return digest(context, self.name, row.slug, entry, row.loaded.sha256 if row.loaded else None,
                      [log.name, log.sha256] if log else None,
                      [[f.code, f.label, f.detail] for f in row.flags],
                      [track.size, track.protocol, track.rank_by] if track else None)

    def render(self, env, out: Path, common: dict, context: str, previous: dict) -> dict:
        """Write the unit's files; returns its state (``key``, ``summary``, page ``keys``, ``outputs``).

        ``previous`` is the unit's state from the last build (empty for none): model pages and record
        copies whose key is unchanged and whose file is untouched are kept as they are.
        """
        name, board, spec = self.name, self.board, DATASETS[self.name]
        version = common["version"]
        old_keys, old_out = previous.get("keys", {}), previous.get("outputs", {})
        keys: dict[str, str] = {}
        w = Writer(out)
        kept = moved = 0

        def current(rel: str, key: str) -> bool:
            keys[rel] = key
            if old_keys.get(rel) == key and rel in old_out and stat_of(w.out / rel) == old_out[rel]:
                w.keep(rel, old_out[rel])
                return True
            return False

        scatters = {t.key: plots.track_scatters(t) for t in board.tracks}
        w.text(f"{name}/index.html", env.get_template("dataset.html").render(
            root="../", board=board, spec=spec, scatters=scatters,
            **{**common, "build_date": meta.data_date([self.summary["date"]])}))
        record = export.board_record(board)
        self.record_line = export.record_line(name, record)  # (serialised once: also the unit's line of results.json)
        w.text(f"data/{name}.json", export.join_record_lines([self.record_line], version))
        part = export.csv_part(board)
        w.text(f"data/{name}.csv", export.format_csv([part]))
        tpl = env.get_template("model.html")
        pages = [(t, r) for t in board.tracks for r in t.rows] + [(None, r) for r in board.unevaluated]
        for track, row in pages:
            rel = f"{name}/{row.slug}.html"
            log = self.logs.get(f"{row.model_id}.train.jsonl") if row.loaded else None
            base = self.page_key(context, row, track)
            if current(rel, _full_key(base, row.rank)):
                kept += 1
            elif _rank_moved(w, rel, old_keys.get(rel), old_out.get(rel), base, row.rank):
                moved += 1
            else:
                figures = plots.model_figures(row.result) if row.result else {}
                w.text(rel, tpl.render(root="../", board=board, spec=spec, row=row, track=track, figures=figures,
                                       train_log=log.name if log else None, **common))
            if row.loaded:
                rel = f"results/{name}/{row.loaded.path.name}"
                if not current(rel, row.loaded.sha256):
                    w.copy(rel, row.loaded.path)
                if log is not None:
                    rel = f"results/{name}/{log.name}"
                    if not current(rel, log.sha256):
                        w.copy(rel, log.path)
        top = marks.top_group(board)
        best = board.best
        first = (board.rows + board.unevaluated)[:1]
        self.summary.update(
            n_rows=len(board.rows), has_tracks=bool(board.tracks), pages=1 + len(pages),
            best=best.model_id if best else None, first=first[0].model_id if first else None,
            top=None if top is None else {
                "rank_by": top.track.rank_by, "rows": [[r.slug, r.model_id] for r in top.rows],
                "value": top.value, "low": top.low, "high": top.high, "at_chance": top.at_chance},
            csv_threats=part["threats"])
        self.csv_part = part
        return {"key": self.key, "summary": self.summary, "keys": keys, "outputs": w.outputs, "csv_part": part,
                "kept": kept, "moved": moved}


def _full_key(base: str, rank: int | None) -> str:
    return f"{base}:{rank}"


def _rank_moved(w: Writer, rel: str, old_key: str | None, old_stat: list | None, base: str, rank: int | None) -> bool:
    """Whether the page ``rel`` of the last build differed only in its rank, and was brought up to date by
    replacing the rank in its bytes (what rendering it again gives, for a fraction of the cost: one
    re-evaluated model moves the rank of every model between its old and new place).

    The rank is on a model page only in its ``rank_badge``, which escaped text cannot imitate (``<`` is
    always escaped), so the badge is found exactly once; anything else is rendered again."""
    if not old_key or rank is None:
        return False
    old_base, _, old_rank = old_key.rpartition(":")
    if old_base != base or not old_rank.isdigit() or old_stat is None:
        return False
    path = w.out / rel
    if stat_of(path) != old_stat:  # edited or removed since the last build: render it
        return False
    data = path.read_bytes()
    before = rank_badge(int(old_rank)).encode()
    if data.count(before) != 1:
        return False
    w.bytes(rel, data.replace(before, rank_badge(rank).encode()))
    return True


@dataclass
class HomeRow:
    slug: str
    model_id: str


@dataclass
class HomeTop:
    """A board's rank-1 tie group as the home page shows it (``marks.top_group``, kept between builds)."""

    rank_by: str
    rows: list[HomeRow]
    value: float | None
    low: float | None
    high: float | None
    at_chance: bool


@dataclass
class HomeBoard:
    n_rows: int
    tracks: bool
    top: HomeTop | None


def home_board(summary: dict) -> HomeBoard:
    t = summary["top"]
    top = None if t is None else HomeTop(t["rank_by"], [HomeRow(*r) for r in t["rows"]], t["value"], t["low"],
                                         t["high"], t["at_chance"])
    return HomeBoard(summary["n_rows"], summary["has_tracks"], top)


def kept_record_line(out: Path, name: str, medbench_version: str) -> bytes:
    """The dataset's line of ``results.json`` (UTF-8), from its ``data/<name>.json`` written by an earlier build."""
    return export.record_line_bytes_of((out / "data" / f"{name}.json").read_bytes(), medbench_version)
