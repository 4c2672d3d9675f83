// FanoutGrid front end: one table for all cells; Python sends only the cells that changed.
// Python formats every figure and picks every status colour (cell.text, cell.hint, cell.title,
// cell.color): this file shows those strings and never formats a number itself.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function render({ model, el: root }) {
  root.classList.add("executus-fanout");
  root.style.cssText = "font-family:system-ui,sans-serif;font-size:12px;border:1px solid #d0d7de;border-radius:6px;padding:6px 8px;max-width:100%;";
  const cells = {};
  const tds = {};

  const bar = el("div", "executus-fanout-header");
  bar.style.cssText = "display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin-bottom:6px";
  const progress = el("span", "executus-progress");
  const totals = el("span", "executus-totals");
  const select = el("select", "executus-metric");
  for (const m of ["latency", "cost", "tokens"]) {
    const o = el("option", null, "colour by " + m);
    o.value = m;
    select.appendChild(o);
  }
  select.value = model.get("metric");
  select.addEventListener("change", () => { model.set("metric", select.value); model.save_changes(); });
  const cancel = el("button", "executus-cancel", "Cancel all");
  cancel.style.cssText = "padding:2px 10px;border:1px solid #bf8700;background:#fff8c5;border-radius:4px;cursor:pointer";
  cancel.addEventListener("click", () => model.send({ type: "cancel" }));
  bar.append(progress, totals, select, cancel);

  const scroller = el("div");
  scroller.style.cssText = "max-height:520px;overflow:auto";
  const table = el("table", "executus-grid");
  table.style.cssText = "border-collapse:collapse;table-layout:fixed";
  const thead = el("thead");
  const hr = el("tr");
  hr.appendChild(el("th", null, "prompt \\ model"));
  for (const c of model.get("cols")) {
    const th = el("th", null, c);
    th.style.cssText = "padding:2px 4px;max-width:160px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap";
    th.title = c;
    hr.appendChild(th);
  }
  thead.appendChild(hr);
  const tbody = el("tbody");
  model.get("rows").forEach((prompt, r) => {
    const tr = el("tr");
    const th = el("th", null, prompt);
    th.title = prompt;
    th.style.cssText = "text-align:left;padding:2px 4px;max-width:220px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap";
    tr.appendChild(th);
    model.get("cols").forEach((_c, c) => {
      const key = r + "," + c;
      const td = el("td", "executus-cell executus-status-queued");
      td.dataset.key = key;
      td.style.cssText = "border:1px solid #d0d7de;padding:2px 4px;min-width:90px;max-width:160px;cursor:pointer;vertical-align:top";
      td.addEventListener("click", () => {
        mark(key);
        model.send({ type: "select", key });
      });
      tds[key] = td;
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  });
  table.append(thead, tbody);
  scroller.appendChild(table);
  root.append(bar, scroller);

  function mark(key) {  // outline the selected cell (a click, or the selection a new view is sent)
    for (const other of root.querySelectorAll(".executus-selected")) {
      other.classList.remove("executus-selected");
      other.style.outline = "";
    }
    const td = tds[key];
    if (!td) return;
    td.classList.add("executus-selected");
    td.style.outline = "2px solid #0969da";
  }

  function paint(key) {
    const cell = cells[key];
    const td = tds[key];
    if (!cell || !td) return;
    const selected = td.classList.contains("executus-selected");
    td.className = "executus-cell executus-status-" + cell.status + (selected ? " executus-selected" : "");
    td.style.borderLeft = "4px solid " + cell.color;
    const metric = model.get("metric");
    const figure = el("div", "executus-cell-metric", (cell.text || {})[metric] || "");
    const hint = (cell.hint || {})[metric];
    if (hint) figure.title = hint;
    td.replaceChildren(
      el("div", "executus-cell-status", cell.status),
      figure,
      el("div", "executus-cell-preview", cell.preview || ""),
    );
    td.title = cell.title || "";
    td.lastChild.style.cssText = "color:#57606a;white-space:nowrap;overflow:hidden;text-overflow:ellipsis";
  }

  function recolor() {
    const metric = model.get("metric");
    let max = 0;
    for (const k in cells) { const v = cells[k][metric]; if (v != null && isFinite(v)) max = Math.max(max, v); }
    for (const k in cells) {
      const v = cells[k][metric];
      const a = max > 0 && v != null && isFinite(v) ? 0.08 + 0.5 * (v / max) : 0;
      tds[k].style.background = a ? "rgba(9,105,218," + a.toFixed(3) + ")" : "";
      paint(k);
    }
  }

  function onPatch(msg) {
    if (msg.type !== "patch") return;
    Object.assign(cells, msg.cells);
    if (msg.selected) mark(msg.selected);
    if (msg.header) {
      progress.textContent = msg.header.progress;
      totals.textContent = msg.header.totals;
      totals.title = msg.header.cost_hint || "";
      root.classList.toggle("executus-done", !!msg.header.done);
      cancel.disabled = !!msg.header.done;
    }
    recolor();
  }

  model.on("msg:custom", onPatch);
  model.on("change:metric", () => { select.value = model.get("metric"); recolor(); });
  model.send({ type: "hello" });
  return () => model.off("msg:custom", onPatch);
}

export default { render };
