"""reports/compare.html in a real browser: headless Chromium (Debian's `chromium`, installed by
scripts/setup.sh) opens a page that `run_protocol` + `write_compare_page` made from a tiny model
and set. No console output and no failed load, every image decoded, a screenshot that is not
blank, and the sliders and the left-view toggle work.

No browser-driver package: Chromium runs twice from the command line. `--dump-dom` runs a copy
of the page with a probe script added first in <head>; the probe records errors as they happen,
works the controls after `load` and writes what it saw into the DOM as JSON. Chromium's own log
(`--enable-logging=stderr`) holds every console message and uncaught exception of the page,
the page's own and the browser's (CSP violations among them); the page writes none, so any at
all is a failure. `--screenshot` renders the unmodified page.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cajnn.archs import build_model
from cajnn.config import EvaluateConfig
from cajnn.evaluation import run_protocol
from cajnn.reports.compare import write_compare_page

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

PROBE = """<script>
(() => {
  const seen = {errors: []};
  const note = (text) => seen.errors.push(String(text).slice(0, 300));
  for (const level of ["error", "warn"]) {
    const original = console[level].bind(console);
    console[level] = (...args) => { note("console." + level + ": " + args.join(" ")); original(...args); };
  }
  // capture phase: also sees <img> and other resources that fail to load (they do not bubble)
  window.addEventListener("error", (e) => note(e.target === window || !e.target.tagName
    ? "uncaught: " + e.message : "failed to load <" + e.target.tagName.toLowerCase() + ">"), true);
  window.addEventListener("unhandledrejection", (e) => note("unhandled rejection: " + e.reason));
  document.addEventListener("securitypolicyviolation", (e) => note("CSP blocked " + e.blockedURI));
  window.addEventListener("load", () => {
    const images = [...document.images];
    seen.images = images.length;
    seen.not_loaded = images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt);
    seen.sliders = [...document.querySelectorAll("figure.cmp")].map((fig) => {
      const range = fig.querySelector("input[type=range]"), top = fig.querySelector(".before");
      const divider = fig.querySelector(".divider");
      const state = () => ({clip: getComputedStyle(top).clipPath,
                            divider: Math.round(divider.getBoundingClientRect().left)});
      const before = state();
      range.value = 20;
      range.dispatchEvent(new Event("input", {bubbles: true}));
      const after = state();
      const shown = () => [...fig.querySelectorAll(".before img")].filter((i) => !i.hidden)
        .map((i) => i.dataset.view + ":" + i.getBoundingClientRect().width);
      const left0 = shown();
      fig.querySelector("input[value=gt]").click();
      return {before, after, left0, left1: shown(), tag: fig.querySelector(".tag-left").textContent,
              frame: Math.round(fig.querySelector(".frame").getBoundingClientRect().width)};
    });
    const out = document.createElement("pre");
    out.id = "probe-result";
    out.textContent = JSON.stringify(seen);
    document.body.append(out);
  });
})();
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail(
            "headless Chromium is needed for this test and is not on PATH: scripts/setup.sh installs it "
            "(as root: apt-get install -y chromium fonts-liberation)",
            pytrace=False,
        )
    return exe


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def console_lines(stderr: str) -> list[str]:
    # Chromium logs a page's console messages and uncaught exceptions as "...:CONSOLE:<line>] ..."
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """compare.html from the real protocol: a micro CAJNN on two small photos, QF 10 and 40."""
    root = tmp_path_factory.mktemp("evaluation")
    (root / "set").mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (96, 128), "b": (80, 80)}.items():
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([40 + 170 * x / w, 220 - 150 * y / h, 128 + 90 * np.sin(x / 3.0) * np.cos(y / 4.0)], -1)
        Image.fromarray(np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)).save(
            root / "set" / f"{name}.png"
        )
    cfg = EvaluateConfig(
        sets={"tiny": "set", "absent": "nothing"},
        qualities=[10, 40],
        self_ensemble=True,
        sweep_set="tiny",
        sweep_qualities=[10, 30, 50, 70, 90],
        samples=1,
    )
    torch.manual_seed(0)
    protocol = run_protocol(build_model("micro").eval(), cfg, root)
    out = root / "reports" / "compare.html"
    write_compare_page(protocol, out)
    return out


def test_page_loads_cleanly_and_the_sliders_work(page, tmp_path):
    text = page.read_text()
    assert text.count("<head>") == 1
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    proc = run_chromium(
        ["--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()], tmp_path / "profile"
    )
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the probe wrote no result (Chromium exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["errors"] == []
    assert console_lines(proc.stderr) == []
    assert seen["images"] == 6 and seen["not_loaded"] == []  # 2 crops x (CAJNN, bicubic input, ground truth)
    assert len(seen["sliders"]) == 2
    for slider in seen["sliders"]:
        assert slider["frame"] == 2 * 96  # the 96-pixel crop at 2x
        # moving the range input from 50 to 20 % moves the clip edge of the top picture and the line
        assert slider["before"]["clip"] != slider["after"]["clip"]
        assert slider["after"]["divider"] < slider["before"]["divider"] - 40
        # the toggle swaps the left view from the bicubic input to the ground truth
        assert slider["left0"] == ["bicubic:192"] and slider["left1"] == ["gt:192"]
        assert slider["tag"] == "Ground truth"


def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "compare.png"
    proc = run_chromium(
        ["--window-size=1400,2200", "--virtual-time-budget=5000", f"--screenshot={shot}", page.as_uri()],
        tmp_path / "profile",
    )
    assert shot.is_file(), f"no screenshot (Chromium exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert console_lines(proc.stderr) == []
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2200, 1400)
    assert pixels.std() > 20
    # the crops are there: many distinct colours (~19k; the page without crops, text and chart, ~2k)
    rgb = pixels.astype(np.uint32)
    assert len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])) > 8000
