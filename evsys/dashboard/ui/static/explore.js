// evsys dashboard: the interactive charts of an experiment and of the compare view. Each chart
// fetches its data from the JSON endpoint in its card's data-src (with the session cookie) and
// draws it: overlaid curves with uPlot (vendored), parallel coordinates and a heat map as SVG.
// Every name and value from runs is set as text (textContent, SVG attributes), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function fmt(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Number.isInteger(value)) return String(value);
  return Number(value).toPrecision(4).replace(/\.?0+(e|$)/, "$1");
}

function hue(index) {
  return `hsl(${Math.round((index * 137.508) % 360)}, 65%, 45%)`;
}

// A colour from low (blue) to high (yellow) for t in [0, 1]; grey without a value.
function ramp(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return "#bbb";
  const h = 240 - 180 * Math.min(1, Math.max(0, t));
  return `hsl(${Math.round(h)}, 70%, ${Math.round(35 + 25 * t)}%)`;
}

async function getJSON(url) {
  const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!answer.ok) {
    let detail = `HTTP ${answer.status}`;
    try { detail = (await answer.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return answer.json();
}

function withParams(src, params) {
  const url = new URL(src, window.location.href);
  for (const [key, value] of Object.entries(params)) {
    if (value === "" || value === null || value === undefined) url.searchParams.delete(key);
    else url.searchParams.set(key, value);
  }
  return url.pathname + url.search;
}

function svgNode(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

// ---- overlaid curves ----------------------------------------------------------------------

// Exponential moving average, debiased as TensorBoard does; gaps stay gaps.
function smooth(ys, weight) {
  if (!weight) return ys;
  let last = 0, count = 0;
  return ys.map((y) => {
    if (y === null || y === undefined) return y;
    last = last * weight + (1 - weight) * y;
    count += 1;
    return last / (1 - Math.pow(weight, count));
  });
}

function startCurves(card) {
  const get = (role) => card.querySelector(`[data-role=${role}]`);
  const [metricBox, xBox, smoothBox, logBox, plot, readout, exportLink, limitBox] =
    ["metric", "x", "smooth", "log", "plot", "readout", "export", "limit"].map(get);
  let data = null;
  let chart = null;
  let owner = [null]; // series index → its run's index in data.runs (null: the x, a band)

  function draw() {
    if (chart) { chart.destroy(); chart = null; }
    plot.replaceChildren();
    if (!data || !data.runs.length) {
      readout.textContent = data ? "no curves for these arms" : "";
      return;
    }
    const log = logBox.checked;
    const weight = Number(smoothBox.value) || 0;
    const shape = (ys) => {
      const smoothed = smooth(ys, weight);
      return log ? smoothed.map((y) => (y !== null && y > 0 ? y : null)) : smoothed;
    };
    // A series per run (or group); a group's std (low, high) as two faint dashed lines beside it.
    const tables = [];
    const series = [];
    owner = [null];
    data.runs.forEach((r, i) => {
      tables.push([r.x, shape(r.y)]);
      series.push({ label: r.name, stroke: hue(i), width: data.runs.length > 50 ? 1 : 1.5, spanGaps: true, points: { show: false } });
      owner.push(i);
      if (r.low && r.high && data.runs.length <= 20 && r.low.some((v, k) => v !== r.high[k])) {
        for (const edge of [r.low, r.high]) {
          tables.push([r.x, shape(edge)]);
          series.push({ label: `${r.name} ±`, stroke: hue(i), width: 0.75, dash: [4, 4], alpha: 0.6, spanGaps: true, points: { show: false } });
          owner.push(null);
        }
      }
    });
    const joined = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const xName = data.x === "time" ? "time (s)" : "step";
    const options = {
      width: Math.max(320, plot.clientWidth || 900),
      height: 340,
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { show: false } },
      scales: { x: { time: false }, y: { distr: log ? 3 : 1 } },
      axes: [{ label: xName }, { label: data.metric }],
      series: [{ label: xName }].concat(series),
      hooks: { setCursor: [(u) => showNearest(u, xName)] },
    };
    chart = new uPlot(options, joined, plot);
    card.uplot = chart; // for a reader's console and the browser tests
    card.dataset.rendered = String(data.runs.length);
  }

  function showNearest(u, xName) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.top < 0) return;
    let best = -1, distance = Infinity;
    for (let i = 1; i < u.data.length; i++) {
      if (owner[i] === null) continue;
      const value = u.data[i][idx];
      if (value === null || value === undefined) continue;
      const gap = Math.abs(u.valToPos(value, "y") - u.cursor.top);
      if (gap < distance) { distance = gap; best = i; }
    }
    if (best < 0) return;
    const run = data.runs[owner[best]];
    readout.textContent = `${run.name} · ${xName} ${fmt(u.data[0][idx])}: ${data.metric} = ${fmt(u.data[best][idx])}`;
    readout.dataset.run = run.id;
  }

  async function load() {
    const params = { metric: metricBox.value, x: xBox.value, limit: limitBox ? limitBox.value : "" };
    try {
      data = await getJSON(withParams(card.dataset.src, params));
    } catch (error) {
      data = null;
      readout.textContent = `could not load the curves: ${error.message}`;
      plot.replaceChildren();
      return;
    }
    if (metricBox.options.length !== data.metrics.length) {
      metricBox.replaceChildren(...data.metrics.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        return option;
      }));
    }
    metricBox.value = data.metric;
    if (exportLink) {
      exportLink.href = withParams(card.dataset.src.replace("/curves.json", "/curves.csv"), {
        metric: data.metric, x: data.x, limit: limitBox ? limitBox.value : "",
      });
    }
    draw();
  }

  metricBox.addEventListener("change", load);
  xBox.addEventListener("change", load);
  if (limitBox) limitBox.addEventListener("change", load);
  smoothBox.addEventListener("input", draw);
  logBox.addEventListener("change", draw);
  load();
}

