// labsim dashboard: one page, no libraries, nothing from the internet.
// The server pushes a snapshot and then coalesced changes (Server-Sent Events, /events);
// tiles are drawn on a canvas and only changed tiles are repainted, once per frame.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

let INFO = null, STATES = [], COLORS = {}, SVC_COLORS = {};
const fleet = {macs: [], group: [], groups: [], states: [], counts: [], series: {t: [], counts: [], totals: []}};
const filter = {state: "", vendor: "", mac: ""};
let layout = null, dirty = new Set(), fullRedraw = true, selected = null;

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  return {status: response.status, body};
}

// --- start -------------------------------------------------------------------------------

async function start() {
  INFO = (await getJSON("api/info?token=" + encodeURIComponent(TOKEN))).body;
  COLORS = INFO.colors; SVC_COLORS = INFO.service_colors;
  $("name").textContent = INFO.name;
  document.title = "labsim: " + INFO.name;
  $("mode").textContent = INFO.control ? "trainer (controls on)" : "read-only view";
  $("controls-tab").hidden = !INFO.control;
  $("lab-tab").hidden = !INFO.lab;
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  for (const s of INFO.services) for (const id of ["c-service", "c-fault-service"]) $(id).add(new Option(s, s));
  for (const f of INFO.fleets) $("c-fleet").add(new Option(f, f));
  if (INFO.lab) showLab(INFO.lab);
  if (INFO.mode === "serve") { showTab("services"); $("fleet").innerHTML = "<p class='note'>labsim serve: no fleet here, only the services.</p>"; }
  bindFilters(); bindControls();
  $("tiles").addEventListener("click", onTileClick);
  $("phone-close").addEventListener("click", () => { $("phone").hidden = true; selected = null; });
  window.addEventListener("resize", () => { layout = null; fullRedraw = true; schedule(); });
  connect();
}

function showTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.id === name));
  if (name === "services") pollServices();
  if (name === "fleet") { layout = null; fullRedraw = true; schedule(); }
}

// --- the live feed -------------------------------------------------------------------------

function connect() {
  const source = new EventSource("events");
  source.onopen = () => $("link").className = "link up";
  source.onerror = () => $("link").className = "link down";  // EventSource reconnects by itself
  source.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    STATES = s.states; fleet.macs = s.macs; fleet.group = s.group; fleet.groups = s.groups;
    fleet.states = Array.from(s.s, (c) => c.charCodeAt(0) - 48);
    fleet.counts = s.counts; fleet.series = s.series;
    setStatus(s);
    fillFilterChoices(); layout = null; fullRedraw = true; schedule(); drawCharts();
  });
  source.addEventListener("changes", (e) => {
    const c = JSON.parse(e.data);
    for (let i = 0; i < c.c.length; i += 2) { fleet.states[c.c[i]] = c.c[i + 1]; dirty.add(c.c[i]); }
    fleet.counts = c.counts;
    if (c.point) {
      fleet.series.t.push(c.t); fleet.series.counts.push(c.counts); fleet.series.totals.push(c.totals || {});
      // Thinned as the server thins its copy: running totals lose no request when a point goes.
      if (fleet.series.t.length > 1200) for (const k of ["t", "counts", "totals"]) fleet.series[k] = fleet.series[k].filter((_, i) => i % 2 === 0);
    }
    setStatus(c);
    if (filter.state) fullRedraw = true;
    schedule();
    if (selected && c.c.some((v, i) => i % 2 === 0 && fleet.macs[v] === selected)) openPhone(selected);
  });
}

function setStatus(frame) {
  $("status").textContent = (frame.status || "") + (frame.faults && frame.faults.length ? " · faults: " + frame.faults.join(", ") : "");
}

let scheduled = false, chartsDue = 0;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    drawTiles(); drawLegend();
    const now = performance.now();
    if (now > chartsDue) { chartsDue = now + 500; drawCharts(); }
  });
}

// --- the tiles -----------------------------------------------------------------------------

