"""What the site says about its numbers: "at chance" and "below chance" marks, the home page's rank-1 tie groups, BE/rBE
only where defined, one spelling of threats, the protocol pages read from the protocol files, the
published training logs, CSV cells that no spreadsheet runs, and heatmap text that stays readable."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from medbench.protocol import load_protocol
from medbench.site import build_site
from medbench.site.export import csv_cell
from medbench.site.marks import chance_level, chance_status, corruption_errors, threat_label


def at_chance(*args):
    return chance_status(*args) == "at"


def below_chance(*args):
    return chance_status(*args) == "below"
from medbench.site.protocol_page import versions
from medbench.svg import _VIRIDIS, colour, heatmap
from site_synthetic import write_synthetic

REPO = Path(__file__).resolve().parents[1]


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _text(page: Path) -> str:
    """The visible text of a page (tags and attributes removed, code spans dropped)."""
    raw = re.sub(r"<code>.*?</code>", " ", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def _set_robust(d: dict, value: float, low: float, high: float) -> None:
    for adv in d["adversarial"].values():
        adv["robust_balanced_accuracy"] = value
        adv["robust_balanced_accuracy_ci"] = {"low": low, "high": high}


def test_chance_level_per_task():
    assert chance_level("breastmnist") == 0.5  # binary
    assert chance_level("chestmnist") == 0.5  # multi-label: BA per label
    assert chance_level("dermamnist") == pytest.approx(1 / 7)  # multi-class
    assert at_chance(0.55, 0.49, 0.61, 0.5) and not at_chance(0.55, 0.51, 0.61, 0.5)
    assert below_chance(0.40, 0.35, 0.45, 0.5) and not at_chance(0.40, 0.35, 0.45, 0.5)  # worse than constant
    assert not below_chance(0.55, 0.49, 0.61, 0.5) and not below_chance(0.45, 0.40, 0.50, 0.5)  # contains chance
    assert at_chance(0.5, None, None, 0.5) and not at_chance(None, None, None, 0.5)


def test_below_chance_and_at_chance_are_told_apart(tmp_path):
    """Issue 26: 1.8% [0.4, 3.7] was marked "at chance" under a legend saying "the interval reaches chance"."""
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    below, at, *rest = write_synthetic(reg, res, ["breastmnist"], 4)
    _edit(res / "breastmnist" / f"{below}.json", lambda d: _set_robust(d, 0.018, 0.004, 0.037))
    _edit(res / "breastmnist" / f"{at}.json", lambda d: _set_robust(d, 0.52, 0.47, 0.57))
    for mid in rest:
        _edit(res / "breastmnist" / f"{mid}.json", lambda d: _set_robust(d, 0.75, 0.70, 0.80))
    build_site(out, reg, res)
    board = (out / "breastmnist" / "index.html").read_text()
    rows = {mid: re.search(rf'<tr[^>]*>(?:(?!</tr>).)*href="{mid}\.html".*?</tr>', board, re.S).group(0)
            for mid in (below, at, *rest)}
    robust = {mid: row.split("</td>", 3)[-1] for mid, row in rows.items()}  # the cells after the clean BA
    assert "below chance" in robust[below] and "at chance" not in robust[below]
    assert "at chance" in robust[at] and "below chance" not in robust[at]
    assert all("chance" not in robust[mid] for mid in rest)
    for page in (out / "breastmnist" / "index.html", out / "breastmnist" / f"{below}.html"):
        text = re.sub(r" ([:;,.])", r"\1", " ".join(_text(page).split()))
        assert "at chance: the 95% interval contains chance (50.0%)" in text, page
        assert "below chance: the whole interval lies below chance, worse than a constant classifier" in text, page
        assert "reaches chance" not in text
    tiles = (out / "breastmnist" / f"{below}.html").read_text().split('class="tiles"')[-1].split("</section>")[0]
    assert "below chance" in tiles and "at chance</span>" not in tiles.split("Robust BA", 1)[1].split("</div>")[0]
    entries = {e["model_id"]: e for e in json.loads((out / "data" / "breastmnist.json").read_text())
               ["datasets"]["breastmnist"]["tracks"][0]["entries"]}
    assert entries[below]["below_chance"]["Linf-2/255"] and not entries[below]["at_chance"]["Linf-2/255"]
    assert entries[at]["at_chance"]["Linf-2/255"] and not entries[at]["below_chance"]["Linf-2/255"]


def test_at_chance_entries_are_marked_and_never_plain_best(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist"], 4)
    for mid in ids:  # every entry's robust BA interval includes chance (0.5): the whole board is at chance
        _edit(res / "breastmnist" / f"{mid}.json", lambda d: _set_robust(d, 0.52, 0.47, 0.57))
    build_site(out, reg, res)
    home = (out / "index.html").read_text()
    row = re.search(r'<a href="breastmnist/index.html">.*?</tr>', home, re.S).group(0)
    assert "at chance" in row  # the rank-1 group is named with the mark
    doc = json.loads((out / "data" / "breastmnist.json").read_text())
    first = [e["model_id"] for e in doc["datasets"]["breastmnist"]["tracks"][0]["entries"] if e["rank"] == 1]
    assert sorted(re.findall(r'href="breastmnist/([^"]+)\.html"', row.split("</th>", 1)[1])) == sorted(first)
    board = (out / "breastmnist" / "index.html").read_text()
    body = board.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("at chance") >= 4  # every at-chance robust number is marked
    api = json.loads((out / "data" / "breastmnist.json").read_text())["datasets"]["breastmnist"]
    assert api["chance_balanced_accuracy"] == 0.5
    assert all(e["at_chance"]["Linf-2/255"] for e in api["tracks"][0]["entries"])
    ranked = [p for p in (out / "breastmnist").glob("*.html") if '<span class="badge rank">rank 1' in p.read_text()]
    assert ranked and all("at chance" in p.read_text().split('class="badges"')[1].split("</p>")[0] for p in ranked)


def test_home_names_every_member_of_the_first_tie_group_and_only_them(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["pneumoniamnist"], 5)
    values = [0.80, 0.80, 0.60, 0.59, 0.30]  # two equal leaders, then clearly worse entries
    for mid, v in zip(ids, values):
        _edit(res / "pneumoniamnist" / f"{mid}.json",
              lambda d, v=v, mid=mid: (_set_robust(d, v, v - 0.02, v + 0.02),  # different subsets: intervals decide
                                       [a["subset"].update(indices_sha256=mid) for a in d["adversarial"].values()]))
    build_site(out, reg, res)
    doc = json.loads((out / "data" / "pneumoniamnist.json").read_text())
    first = [e["model_id"] for e in doc["datasets"]["pneumoniamnist"]["tracks"][0]["entries"] if e["rank"] == 1]
    assert len(first) == 2
    row = re.search(r'<a href="pneumoniamnist/index.html">.*?</tr>', (out / "index.html").read_text(), re.S).group(0)
    named = re.findall(r'href="pneumoniamnist/([^"]+)\.html"', row.split("</th>", 1)[1])
    assert sorted(named) == sorted(first) and "(2 tied)" in row and "at chance" not in row


def test_be_and_rbe_only_where_defined(tmp_path):
    old = SimpleNamespace(be=1.3, rbe=-248.0, per_corruption={"pixelate": 0.7})  # no definedness marks
    assert corruption_errors(old) == {"be": None, "rbe": None, "per_corruption": {}, "undefined": {}}
    rel = [SimpleNamespace(corruption="pixelate", be=1.2, rbe=None, undefined="rBE undefined: gap too small"),
           SimpleNamespace(corruption="jpeg", be=0.9, rbe=0.8, undefined=None)]
    new = SimpleNamespace(be=1.1, rbe=float("nan"), per_corruption={"pixelate": 0.7, "jpeg": 0.8}, relative_errors=rel)
    err = corruption_errors(new)
    assert err["be"] == 1.1 and err["rbe"] is None  # non-finite is not shown
    assert err["per_corruption"] == {"pixelate": (1.2, None), "jpeg": (0.9, 0.8)}
    assert err["undefined"] == {"pixelate": "rBE undefined: gap too small"}
    # today's records: the exploding values never reach a page or the API
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist"], 2)
    _edit(res / "breastmnist" / f"{ids[0]}.json", lambda d: d["corruptions"].update(be=3.5, rbe=-248.0))
    build_site(out, reg, res)
    page = (out / "breastmnist" / f"{ids[0]}.html").read_text()
    assert "-248" not in page and "rBE -" not in page and "not shown" in page
    entry = json.loads((out / "data" / "breastmnist.json").read_text())["datasets"]["breastmnist"]["tracks"][0]["entries"]
    assert all(e["corruptions"]["rbe"] is None for e in entry)


def test_one_spelling_of_threats_on_every_page():
    assert threat_label("Linf-2/255") == "L∞ 2/255" and threat_label("L2-0.25") == "L2 0.25"
    assert threat_label("pgd-at (Linf 3/255)") == "pgd-at (L∞ 3/255)"
    for page in sorted((REPO / "site").rglob("*.html")):
        text = _text(page)
        assert "Linf" not in text and "L-inf" not in text.replace("L-infinity", "L-inf"), page


def test_protocol_pages_show_the_protocol_files_numbers():
    site = REPO / "site" / "protocol"
    for v in versions():
        page = (site / f"v{v}.html").read_text()
        proto = yaml.safe_load((REPO / "medbench" / "protocols" / f"v{v}.yaml").read_text())
        assert (site / f"v{v}.yaml").read_bytes() == (REPO / "medbench" / "protocols" / f"v{v}.yaml").read_bytes()
        assert load_protocol(v).sha256() in page  # the sha256 that results record in their provenance
        for items in proto["adversarial"]["threats"].values():
            for t in items:
                assert f"{t['eps']:.6g}" in page and threat_label(t["label"]) in page
        assert ", ".join(map(str, proto["curves"]["noise_sigma"])) in page
        assert f"{proto['clean']['bootstrap_resamples']:,}" in page
        params = yaml.safe_load((REPO / "medbench" / "protocols" / f"v{v}_corruptions.yaml").read_text())
        seen, n_rows = {}, 0
        for table in re.findall(r'<table class="plain params" data-suite="([^"]+)">(.*?)</table>', page, re.S):
            rows = re.findall(r'<tr><th scope="row">([a-z_0-9]+)</th><td class="n">(\d+)</td><td>.*?</td>'
                              r'((?:<td>[^<]*</td>)+)</tr>', table[1])
            n_rows += len(rows)
            seen.update({(table[0], c, s): [html.unescape(x) for x in re.findall(r"<td>([^<]*)</td>", cells)]
                         for c, s, cells in rows})

        def text(p):
            return ", ".join(f"{k} {x:.4g}" if isinstance(x, float) else f"{k} {x}" for k, x in p.items())

        for ds, table in params["medmnist-c"].items():
            for corruption, sizes in table.items():
                for size, cell in sizes.items():
                    assert seen[(ds, corruption, size)] == [text(p) for p in cell["params"]], (ds, corruption, size)
        td = params.get("medbench-3d", {})  # v1: {size: table}; v2: per-kind suites over td["parameters"]
        n_3d = 0
        for kind, suite in (td.get("suites") or {None: {}}).items():
            label = "medbench-3d" if kind is None else f"{kind} volumes ({', '.join(suite['datasets'])})"
            for size, table in td.get("parameters", td).items():
                for corruption, cell in table.items():
                    if kind is None or corruption in suite["corruptions"]:
                        assert seen[(label, corruption, size)] == [text(p) for p in cell["params"]]
                        n_3d += 1
        assert n_rows == sum(len(s) for t in params["medmnist-c"].values() for s in t.values()) + n_3d


def test_training_logs_are_published_and_linked(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist"], 2)
    log = res / "breastmnist" / f"{ids[0]}.train.jsonl"
    log.write_text('{"event": "start"}\n{"event": "epoch", "epoch": 1}\n')
    build_site(out, reg, res)
    assert (out / "results" / "breastmnist" / log.name).read_bytes() == log.read_bytes()
    assert f'href="../results/breastmnist/{log.name}"' in (out / "breastmnist" / f"{ids[0]}.html").read_text()
    assert ".train.jsonl" not in (out / "breastmnist" / f"{ids[1]}.html").read_text()


def test_descriptions_render_inline_code(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["breastmnist"], 1)
    path = reg / "breastmnist" / f"{ids[0]}.yaml"
    entry = yaml.safe_load(path.read_text())
    entry["description"] = "Retrain: `medbench train X --dataset breastmnist` <b>not bold</b>."
    path.write_text(yaml.safe_dump(entry))
    build_site(out, reg, res)
    page = (out / "breastmnist" / f"{ids[0]}.html").read_text()
    assert "<code>medbench train X --dataset breastmnist</code>" in page and "&lt;b&gt;not bold&lt;/b&gt;" in page


def test_csv_cells_never_start_a_formula(tmp_path):
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("+1") == "'+1"
    assert csv_cell("-2+3") == "'-2+3" and csv_cell("\tx") == "'\tx" and csv_cell("\rx") == "'\rx"
    assert csv_cell(-0.25) == -0.25 and csv_cell(-3) == -3 and csv_cell(None) == "" and csv_cell("MICCAI") == "MICCAI"
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    ids = write_synthetic(reg, res, ["dermamnist"], 10)
    hostile = ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-1+2", "@SUM(A1:A9)"]
    for mid, venue in zip([i for i in ids if not i.startswith("Baseline_")], hostile):
        path = reg / "dermamnist" / f"{mid}.yaml"
        entry = yaml.safe_load(path.read_text())
        entry["paper"]["venue"] = venue
        path.write_text(yaml.safe_dump(entry))
    report = build_site(out, reg, res)
    assert report.problems == []
    for name in ("results.csv", "dermamnist.csv"):
        rows = list(csv.reader(io.StringIO((out / "data" / name).read_text())))
        venues = {r[rows[0].index("venue")] for r in rows[1:]}
        assert any(v.startswith("'=HYPERLINK") for v in venues) and any(v.startswith("'-1+2") for v in venues)
        for r in rows:
            for cell in r:
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    float(cell)  # only numbers may start so (a negative number stays a number)


def test_csv_has_one_interval_format(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["breastmnist"], 3)
    build_site(out, reg, res)
    rows = list(csv.DictReader(io.StringIO((out / "data" / "results.csv").read_text())))
    cols = list(rows[0])
    metrics = [c[:-7] for c in cols if c.endswith("_ci_low")]
    assert "clean_balanced_accuracy" in metrics and "robust_ba_Linf-2/255" in metrics
    assert not [c for c in cols if "ci" in c.split("_") and not c.endswith(("_ci_low", "_ci_high"))]
    assert "clean_ece" in metrics  # (empty before protocol 4)
    for r in rows:
        for m in metrics:
            if r[m] == "":
                assert r[f"{m}_ci_low"] == r[f"{m}_ci_high"] == ""
                continue
            lo, hi, v = float(r[f"{m}_ci_low"]), float(r[f"{m}_ci_high"]), float(r[m])
            # (binned ECE is biased upwards, its resamples more so: its interval may lie above it)
            assert lo <= hi if m == "clean_ece" else lo <= v <= hi


def test_heatmap_text_has_contrast_on_every_cell_in_both_schemes():
    css = (REPO / "medbench" / "site" / "static" / "style.css").read_text()
    assert "text.cell.on-light { fill: #000; }" in css and "text.cell.on-dark { fill: #fff; }" in css

    def lum(h):
        c = [int(h[k:k + 2], 16) / 255 for k in (1, 3, 5)]
        c = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    values = [i / 40 for i in range(41)]
    svg = str(heatmap(["c"], [str(i) for i in range(41)], {("c", str(i)): v for i, v in enumerate(values)}, title="t"))
    cells = re.findall(r'fill="(#[0-9a-f]{6})">.*?class="cell (on-light|on-dark)"', svg)
    assert len(cells) == 41 and {c for _, c in cells} == {"on-light", "on-dark"}
    for fill, cls in cells:
        text = 0.0 if cls == "on-light" else 1.0
        hi, lo = max(lum(fill), text), min(lum(fill), text)
        assert (hi + 0.05) / (lo + 0.05) >= 4.5, (fill, cls)
    assert colour(0.0) == _VIRIDIS[0] and colour(1.0) == _VIRIDIS[-1]


def test_boards_drop_always_empty_columns_and_link_the_protocol():
    board = (REPO / "site" / "breastmnist" / "index.html").read_text()
    flagged = "not admitted" in board or "evaluation unreliable" in board
    assert ('data-col="flags"' in board) == flagged  # the column only when some entry has a flag
    assert 'href="../protocol/v1.html"' in board
    home = (REPO / "site" / "index.html").read_text()
    assert "https://github.com/medbench/medbench/compare" in home and "@misc{medbench" in home


def test_every_page_title_is_plain_text():
    """A <title> is one line of text (a misplaced block once put the cite section inside it)."""
    site = Path(__file__).resolve().parents[1] / "site"
    pages = sorted(site.rglob("*.html"))
    assert pages
    for page in pages:
        title = re.search(r"<title>(.*?)</title>", page.read_text(), re.S)
        assert title and "<" not in title.group(1) and "\n" not in title.group(1).strip(), page
