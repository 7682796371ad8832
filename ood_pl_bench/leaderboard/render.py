"""``leaderboards/README.md`` and ``leaderboards/index.html``, generated from the submissions.

The web page is one self-contained file (inline CSS, JS and SVG; no CDN, no network) that works
from ``file://``. For every board (edition, task, section) it shows

* the ranked table (:mod:`.table`); clicking a column header sorts by it (again: reverses), clicking
  a row's ``▸`` button opens its per-domain scores (held-out domains, then in-distribution);
* a per-domain heatmap (submissions × held-out domains) of the rank metric and of ``gold_reward``;
* gold reward against KL to π_ref, one point per submission (macro values with 95% CI bars),
  coloured by method.

Output is deterministic (no timestamps), so regenerating without new submissions changes nothing.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from ..io import write_text
from .table import Board, Row, fmt_metric, fmt_test, leaderboard, to_markdown

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
DETAIL_METRICS = ("pl_accuracy", "pl_likelihood_accuracy", "rm_accuracy", "gold_reward", "kl")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(m: Any) -> float | None:
    if isinstance(m, (int, float)) and not isinstance(m, bool):
        return float(m)
    if isinstance(m, dict) and m.get("applicable", True) and isinstance(m.get("value"), (int, float)):
        return float(m["value"])
    return None


def _method_colors(boards: list[Board]) -> dict[str, str]:
    methods = sorted({row.results["method"] for b in boards for row in b.rows})
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


# --- SVG plots ----------------------------------------------------------------------------------


def _lerp_color(t: float) -> str:
    """A light-yellow → blue sequential colour for t in [0, 1]."""
    stops = ((255, 247, 188), (120, 198, 121), (34, 94, 168))
    t = min(1.0, max(0.0, t))
    seg = 0 if t < 0.5 else 1
    u = t * 2 - seg
    a, b = stops[seg], stops[seg + 1]
    return "#%02x%02x%02x" % tuple(round(a[i] + (b[i] - a[i]) * u) for i in range(3))


def heatmap_svg(board: Board, metric: str) -> str:
    """Inline SVG heatmap of ``metric`` per held-out domain (columns) and submission (rows)."""
    domains = board.domains
    rows = board.rows
    values = [[_num(r.domain_scores().get(d, {}).get("metrics", {}).get(metric)) for d in domains] for r in rows]
    flat = [v for line in values for v in line if v is not None]
    if not flat or not domains:
        return f'<p class="note">No per-domain {_e(metric)} values to plot.</p>'
    lo, hi = min(flat), max(flat)
    cw, ch, left, top = 64, 24, 190, 96
    width, height = left + cw * len(domains) + 70, top + ch * len(rows) + 40
    parts = [f'<svg class="plot heatmap" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" aria-label="{_e(metric)} per held-out domain">',
             f'<title>{_e(metric)} per held-out domain</title>']
    for j, d in enumerate(domains):
        x = left + j * cw + cw / 2
        parts.append(f'<text x="{x:.1f}" y="{top - 8}" transform="rotate(-40 {x:.1f} {top - 8})" '
                     f'class="axis">{_e(d)}</text>')
    for i, (row, line) in enumerate(zip(rows, values)):
        y = top + i * ch
        parts.append(f'<text x="{left - 6}" y="{y + ch * 0.68:.1f}" text-anchor="end" class="axis">{_e(row.name)}</text>')
        for j, v in enumerate(line):
            x = left + j * cw
            t = 0.5 if hi == lo or v is None else (v - lo) / (hi - lo)
            fill = "#eeeeee" if v is None else _lerp_color(t)
            label = "n/a" if v is None else f"{v:.3f}"
            ink = "#ffffff" if v is not None and t > 0.7 else "#222222"
            parts.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                         f'<title>{_e(row.name)} · {_e(domains[j])}: {label}</title></rect>')
            parts.append(f'<text x="{x + (cw - 2) / 2:.1f}" y="{y + ch * 0.66:.1f}" text-anchor="middle" '
                         f'class="cell" fill="{ink}">{label}</text>')
    ly = top + ch * len(rows) + 14
    for k in range(10):
        parts.append(f'<rect x="{left + k * 16}" y="{ly}" width="16" height="10" fill="{_lerp_color(k / 9)}"/>')
    parts.append(f'<text x="{left - 6}" y="{ly + 9}" text-anchor="end" class="axis">{lo:.3f}</text>')
    parts.append(f'<text x="{left + 166}" y="{ly + 9}" class="axis">{hi:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step) * step
    out, t = [], start
    while t <= hi + 1e-12:
        out.append(round(t, 12))
        t += step
    return out


def reward_kl_svg(board: Board, colors: dict[str, str]) -> str:
    """Inline SVG scatter: macro gold reward (y) against macro KL to π_ref (x), one point per submission."""
    pts = []
    for row in board.rows:
        r, k = row.held_out("gold_reward"), row.held_out("kl")
        if _num(r) is None or _num(k) is None:
            continue
        pts.append((row, _num(k), _num(r), k.get("ci_low"), k.get("ci_high"), r.get("ci_low"), r.get("ci_high")))
    if not pts:
        return '<p class="note">No submission has both gold reward and KL (e.g. best-of-n has no KL).</p>'
    xs = [p[1] for p in pts] + [v for p in pts for v in (p[3], p[4]) if v is not None]
    ys = [p[2] for p in pts] + [v for p in pts for v in (p[5], p[6]) if v is not None]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    padx, pady = (x1 - x0) * 0.08 or 0.05, (y1 - y0) * 0.08 or 0.005
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady
    w, h, left, top, right, bottom = 660, 320, 70, 20, 160, 50
    pw, ph = w - left - right, h - top - bottom

    def sx(v: float) -> float:
        """x pixel of a KL value."""
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        """y pixel of a reward value."""
        return top + (1 - (v - y0) / (y1 - y0)) * ph

    parts = [f'<svg class="plot scatter" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
             'aria-label="gold reward against KL">', "<title>gold reward against KL to the reference policy</title>",
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>']
    for t in _ticks(x0, x1):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{top + ph}" x2="{sx(t):.1f}" y2="{top + ph + 4}" stroke="#666"/>'
                     f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" class="axis">{t:g}</text>')
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left - 4}" y1="{sy(t):.1f}" x2="{left}" y2="{sy(t):.1f}" stroke="#666"/>'
                     f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" class="axis">{t:g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle" class="axis">KL(π_θ ‖ π_ref), '
                 'nats (macro over held-out domains)</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" transform="rotate(-90 14 {top + ph / 2})" text-anchor="middle" '
                 'class="axis">gold reward (macro)</text>')
    for row, kx, ry, klo, khi, rlo, rhi in pts:
        c = colors.get(row.results["method"], "#333")
        if klo is not None and khi is not None:
            parts.append(f'<line x1="{sx(klo):.1f}" y1="{sy(ry):.1f}" x2="{sx(khi):.1f}" y2="{sy(ry):.1f}" '
                         f'stroke="{c}" stroke-opacity="0.6"/>')
        if rlo is not None and rhi is not None:
            parts.append(f'<line x1="{sx(kx):.1f}" y1="{sy(rlo):.1f}" x2="{sx(kx):.1f}" y2="{sy(rhi):.1f}" '
                         f'stroke="{c}" stroke-opacity="0.6"/>')
        parts.append(f'<circle cx="{sx(kx):.1f}" cy="{sy(ry):.1f}" r="5" fill="{c}"><title>{_e(row.name)} '
                     f'({_e(row.results["method"])}): gold reward {ry:.4f}, KL {kx:.4f}</title></circle>')
    methods = sorted({p[0].results["method"] for p in pts})
    for i, m in enumerate(methods):
        y = top + 12 + i * 16
        parts.append(f'<circle cx="{left + pw + 16}" cy="{y - 4}" r="4" fill="{colors.get(m, "#333")}"/>'
                     f'<text x="{left + pw + 26}" y="{y}" class="axis">{_e(m)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- HTML ---------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1600px}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:4px}
table.board{border-collapse:collapse;font-size:13px;margin:8px 0}
table.board th,table.board td{border:1px solid #ddd;padding:4px 8px;white-space:nowrap}
table.board th{background:#f0f0f0;cursor:pointer;user-select:none;position:relative}
table.board th[aria-sort=ascending]::after{content:" \\25B2"}table.board th[aria-sort=descending]::after{content:" \\25BC"}
table.board td.num{text-align:right;font-variant-numeric:tabular-nums}
table.board tbody:nth-child(even) tr.main{background:#fafafa}
tr.detail td{background:#fffdf3}tr.detail table{border-collapse:collapse;margin:6px 0}
tr.detail table td,tr.detail table th{border:1px solid #e5e5e5;padding:2px 6px;font-size:12px}
button.toggle{border:none;background:none;cursor:pointer;font-size:13px;padding:0 4px}
.note{color:#666;font-size:0.9em}.plots{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
svg.plot text.axis{font-size:11px;fill:#333}svg.plot text.cell{font-size:10px}
code{background:#f3f3f3;padding:1px 3px}div.scroll{overflow-x:auto}
"""