function matches(i) {
  if (filter.state && STATES[fleet.states[i]] !== filter.state) return false;
  if (filter.vendor && fleet.groups[fleet.group[i]].vendor !== filter.vendor) return false;
  if (filter.mac && !fleet.macs[i].includes(filter.mac)) return false;
  return true;
}

function computeLayout() {
  const canvas = $("tiles");
  const width = canvas.clientWidth || 1000;
  const n = Math.max(1, fleet.macs.length);
  const size = Math.max(5, Math.min(22, Math.floor(Math.sqrt((width * 420) / n))));
  const cols = Math.max(1, Math.floor((width - 16) / size));
  const byGroup = fleet.groups.map(() => []);
  fleet.group.forEach((g, i) => byGroup[g].push(i));
  const pos = new Array(n); const heads = [];
  let y = 4;
  byGroup.forEach((members, g) => {
    if (!members.length) return;
    const info = fleet.groups[g];
    heads.push({y: y + 12, text: `${info.fleet} · ${info.vendor} ${info.model} (${members.length})`});
    y += 18;
    members.forEach((i, k) => { pos[i] = [8 + (k % cols) * size, y + Math.floor(k / cols) * size]; });
    y += Math.ceil(members.length / cols) * size + 8;
  });
  const ratio = window.devicePixelRatio || 1;
  canvas.height = Math.ceil(y * ratio); canvas.style.height = y + "px"; canvas.width = Math.ceil(width * ratio);
  canvas.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
  return {size, pos, heads};
}

function drawTile(ctx, i) {
  const [x, y] = layout.pos[i];
  const s = layout.size;
  ctx.clearRect(x, y, s, s);
  ctx.globalAlpha = matches(i) ? 1 : 0.12;
  ctx.fillStyle = COLORS[STATES[fleet.states[i]]] || "#999";
  ctx.fillRect(x, y, s - (s > 6 ? 2 : 1), s - (s > 6 ? 2 : 1));
  if (fleet.macs[i] === selected) { ctx.globalAlpha = 1; ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.strokeRect(x + 1, y + 1, s - 4, s - 4); }
  ctx.globalAlpha = 1;
}

function drawTiles() {
  if (!$("fleet").classList.contains("active") || !fleet.macs.length) return;
  const ctx = $("tiles").getContext("2d");
  if (!layout) { layout = computeLayout(); fullRedraw = true; }
  if (fullRedraw) {
    ctx.clearRect(0, 0, $("tiles").width, $("tiles").height);
    ctx.fillStyle = "#333"; ctx.font = "12px system-ui, sans-serif";
    for (const h of layout.heads) ctx.fillText(h.text, 8, h.y);
    let shown = 0;
    for (let i = 0; i < fleet.macs.length; i++) { drawTile(ctx, i); if (matches(i)) shown++; }
    $("f-count").textContent = `${shown} of ${fleet.macs.length} phones shown`;
    fullRedraw = false;
  } else {
    for (const i of dirty) drawTile(ctx, i);
  }
  dirty.clear();
}

function onTileClick(event) {
  if (!layout) return;
  const rect = event.target.getBoundingClientRect();
  const x = event.clientX - rect.left, y = event.clientY - rect.top, s = layout.size;
  for (let i = 0; i < layout.pos.length; i++) {
    const p = layout.pos[i];
    if (p && x >= p[0] && x < p[0] + s && y >= p[1] && y < p[1] + s) { openPhone(fleet.macs[i]); return; }
  }
}

let legendShown = "";
function drawLegend() {
  const key = fleet.counts.join(",") + "|" + filter.state;
  if (key === legendShown) return;  // the DOM is touched only when a count changed
  legendShown = key;
  const legend = $("legend");
  legend.innerHTML = STATES.map((s, k) => `<span class="chip${filter.state === s ? " on" : ""}" data-state="${s}">` +
    `<i style="background:${COLORS[s]}"></i>${s} <b>${fleet.counts[k] || 0}</b></span>`).join("");
  legend.querySelectorAll(".chip").forEach((chip) => chip.addEventListener("click", () => {
    filter.state = filter.state === chip.dataset.state ? "" : chip.dataset.state;
    $("f-state").value = filter.state; fullRedraw = true; schedule();
  }));
}

