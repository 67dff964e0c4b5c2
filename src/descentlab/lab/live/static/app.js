// descentlab live lab: every control recomputes the race through POST /api/race (only changed runs are
// recomputed by the server's cache); the paths, f per step, the inner state and the effective per-coordinate
// step are redrawn from the answer. No libraries, no network beyond this server.
"use strict";

const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#ad494a"];
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const lab = {
  meta: null, land: null, landscape: "ravine", typed: null, start: null, steps: 500, noise: 0,
  runs: [], focus: 0, answer: null, inflight: false, pending: false, lessons: [], requests: 0,
  held: new Map(),  // run key -> run: the server sends only the runs this page does not hold yet
};

// ---- small helpers -------------------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") node.style.cssText = v;  // CSSOM: the page's CSP refuses style attributes
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
const fmt = (v) => v === null || v === undefined ? "—" : (typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v));
function status(text, error) { const s = $("status"); s.textContent = text; s.classList.toggle("error", !!error); }
async function getJSON(url, body) {
  const res = await fetch(url, body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body)});
  const data = await res.json();
  if (!res.ok) throw Object.assign(new Error(data.error || res.statusText), {payload: data});
  return data;
}
function optionSpecs(name) { return lab.meta.optimizers.find((o) => o.name === name); }

// ---- controls: one per option of the registry row, read from /api/meta ---------------------------------------
function sliderFor(spec, value, onValue) {
  // spec: {scale: "log"|"linear", lo, hi}; positions 0..1000
  const input = el("input", {type: "range", min: 0, max: 1000, step: 1, "data-scale": spec.scale});
  const out = el("output");
  const toValue = (p) => spec.scale === "log"
    ? Number(Math.pow(10, Math.log10(spec.lo) + (p / 1000) * (Math.log10(spec.hi) - Math.log10(spec.lo))).toPrecision(3))
    : Number((spec.lo + (p / 1000) * (spec.hi - spec.lo)).toPrecision(4));
  const toPos = (v) => spec.scale === "log"
    ? 1000 * (Math.log10(Math.max(v, spec.lo)) - Math.log10(spec.lo)) / (Math.log10(spec.hi) - Math.log10(spec.lo))
    : 1000 * (v - spec.lo) / (spec.hi - spec.lo);
  input.value = Math.round(Math.min(1000, Math.max(0, toPos(value))));
  out.value = fmt(value);
  input.addEventListener("input", () => { const v = toValue(Number(input.value)); out.value = fmt(v); onValue(v); });
  return [input, out];
}

function control(run, opt) {
  const current = run.options[opt.name] !== undefined ? run.options[opt.name] : opt.default;
  const set = (v) => { run.options[opt.name] = v; requestRace(); };
  if (opt.kind === "number") {
    const [input, out] = sliderFor(opt, Number(current), set);
    input.dataset.opt = opt.name;
    return [el("label", {title: rangeText(opt.allowed)}, opt.name, input, out)];
  }
  if (opt.kind === "pair") {
    return opt.parts.map((part, i) => {
      const [input, out] = sliderFor(part, Number(current[i]), (v) => {
        const pair = (run.options[opt.name] || opt.default).slice(); pair[i] = v; set(pair);
      });
      input.dataset.opt = part.name;
      return el("label", {title: rangeText(part.allowed)}, part.name, input, out);
    });
  }
  if (opt.kind === "bool") {
    const box = el("input", {type: "checkbox", "data-opt": opt.name});
    box.checked = !!current;
    box.addEventListener("change", () => set(box.checked));
    return [el("label", {}, opt.name, box, el("span"))];
  }
  const select = el("select", {"data-opt": opt.name});
  for (const c of opt.choices) select.append(el("option", {value: JSON.stringify(c), text: c === null ? "default" : c}));
  select.value = JSON.stringify(current);
  select.addEventListener("change", () => set(JSON.parse(select.value)));
  return [el("label", {}, opt.name, select, el("span"))];
}
function rangeText(a) {
  if (!a) return "";
  return `allowed: ${a.min_open ? "(" : "["}${a.min === null ? "−∞" : a.min}, ${a.max === null ? "∞" : a.max}${a.max_open ? ")" : "]"}`;
}