JS = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');if(v===null||v==='')return null;
    var n=Number(v);return isNaN(n)?v.toLowerCase():n;}
  document.querySelectorAll('table.board').forEach(function(table){
    var heads=table.querySelectorAll('thead th');
    heads.forEach(function(th,col){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')==='descending'?true:
                th.getAttribute('aria-sort')==='ascending'?false:(th.getAttribute('data-first')==='asc');
        heads.forEach(function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var bodies=Array.prototype.slice.call(table.tBodies);
        bodies.sort(function(a,b){
          var x=key(a.rows[0].cells[col]),y=key(b.rows[0].cells[col]);
          if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
          if(x<y)return asc?-1:1;if(x>y)return asc?1:-1;return 0;});
        bodies.forEach(function(b){table.appendChild(b);});
      });
    });
  });
  document.querySelectorAll('button.toggle').forEach(function(btn){
    btn.addEventListener('click',function(ev){
      ev.stopPropagation();
      var detail=btn.closest('tbody').querySelector('tr.detail');
      var open=detail.hidden;detail.hidden=!open;
      btn.setAttribute('aria-expanded',open?'true':'false');btn.textContent=open?'\\u25BE':'\\u25B8';
    });
  });
})();
"""


def _sort_value(m: Any) -> str:
    v = _num(m)
    return "" if v is None else repr(v)


def _detail_table(board: Board, row: Row) -> str:
    judge_cols = [f"win_rate[{j}]" for j in board.judges]
    cols = list(DETAIL_METRICS) + judge_cols
    head = "".join(f"<th>{_e(c)}</th>" for c in ["role", "domain", "fold"] + cols)
    lines = []
    for role in ("held_out", "source"):
        for d, info in row.domain_scores(role).items():
            cells = "".join(f'<td class="num">{_e(fmt_metric(info["metrics"].get(c)))}</td>' for c in cols)
            lines.append(f"<tr><td>{'held out' if role == 'held_out' else 'in-distribution'}</td><td>{_e(d)}</td>"
                         f"<td>{_e(info['fold'])}</td>{cells}</tr>")
    return f'<table class="domains"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def board_html(board: Board, index: int, colors: dict[str, str]) -> str:
    """One board: heading, sortable table with per-domain drill-down, heatmaps and the reward-KL plot."""
    cols = board.columns()
    heads = [("group", "group", "asc"), ("submission", "submission", "asc"), ("method", "method", "asc"),
             ("seed", "seed", "asc")]
    heads += [(k, label, "asc" if k == "kl" or k.startswith("gap:") else "desc") for k, label in cols]
    heads.append(("versus_above", f"vs above ({board.rank_metric})", "desc"))
    th = "".join(f'<th scope="col" data-key="{_e(k)}" data-first="{first}" title="sort by {_e(label)}">{_e(label)}</th>'
                 for k, label, first in heads)
    bodies = []
    for position, row in enumerate(board.rows):
        r = row.results
        cells = [f'<td data-sort="{position}"><button class="toggle" aria-expanded="false" '
                 f'title="per-domain scores">&#9656;</button>{_e(row.rank_label())}</td>',
                 f'<td data-sort="{_e(row.name)}" class="name">{_e(row.name)}</td>',
                 f'<td data-sort="{_e(r["method"])}">{_e(r["method"])}</td>',
                 f'<td data-sort="{_e(r["seed"])}" class="num">{_e(r["seed"])}</td>']
        for k, _ in cols:
            m = board.cell(row, k)
            cells.append(f'<td class="num" data-sort="{_sort_value(m)}">{_e(fmt_metric(m))}</td>')
        test = row.versus_above
        diff = "" if not test or test.get("diff") is None else repr(float(test["diff"]))
        cells.append(f'<td class="num" data-sort="{diff}">{_e(fmt_test(test))}</td>')
        detail = _detail_table(board, row)
        bodies.append(f'<tbody><tr class="main">{"".join(cells)}</tr>'
                      f'<tr class="detail" hidden><td colspan="{len(heads)}">{detail}</td></tr></tbody>')
    plots = [f"<figure><figcaption>Per-domain {_e(board.rank_metric)} (held out)</figcaption>"
             f"{heatmap_svg(board, board.rank_metric)}</figure>"]
    if board.rank_metric != "gold_reward":
        plots.append(f"<figure><figcaption>Per-domain gold_reward (held out)</figcaption>"
                     f"{heatmap_svg(board, 'gold_reward')}</figure>")
    plots.append(f"<figure><figcaption>Gold reward against KL, per submission</figcaption>"
                 f"{reward_kl_svg(board, colors)}</figure>")
    anchor = f"board-{index}"
    return (f'<section id="{anchor}" class="board-section" data-edition="{_e(board.edition)}" '
            f'data-task="{_e(board.task)}" data-section="{_e(board.section)}">'
            f"<h2>{_e(board.title)}</h2>"
            f'<p class="note">Ranked by held-out macro <code>{_e(board.rank_metric)}</code>. '
            "<code>=k</code>: a statistically tied group (paired bootstrap of the macro difference against the row "
            "above; its 95% CI contains 0). Click a header to sort, &#9656; for per-domain scores.</p>"
            f'<div class="scroll"><table class="board" id="table-{index}"><thead><tr>{th}</tr></thead>{"".join(bodies)}</table></div>'
            f'<div class="plots">{"".join(plots)}</div></section>')


INTRO = ("Methods learn preferences on source domains and must align a policy on held-out domains whose labels "
         "they never see. Scores are macro averages over the held-out domains (each domain counts once) with "
         "95% bootstrap CIs; the in-distribution score is on source test pairs, and the gap is in − held. Every "
         "number was recomputed from the submission's per-sample files by <code>oodpl validate</code> before it "
         "was accepted. Win rates are against the reference policy, one column per judge.")


def render_html(boards: list[Board]) -> str:
    """The self-contained leaderboard page for ``boards`` (works offline, from ``file://``)."""
    colors = _method_colors(boards)
    n = sum(len(b.rows) for b in boards)
    if boards:
        toc = "".join(f'<li><a href="#board-{i}">{_e(b.title)}</a> ({len(b.rows)})</li>' for i, b in enumerate(boards))
        body = f"<ul class=\"toc\">{toc}</ul>" + "".join(board_html(b, i, colors) for i, b in enumerate(boards))
    else:
        body = ('<p id="empty" class="empty"><strong>No submissions yet.</strong> Add a run with '
                "<code>oodpl submit RUN_DIR</code>; this page is regenerated from the submissions.</p>")
    data = json.dumps([b.to_dict() for b in boards], sort_keys=True).replace("</", "<\\/")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>ood-pl-bench leaderboard</title>"
            f"<style>{CSS}</style></head><body>"
            "<h1>ood-pl-bench leaderboard</h1>"
            f"<p>{INTRO}</p><p class=\"note\">{n} submission{'s' if n != 1 else ''}. "
            "Generated by <code>oodpl leaderboard --render</code>; do not edit by hand.</p>"
            f"{body}"
            f'<script type="application/json" id="leaderboard-data">{data}</script>'
            f"<script>{JS}</script></body></html>\n")