function fillFilterChoices() {
  const state = $("f-state"), vendor = $("f-vendor");
  if (state.options.length === 1) for (const s of STATES) state.add(new Option(s, s));
  const vendors = [...new Set(fleet.groups.map((g) => g.vendor))].sort();
  vendor.length = 1; for (const v of vendors) vendor.add(new Option(v, v));
  vendor.value = filter.vendor;
}

function bindFilters() {
  $("f-state").addEventListener("change", (e) => { filter.state = e.target.value; fullRedraw = true; schedule(); });
  $("f-vendor").addEventListener("change", (e) => { filter.vendor = e.target.value; fullRedraw = true; schedule(); });
  $("f-mac").addEventListener("input", (e) => { filter.mac = e.target.value.trim().toLowerCase().replace(/-/g, ":"); fullRedraw = true; schedule(); });
}

// --- charts ----------------------------------------------------------------------------------

// A chart's time as a duration: seconds for a storm, then minutes, hours and days (a
// paced virtual-time lab's charts run for simulated days).
function durationText(s) {
  if (s < 120) return `${s.toFixed(0)} s`;
  const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (d) return `${d}d ${String(h % 24).padStart(2, "0")}h`;
  if (h) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${m}m`;
}

function lineChart(canvas, t, lines, yLabel) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height, L = 44, B = 22, T = 8, R = 8;
  ctx.clearRect(0, 0, W, H);
  const tMax = Math.max(1, t.length ? t[t.length - 1] : 1);
  let yMax = 1; for (const l of lines) for (const v of l.values) if (v > yMax) yMax = v;
  const X = (v) => L + (v / tMax) * (W - L - R), Y = (v) => H - B - (v / yMax) * (H - B - T);
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#555"; ctx.font = "11px system-ui, sans-serif";
  ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
  ctx.fillText(String(Math.round(yMax)), 4, T + 10); ctx.fillText("0", 30, H - B);
  ctx.fillText(yLabel, L + 4, T + 10);
  ctx.textAlign = "right"; ctx.fillText(durationText(tMax), W - R, H - 6); ctx.textAlign = "left";
  for (const l of lines) {
    ctx.strokeStyle = l.color; ctx.lineWidth = 1.5; ctx.beginPath();
    l.values.forEach((v, k) => (k ? ctx.lineTo(X(t[k]), Y(v)) : ctx.moveTo(X(t[k]), Y(v))));
    ctx.stroke();
  }
}

// Requests per second per service at each chart point, from the running totals the
// points carry: over the last RATE_WINDOW_S (points come four times a second, and a
// quarter second's burst, or a worker's counts arriving in a bunch, is no rate), or since
// the point before once points are further apart (a long run's series is thinned), so that
// every request counts in the rate of the step it fell in.
const RATE_WINDOW_S = 1;
function requestRates(t, totals) {
  const rates = [];
  let from = -1;  // the point the window starts after; -1: the lab's start, when nothing was counted
  for (let i = 0; i < t.length; i++) {
    while (from + 1 < i && t[from + 1] <= t[i] - RATE_WINDOW_S) from++;
    const start = from < 0 ? 0 : t[from], before = from < 0 ? {} : totals[from], span = t[i] - start;
    const rate = {};
    for (const [service, count] of Object.entries(totals[i])) {
      if (span > 0 && count > (before[service] || 0)) rate[service] = (count - (before[service] || 0)) / span;
    }
    rates.push(rate);
  }
  return rates;
}

function drawCharts() {
  if (!$("fleet").classList.contains("active")) return;
  const s = fleet.series;
  lineChart($("chart-states"), s.t, STATES.map((state, k) => ({color: COLORS[state], values: s.counts.map((c) => c[k])}))
    .filter((l) => l.values.some((v) => v > 0)), "phones");
  const rates = requestRates(s.t, s.totals);
  const services = [...new Set(rates.flatMap((r) => Object.keys(r)))].sort();
  lineChart($("chart-rates"), s.t, services.map((name) => ({color: SVC_COLORS[name] || "#888", values: rates.map((r) => r[name] || 0)})), "requests/s");
  $("rates-legend").innerHTML = services.map((n) => `<span class="chip"><i style="background:${SVC_COLORS[n] || "#888"}"></i>${esc(n)}</span>`).join("");
}