function scheduleControls(run, box) {
  box.replaceChildren();
  const select = el("select", {"data-schedule": "1"});
  select.append(el("option", {value: "", text: "no schedule (constant lr)"}));
  for (const s of lab.meta.schedules) select.append(el("option", {value: s.name, text: s.name}));
  select.value = run.schedule ? run.schedule.name : "";
  box.append(el("label", {}, "schedule", select, el("span")));
  select.addEventListener("change", () => {
    const spec = lab.meta.schedules.find((s) => s.name === select.value);
    run.schedule = spec ? {name: spec.name, options: Object.fromEntries(spec.options.map((o) => [o.name, o.default]))} : null;
    scheduleControls(run, box);
    requestRace();
  });
  if (!run.schedule) return;
  const spec = lab.meta.schedules.find((s) => s.name === run.schedule.name);
  for (const o of spec.options) {
    const [input, out] = sliderFor({scale: "linear", lo: o.lo, hi: o.hi}, run.schedule.options[o.name], (v) => {
      run.schedule.options[o.name] = o.integer ? Math.max(1, Math.round(v)) : v; out.value = fmt(run.schedule.options[o.name]);
      requestRace();
    });
    box.append(el("label", {}, o.name, input, out));
  }
}

function card(run, i) {
  const spec = optionSpecs(run.name);
  const opts = el("div", {class: "opts"});
  for (const opt of spec.options) opts.append(...control(run, opt));
  const sched = el("div", {class: "opts"});
  scheduleControls(run, sched);
  const setting = el("select", {class: "setting", title: "the row's variants and other libraries' presets"});
  setting.append(el("option", {value: "", text: "settings…"}));
  spec.settings.forEach((s, k) => setting.append(el("option", {value: k, text: s.label, title: s.note || ""})));
  setting.addEventListener("change", () => {
    if (setting.value === "") return;
    const s = spec.settings[Number(setting.value)];
    run.options = JSON.parse(JSON.stringify(s.options));
    run.label = `${run.name} (${s.label.replace(/^variant: /, "")})`;
    renderCards(); requestRace();
  });
  const remove = el("button", {type: "button", class: "remove", title: "remove", text: "✕"});
  remove.addEventListener("click", (e) => { e.stopPropagation(); lab.runs.splice(i, 1); lab.focus = 0; renderCards(); requestRace(); });
  const node = el("div", {class: "card" + (i === lab.focus ? " focus" : ""), "data-run": i, style: `--c:${COLOURS[i % COLOURS.length]}`},
    el("h3", {}, el("span", {text: run.label || run.name}), setting, remove), opts, sched,
    el("p", {class: "note", text: spec.summary}));
  node.addEventListener("click", () => { if (lab.focus !== i) { lab.focus = i; markFocus(); drawState(); } });
  return node;
}
function markFocus() { document.querySelectorAll(".card").forEach((c) => c.classList.toggle("focus", Number(c.dataset.run) === lab.focus)); }
function renderCards() { $("runs").replaceChildren(...lab.runs.map(card)); }
function addRun(name, options, label) { lab.runs.push({name, options: options || {}, label: label || name, schedule: null}); }

// ---- the request -------------------------------------------------------------------------------------------
function body() {
  const landscape = lab.typed ? lab.typed : lab.landscape;
  return {landscape, start: lab.start, steps: lab.steps, noise: lab.noise, known: [...lab.held.keys()],
    optimizers: lab.runs.map((r) => Object.assign({name: r.name, options: r.options, label: r.label}, r.schedule ? {schedule: r.schedule} : {}))};
}
function requestRace() {
  if (lab.inflight) { lab.pending = true; return; }
  if (!lab.runs.length) { lab.answer = {runs: []}; draw(); return; }
  lab.inflight = true;
  const t0 = performance.now();
  getJSON("/api/race", body()).then((answer) => {
    answer.runs = answer.runs.map((r) => r.known ? lab.held.get(r.key) : r);
    lab.held = new Map(answer.runs.map((r) => [r.key, r]));
    lab.answer = answer; lab.requests += 1;
    status(`${answer.runs.length} runs · ${answer.computed} recomputed, ${answer.cached} from cache · ${Math.round(performance.now() - t0)} ms`);
    draw();
  }).catch((err) => status(err.message, true)).finally(() => {
    lab.inflight = false;
    if (lab.pending) { lab.pending = false; requestRace(); }
  });
}

// ---- drawing ----------------------------------------------------------------------------------------------
const W = 640, H = 440;
function toPx(p) {
  const [[x0, x1], [y0, y1]] = lab.land.domain;
  return [(p[0] - x0) / (x1 - x0) * W, H - (p[1] - y0) / (y1 - y0) * H];
}
function fromPx(px, py) {
  const [[x0, x1], [y0, y1]] = lab.land.domain;
  return [x0 + px / W * (x1 - x0), y0 + (H - py) / H * (y1 - y0)];
}