def render_readme(boards: list[Board]) -> str:
    """``leaderboards/README.md``: what the board is, how to submit, and the tables as Markdown."""
    lines = [
        "# ood-pl-bench leaderboard",
        "",
        "Generated from the submissions in this folder by `oodpl leaderboard --render` (also run by",
        "`oodpl submit`); do not edit by hand. Open `index.html` for sortable tables, per-domain scores",
        "and plots.",
        "",
        "Scores are macro averages over the 10 held-out domains of a task (each domain counts once) with 95%",
        "bootstrap CIs; `in-dist` is the average on source test pairs and `gap` = in − held. Win rates are",
        "against the reference policy, one column per judge. `group`: rows whose paired-bootstrap difference to",
        "the row above has a 95% CI containing 0 share a group (`=k`); runs of reduced profiles (smoke) are",
        "listed separately and never ranked beside full runs.",
        "",
        "Submit a finished run with `oodpl submit RUN_DIR [--name NAME]`: it is validated first (`oodpl validate`",
        "recomputes every metric, CI and aggregate from the per-sample files and checks hashes, the data",
        "edition and the protocol) and stored as `<edition>/<task>/<name>/` with `summary.json`, gzip per-sample",
        "files, the run's `config.json` and `manifest.json`.",
        "",
    ]
    if not boards:
        lines += ["**No submissions yet.**", ""]
    else:
        lines.append(to_markdown(boards, heading="##"))
    return "\n".join(lines).rstrip() + "\n"


def render_pages(root: str | Path = "leaderboards") -> dict[Path, str]:
    """The generated pages of ``root`` as ``{path: text}`` (nothing is written)."""
    root = Path(root)
    boards = leaderboard(root)
    return {root / "README.md": render_readme(boards), root / "index.html": render_html(boards)}


def write_pages(pages: dict[Path, str]) -> list[Path]:
    """Write pages made by :func:`render_pages` (each file atomically); return their paths."""
    for path, text in pages.items():
        write_text(path, text)
    return list(pages)


def render_leaderboard(root: str | Path = "leaderboards") -> tuple[Path, Path]:
    """Regenerate ``<root>/README.md`` and ``<root>/index.html`` from the submissions (atomic writes)."""
    readme, page = write_pages(render_pages(root))
    return readme, page