// ---- parallel coordinates and the heat map --------------------------------------------------

function axisPosition(axis, value, low, high) {
  // Where value sits between low (bottom pixel) and high (top pixel) on the axis.
  if (value === null || value === undefined) return null;
  let t;
  if (axis.kind === "category") {
    t = axis.categories.length > 1 ? value / (axis.categories.length - 1) : 0.5;
  } else if (axis.min === axis.max) {
    t = 0.5;
  } else if (axis.kind === "log") {
    t = (Math.log10(value) - Math.log10(axis.min)) / (Math.log10(axis.max) - Math.log10(axis.min));
  } else {
    t = (value - axis.min) / (axis.max - axis.min);
  }
  return low + (high - low) * t;
}

function drawParallel(holder, readout, view) {
  holder.replaceChildren();
  if (!view.axes.length || !view.arms.length) {
    readout.textContent = "nothing swept to show";
    return;
  }
  const width = Math.max(360, holder.clientWidth || 560), height = 300;
  const left = 40, right = width - 40, top = 28, bottom = height - 28;
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" }, holder);
  const step = view.axes.length > 1 ? (right - left) / (view.axes.length - 1) : 0;
  const xs = view.axes.map((_, i) => left + i * step);
  const scores = view.arms.map((a) => a.score).filter((s) => s !== null);
  const low = Math.min(...scores), high = Math.max(...scores);
  const lines = svgNode("g", { class: "lines" }, svg);
  for (const arm of view.arms) {
    const points = [];
    arm.values.forEach((value, i) => {
      const y = axisPosition(view.axes[i], value, bottom, top);
      if (y !== null) points.push(`${xs[i].toFixed(1)},${y.toFixed(1)}`);
    });
    const t = arm.score === null || high === low ? (arm.score === null ? null : 0.5) : (arm.score - low) / (high - low);
    const line = svgNode("polyline", { points: points.join(" "), stroke: ramp(t), class: "pc-line" }, lines);
    const title = svgNode("title", {}, line);
    const parts = view.axes.map((axis, i) => {
      const value = arm.values[i];
      return `${axis.key}=${axis.kind === "category" && value !== null ? axis.categories[value] : fmt(value)}`;
    });
    title.textContent = `${arm.name}: ${parts.join(", ")}`;
    line.addEventListener("mouseenter", () => { readout.textContent = title.textContent; line.classList.add("hot"); });
    line.addEventListener("mouseleave", () => line.classList.remove("hot"));
  }
  view.axes.forEach((axis, i) => {
    svgNode("line", { x1: xs[i], x2: xs[i], y1: top, y2: bottom, class: "pc-axis" }, svg);
    // the outer axes' names run inwards, so that they stay inside the chart
    const anchor = i === 0 && view.axes.length > 1 ? "start" : i === view.axes.length - 1 && i > 0 ? "end" : "middle";
    const name = svgNode("text", { x: xs[i], y: top - 10, "text-anchor": anchor, class: "pc-name" }, svg);
    name.textContent = axis.key.length > 28 ? `…${axis.key.slice(-27)}` : axis.key;
    const ticks = axis.kind === "category"
      ? axis.categories.map((c, k) => [k, c]).filter((_, k, all) => all.length <= 12 || k % Math.ceil(all.length / 12) === 0)
      : [[axis.min, fmt(axis.min)], [axis.max, fmt(axis.max)]];
    for (const [value, label] of ticks) {
      const y = axisPosition(axis, value, bottom, top);
      const tick = svgNode("text", { x: xs[i] + 4, y, dy: "0.32em", class: "pc-tick" }, svg);
      tick.textContent = String(label).slice(0, 16);
    }
  });
}