function drawMap() {
  const {n, z} = lab.land.grid;
  let lo = Infinity, hi = -Infinity;
  for (const row of z) for (const v of row) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const delta = (hi - lo) * 1e-4 + 1e-12;
  const t = (v) => Math.log(v - lo + delta);
  const tl = t(lo), th = t(hi);
  const level = (v) => v === null ? null : (t(v) - tl) / (th - tl);
  const img = new ImageData(n, n);
  for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) {
    const s = level(z[j][i]); const k = ((n - 1 - j) * n + i) * 4;
    const g = s === null ? 255 : Math.round(245 - 150 * s);
    img.data[k] = g; img.data[k + 1] = g + (s === null ? 0 : 5); img.data[k + 2] = Math.min(255, g + 20); img.data[k + 3] = 255;
  }
  const off = el("canvas", {width: n, height: n});
  off.getContext("2d").putImageData(img, 0, 0);
  const ctx = $("map").getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, W, H);
  // contour lines: marching squares on the grid, 14 levels evenly spaced in the log of f − min
  ctx.strokeStyle = "rgba(60,60,80,0.45)"; ctx.lineWidth = 0.7; ctx.beginPath();
  const sx = W / (n - 1), sy = H / (n - 1);
  for (let L = 1; L < 15; L++) {
    const c = L / 15;
    for (let j = 0; j < n - 1; j++) for (let i = 0; i < n - 1; i++) {
      const a = level(z[j][i]), b = level(z[j][i + 1]), d = level(z[j + 1][i]), e = level(z[j + 1][i + 1]);
      if (a === null || b === null || d === null || e === null) continue;
      const pts = [];
      const edge = (v1, v2, x1, y1, x2, y2) => {
        if ((v1 < c) !== (v2 < c)) { const f = (c - v1) / (v2 - v1); pts.push([x1 + f * (x2 - x1), y1 + f * (y2 - y1)]); }
      };
      edge(a, b, i, j, i + 1, j); edge(b, e, i + 1, j, i + 1, j + 1); edge(e, d, i + 1, j + 1, i, j + 1); edge(d, a, i, j + 1, i, j);
      for (let k = 0; k + 1 < pts.length; k += 2) {
        ctx.moveTo(pts[k][0] * sx, H - pts[k][1] * sy); ctx.lineTo(pts[k + 1][0] * sx, H - pts[k + 1][1] * sy);
      }
    }
  }
  ctx.stroke();
}

function drawPaths() {
  const svg = $("overlay");
  svg.replaceChildren();
  for (const m of lab.land.minima) {
    const [px, py] = toPx(m);
    svg.append(el("svg:text", {x: px, y: py + 5, "text-anchor": "middle", fill: "gold", stroke: "#333", "stroke-width": 0.6,
      "font-size": 18, text: "★"}));
  }
  (lab.answer ? lab.answer.runs : []).forEach((run, i) => {
    const d = run.path.map((p, k) => { const [x, y] = toPx(p); return `${k ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`; }).join("");
    svg.append(el("svg:path", {class: "run-path", "data-run": i, d, stroke: COLOURS[i % COLOURS.length]}));
    const [ex, ey] = toPx(run.path[run.path.length - 1]);
    svg.append(el("svg:circle", {cx: ex, cy: ey, r: 3.5, fill: COLOURS[i % COLOURS.length]}));
  });
  const [sx, sy] = toPx(lab.start);
  svg.append(el("svg:circle", {id: "start", cx: sx, cy: sy, r: 6, fill: "#000", stroke: "#fff", "stroke-width": 1.5}));
  $("start-out").value = `(${fmt(lab.start[0])}, ${fmt(lab.start[1])})`;
}