// --- one phone's story -------------------------------------------------------------------

async function openPhone(mac) {
  selected = mac; fullRedraw = true; schedule();
  const {status, body} = await getJSON("api/phone?mac=" + encodeURIComponent(mac));
  if (status !== 200) return;
  const p = body;
  const stateChip = (s) => `<span class="state" style="background:${COLORS[s] || "#999"}">${esc(s)}</span>`;
  let html = `<h2>${esc(p.mac)} ${stateChip(p.state)}</h2><p>${esc(p.vendor)} ${esc(p.model)} · fleet ${esc(p.fleet)} · ` +
    `reboots ${p.reboots} · power cycles ${p.power_cycles}</p>`;
  if (p.cause) {
    html += `<p class="cause"><b>${esc(p.cause.reason)}</b>` + (p.cause.server ? ` — ${esc(p.cause.server)}` : "") +
      (p.cause.server_from ? ` (from ${esc(p.cause.server_from)})` : "") + (p.cause.error ? `: ${esc(p.cause.error)}` : "") + "</p>";
  }
  if (p.lease) {
    html += `<h3>DHCP</h3><p>address <b>${esc(p.lease.address)}</b> from server ${esc(p.lease.server)}` +
      (p.lease.lease_time_s ? `, lease ${p.lease.lease_time_s} s` : "") + "</p><table class='options'><tr><th>option</th><th>value</th></tr>" +
      p.lease.options.map((o) => `<tr><td>${esc(o.name)}</td><td><code>${esc(o.value)}</code></td></tr>`).join("") + "</table>";
  }
  if (p.events_dropped > 0) {
    html += `<p class="note left-out">${p.events_dropped.toLocaleString("en")} earlier events of this phone are left out here: ` +
      "a long run keeps its first and last ones, and its latest exchanges." +
      (p.history ? ` Every line is in the run's events.jsonl: <code>${esc(p.history)}</code>` : "") + "</p>";
  }
  html += "<h3>Timeline</h3><table class='timeline'><tr><th>t (s)</th><th>what happened</th></tr>" +
    p.timeline.map((e) => `<tr><td class="t">${e.t.toFixed(3)}</td><td>${e.kind === "state" ? stateChip(e.state) + " " : ""}${esc(e.kind === "state" ? e.text.slice(e.state.length + 2) : e.text)}</td></tr>`).join("") + "</table>";
  html += "<h3>Downloads</h3><table class='fetches'><tr><th>t (s)</th><th>protocol</th><th>URL</th><th>status</th><th>bytes</th><th>MD5</th><th>ms</th></tr>" +
    p.fetches.map((f) => `<tr><td class="t">${f.t.toFixed(3)}</td><td>${esc(f.protocol)}</td><td>${esc(f.url)}</td><td>${esc(f.status)}${f.detail ? " (" + esc(f.detail) + ")" : ""}</td>` +
      `<td>${f.bytes}</td><td class="md5">${esc(f.md5)}</td><td>${(f.latency_s * 1000).toFixed(1)}</td></tr>`).join("") + "</table>";
  const flash = p.flash;
  html += `<h3>Flash</h3><p>firmware <b>${esc(flash.firmware)}</b>` + (flash.provisioning_url ? ` · provisioning URL ${esc(flash.provisioning_url)}` : "") + "</p>" +
    "<table class='files'><tr><th>file</th><th>MD5 remembered</th></tr>" +
    Object.entries(flash.file_md5).map(([n, m]) => `<tr><td>${esc(n)}</td><td class="md5">${esc(m)}</td></tr>`).join("") + "</table>" +
    `<details><summary>${Object.keys(flash.settings).length} settings</summary><table>` +
    Object.entries(flash.settings).map(([k, v]) => `<tr><td><code>${esc(k)}</code></td><td>${esc(v)}</td></tr>`).join("") + "</table></details>";
  if (!p.capture) html += "<p class='note'>Packets: run with --pcap FILE to capture this phone's traffic.</p>";
  else html += `<h3>Packets <a id="pcap-link" href="api/pcap?mac=${encodeURIComponent(p.mac)}" download>download pcap</a></h3><div id="packets">…</div>`;
  $("phone-body").innerHTML = html;
  if (p.capture) getJSON("api/packets?mac=" + encodeURIComponent(p.mac)).then(({body}) => {
    if (selected !== p.mac || !body.packets) return;
    $("packets").innerHTML = table(["No.", "t (s)", "source", "destination", "protocol", "length", "info"],
      body.packets.map((k, i) => [i + 1, k.t.toFixed(4), k.source, k.destination, k.protocol, k.length, k.info]));
  });
  $("phone").hidden = false;
  if (INFO.control) $("c-macs").value = mac;
}

