"""`results/index.html`: the leaderboard as one self-contained page (data embedded, no server, no network).

Methods x tasks with 95% intervals for the chosen suite / protocol / mode / label fraction, every leaderboard row in
a sortable table, forest plots drawn from the same rows on one shared axis, the warning marks of the tables (low
support, contamination, label-text pretraining) and each cell's provenance on hover. A column's best cell is bold only
where a paired test says the best beats the runner-up (``leaders``); otherwise the column says "tied". Filters offer
only the values the other choices leave, and an empty choice says why. The page is a pure function of the leaderboard
and the leaders, so `bench verify` can regenerate it byte for byte.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.files import atomic_path

# the leaderboard columns a cell's hover shows
HOVER = ["name", "submitted", "submitter", "submission_command", "submission", "n_seeds", "pretrain_budget", "checkpoint_hash", "checkpoint", "pretrain_text", "contaminated", "corpora", "pool", "preset", "split_hash",
         "code_version", "unit_set", "n_test", "classes_scored", "classes_total", "min_train_positives", "n_boot", "seed"]


def page_rows(board: pd.DataFrame) -> list[dict]:
    """The leaderboard rows as the page reads them (NaN -> null, numbers as numbers)."""
    rows = []
    for record in board.to_dict(orient="records"):
        rows.append({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in record.items()})
    return rows


def column_key(row: dict) -> str:
    """The page's name of a table column (one comparable cell set): suite · protocol · mode · leads · fraction ·
    dataset/task."""
    leads = row.get("leads", "12")
    leads = "12" if leads is None or (isinstance(leads, float) and not np.isfinite(leads)) else str(leads)
    return " · ".join([str(row["suite"]), str(row["protocol"]), str(row.get("mode", "linear")), leads,
                       f"{float(row['fraction']):g}", f"{row['dataset']}/{row['task']}"])  # the fraction as JavaScript writes it


def page_header(board: pd.DataFrame) -> str:
    """What the rows rest on, computed from them: seeds per row and each pretraining budget against the paper's."""
    from bench.publish.tables import BUDGET_FREE, budget_words

    n = pd.to_numeric(board.get("n_seeds", pd.Series(dtype=float)), errors="coerce").fillna(1).astype(int)
    seeds = ", ".join(f"{(n == k).sum()} rows over S = {k} seed{'s' if k > 1 else ''}" for k in sorted(set(n)))
    budgets = sorted(set(board.get("pretrain_budget", pd.Series(dtype=str)).astype(str).str.split(";").explode()) - BUDGET_FREE)
    pretraining = "; ".join(budget_words(b) for b in budgets) or "no row pretrained here"
    return (f"Seeds (pretraining, head and label draw together; intervals over several seeds are two-level bootstraps): {seeds}. "
            f"Pretraining budget of the rows bench pretrained (named method@preset): {pretraining}.")


def render_page(board: pd.DataFrame, leaders: dict[str, str] | None = None) -> str:
    data = json.dumps(page_rows(board), sort_keys=True, ensure_ascii=False, default=str).replace("</", "<\\/")
    return (PAGE.replace("__DATA__", data).replace("__HOVER__", json.dumps(HOVER)).replace("__HEADER__", html.escape(page_header(board)))
            .replace("__LEADERS__", json.dumps(leaders or {}, sort_keys=True, ensure_ascii=False)))