function linePlot(svg, w, h, series, {log, xmax, title}) {
  // series: [{values: [..], colour, dash}] ; x = index
  svg.replaceChildren();
  const pad = {l: 44, r: 6, t: title ? 14 : 6, b: 16};
  const tr = (v) => log ? Math.log10(Math.max(Math.abs(v), 1e-16)) : v;
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const v of s.values) if (v !== null && isFinite(v)) { const u = tr(v); lo = Math.min(lo, u); hi = Math.max(hi, u); }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
  const X = (k) => pad.l + k / Math.max(1, xmax) * (w - pad.l - pad.r);
  const Y = (u) => h - pad.b - (u - lo) / (hi - lo) * (h - pad.t - pad.b);
  svg.append(el("svg:rect", {x: pad.l, y: pad.t, width: w - pad.l - pad.r, height: h - pad.t - pad.b, fill: "none", stroke: "#ccc"}));
  const label = (u) => log ? `1e${Math.round(u)}` : fmt(u);
  svg.append(el("svg:text", {class: "axis", x: 2, y: pad.t + 8, text: label(hi)}), el("svg:text", {class: "axis", x: 2, y: h - pad.b, text: label(lo)}),
    el("svg:text", {class: "axis", x: w - pad.r, y: h - 3, "text-anchor": "end", text: `step ${xmax}`}));
  if (title) svg.append(el("svg:text", {class: "axis", x: pad.l, y: 10, text: title}));
  for (const s of series) {
    let d = "", pen = false;
    s.values.forEach((v, k) => {
      if (v === null || !isFinite(v)) { pen = false; return; }
      d += `${pen ? "L" : "M"}${X(k + (s.offset || 0)).toFixed(1)} ${Y(tr(v)).toFixed(1)}`; pen = true;
    });
    svg.append(el("svg:path", {d, fill: "none", stroke: s.colour, "stroke-width": 1.4, "stroke-dasharray": s.dash ? "4 3" : "", class: s.cls || ""}));
  }
}

function drawF() {
  const runs = lab.answer ? lab.answer.runs : [];
  let ref = lab.land.f_star;
  if (ref === null) { ref = Math.min(...runs.flatMap((r) => r.f)) - 1e-12; }
  $("f-caption").textContent = lab.land.f_star === null ? "f − (lowest f reached) per step (log scale)" : "f − f* per step (log scale)";
  linePlot($("fplot"), 640, 200, runs.map((r, i) => ({values: r.f.map((v) => Math.max(v - ref, 1e-16)), colour: COLOURS[i % COLOURS.length], cls: "f-line"})),
    {log: true, xmax: lab.steps});
}

function drawState() {
  const box = $("stateplots");
  box.replaceChildren();
  const run = lab.answer && lab.answer.runs[lab.focus];
  $("focus-name").textContent = run ? run.label : "—";
  if (!run) return;
  const colour = COLOURS[lab.focus % COLOURS.length];
  const panels = Object.entries(run.state).map(([key, rows]) => [`${run.state_names[key]}  (${key})`, rows]);
  panels.push(["effective step per coordinate  −Δw / g", run.effective_step]);
  if (run.lr_per_step) panels.push(["learning rate (schedule)", run.lr_per_step.map((v) => [v, v])]);
  for (const [title, rows] of panels) {
    const positive = rows.every((r) => r.every((v) => v === null || v >= 0));
    const svg = el("svg:svg", {viewBox: "0 0 315 130", width: 315, height: 130, class: "state-plot"});
    linePlot(svg, 315, 130, [0, 1].map((c) => ({values: rows.map((r) => r[c]), colour, dash: c === 1, offset: 1})),
      {log: positive, xmax: lab.steps, title: title + (positive ? " (log)" : "")});
    box.append(el("figure", {}, svg));
  }
}

function drawTable() {
  const tbody = $("metrics").tBodies[0];
  tbody.replaceChildren(...(lab.answer ? lab.answer.runs : []).map((r, i) => el("tr", {},
    el("td", {}, el("span", {style: `color:${COLOURS[i % COLOURS.length]}`, text: "■ "}), r.label),
    el("td", {text: fmt(r.lr) + (r.schedule ? ` (${r.schedule.name})` : "")}), el("td", {text: fmt(r.final_f)}),
    el("td", {text: r.steps_to_tol === null ? "never" : r.steps_to_tol}), el("td", {text: r.settled_at === null ? "never" : r.settled_at}),
    el("td", {text: r.evaluations}),
    el("td", {text: r.nearest_minimum ? `(${fmt(r.nearest_minimum[0])}, ${fmt(r.nearest_minimum[1])})` : "—"}),
    el("td", {text: r.diverged ? `yes, step ${r.steps_run}` : "no"}))));
}

function draw() { if (!lab.land) return; drawPaths(); drawF(); drawState(); drawTable(); }

// ---- landscape, lessons, wiring ---------------------------------------------------------------------------
async function loadLandscape(spec, start) {
  const land = await getJSON("/api/landscape", {landscape: spec});
  lab.land = land;
  lab.start = start || land.start;
  $("formula-text").textContent = `f = ${land.formula}${land.lesson ? " — " + land.lesson : ""}`;
  drawMap();
}

