"""reports/compare.html: one self-contained page per evaluation.

The Table I numbers (paper IV-B), the Fig. 3 QF curve (bicubic vs CAJNN PSNR-Y over QF) as an
inline SVG, and per set and QF a before/after slider over the same crop of the bicubic-upscaled
JPEG input, CAJNN's output and the ground truth. Everything is in the one file -- images as data
URIs, CSS, a few lines of vanilla JS -- and its Content-Security-Policy allows no other source,
so the page looks the same from the DVC cache, in MLflow's artifact view or as a mail attachment.

Crops are embedded as lossless PNG: the page exists to show JPEG artifacts and what CAJNN does to
them, and a lossy re-encode (JPEG, lossy WebP) would add artifacts of its own to exactly that.
Three 256-pixel crops per set and QF are ~0.3 MB of base64 PNG.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from cajnn.atomic import write_text_atomic
from cajnn.evaluation import METHOD_LABELS, Crop, EvalReport, Protocol
from cajnn.metrics import psnr_y, ssim_y

ZOOM = 2  # crops are shown at 2x, nearest neighbour: JPEG blocks and ringing stay visible
SERIES = {"bicubic": ("Bicubic", "#d9480f"), "cajnn": ("CAJNN", "#1c64d8")}  # QF curve: label, colour
LEFT_VIEWS = {"bicubic": "Bicubic input", "gt": "Ground truth"}  # what the slider's left side can show


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def png_data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _methods(report: EvalReport) -> list[str]:
    present = {m for per_qf in report.results.values() for per_m in per_qf.values() for m in per_m}
    return [m for m in METHOD_LABELS if m in present]


def table_html(protocol: Protocol) -> str:
    """Table I: PSNR-Y / SSIM-Y of each method per set and QF, the best of each row in bold."""
    report = protocol.report
    methods = _methods(report)
    gain = "bicubic" in methods and "cajnn" in methods
    head = ['<tr><th scope="col" rowspan="2">Set</th><th scope="col" rowspan="2">QF</th>']
    head += [f'<th scope="colgroup" colspan="2">{esc(METHOD_LABELS[m])}</th>' for m in methods]
    if gain:
        head.append('<th scope="col" rowspan="2">CAJNN &minus; bicubic<br>PSNR-Y (dB)</th>')
    head.append("</tr><tr>" + '<th scope="col">PSNR-Y (dB)</th><th scope="col">SSIM-Y</th>' * len(methods) + "</tr>")
    bodies = []
    for set_name, per_qf in report.results.items():
        rows = []
        for i, qf in enumerate(sorted(per_qf)):
            r = per_qf[qf]
            best_p = max((r[m].psnr_y for m in methods if m in r), default=None)
            best_s = max((r[m].ssim_y for m in methods if m in r), default=None)
            cells = []
            if i == 0:
                n = max(x.images for x in r.values())
                cells.append(
                    f'<th scope="rowgroup" rowspan="{len(per_qf)}">{esc(set_name)}'
                    f'<span class="sub">{n} image{"s" if n != 1 else ""}</span></th>'
                )
            cells.append(f'<th scope="row">{qf}</th>')
            for m in methods:
                if m not in r:
                    cells.append("<td>&ndash;</td><td>&ndash;</td>")
                    continue
                p_cls = ' class="best"' if r[m].psnr_y == best_p and len(methods) > 1 else ""
                s_cls = ' class="best"' if r[m].ssim_y == best_s and len(methods) > 1 else ""
                cells.append(f"<td{p_cls}>{r[m].psnr_y:.2f}</td><td{s_cls}>{r[m].ssim_y:.4f}</td>")
            if gain:
                d = r["cajnn"].psnr_y - r["bicubic"].psnr_y if "cajnn" in r and "bicubic" in r else None
                cells.append(
                    "<td>&ndash;</td>" if d is None else f'<td class="{"up" if d >= 0 else "down"}">{d:+.2f}</td>'
                )
            rows.append("<tr>" + "".join(cells) + "</tr>")
        bodies.append("<tbody>" + "\n".join(rows) + "</tbody>")
    caption = (
        f"Mean PSNR-Y / SSIM-Y over each set, {protocol.crop_border}-pixel border removed; "
        f"CAJNN has {protocol.params / 1e6:.3f} M parameters."
    )
    return (
        f'<div class="scroll"><table class="scores"><caption>{esc(caption)}</caption>\n'
        f"<thead>{''.join(head)}</thead>\n" + "\n".join(bodies) + "\n</table></div>"
    )


def _ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi] with at most `target` gaps."""
    span = max(hi - lo, 1e-9)
    exp = math.floor(math.log10(span / target))
    step = next(s * 10.0**e for e in range(exp, exp + 3) for s in (1, 2, 2.5, 5) if span / (s * 10.0**e) <= target)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 6) for k in range(first, last + 1)]


