"""The self-contained HTML report of :func:`iaca_metric.compare.compare_methods`.

One file, no external assets: inline CSS and JavaScript, thumbnails as base64 JPEG ``data:`` URIs, so
the report can be mailed or attached to a paper's supplementary material and opened offline. Per
dataset it shows the summary table (best in bold), the win-rate matrix and one row per input with the
input's and every method's thumbnail and score; rows start worst-first (lowest score of any method)
and re-sort by any column when its header is clicked (again to reverse).
"""
from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .compare import CompareResult, DatasetSummary

__all__ = ["render_report"]

_CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d5d8dc; --best: #0b7a3e; --bad: #b3261e; --head: #f2f4f7; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 0 auto; padding: 18px 28px 60px; max-width: 1800px; }
h1 { font-size: 24px; margin: 4px 0 6px; }
h2 { font-size: 20px; margin: 34px 0 6px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
.meta, .caption { color: var(--muted); font-size: 13px; margin: 2px 0 10px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; margin: 6px 0; font-size: 13px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: right; vertical-align: middle; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: 700; color: var(--best); }
table.winrate td { min-width: 64px; text-align: center; }
table.winrate td:first-child { text-align: left; }
table.images th { text-align: center; }
table.images td { text-align: center; padding: 4px 6px; }
table.images td.name { text-align: left; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable:hover { background: #e3e8ef; }
th.sortable::after { content: " \\2195"; color: #9aa0a6; }
th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--fg); }
th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--fg); }
figure { margin: 0; display: inline-block; }
figure img, td > img { display: block; max-width: 150px; max-height: 150px; border: 1px solid var(--line); margin: 0 auto; }
figcaption { font-size: 13px; margin-top: 2px; font-variant-numeric: tabular-nums; }
td.rowbest figcaption { color: var(--best); font-weight: 700; }
td.rowworst figcaption { color: var(--bad); }
td.missing { color: var(--bad); font-size: 13px; }
details { margin: 8px 0; } summary { cursor: pointer; }
ul.problems { font-size: 13px; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
"""

# Sorting: a click on a sortable header sorts that table's body by the header's column. Cells carry
# their sort value in data-v (numbers) or their text; empty data-v (missing score) always sorts last.
_JS = """
(function () {
  'use strict';
  function value(row, col, numeric) {
    var cell = row.children[col];
    if (!cell) { return null; }
    var v = cell.getAttribute('data-v');
    if (v === null) { v = cell.textContent.trim(); }
    if (v === '') { return null; }
    return numeric ? parseFloat(v) : v;
  }
  function sortBy(th) {
    var table = th.closest('table');
    var body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute('data-type') === 'num';
    var asc = th.getAttribute('aria-sort') !== 'ascending';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col, numeric), y = value(b, col, numeric);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      var c = numeric ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
  }
  document.querySelectorAll('th.sortable').forEach(function (th) {
    th.addEventListener('click', function () { sortBy(th); });
  });
})();
"""


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _anchor(ds: str) -> str:
    return "ds-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", ds) or "all")


def _img(b64: str | None, alt: str) -> str:
    if not b64:
        return ""
    return f'<img src="data:image/jpeg;base64,{b64}" alt="{_e(alt)}" loading="eager">'


def _summary_table(result: "CompareResult", s: "DatasetSummary") -> str:
    from .compare import _fmt, _score_name

    cols = result.metric_columns()
    head = ["Method", f"{_score_name(result)} &uarr;", "95% CI", "Mean rank &darr;"] + [
        f"{_e(h)} {'&uarr;' if hi else '&darr;'}" for _, h, hi, _ in cols]
    best_iaca, best_rank = s.best("iaca_mean", True), s.best("mean_rank", False)
    best_cols = {a: s.best(a, hi) for a, _, hi, _ in cols}
    out = ['<table class="summary"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in s.rows:
        def td(txt: str, best: bool) -> str:
            return f'<td class="best">{txt}</td>' if best else f"<td>{txt}</td>"
        cells = [f"<td>{_e(r.method)}</td>", td(f"{r.iaca_mean:.3f}", r.method in best_iaca),
                 f"<td>[{r.iaca_ci_low:.3f}, {r.iaca_ci_high:.3f}]</td>", td(f"{r.mean_rank:.2f}", r.method in best_rank)]
        cells += [td(_fmt(getattr(r, a), d), r.method in best_cols[a]) for a, _, _, d in cols]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _winrate_table(s: "DatasetSummary") -> str:
    out = ['<table class="winrate"><thead><tr><th>row beats column</th>' +
           "".join(f"<th>{_e(m)}</th>" for m in s.methods) + "</tr></thead><tbody>"]
    for i, m in enumerate(s.methods):
        cells = []
        for j in range(len(s.methods)):
            if i == j:
                cells.append('<td>&ndash;</td>')
                continue
            w = float(s.win[i, j])
            # green above 50 %, red below: alpha grows with the distance from a coin flip
            colour = f"rgba(11,122,62,{abs(w - 0.5) * 1.2:.2f})" if w >= 0.5 else f"rgba(179,38,30,{abs(w - 0.5) * 1.2:.2f})"
            cells.append(f'<td style="background:{colour}" data-v="{w:.6f}">{100 * w:.0f}%</td>')
        out.append(f"<tr><td>{_e(m)}</td>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _images_table(result: "CompareResult", ds: str, s: "DatasetSummary") -> str:
    from .compare import _natural_key

    methods = s.methods or result.methods
    rows = result.rows_for(ds)
    by = {(r.image, r.method): r for r in rows}
    images = sorted({r.image for r in rows}, key=_natural_key)
    entries = []
    for im in images:
        vals = [by[(im, m)].iaca for m in methods if (im, m) in by and by[(im, m)].iaca is not None]
        worst = min(vals) if vals else None
        mean = sum(vals) / len(vals) if vals else None
        entries.append((im, worst, mean))
    # worst-scored first: the lowest score any method got on the input; inputs without scores last
    entries.sort(key=lambda e: (e[1] is None, e[1] if e[1] is not None else 0.0))  # stable: ties keep name order
    head = ['<th class="sortable" data-type="text">Image</th>', "<th>Input</th>"]
    head += [f'<th class="sortable" data-type="num" title="sort by {_e(m)}\'s score">{_e(m)}</th>' for m in methods]
    head += ['<th class="sortable" data-type="num" aria-sort="ascending">Worst</th>',
             '<th class="sortable" data-type="num">Mean</th>']
    out = [f'<table class="images" data-dataset="{_e(ds)}"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"]
    for im, worst, mean in entries:
        vals = {m: by[(im, m)].iaca for m in methods if (im, m) in by and by[(im, m)].iaca is not None}
        best_v = max(vals.values()) if vals else None
        cells = [f'<td class="name">{_e(im)}</td>',
                 f'<td>{_img(result.thumbnails.get((ds, im, "(input)")), f"input {im}")}</td>']
        for m in methods:
            r = by.get((im, m))
            if r is None or r.iaca is None:
                why = "missing" if r is None or r.error == "missing output" else "failed"
                cells.append(f'<td class="missing" data-v="" title="{_e(r.error if r else "missing")}">{why}</td>')
                continue
            cls = "rowbest" if r.iaca == best_v and len(vals) > 1 else ("rowworst" if r.iaca == worst and len(vals) > 1 else "")
            rank = f" &middot; rank {r.rank:g}" if r.rank is not None else ""
            extra = []
            if r.niqe is not None:
                extra.append(f"NIQE {r.niqe:.2f}")
            if r.psnr is not None:
                extra.append(f"{r.psnr:.2f} dB")
            extra_txt = f"<br><small>{_e(', '.join(extra))}</small>" if extra else ""
            cells.append(f'<td class="{cls}" data-v="{r.iaca:.6f}" title="{_e(r.output)}"><figure>'
                         f'{_img(result.thumbnails.get((ds, im, m)), f"{m} {im}")}'
                         f"<figcaption>{r.iaca:.3f}{rank}{extra_txt}</figcaption></figure></td>")
        cells.append(f'<td data-v="{"" if worst is None else f"{worst:.6f}"}">{"-" if worst is None else f"{worst:.3f}"}</td>')
        cells.append(f'<td data-v="{"" if mean is None else f"{mean:.6f}"}">{"-" if mean is None else f"{mean:.3f}"}</td>')
        out.append(f'<tr data-image="{_e(im)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_report(result: "CompareResult", title: str = "Method comparison") -> str:
    """The report as one HTML string (UTF-8, no external references)."""
    from .compare import _caption

    md = result.metadata
    sha = str(md.get("model_sha256") or "-")
    meta = (f"iaca-metric {_e(md.get('version'))} &middot; model {_e(md.get('model_arch'))} "
            f"(sha256 {_e(sha[:16])}&hellip;) &middot; score: {_e(md.get('score'))} &middot; "
            f"{_e(md.get('n_boot'))} bootstrap resamples, seed {_e(md.get('seed'))} &middot; {_e(md.get('created'))}")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<link rel="icon" href="data:,">', f"<title>{_e(title)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<header><h1>{_e(title)}</h1><p class=\"meta\">{meta}</p>",
             "<p class=\"meta\">Higher IACA scores are better; scores are comparable between outputs of the same "
             "input. Click a column header of a per-image table to sort by it (again to reverse).</p>",
             "<nav>" + "".join(f'<a href="#{_anchor(ds)}">{_e(ds)}</a>' for ds in result.datasets) + "</nav></header>"]
    for note in result.notes:
        parts.append(f'<p class="note">{_e(note)}</p>')
    if result.problems:
        lines = result.problem_summary()
        parts.append(f'<details class="problems" open><summary>{len(result.problems)} problem(s): missing, extra or '
                     'unreadable files (full list in problems.csv)</summary><ul class="problems">' +
                     "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul></details>")
    for ds in result.datasets:
        s = result.summaries[ds]
        parts.append(f'<section class="dataset" id="{_anchor(ds)}"><h2>{_e(ds)}</h2>')
        parts.append(f'<p class="caption">{_e(_caption(result, s))}.</p>')
        for note in s.notes:
            parts.append(f'<p class="note">{_e(note)}</p>')
        if s.rows:
            parts.append(_summary_table(result, s))
            parts.append("<h3>Win rates</h3><p class=\"caption\">Share of inputs where the row method scores higher "
                         "than the column method (ties count for neither).</p>")
            parts.append(_winrate_table(s))
        parts.append("<h3>Per image (worst first)</h3>")
        parts.append(_images_table(result, ds, s))
        parts.append("</section>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
