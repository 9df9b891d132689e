"""report.html in a real browser (headless Chromium): every figure loads, tables and links render,
and the page reads at a laptop's width without scrolling sideways.

Needs Debian's ``chromium`` (``make test`` installs it where apt-get exists); skipped without it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import write_run  # noqa: E402

from adaxbench.report import build_report  # noqa: E402

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="headless Chromium not found (Debian: apt-get install "
                                                        "chromium; `make test` installs it where apt-get exists)")
LAPTOP = (1280, 900)

# Runs after the page (and its inlined images) loaded; writes what it measured into the DOM,
# which --dump-dom then prints.  Measured before the <pre> is added, so it cannot cause overflow.
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const hrefs = [...document.links].map(a => a.getAttribute('href'));
  const r = {
    images: imgs.map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0, natural: i.naturalWidth,
                            right: i.getBoundingClientRect().right})),
    tables: [...document.querySelectorAll('table')].map(t => ({rows: t.tBodies[0] ? t.tBodies[0].rows.length : 0,
                                                              cols: t.tHead ? t.tHead.rows[0].cells.length : 0,
                                                              visible: t.getBoundingClientRect().height > 0})),
    links: hrefs,
    missingAnchors: hrefs.filter(h => h.startsWith('#') && !document.getElementById(h.slice(1))),
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    headings: [...document.querySelectorAll('h1,h2,h3')].map(h => h.textContent)};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});</script>"""


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
                           f"--window-size={LAPTOP[0]},{LAPTOP[1]}", *args],
                          capture_output=True, text=True, timeout=120)


def probe(page: Path, tmp: Path) -> dict:
    """Load ``page`` (a copy, with PROBE added) in headless Chromium at laptop size."""
    probed = page.with_name("probed_" + page.name)
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    out = _chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], tmp)
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert m, f"no probe result from Chromium (rc {out.returncode}): {out.stderr[-2000:]}"
    return json.loads(html.unescape(m.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    batch = {"loss": [2.0, 1.8, 1.5, 1.3, 1.2, 1.1], "beta2_hat": [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999],
             "eff_lr_median": [1e-4] * 6}
    long_note = "an_unbreakable_hyperparameter_value_that_must_scroll_inside_its_table_" * 3
    for task in ("cifar10_resnet20", "fmnist_mlp"):
        for s in range(3):
            for opt, extra in (("adam", {"note": long_note}), ("adam", {"note": "short"}), ("adax", {}), ("sgd", {})):
                write_run(root / "runs" / task / f"{opt}{len(str(extra))}-{s}", task=task, optimizer=opt, opt=extra,
                          seed=s, target=0.5, batch=batch if opt != "sgd" else None)
    rep = build_report([root / "runs"], out=root / "out", formats=["html"])
    return rep, root


def test_report_html_loads_figures_tables_and_links(report, tmp_path):
    rep, root = report
    r = probe(root / "out" / "report.html", tmp_path)
    assert len(r["images"]) == len(rep.series) >= 6
    assert [i["alt"] for i in r["images"] if not i["ok"]] == [], "figures that did not load"
    assert all(i["natural"] >= 700 for i in r["images"])  # real PNGs, ~900 px wide
    assert r["tables"] and all(t["rows"] >= 1 and t["cols"] >= 2 and t["visible"] for t in r["tables"])
    assert "Across tasks" in r["headings"] and "Task cifar10_resnet20" in r["headings"]
    assert r["missingAnchors"] == []
    assert "#task-cifar10_resnet20" in r["links"] and "https://arxiv.org/abs/2004.09740" in r["links"]
    for href in r["links"]:
        if not href.startswith(("#", "https://")):
            assert (root / "out" / href).is_file(), href  # summary.csv, aggregate.csv


def test_report_html_reads_at_laptop_width(report, tmp_path):
    rep, root = report
    r = probe(root / "out" / "report.html", tmp_path)
    assert r["innerWidth"] == LAPTOP[0]
    assert r["scrollWidth"] <= r["innerWidth"], "the page scrolls sideways at 1280 px"
    assert max(i["right"] for i in r["images"]) <= LAPTOP[0]
    shot = tmp_path / "report.png"
    _chromium([f"--screenshot={shot}", (root / "out" / "report.html").as_uri()], tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_catches_overflow_and_broken_images(tmp_path):
    # The checks above can fail: a too-wide element and a broken image are reported.
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><div style='width:3000px'>wide</div>"
                    "<img alt='broken' src='data:image/png;base64,AAAA'><a href='#nowhere'>x</a></body></html>")
    r = probe(page, tmp_path)
    assert r["scrollWidth"] > r["innerWidth"]
    assert [i["alt"] for i in r["images"] if not i["ok"]] == ["broken"]
    assert r["missingAnchors"] == ["#nowhere"]
