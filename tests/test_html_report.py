"""report.html opened in a real browser (headless Chromium): no console message, every figure rendered, not blank.

Chromium comes from Debian's ``chromium`` package. Where it is missing, the test installs it when it runs as root with
apt-get (as CI does) and is skipped, saying why, otherwise.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_spec
from PIL import Image

from fused_train.html_report import scatter_svg
from fused_train.report import write_report
from fused_train.runs import summarise_run, train

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
PROBE = """<script>
window.probeErrors = [];
addEventListener("error", e => probeErrors.push(e.message || "failed to load " + e.target.src), true);
addEventListener("load", () => {
  const images = [...document.images];
  document.documentElement.dataset.probe = JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    svgWidths: [...document.querySelectorAll("svg")].map(s => s.getBoundingClientRect().width),
    circles: document.querySelectorAll("svg circle title").length,
    errors: probeErrors,
  });
});
</script>"""
"""Injected into a copy of the page (the report itself has no script): what loaded and what failed, read back from
the DOM that Chromium dumps after the load event."""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("headless Chromium is missing: install Debian's chromium package (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr[-2000:]}"
    return shutil.which("chromium") or pytest.fail("apt-get installed chromium, but no chromium command is on PATH")


@pytest.fixture(scope="module")
def report(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of a LODO run and a drug-known run of the small dataset."""
    dataset, cache = trained_on
    root = tmp_path_factory.mktemp("html")
    runs = [root / "fused-lodo", root / "fused-drug-known"]
    train(tiny_spec(dataset, epochs=3), runs[0], fold="0-5", cache_dir=cache, quiet=True)
    train(tiny_spec(dataset, split="drug-known", epochs=3, seeds=(0,)), runs[1], cache_dir=cache, quiet=True)
    for run in runs:
        summarise_run(run)
    return write_report(runs, root / "report")["html"]


def browse(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium, *FLAGS, *args], capture_output=True, text=True, timeout=120)


def test_the_report_renders_in_a_browser_without_errors(chromium: str, report: Path, tmp_path: Path) -> None:
    page = report.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    opened = browse(chromium, "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri())
    assert opened.returncode == 0, opened.stderr[-2000:]
    console = [line for line in opened.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # the page has no script: any console message is an error
    found = json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', opened.stdout).group(1)))
    assert found["images"] >= 4 and not found["broken"] and not found["errors"], found
    assert len(found["svgWidths"]) == 2 and min(found["svgWidths"]) > 100  # one per-drug plot per run
    assert found["circles"] >= 6  # a hover title per drug


def test_the_report_is_one_self_contained_file(report: Path) -> None:
    page = report.read_text()
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)  # every image inline, no style sheet or script
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)  # nothing to fetch (an SVG namespace is a name)


def test_a_screenshot_of_the_report_is_not_blank(chromium: str, report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    taken = browse(chromium, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = np.unique(pixels, axis=0)
    assert len(colours) > 50  # text, tables and figures, not one flat colour


def test_every_drug_is_a_circle_named_on_hover() -> None:
    svg = scatter_svg([(0.2, 0.5, "Erlotinib (176870): fused 0.500, cell-mean 0.200"), (0.4, 0.1, "<b>")],
                      "lodo", "naive", "model")  # fmt: skip
    assert svg.count("<circle") == 2 and "<title>Erlotinib (176870)" in svg
    assert "&lt;b&gt;" in svg and "model higher on 1 of 2" in svg  # names are escaped