def qf_curve_svg(sweep: EvalReport) -> str:
    """Fig. 3: PSNR-Y of bicubic and CAJNN over the JPEG quality factor, on the sweep's one set."""
    set_name, per_qf = next(iter(sweep.results.items()))
    qfs = sorted(per_qf)
    series = {
        m: [(q, per_qf[q][m].psnr_y) for q in qfs if m in per_qf[q] and math.isfinite(per_qf[q][m].psnr_y)]
        for m in SERIES
    }
    values = [v for pts in series.values() for _, v in pts]
    if not values:
        return '<p class="note">The QF sweep has no finite PSNR-Y values to plot.</p>'
    w, h, left, right, top, bottom = 720, 380, 64, 20, 20, 56
    x_lo, x_hi = (qfs[0], qfs[-1]) if qfs[0] != qfs[-1] else (qfs[0] - 5, qfs[0] + 5)
    y_ticks = _ticks(min(values), max(values))
    y_lo, y_hi = y_ticks[0], y_ticks[-1] if y_ticks[-1] > y_ticks[0] else y_ticks[0] + 1

    def px(q: float) -> float:
        return left + (q - x_lo) / (x_hi - x_lo) * (w - left - right)

    def py(v: float) -> float:
        return h - bottom - (v - y_lo) / (y_hi - y_lo) * (h - top - bottom)

    decimals = 0 if all(t == int(t) for t in y_ticks) else (1 if all(t * 10 == int(t * 10) for t in y_ticks) else 2)
    parts = [
        f'<svg class="curve" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-labelledby="qf-title qf-desc">',
        '<title id="qf-title">PSNR-Y over JPEG quality factor (paper Fig. 3)</title>',
        f'<desc id="qf-desc">Bicubic and CAJNN PSNR-Y in dB on set {esc(set_name)} at QF '
        f"{', '.join(map(str, qfs))}; the numbers are in the table below the chart.</desc>",
    ]
    for t in y_ticks:
        y = py(t)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{w - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{t:.{decimals}f}</text>'
        )
    for q in qfs:
        x = px(q)
        parts.append(
            f'<line class="tickmark" x1="{x:.1f}" x2="{x:.1f}" y1="{h - bottom}" y2="{h - bottom + 5}"/>'
            f'<text class="tick" x="{x:.1f}" y="{h - bottom + 20}" text-anchor="middle">{q}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{w - right}" y1="{h - bottom}" y2="{h - bottom}"/>'
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{h - bottom}"/>'
        f'<text class="label" x="{(left + w - right) / 2:.1f}" y="{h - 12}" text-anchor="middle">'
        "JPEG quality factor (QF)</text>"
        f'<text class="label" transform="translate(16 {(top + h - bottom) / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">PSNR-Y (dB)</text>'
    )
    for i, (m, pts) in enumerate(series.items()):
        label, colour = SERIES[m]
        if not pts:
            continue
        line = " ".join(f"{px(q):.1f},{py(v):.1f}" for q, v in pts)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{line}"/>')
        parts += [
            f'<circle cx="{px(q):.1f}" cy="{py(v):.1f}" r="4" fill="{colour}">'
            f"<title>{label}, QF {q}: {v:.2f} dB</title></circle>"
            for q, v in pts
        ]
        ly = top + 14 + 22 * i  # legend, top left: PSNR rises with QF, so that corner stays empty
        parts.append(
            f'<line x1="{left + 16}" x2="{left + 40}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>'
            f'<text class="legend" x="{left + 48}" y="{ly + 5}">{label}</text>'
        )
    parts.append("</svg>")
    rows = "".join(
        f'<tr><th scope="row">{q}</th>'
        + "".join(f"<td>{per_qf[q][m].psnr_y:.2f}</td>" if m in per_qf[q] else "<td>&ndash;</td>" for m in SERIES)
        + "</tr>"
        for q in qfs
    )
    numbers = (
        '<details><summary>Numbers</summary><table class="scores small"><thead><tr><th scope="col">QF</th>'
        + "".join(f'<th scope="col">{label} PSNR-Y (dB)</th>' for label, _ in SERIES.values())
        + f"</tr></thead><tbody>{rows}</tbody></table></details>"
    )
    return "\n".join(parts) + "\n" + numbers