// --- services --------------------------------------------------------------------------------

let servicesTimer = null;
async function pollServices() {
  clearTimeout(servicesTimer);
  if (!$("services").classList.contains("active")) return;
  const {body} = await getJSON("api/services");
  $("svc-counters").innerHTML = Object.entries(body.counters).map(([name, counters]) => `<div class="card"><h3>${esc(name)}</h3><dl>` +
    flat(counters).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("") + "</dl></div>").join("");
  $("svc-faults").innerHTML = body.faults.length ? table(["name", "service", "direction", "what"], body.faults.map((f) =>
    [f.name, f.service, f.direction, Object.entries(f).filter(([k, v]) => !["name", "service", "direction", "path"].includes(k) && v && !(Array.isArray(v) && !v.length)).map(([k, v]) => `${k} ${v}`).join(", ")])) : "<p class='note'>none</p>";
  const log = $("svc-log"), atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = body.log.join("\n") || "(nothing yet: lines appear while this view is open)";
  if (atBottom) log.scrollTop = log.scrollHeight;
  $("svc-leases").innerHTML = body.leases.length ? table(["address", "MAC", "state", "expires in (s)"], body.leases.map((l) => [l.ip, l.mac, l.state, l.expires_in_s])) : "<p class='note'>none</p>";
  $("svc-timeline").innerHTML = body.timeline.length ? table(["t (s)", "entry", "action", "outcome"], body.timeline.map((r) => [r.t.toFixed(2), r.entry, r.action, r.outcome])) : "<p class='note'>none</p>";
  servicesTimer = setTimeout(pollServices, 2000);
}

function flat(value, prefix = "") {
  if (value && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => flat(v, prefix ? `${prefix}.${k}` : k));
  return [[prefix, value]];
}

function table(head, rows) {
  return "<table><tr>" + head.map((h) => `<th>${esc(h)}</th>`).join("") + "</tr>" +
    rows.map((r) => "<tr>" + r.map((c) => `<td>${esc(c)}</td>`).join("") + "</tr>").join("") + "</table>";
}

// --- trainer controls: every button builds the text of a timeline do: and posts it ----------

function selection() {
  const which = $("c-phones").value.trim() || "all", macs = $("c-macs").value.trim();
  const sel = {phones: /^\d+$/.test(which) ? Number(which) : which};
  if ($("c-fleet").value) sel.fleet = $("c-fleet").value;
  if (macs) sel.macs = macs.split(/[\s,]+/).filter(Boolean);
  return sel;
}

