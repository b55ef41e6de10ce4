/* voicebot reports: signs in through signin.js, reads GET /api/reports for the
 * chosen days, queue and interval, and draws volume, service level and handle time over time
 * as plain SVG (no chart library: the product runs offline), then the per-queue, staffing,
 * per-agent and per-intent tables.  The CSV link asks the same report with format=csv.
 * Every name from the server goes in with textContent, never as HTML. */
(() => {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const W = 560;
  const H = 220;
  const PAD = { left: 52, right: 10, top: 10, bottom: 28 };

  const $ = (id) => document.getElementById(id);
  const show = (id, on) => { $(id).hidden = !on; };
  const setText = (id, text) => { $(id).textContent = text; };

  // ------------------------------------------------------------------ formats

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const whole = Math.max(0, Math.round(seconds));
    const m = Math.floor(whole / 60);
    const s = String(whole % 60).padStart(2, "0");
    return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function fmtPercent(fraction) {
    if (fraction === null || fraction === undefined) return "—";
    return `${(Math.round(fraction * 1000) / 10).toFixed(1)}%`;
  }

  const fmtCount = (n) => (n === null || n === undefined ? "—" : String(n));
  const fmtNumber = (n, digits = 2) => (n === null || n === undefined ? "—" : Number(n).toFixed(digits));
  const fmtScore = (n) => fmtNumber(n, 2);
  const fmtTick = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

  function fmtTime(epoch, interval) {
    const d = new Date(epoch * 1000);
    if (interval === "day") return d.toLocaleDateString([], { month: "short", day: "numeric" });
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function isoDay(d) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  // ------------------------------------------------------------------ SVG charts

  function el(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /* A frame with a y axis from 0 to max and x labels under the buckets; returns helpers to
   * place bars and points. */
  function frame(svg, buckets, max, yFormat, interval) {
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const slot = plotW / Math.max(1, buckets.length);
    const y = (v) => PAD.top + plotH - (max > 0 ? (v / max) * plotH : 0);
    for (let i = 0; i <= 4; i += 1) {
      const v = (max * i) / 4;
      svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), stroke: "#e3e8ef" }));
      svg.append(el("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, yFormat(v)));
    }
    const every = Math.max(1, Math.ceil(buckets.length / 8));
    buckets.forEach((b, i) => {
      if (i % every === 0) {
        svg.append(el("text", { x: PAD.left + slot * i + slot / 2, y: H - 8, "text-anchor": "middle" },
          fmtTime(b.start, interval)));
      }
    });
    return { slot, y, x: (i) => PAD.left + slot * i, base: y(0) };
  }

  function chart(container, label) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    $(container).replaceChildren(svg);
    return svg;
  }

  /* Stacked bars: series is [[key, colour, label]], each bucket's values stacked bottom up. */
  function stackedBars(container, label, buckets, series, yFormat, interval, least) {
    const svg = chart(container, label);
    const totals = buckets.map((b) => series.reduce((sum, [key]) => sum + (b[key] || 0), 0));
    const max = niceMax(Math.max(least, ...totals));
    const f = frame(svg, buckets, max, yFormat, interval);
    buckets.forEach((b, i) => {
      let top = 0;
      for (const [key, colour, name] of series) {
        const v = b[key] || 0;
        if (v <= 0) continue;
        const y1 = f.y(top + v);
        const bar = el("rect", { x: f.x(i) + f.slot * 0.15, y: y1, width: f.slot * 0.7,
          height: Math.max(0.5, f.y(top) - y1), fill: colour });
        bar.append(el("title", {}, `${fmtTime(b.start, interval)} · ${name}: ${yFormat(v)}`));
        svg.append(bar);
        top += v;
      }
    });
  }

  /* A 0–100% line with gaps where a bucket has no figure, and the target as a dashed line. */
  function percentLine(container, label, buckets, key, target, interval) {
    const svg = chart(container, label);
    const f = frame(svg, buckets, 1, (v) => `${Math.round(v * 100)}%`, interval);
    if (target !== null && target !== undefined) {
      svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: f.y(target), y2: f.y(target),
        stroke: "var(--target)", "stroke-dasharray": "5 4" }));
    }
    const segments = [[]];
    buckets.forEach((b, i) => {
      const v = b[key];
      if (v === null || v === undefined) {
        if (segments[segments.length - 1].length) segments.push([]);
        return;
      }
      const cx = f.x(i) + f.slot / 2;
      const cy = f.y(v);
      segments[segments.length - 1].push(`${cx.toFixed(1)},${cy.toFixed(1)}`);
      const dot = el("circle", { cx, cy, r: 3, fill: "var(--answered)" });
      dot.append(el("title", {}, `${fmtTime(b.start, interval)}: ${fmtPercent(v)}`));
      svg.append(dot);
    });
    const d = segments.filter((seg) => seg.length).map((seg) => `M${seg.join("L")}`).join("");
    if (d) svg.append(el("path", { d, fill: "none", stroke: "var(--answered)", "stroke-width": 2 }));
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 4, 8, 10]) if (m * p >= v) return m * p;  // four even ticks
    return 10 * p;
  }

  // ------------------------------------------------------------------ tables

  function table(id, columns, rows) {
    const head = document.createElement("tr");
    for (const [title] of columns) {
      const th = document.createElement("th");
      th.textContent = title;
      head.append(th);
    }
    const body = rows.map(([name, row]) => {
      const tr = document.createElement("tr");
      columns.forEach(([, key, format], i) => {
        const td = document.createElement("td");
        td.textContent = i === 0 ? name : format(row[key]);
        tr.append(td);
      });
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns.length;
      td.textContent = "Nothing in this range.";
      tr.append(td);
      body.push(tr);
    }
    $(id).replaceChildren(head, ...body);
  }

  const QUEUE_COLUMNS = [
    ["Queue"], ["Offered", "offered", fmtCount], ["Answered", "answered", fmtCount],
    ["Abandoned", "abandoned", fmtCount], ["Short ab.", "short_abandoned", fmtCount], ["Left", "exited", fmtCount],
    ["Refused", "refused", fmtCount], ["Service level", "service_level", fmtPercent],
    ["ASA", "asa_s", fmtDuration], ["Abandon rate", "abandon_rate", fmtPercent], ["AHT", "aht_s", fmtDuration],
    ["Talk", "talk_s", fmtDuration], ["Hold", "hold_s", fmtDuration], ["Wrap-up", "wrap_s", fmtDuration],
    ["CSAT", "csat", fmtScore], ["Surveys", "csat_count", fmtCount],
  ];
  const STAFFING_COLUMNS = [
    ["Queue"], ["Calls/hour", "rate_per_hour", (v) => fmtNumber(v, 1)], ["AHT", "aht_s", fmtDuration],
    ["Erlangs", "traffic", (v) => fmtNumber(v, 2)], ["Agents", "agents", fmtCount],
    ["P(wait)", "p_wait", fmtPercent], ["Service level", "service_level", fmtPercent], ["ASA", "asa_s", fmtDuration],
    ["Target", "target", fmtPercent], ["Agents needed", "agents_needed", fmtCount],
  ];
  const AGENT_COLUMNS = [
    ["Agent"], ["Answered", "answered", fmtCount], ["AHT", "aht_s", fmtDuration], ["Talk", "talk_s", fmtDuration],
    ["Hold", "hold_s", fmtDuration], ["Wrap-up", "wrap_s", fmtDuration], ["Missed", "ring_no_answer", fmtCount],
    ["Transfers", "agent_transfers", fmtCount], ["Logged in", "logged_in_s", fmtDuration],
    ["Paused", "paused_s", fmtDuration], ["Occupancy", "occupancy", fmtPercent], ["CSAT", "csat", fmtScore],
  ];
  const INTENT_COLUMNS = [
    ["Intent"], ["Calls", "calls", fmtCount], ["Containment", "containment", fmtPercent],
    ["Transfer rate", "transfer_rate", fmtPercent], ["FCR", "fcr", fmtPercent], ["Answered", "answered", fmtCount],
    ["Abandoned", "abandoned", fmtCount], ["ASA", "asa_s", fmtDuration], ["AHT", "aht_s", fmtDuration],
    ["CSAT", "csat", fmtScore],
  ];
  const TILES = [
    ["Offered", "offered", fmtCount], ["Answered", "answered", fmtCount], ["Service level", "service_level", fmtPercent],
    ["ASA", "asa_s", fmtDuration], ["AHT", "aht_s", fmtDuration], ["Abandon rate", "abandon_rate", fmtPercent],
    ["Calls", "calls", fmtCount], ["Containment", "containment", fmtPercent], ["FCR", "fcr", fmtPercent],
    ["Occupancy", "occupancy", fmtPercent], ["CSAT", "csat", fmtScore],
    ["Callbacks kept", "callbacks_kept", fmtCount], ["Callbacks failed", "callbacks_failed", fmtCount],
  ];

  // ------------------------------------------------------------------ the report

  function params() {
    const p = new URLSearchParams({ from: $("from").value, to: $("to").value, interval: $("interval").value });
    if ($("queue").value) p.set("queue", $("queue").value);
    return p;
  }

  async function load(event) {
    if (event) event.preventDefault();
    const p = params();
    $("csv").href = `/api/reports?${p}&format=csv`;
    setText("status", "Loading…");
    show("report-error", false);
    let response;
    try {
      response = await fetch(`/api/reports?${p}`, { credentials: "same-origin" });
    } catch (err) {
      return failed("Cannot reach the server.");
    }
    if (response.status === 401) return VoicebotSignIn.showLogin("Your session has ended: sign in again.");
    if (!response.ok) {
      let detail = `The server answered ${response.status}.`;
      try { detail = (await response.json()).detail || detail; } catch (err) { /* not JSON */ }
      return failed(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    render(await response.json());
    setText("status", `Updated ${new Date().toLocaleTimeString()}`);
  }

  function failed(message) {
    setText("status", "");
    setText("report-error", message);
    show("report-error", true);
  }

  function render(report) {
    const tiles = TILES.map(([label, key, format]) => {
      const tile = document.createElement("div");
      tile.className = "tile";
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = format(report.totals[key]);
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = label;
      tile.append(value, name);
      return tile;
    });
    $("tiles").replaceChildren(...tiles);

    const buckets = report.intervals.map((b) => ({
      ...b,
      left: (b.exited || 0) + (b.waiting || 0),
      talk: b.talk_s || 0,
      hold: b.hold_s || 0,
      wrap: b.wrap_s || 0,
    }));
    stackedBars("chart-volume", "Calls offered per interval", buckets,
      [["answered", "var(--answered)", "answered"], ["abandoned", "var(--abandoned)", "abandoned"],
        ["left", "var(--exited)", "left otherwise"]], fmtTick, report.interval, 4);
    const queues = Object.values(report.queues);
    const targets = queues.map((q) => q.service_level_target).filter((t) => t !== undefined);
    const target = report.queue ? (report.queues[report.queue] || {}).service_level_target
      : (targets.length ? Math.max(...targets) : null);
    percentLine("chart-sl", "Service level per interval", buckets, "service_level", target, report.interval);
    stackedBars("chart-aht", "Average handle time per interval", buckets,
      [["talk", "var(--talk)", "talk"], ["hold", "var(--hold)", "hold"], ["wrap", "var(--wrap)", "wrap-up"]],
      fmtDuration, report.interval, 60);

    table("table-queues", QUEUE_COLUMNS, Object.entries(report.queues));
    table("table-staffing", STAFFING_COLUMNS, Object.entries(report.staffing || {}));
    table("table-agents", AGENT_COLUMNS, Object.entries(report.agents));
    table("table-intents", INTENT_COLUMNS, Object.entries(report.intents));
    fillQueues(Object.keys(report.queues));
  }

  function fillQueues(names) {
    const select = $("queue");
    const known = new Set([...select.options].map((o) => o.value));
    for (const name of names) {
      if (known.has(name)) continue;
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.append(option);
    }
  }

  // ------------------------------------------------------------------ sign in (signin.js)

  function start(me) {
    setText("who", me.name || me.id);
    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const today = isoDay(new Date());
    $("from").value = today;
    $("to").value = today;
    $("filters").addEventListener("submit", load);
    $("signout").addEventListener("click", VoicebotSignIn.signOut);
    VoicebotSignIn.start({
      view: "report", roles: ["supervisor", "admin"], onSignedIn: start,
      refused: (me) => `${me.name || me.id} is an agent: reports need a supervisor or admin account.`,
    });
  });
})();