function drawHeatmap(holder, readout, map) {
  holder.replaceChildren();
  if (!map || !map.x.length || !map.y.length) {
    readout.textContent = "needs a swept axis";
    return;
  }
  const width = Math.max(360, holder.clientWidth || 560), height = 300;
  const left = 90, right = width - 10, top = 10, bottom = height - 40;
  const cw = (right - left) / map.x.length, ch = (bottom - top) / map.y.length;
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" }, holder);
  const means = map.cells.flat().filter((c) => c && c.mean !== null).map((c) => c.mean);
  const low = Math.min(...means), high = Math.max(...means);
  map.y.forEach((yValue, row) => {
    map.x.forEach((xValue, col) => {
      const cell = map.cells[row][col];
      const mean = cell ? cell.mean : null;
      const t = mean === null ? null : high === low ? 0.5 : (mean - low) / (high - low);
      const x = left + col * cw, y = bottom - (row + 1) * ch;
      const rect = svgNode("rect", { x, y, width: Math.max(cw - 1, 1), height: Math.max(ch - 1, 1), fill: ramp(t), class: "hm-cell" }, svg);
      const text = cell
        ? `${map.x_key}=${xValue}, ${map.y_key}=${yValue}: ${map.metric} ${fmt(mean)}${cell.std !== null ? ` ± ${fmt(cell.std)}` : ""} (${cell.n} arm${cell.n === 1 ? "" : "s"})`
        : `${map.x_key}=${xValue}, ${map.y_key}=${yValue}: no arm`;
      svgNode("title", {}, rect).textContent = text;
      rect.addEventListener("mouseenter", () => { readout.textContent = text; });
      if (cell && map.x.length * map.y.length <= 144 && cw > 40) {
        const label = svgNode("text", { x: x + cw / 2, y: y + ch / 2, dy: "0.32em", "text-anchor": "middle", class: "hm-value" }, svg);
        label.textContent = fmt(mean);
      }
    });
  });
  const every = (count) => Math.max(1, Math.ceil(count / 16));
  map.x.forEach((value, col) => {
    if (col % every(map.x.length)) return;
    const label = svgNode("text", { x: left + (col + 0.5) * cw, y: bottom + 14, "text-anchor": "middle", class: "hm-tick" }, svg);
    label.textContent = String(value).slice(0, 12);
  });
  map.y.forEach((value, row) => {
    if (row % every(map.y.length)) return;
    const label = svgNode("text", { x: left - 4, y: bottom - (row + 0.5) * ch, dy: "0.32em", "text-anchor": "end", class: "hm-tick" }, svg);
    label.textContent = String(value).slice(0, 14);
  });
  const xName = svgNode("text", { x: (left + right) / 2, y: height - 4, "text-anchor": "middle", class: "hm-name" }, svg);
  xName.textContent = map.x_key;
  const yName = svgNode("text", { x: 4, y: top + 8, class: "hm-name" }, svg);
  yName.textContent = map.y_key;
}

function startAxes(card) {
  const hx = card.querySelector("[data-role=hx]"), hy = card.querySelector("[data-role=hy]");
  const parallelReadout = card.querySelector("[data-role=parallel-readout]");
  const heatReadout = card.querySelector("[data-role=heatmap-readout]");

  async function load() {
    let view;
    try {
      view = await getJSON(withParams(card.dataset.src, { hx: hx.value, hy: hy.value }));
    } catch (error) {
      parallelReadout.textContent = `could not load: ${error.message}`;
      return;
    }
    for (const box of [hx, hy]) {
      if (box.options.length !== view.swept.length) {
        box.replaceChildren(...view.swept.map((key) => {
          const option = document.createElement("option");
          option.value = key;
          option.textContent = key;
          return option;
        }));
      }
    }
    if (view.heatmap) { hx.value = view.heatmap.x_key; hy.value = view.heatmap.y_key; }
    drawParallel(card.querySelector("#parallel"), parallelReadout, view.parallel);
    drawHeatmap(card.querySelector("#heatmap"), heatReadout, view.heatmap);
    card.dataset.rendered = "1";
  }

  hx.addEventListener("change", load);
  hy.addEventListener("change", load);
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const card of document.querySelectorAll(".curves-card[data-src]")) startCurves(card);
  const axes = document.getElementById("axes-views");
  if (axes && axes.dataset.src) startAxes(axes);
});