function actionFor(kind) {
  const faultKinds = {down: {down: true}, loss: {loss: 0.3}, delay: {delay_s: 1}, http500: {http_status: 500}};
  switch (kind) {
    case "set-option": return {set_dhcp_option: {[$("c-opt-code").value.trim()]: $("c-opt-value").value}};
    case "remove-option": return {remove_dhcp_option: [$("c-opt-code").value.trim()]};
    case "power_cycle": case "factory_reset": case "check_sync": return {[kind]: selection()};
    case "stop_service": case "start_service": case "restart_service": return {[kind]: $("c-service").value};
    case "add_fault": return {add_fault: {name: $("c-fault-name").value, service: $("c-fault-service").value, ...faultKinds[$("c-fault-kind").value]}};
    case "remove_fault": return {remove_fault: $("c-fault-name").value};
    case "edit_file": return {edit_file: {name: $("c-file").value, set: {[$("c-key").value]: $("c-value").value}}};
    case "delete_file": return {delete_file: $("c-file").value};
  }
  return null;
}

async function act(text) {
  const {status, body} = await getJSON("api/action", {method: "POST", headers: {"content-type": "application/json", "x-labsim-token": TOKEN},
    body: JSON.stringify({do: text})});
  const out = $("c-result");
  out.classList.toggle("error", status !== 200);
  out.textContent = status === 200 ? body.done.map((r) => `${r.action}: ${r.outcome}`).join("\n") : (body.problems || [body.error]).join("\n");
  return status;
}

function bindControls() {
  document.querySelectorAll("#controls button[data-act]").forEach((button) => button.addEventListener("click", () => {
    const kind = button.dataset.act;
    const text = kind === "text" ? $("c-text").value : JSON.stringify(actionFor(kind));
    if (kind !== "text") $("c-text").value = text;
    act(text);
  }));
}

// --- the exercise ------------------------------------------------------------------------------

function markdown(text) {
  // Enough markdown for a task: headings, paragraphs (lines joined until a blank line),
  // lists, fenced code, `code` and **bold**. The text is escaped first.
  const lines = esc(text).split("\n"), out = [];
  let list = false, code = false, paragraph = [];
  const endParagraph = () => { if (paragraph.length) out.push(`<p>${paragraph.join(" ")}</p>`); paragraph = []; };
  for (const raw of lines) {
    if (raw.startsWith("```")) { endParagraph(); out.push(code ? "</pre>" : "<pre>"); code = !code; continue; }
    if (code) { out.push(raw); continue; }
    const line = raw.replace(/`([^`]+)`/g, "<code>$1</code>").replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>");
    const item = /^\s*[-*] (.*)/.exec(line), heading = /^(#{1,3}) (.*)/.exec(line);
    if (item || heading || !line.trim()) endParagraph();
    if (item && !list) { out.push("<ul>"); list = true; }
    if (!item && list) { out.push("</ul>"); list = false; }
    if (item) out.push(`<li>${item[1]}</li>`);
    else if (heading) out.push(`<h${heading[1].length + 1}>${heading[2]}</h${heading[1].length + 1}>`);
    else if (line.trim()) paragraph.push(line.trim());
  }
  endParagraph();
  if (list) out.push("</ul>");
  return out.join("\n");
}

function showLab(lab) {
  $("lab-task").innerHTML = markdown(lab.task);
  let shown = 0;
  $("hint-next").hidden = !lab.hints.length;
  $("hint-next").addEventListener("click", () => {
    if (shown >= lab.hints.length) return;
    const div = document.createElement("div"); div.className = "hint";
    div.innerHTML = `<b>Hint ${shown + 1}</b> ` + markdown(lab.hints[shown]); $("lab-hints").append(div);
    shown += 1; if (shown >= lab.hints.length) $("hint-next").disabled = true;
  });
  $("check").addEventListener("click", async () => {
    const {body} = await getJSON("api/check", {method: "POST", body: "{}"});
    $("check-result").innerHTML = "<table><tr><th></th><th>expectation</th><th>observed</th><th>detail</th></tr>" + body.expectations.map((e) =>
      `<tr class="${e.passed ? "pass" : "fail"}"><td>${e.passed ? "PASS" : "FAIL"}</td><td><code>${esc(e.check)}</code></td>` +
      `<td>${esc(JSON.stringify(e.observed))}</td><td>${esc(e.detail)}</td></tr>`).join("") + "</table>";
  });
}

start();
