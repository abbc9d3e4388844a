"""Page sizes at leaderboard scale: a dataset with 1,000 models keeps every page under 1 MB.

The full 1,000 models x 18 datasets build time is a benchmark (``bench/site_build.py`` writes
``bench/results/site_build.json``), not a test: on a shared 2-core machine it takes ~18-23 s, and the
machine's speed drifts too much within a minute for a timed test to be fair.
"""

from __future__ import annotations

import re

import pytest

from medbench.site import build_site
from medbench.site.protocol_page import versions
from medbench.svg import LABELLED_POINTS
from site_synthetic import write_synthetic

LIMIT = 1_000_000


@pytest.mark.slow
def test_thousand_models_pages_stay_small(tmp_path):
    reg, res, out = tmp_path / "reg", tmp_path / "res", tmp_path / "site"
    write_synthetic(reg, res, ["dermamnist"], 1000, clean_n=20)  # 7 classes, 1,000-image attack subset
    report = build_site(out, reg, res)
    from medbench.studies import list_studies

    # home, boards, model pages, protocol pages, the lite-track page, the study index and one page per study
    assert report.problems == [] and report.pages == 1 + 18 + 1000 + len(versions()) + 1 + 1 + len(list_studies())
    sizes = {p: p.stat().st_size for p in out.rglob("*.html")}
    board = out / "dermamnist" / "index.html"
    html = board.read_text()
    table = html[html.index('<table class="board'):html.index("</table>")]
    body = table[table.index("<tbody>"):table.index("</tbody>")]
    assert table[:table.index("<tbody>")].count("<tr") == 1 and body.count("<tr") == 1000  # every model
    assert max(sizes.values()) < LIMIT, max(sizes, key=sizes.get)
    # the scatter plots every model; only the best-ranked LABELLED_POINTS carry a hover title
    figs = html[html.index('<div class="figs">'):]
    first = figs[figs.index("<svg"):figs.index("</svg>")]
    titled = first.count('<circle class="pt')
    assert titled == LABELLED_POINTS and titled + first.count("h0") == 1000
    ranked_first = re.findall(r'<a href="[^"]+\.html">([^<]+)</a>', body)[:LABELLED_POINTS]
    assert re.findall(r"<circle[^>]*><title>([^<:]+): ", first) == ranked_first
    assert f"the {LABELLED_POINTS} best-ranked" in html
    assert sizes[board] == max(sizes.values())  # the 1,000-row table is the largest page
    print(f"1,000-model dataset: board page {sizes[board] / 1e6:.2f} MB")