async function loadLessons(lang) {
  const data = await getJSON(`/api/lessons?lang=${lang}`);
  lab.lessons = data.lessons;
  const select = $("lesson");
  select.replaceChildren(el("option", {value: "", text: lang === "ko" ? "— 교재의 레슨 고르기 —" : "— choose a lesson of the book —"}));
  for (const l of data.lessons) {
    const o = el("option", {value: l.id, text: l.title + (l.request ? "" : (lang === "ko" ? " (경주 아님)" : " (not a race)"))});
    if (!l.request) o.disabled = true;
    select.append(o);
  }
  document.documentElement.lang = lang;
}

async function applyLesson(id) {
  const lesson = lab.lessons.find((l) => l.id === id);
  if (!lesson || !lesson.request) return;
  const req = lesson.request;
  $("lead").hidden = false;
  $("lead").textContent = `${lesson.title}: ${lesson.lead}  —  ${lesson.cli}`;
  lab.typed = null; lab.landscape = req.landscape; $("landscape").value = req.landscape; $("typed").hidden = true;
  lab.steps = req.steps; $("steps").value = req.steps; $("steps-out").value = req.steps;
  lab.noise = req.noise || 0; $("noise").value = lab.noise; $("noise-out").value = lab.noise;
  await loadLandscape(req.landscape, req.start);
  lab.runs = []; lab.focus = 0;
  for (const o of req.optimizers) addRun(o.name, o.options, o.label);
  renderCards(); requestRace();
}

async function init() {
  lab.meta = await getJSON("/api/meta");
  const ls = $("landscape");
  for (const l of lab.meta.landscapes) ls.append(el("option", {value: l.name, text: `${l.name}: ${l.formula}`}));
  ls.append(el("option", {value: "__typed__", text: "f(x, y) typed by you…"}));
  ls.value = lab.landscape;
  const add = $("add-name");
  for (const o of lab.meta.optimizers) add.append(el("option", {value: o.name, text: `${o.name} — ${o.summary}`}));
  await loadLessons($("lang").value);
  // The page opens on a lesson of the book (?lesson=ID; the default: the one whose picture the ravine's caption
  // describes), so that what a learner sees first is what the caption says. ?lesson=none: the default
  // optimizers at their registry defaults.
  const wanted = new URLSearchParams(location.search).get("lesson") ?? lab.meta.opening_lesson;
  const opening = lab.lessons.find((l) => l.id === wanted && l.request);
  if (wanted !== "none" && !opening) {
    const ids = lab.lessons.filter((l) => l.request).map((l) => l.id);
    $("lead").hidden = false;  // stays up (the status line is rewritten by every race)
    $("lead").textContent = `unknown lesson ${JSON.stringify(wanted)} in the address (?lesson=…); allowed: none, ${ids.join(", ")}`;
  }
  if (opening) {
    $("lesson").value = opening.id;
    await applyLesson(opening.id);
  } else {
    await loadLandscape(lab.landscape);
    for (const name of lab.meta.default_optimizers) addRun(name);
    renderCards();
  }

  ls.addEventListener("change", async () => {
    if (ls.value === "__typed__") { $("typed").hidden = false; return; }
    $("typed").hidden = true; lab.typed = null; lab.landscape = ls.value;
    await loadLandscape(ls.value); requestRace();
  });
  $("apply-formula").addEventListener("click", async () => {
    const spec = {f: $("formula").value, domain: [[Number($("x0").value), Number($("x1").value)], [Number($("y0").value), Number($("y1").value)]]};
    try { await loadLandscape(spec); lab.typed = spec; requestRace(); } catch (err) { status(err.message, true); }
  });
  $("steps").addEventListener("input", () => { lab.steps = Number($("steps").value); $("steps-out").value = lab.steps; requestRace(); });
  $("noise").addEventListener("input", () => { lab.noise = Number($("noise").value); $("noise-out").value = lab.noise; requestRace(); });
  $("add").addEventListener("click", () => { addRun(add.value); renderCards(); requestRace(); });
  $("overlay").addEventListener("click", (e) => {
    const box = $("overlay").getBoundingClientRect();
    lab.start = fromPx((e.clientX - box.left) * W / box.width, (e.clientY - box.top) * H / box.height).map((v) => Number(v.toPrecision(4)));
    requestRace();
  });
  $("lang").addEventListener("change", () => loadLessons($("lang").value));
  $("lesson").addEventListener("change", () => applyLesson($("lesson").value));
  if (!opening) requestRace();  // applyLesson has asked already
}

window.addEventListener("DOMContentLoaded", () => { init().catch((err) => status(err.message, true)); });
window.descentlabLab = lab;  // for the tests and the curious