def slider_html(crop: Crop, index: int) -> str:
    """A before/after slider: CAJNN underneath, the left view (bicubic input or ground truth) on top,
    clipped at the range input's position; beside it this crop's PSNR-Y / SSIM-Y."""
    imgs, (y, x, side) = crop.images, crop.box
    where = f"{crop.stem}, {crop.set_name}, QF {crop.qf}"
    scores = {m: (psnr_y(imgs[m], imgs["gt"], crop=0), ssim_y(imgs[m], imgs["gt"], crop=0)) for m in SERIES}
    gain = scores["cajnn"][0] - scores["bicubic"][0]
    left = "".join(
        f'<img data-view="{view}" src="{png_data_uri(imgs[view])}" width="{side}" height="{side}" '
        f'alt="{esc(label)}: {esc(where)}"{"" if view == "bicubic" else " hidden"}>'
        for view, label in LEFT_VIEWS.items()
    )
    radios = "".join(
        f'<label><input type="radio" name="left-{index}" value="{view}" data-label="{esc(label)}"'
        f"{' checked' if view == 'bicubic' else ''}> {esc(label)}</label>"
        for view, label in LEFT_VIEWS.items()
    )
    rows = "".join(
        f'<tr><th scope="row">{SERIES[m][0]}</th><td>{p:.2f}</td><td>{s:.4f}</td></tr>' for m, (p, s) in scores.items()
    )
    rows += (
        f'<tr><th scope="row">CAJNN &minus; bicubic</th><td class="{"up" if gain >= 0 else "down"}">'
        f"{gain:+.2f}</td><td></td></tr>"
    )
    return f"""<figure class="cmp" id="crop-{index}">
<div class="pic">
<div class="frame" style="width:{side * ZOOM}px">
<img class="after" src="{png_data_uri(imgs["cajnn"])}" width="{side}" height="{side}" alt="CAJNN: {esc(where)}">
<div class="before">{left}</div>
<div class="divider" aria-hidden="true"></div>
<span class="tag tag-left" aria-hidden="true">{LEFT_VIEWS["bicubic"]}</span>
<span class="tag tag-right" aria-hidden="true">CAJNN</span>
</div>
<input type="range" min="0" max="100" value="50" aria-valuetext="50 %"
 aria-label="Split between the left picture and CAJNN, {esc(where)}">
</div>
<figcaption>
<h4>QF {crop.qf} <span class="sub">{esc(crop.stem)}</span></h4>
<table class="scores small"><caption>This crop: {side}&times;{side} pixels at x {x}, y {y} of the image, \
shown at {ZOOM}&times;.</caption>
<thead><tr><th scope="col"></th><th scope="col">PSNR-Y (dB)</th><th scope="col">SSIM-Y</th></tr></thead>
<tbody>{rows}</tbody></table>
<fieldset class="toggle"><legend>Left of the line</legend>{radios}</fieldset>
</figcaption>
</figure>"""


CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#dfe3ea;--bg:#f5f7fa;--card:#fff;--accent:#1c64d8;--up:#157347;--down:#b42318}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans","DejaVu Sans",sans-serif}
header{background:#1d2330;color:#fff}
header>div,main{max-width:1180px;margin:0 auto;padding-left:32px;padding-right:32px}
header>div{padding-top:22px;padding-bottom:18px}
header h1{margin:0 0 4px;font-size:24px;font-weight:650}
header p{margin:0;color:#c7cedb;max-width:62em}
nav{margin-top:10px;display:flex;gap:18px}
nav a{color:#9cc2ff;text-decoration:none;font-weight:600}
nav a:hover{text-decoration:underline}
main{padding-top:4px;padding-bottom:32px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:20px 0}
h2{margin:0 0 12px;font-size:19px}
h3{margin:8px 0 4px;font-size:17px}
h4{margin:0 0 8px;font-size:18px}
.note{color:var(--muted)}
.sub{font-weight:400;color:var(--muted);font-size:13px;margin-left:4px}
th .sub{display:block;margin:0;font-size:12px}
table.scores{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:4px 0}
table.scores caption{caption-side:bottom;text-align:left;color:var(--muted);font-size:13px;padding-top:8px}
table.scores th,table.scores td{border-bottom:1px solid var(--line);padding:6px 12px;text-align:right}
table.scores thead th{background:#eef1f6;text-align:center;font-weight:600;white-space:nowrap}
.scroll{overflow-x:auto}
table.scores tbody th{text-align:left}
table.scores tbody th[scope=rowgroup]{vertical-align:top}
table.scores tbody+tbody{border-top:2px solid #c3c9d4}
table.scores td.best{font-weight:700}
table.small th,table.small td{padding:4px 10px;font-size:14px}
.up{color:var(--up)} .down{color:var(--down)}
.chart{display:flex;flex-wrap:wrap;gap:8px 32px;align-items:flex-start}
svg.curve{max-width:100%;height:auto;display:block}
svg .grid{stroke:#e6e9ef} svg .axis,svg .tickmark{stroke:#7a8394}
svg text{font:12px system-ui,"Liberation Sans","DejaVu Sans",sans-serif;fill:#3a4252}
svg .label{font-size:13px;font-weight:600} svg .legend{font-size:13px}
details{margin-top:6px} summary{cursor:pointer;color:var(--accent)}
figure.cmp{margin:0;padding:18px 0;border-top:1px solid var(--line);display:flex;flex-wrap:wrap;gap:16px 28px;
  align-items:flex-start}
.pic{max-width:100%}
.frame{position:relative;max-width:100%;aspect-ratio:1;overflow:hidden;border-radius:6px;cursor:ew-resize;
  touch-action:none;user-select:none;--pos:50%;box-shadow:0 1px 4px rgba(0,0,0,.3)}
.frame img{position:absolute;inset:0;width:100%;height:100%;image-rendering:pixelated;display:block}
.frame img[hidden]{display:none}
.before{position:absolute;inset:0;clip-path:inset(0 calc(100% - var(--pos)) 0 0)}
.divider{position:absolute;top:0;bottom:0;left:var(--pos);width:2px;margin-left:-1px;background:#fff;
  box-shadow:0 0 0 1px rgba(0,0,0,.35);pointer-events:none}
.tag{position:absolute;top:8px;padding:2px 8px;border-radius:4px;background:rgba(20,24,32,.72);color:#fff;
  font-size:12px;font-weight:600;pointer-events:none}
.tag-left{left:8px} .tag-right{right:8px}
.pic input[type=range]{display:block;width:100%;margin:10px 0 0;accent-color:var(--accent)}
figcaption{min-width:260px;padding-top:2px}
fieldset.toggle{border:1px solid var(--line);border-radius:8px;padding:8px 12px 10px;margin:14px 0 0}
fieldset.toggle legend{color:var(--muted);font-size:13px;padding:0 4px}
fieldset.toggle label{display:block;cursor:pointer;padding:2px 0}
footer{color:var(--muted);font-size:12px;text-align:center;padding-bottom:24px}
"""

# Drives every slider: the range input (or a drag on the picture) moves the clip edge; the radio
# buttons choose which picture the left side shows.
JS = """
for (const fig of document.querySelectorAll("figure.cmp")) {
  const frame = fig.querySelector(".frame"), range = fig.querySelector("input[type=range]");
  const tag = fig.querySelector(".tag-left");
  const move = () => {
    frame.style.setProperty("--pos", range.value + "%");
    range.setAttribute("aria-valuetext", range.value + " %");
  };
  range.addEventListener("input", move);
  const drag = (e) => {
    const box = frame.getBoundingClientRect();
    range.value = Math.round(100 * (e.clientX - box.left) / box.width);
    move();
  };
  frame.addEventListener("pointerdown", (e) => { frame.setPointerCapture(e.pointerId); drag(e); });
  frame.addEventListener("pointermove", (e) => { if (e.buttons & 1) drag(e); });
  for (const radio of fig.querySelectorAll("input[type=radio]")) {
    radio.addEventListener("change", () => {
      for (const img of fig.querySelectorAll(".before img")) img.hidden = img.dataset.view !== radio.value;
      tag.textContent = radio.dataset.label;
    });
  }
}
"""

# Nothing but this file: data: images, inline style and script. Any other fetch is blocked (and
# reported on the console), which is what keeps the page self-contained in practice.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def compare_page(protocol: Protocol, title: str = "CAJNN evaluation") -> str:
    """The whole page as one HTML string (see the module docstring)."""
    report = protocol.report
    qfs = sorted({qf for per_qf in report.results.values() for qf in per_qf})
    notes = [f"Sets not present (not fetched): {', '.join(protocol.missing_sets)}"] if protocol.missing_sets else []
    notes += [f"Skipped {s['file']} ({s['set']}): {s['reason']}" for s in report.skipped]
    notes_html = '<ul class="note">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>" if notes else ""
    if protocol.sweep is not None and protocol.sweep.results:
        curve = qf_curve_svg(protocol.sweep)
    else:
        curve = '<p class="note">No QF sweep: its set was not present in this evaluation.</p>'
    crops_html = []
    index = 0
    for set_name in report.results:
        cards = []
        for crop in sorted((c for c in protocol.crops if c.set_name == set_name), key=lambda c: (c.qf, c.stem)):
            cards.append(slider_html(crop, index))
            index += 1
        if cards:
            crops_html.append(f"<h3>{esc(set_name)}</h3>\n" + "\n".join(cards))
    crops_section = "\n".join(crops_html) or '<p class="note">No crops were kept in this evaluation.</p>'
    summary = (
        f"CAJNN ({protocol.params / 1e6:.3f} M parameters) against bicubic upscaling of the JPEG input, "
        f"JPEG QF {', '.join(map(str, qfs))}, on {len(report.results)} set(s): "
        f"{', '.join(report.results)}. Scores are PSNR-Y / SSIM-Y (paper IV-B)."
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<header><div>
<h1>{esc(title)}</h1>
<p>{esc(summary)}</p>
<nav><a href="#table">Table I</a><a href="#curve">QF curve</a><a href="#crops">Before / after</a></nav>
</div></header>
<main>
<section id="table" aria-labelledby="table-h">
<h2 id="table-h">Scores per set and QF (Table I)</h2>
{table_html(protocol)}
{notes_html}
</section>
<section id="curve" aria-labelledby="curve-h">
<h2 id="curve-h">PSNR-Y over JPEG quality (Fig. 3)</h2>
<div class="chart">{curve}</div>
</section>
<section id="crops" aria-labelledby="crops-h">
<h2 id="crops-h">Before / after</h2>
<p class="note">Drag across a picture or use its slider: left of the line the input upscaled by bicubic
(or the ground truth), right of it CAJNN. Each crop is the centre of an image of the set.</p>
{crops_section}
</section>
</main>
<footer>Written by the evaluate stage; the same numbers are in table.md, metrics.json and qf_sweep.csv.</footer>
<script>{JS}</script>
</body>
</html>
"""


def write_compare_page(protocol: Protocol, out_path: Path, title: str = "CAJNN evaluation") -> int:
    """Write the page atomically to `out_path`; returns its size in bytes."""
    # Character references for anything beyond ASCII (set and file names): the bytes on disk do
    # not depend on the locale's encoding, and no viewer has to guess it.
    text = compare_page(protocol, title).encode("ascii", "xmlcharrefreplace").decode("ascii")
    write_text_atomic(out_path, text)
    return len(text.encode())