def write_page(board: pd.DataFrame, path: Path, leaders: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(render_page(board, leaders), encoding="utf-8")
    return path


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>bench leaderboard</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}
th.sorted-desc::after{content:" ▼"} th.sorted-asc::after{content:" ▲"}
.best{font-weight:bold} .mark{color:#b30000}
.controls label{margin-right:1.2em} .legend{font-size:12px;color:#555}
svg text{font-size:11px} .forest{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
</style></head><body>
<h1>bench leaderboard</h1>
<p class="legend">Cells: macro AUROC (%) [95% bootstrap interval over test records]; a continuous target (suite
regression): MAE in the target's unit [95% interval], lower is better, the best the least error. Marks: † a scored class had fewer than
5 training positives; ◇ synthetic demo records (hidden unless shown: they show the pipeline, not a result); ⚠ contaminated (a released checkpoint scored inside its declared training corpora);
‡ pretrained on the records' label descriptions instead of their reports; "(submitted)": a row others added with
<code>bench leaderboard add</code> after it was verified (its submitter and command in the hover). <b>Bold</b>: the column's best method, where a
paired bootstrap test against the runner-up holds at 0.05; "(tied)": the best and the runner-up are not told apart, so
nothing is bold. Hover a cell for its provenance.
Every number comes from <code>leaderboard.csv</code>; <code>bench verify results/</code> recomputes it.</p>
<p class="legend">__HEADER__</p>
<div class="controls">
<label>suite <select id="f-suite"></select></label>
<label>protocol <select id="f-protocol"></select></label>
<label>mode <select id="f-mode"></select></label>
<label>leads <select id="f-leads"></select></label>
<label>label fraction <select id="f-fraction"></select></label>
<label><input type="checkbox" id="f-synthetic"> show synthetic demo rows <span class="mark">(marked ◇)</span></label>
<label>rows <select id="f-origin"><option value="all">all</option><option value="house">house</option>
<option value="submitted">submitted (bench leaderboard add)</option></select></label>
</div>
<p id="empty" class="note"></p>
<h2>Methods × tasks</h2>
<table id="matrix"></table>
<h2>Forest plots</h2>
<div id="forest"></div>
<h2>All rows</h2>
<table id="rows"></table>
<script id="data" type="application/json">__DATA__</script>
<script>
// synthetic demo rows (generated records: they show the pipeline, not a result) are hidden unless asked for, where the page
// has real rows (a page of demo runs only shows them, marked)
const ALL_ROWS = JSON.parse(document.getElementById("data").textContent);
const HAS_REAL = ALL_ROWS.some(r => r.synthetic !== "yes");
document.getElementById("f-synthetic").checked = !HAS_REAL;
// rows others submitted (named "... (submitted)", their submitter and command in the hover) beside the house's, or apart
const origin = r => r.submitted === "yes" ? "submitted" : "house";
function visible() {
  const synthetic = document.getElementById("f-synthetic").checked, who = document.getElementById("f-origin").value;
  return ALL_ROWS.filter(r => (synthetic || r.synthetic !== "yes") && (who === "all" || origin(r) === who));
}
let ROWS = visible();
const HOVER = __HOVER__;
const LEADERS = __LEADERS__;
const FILTERS = ["suite", "protocol", "mode", "leads", "fraction"];
// a row's name says what it is: method@preset (pretrained here), (untrained), (control); released checkpoints keep the method's
const nameOf = r => r.name || r.method;
ALL_ROWS.forEach(r => { if (r.mode === undefined || r.mode === null) r.mode = "linear";
                       r.leads = (r.leads === undefined || r.leads === null) ? "12" : String(r.leads); });
const auc = r => (r.auroc_pooled !== null && r.auroc_pooled !== undefined) ? r.auroc_pooled : r.auroc_mean;
const pct = v => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1);
// a row's estimate and interval in the metric it is read by: macro AUROC (%), or a continuous target's MAE in its unit
const continuous = r => r.metric === "MAE";
const est = r => continuous(r) ? r.mae : auc(r);
const ciLow = r => continuous(r) ? r.mae_ci_low : r.auroc_ci_low;
const ciHigh = r => continuous(r) ? r.mae_ci_high : r.auroc_ci_high;
const show = (r, v) => !continuous(r) ? pct(v) : (v === null || v === undefined) ? "–" : Number(v).toFixed(2);
const unit = r => continuous(r) && r.unit_of_target ? " " + r.unit_of_target : "";
const marks = r => (r.synthetic === "yes" ? "◇" : "") + (r.low_support === "yes" ? "†" : "") + (String(r.contaminated).includes("yes") ? "⚠" : "")
                   + (String(r.pretrain_text).includes("labels") ? "‡" : "");
const task = r => r.dataset + "/" + r.task;
const esc = s => String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
const hover = r => esc(HOVER.map(k => k + ": " + r[k]).join("\n"));
// a submitted row links to its submission record in the bundle (submitter, command, code versions, model cards)
const link = r => `<a href="${esc(r.submission)}">${esc(nameOf(r))}</a>`;

const columnKey = r => [r.suite, r.protocol, r.mode, r.leads, r.fraction, task(r)].join(" · ");
function matches(r, upto) {
  return FILTERS.slice(0, upto).every(f => {
    const v = document.getElementById("f-" + f).value;
    return v === "all" || String(r[f]) === v;
  });
}
function refill(i) {
  // a filter offers only the values the filters before it leave, so no choice gives an empty view by itself
  const name = FILTERS[i], sel = document.getElementById("f-" + name), before = sel.value;
  const values = [...new Set(ROWS.filter(r => matches(r, i)).map(r => String(r[name])))].sort();
  sel.innerHTML = ["all", ...values].map(v => `<option value="${v}">${v}</option>`).join("");
  const preferred = {suite: "linear", protocol: "fixed", mode: "linear", leads: "12", fraction: values[values.length - 1]}[name];
  sel.value = before === "all" || values.includes(before) ? before : values.includes(preferred) ? preferred : "all";
}
function selected() {
  return ROWS.filter(r => matches(r, FILTERS.length));
}
function sortable(table, rows, columns, draw) {
  let state = {col: null, desc: true};
  const head = table.querySelector("thead tr");
  head.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
    state = {col: i, desc: state.col === i ? !state.desc : true};
    const key = columns[i];
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      const nx = (x === null || x === undefined || x === "–"), ny = (y === null || y === undefined || y === "–");
      if (nx || ny) return nx - ny;
      const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return state.desc ? -c : c;
    });
    head.querySelectorAll("th").forEach(h => h.className = "");
    th.className = state.desc ? "sorted-desc" : "sorted-asc";
    draw();
  }));
}
function renderMatrix(rows) {
  const table = document.getElementById("matrix");
  const groupOf = columnKey;
  const cols = [...new Set(rows.map(groupOf))].sort();
  const methods = [...new Set(rows.map(nameOf))].sort();
  const cell = {};
  rows.forEach(r => cell[nameOf(r) + "|" + groupOf(r)] = r);
  // headers in words: the dataset and task, then the label fraction, the mode and the protocol (the filters' choices);
  // bold only the leader a paired test names (best vs runner-up, bench publish); otherwise the column is "tied"
  const modeWords = {linear: "linear probe", attentive: "attentive probe", finetune: "fine-tuned", scratch: "from scratch"};
  const words = c => {
    const [suite, protocol, mode, leads, fraction, where] = c.split(" · ");
    const [dataset, task] = where.split("/");
    return `${task} <small>(${dataset})</small><br><small>${Math.round(100 * Number(fraction))} % labels, `
      + `${modeWords[mode] || mode}${leads === "12" ? "" : ", " + leads + (/^[0-9]+$/.test(leads) ? " leads" : " only")}, `
      + `${protocol === "cv10" ? "10-fold" : protocol} split${suite === "linear" ? "" : ", " + suite}</small>`;
  };
  const head = c => `<th title="${c}">${words(c)}${c in LEADERS && !LEADERS[c] ? " <small>(tied)</small>" : ""}</th>`;
  const lines = methods.map(m => ({method: m, cells: cols.map(c => cell[m + "|" + c])}));
  table.innerHTML = "<thead><tr><th>method</th>" + cols.map(head).join("") + "</tr></thead><tbody></tbody>";
  const draw = () => {
    table.querySelector("tbody").innerHTML = lines.map(l => `<tr><td>${l.method}</td>` + l.cells.map((r, i) => r
      ? `<td title="${hover(r)}" class="${LEADERS[cols[i]] === r.method ? "best" : ""}">${show(r, est(r))} [${show(r, ciLow(r))}, ${show(r, ciHigh(r))}]${unit(r)}<span class="mark">${marks(r)}</span></td>`
      : "<td>–</td>").join("") + "</tr>").join("");
  };
  sortable(table, lines, [l => l.method, ...cols.map((c, i) => l => l.cells[i] ? est(l.cells[i]) : null)], draw);
  draw();
}
function renderRows(rows) {
  const table = document.getElementById("rows");
  const cols = [["suite", r => r.suite], ["dataset", r => r.dataset], ["task", r => r.task], ["protocol", r => r.protocol],
                ["mode", r => r.mode], ["fraction", r => r.fraction], ["method", r => r.submission ? link(r) : nameOf(r)], ["metric", r => r.metric + unit(r)], ["estimate", est],
                ["CI low", ciLow], ["CI high", ciHigh], ["F1", r => r.f1_mean], ["BAcc", r => r.bacc_mean], ["R²", r => r.r2],
                ["n test", r => r.n_test], ["marks", marks]];
  const fmt = (name, v, r) => ["estimate", "CI low", "CI high"].includes(name) ? show(r, v) : ["F1", "BAcc"].includes(name) ? pct(v)
    : name === "R²" ? (v === null || v === undefined ? "–" : Number(v).toFixed(2)) : (v === null || v === undefined ? "–" : v);
  const list = rows.slice();
  table.innerHTML = "<thead><tr>" + cols.map(c => `<th>${c[0]}</th>`).join("") + "</tr></thead><tbody></tbody>";
  const draw = () => {
    table.querySelector("tbody").innerHTML = list.map(r => `<tr title="${hover(r)}">` +
      cols.map(c => `<td>${fmt(c[0], c[1](r), r)}</td>`).join("") + "</tr>").join("");
  };
  sortable(table, list, cols.map(c => c[1]), draw);
  draw();
}
function renderForest(rows) {
  const box = document.getElementById("forest");
  const groups = {};  // AUROC on one shared axis; continuous targets, each in its own unit, are read in the table
  rows.filter(r => !continuous(r)).forEach(r => (groups[columnKey(r)] ||= []).push(r));
  // one axis for every panel, in steps of 0.1 AUROC, with a tick and a label at each step
  const shown = rows.filter(r => !continuous(r) && auc(r) !== null);
  const lo = Math.floor(10 * Math.min(0.5, ...shown.map(r => r.auroc_ci_low ?? auc(r)))) / 10;
  const hi = Math.ceil(10 * Math.max(0.5, ...shown.map(r => r.auroc_ci_high ?? auc(r)))) / 10;
  const ticks = [];
  for (let v = lo; v <= hi + 1e-9; v += 0.1) ticks.push(Math.round(v * 10) / 10);
  box.innerHTML = Object.keys(groups).sort().map(name => {
    const g = groups[name].filter(r => auc(r) !== null).sort((a, b) => auc(b) - auc(a));
    // the label column as wide as the longest name (about 6.5 px a character at 11 px), so no name is cut
    const L = 12 + 6.5 * Math.max(8, ...g.map(r => (nameOf(r) + marks(r)).length));
    const W = 260, H = 16 * g.length + 38, x = v => L + (v - lo) / Math.max(hi - lo, 1e-9) * W;
    const items = g.map((r, i) => {
      const y = 20 + 16 * i, colour = marks(r) ? "#b30000" : "#1f4e9c";
      return `<text x="${L - 4}" y="${y + 4}" text-anchor="end">${nameOf(r)}${marks(r)}</text>` +
        `<line x1="${x(r.auroc_ci_low ?? auc(r))}" x2="${x(r.auroc_ci_high ?? auc(r))}" y1="${y}" y2="${y}" stroke="${colour}"/>` +
        `<circle cx="${x(auc(r))}" cy="${y}" r="3" fill="${colour}"><title>${hover(r)}</title></circle>`;
    }).join("");
    const chance = `<line x1="${x(0.5)}" x2="${x(0.5)}" y1="10" y2="${H - 14}" stroke="#999" stroke-dasharray="3,3"/>`;
    const axis = ticks.map(v => `<line x1="${x(v)}" x2="${x(v)}" y1="${H - 18}" y2="${H - 14}" stroke="#555"/>` +
      `<text x="${x(v)}" y="${H - 3}" text-anchor="middle" font-size="9">${pct(v)}</text>`).join("") +
      `<line x1="${L}" x2="${L + W}" y1="${H - 18}" y2="${H - 18}" stroke="#555"/>`;
    return `<div class="forest"><div>${name}</div><svg width="${L + W + 20}" height="${H}">${chance}${items}${axis}</svg></div>`;
  }).join("");
}
function render() {
  FILTERS.forEach((f, i) => refill(i));
  const rows = selected();
  const choice = FILTERS.map(f => f + " " + document.getElementById("f-" + f).value).join(", ");
  document.getElementById("empty").textContent = rows.length ? "" : `No leaderboard row has ${choice}: choose "all" in one of them.`;
  renderMatrix(rows);
  renderForest(rows);
  renderRows(rows);
}
FILTERS.forEach(f => document.getElementById("f-" + f).addEventListener("change", render));
["f-synthetic", "f-origin"].forEach(id => document.getElementById(id).addEventListener("change", () => { ROWS = visible(); render(); }));
render();
</script>
</body></html>
"""
