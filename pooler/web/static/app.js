// KALE Pooler dashboard: pages (hash routes), the model and the charts. Plain JS, no bundler.
//
// Sources: the stats API (/stats/*: docs/stats.md) for every figure, polled while its page is shown and
// refreshed when the event stream (stream.js) says something changed; /health for the chain and Backend
// badges; the stream itself for the event log, alerts and the open block's news. Tables are paged by the
// API (50 rows at most), so 1,000 miners / 10,000 workers cost the page what 50 do; charts draw the API's
// buckets (1-minute for 1 h and 24 h: at most 1,440 points) with uPlot (vendor/).
"use strict";

(function () {
  const KP = window.KP;
  const F = KP.fmt;
  const POLL_MS = 5000;       // a shown page's figures are re-read this often (and on stream news)
  const MAX_EVENTS = 1000;    // events kept in memory for the log
  const SHOWN_EVENTS = 200;   // log lines drawn at once
  const MAX_ONLINE = 1440;    // online-count points kept (one per poll: 2 h at 5 s)
  const PAGE_ROWS = 50;       // miners per table page
  const BLOCK_ROWS = 20;      // blocks per table page
  const NEWS = new Set(["snapshot", "block", "phase", "plant", "work", "harvest", "farmer", "alert", "chain"]);
  const NEWS_DELAY_MS = 500;  // a burst of news costs one re-read

  const $ = (id) => document.getElementById(id);

  const state = {
    route: { page: "overview", arg: null },  // what the location hash asks for
    live: null,            // the last /stats/live answer
    ranges: { hashrate: "1h", miner: "1h" },  // chart ranges chosen on the page
    online: [[], [], []],  // [unix s], [miners], [workers]: one point per /stats/live read
    alerts: new Map(),     // alert key -> the firing alert's data (a `resolved` removes it)
    events: [],            // {at, kind, data}, newest last, at most MAX_EVENTS
    kinds: new Set(),      // event kinds seen (the log's filter)
    eventKind: "",         // the log's filter: "" = all
    health: null,          // the last /health answer
    minerSort: { sort: "hashrate", order: "desc", offset: 0 },
    blockCursors: [null],  // ?before= of each blocks page visited (null: the newest)
    farmerRewards: null,   // {at, byId}: /stats/farmers, re-read at most every POLL_MS
  };
  const charts = {};       // chart element id -> uPlot
  let refreshTimer = null; // a pending debounced refresh

  // ------------------------------------------------------------------ small helpers

  function setText(id, value) {
    const el = $(id);
    const text = value === null || value === undefined || value === "" ? "-" : String(value);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function cell(row, content, cls) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  async function get(path) {
    // JSON of a GET, or null when the Pooler does not answer (a restart: the badge says so)
    try {
      const resp = await fetch(path, { headers: { Accept: "application/json" } });
      if (resp.status === 404) return null;
      return await resp.json();
    } catch (e) {
      return null;
    }
  }

  function chart(id, series, data, span) {
    // one uPlot per element: created on first data, updated with setData after
    const el = $(id);
    if (!el || !window.uPlot) return;
    el.dataset.points = String(data[0].length);
    const width = Math.max(200, el.clientWidth || 600);
    let c = charts[id];
    if (c && c.series.length !== series.length + 1) { c.destroy(); c = null; }
    if (!c) {
      const opts = {
        width, height: 200,
        series: [{}].concat(series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, value: s.value }))),
        axes: [{ stroke: "#8fa396", grid: { stroke: "#2a372f" } },
               { stroke: "#8fa396", grid: { stroke: "#2a372f" }, size: 80, values: series[0].axis }],
        // span (seconds): the x axis shows at least that much time, so a few points do not stretch
        scales: { x: span ? { time: true, auto: false, range: (u) => spanOf(u.data[0], span) } : { time: true } },
        legend: { live: true },
      };
      el.replaceChildren();
      charts[id] = new window.uPlot(opts, data, el);
    } else {
      c.setData(data, !span);
      if (span) c.setScale("x", { min: spanOf(data[0], span)[0], max: spanOf(data[0], span)[1] });
    }
  }

  function spanOf(xs, span) {
    const max = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
    const min = xs.length ? xs[0] : max;
    return [Math.min(min, max - span), max];
  }

  window.addEventListener("resize", () => {
    for (const [id, c] of Object.entries(charts)) {
      const el = $(id);
      if (el && el.clientWidth) c.setSize({ width: el.clientWidth, height: 200 });
    }
  });

  const rateAxis = (u, vals) => vals.map((v) => F.rate(v).replace(".0 ", " "));
  const rateValue = (u, v) => F.rate(v);

  // ------------------------------------------------------------------ overview

  function renderLive(live) {
    if (!live) return;
    state.live = live;
    for (const f of live.farmerList || []) F.learnFarmer(f.farmerId, f.address, f.names);
    setText("block", live.block);
    setText("phase", live.phase);
    setText("entropy", live.entropy ? live.entropy.slice(0, 12) + "\u2026" : "-");
    $("entropy").title = live.entropy || "";
    setText("miners", F.num(live.miners));
    setText("workers", F.num(live.workers));
    setText("hashrate", F.rate(live.hashrate));
    setText("reported", F.rate(live.reportedHashrate));
    setText("accepted", F.num(live.accepted));
    setText("rejected", F.num(live.rejected));
    setText("projected", F.kale(live.projectedReward));
    renderCountdowns();
    const o = state.online;
    o[0].push(Date.now() / 1000); o[1].push(live.miners); o[2].push(live.workers);
    if (o[0].length > MAX_ONLINE) for (const a of o) a.shift();
    setText("updated", F.clock(Date.now()));
  }

  function renderCountdowns() {
    const live = state.live;
    if (!live) return;
    const now = Date.now();
    setText("work-countdown", F.countdown(live.workAt, now));
    setText("end-countdown", F.countdown(live.blockEndsAt, now));
  }

  function renderFarmers(live, previous) {
    const prevBest = new Map();
    if (previous) for (const f of previous.farmers || []) prevBest.set(f.farmerId, f.bestZeros);
    const body = $("best-zeros");
    const fresh = document.createDocumentFragment();
    for (const f of live.farmerList || []) {
      const tr = document.createElement("tr");
      tr.dataset.farmer = f.farmerId;
      cell(tr, F.farmerElement(f.farmerId));
      const best = cell(tr, F.num(f.bestZeros), "num best");
      if (F.isNum(live.chainMinZeros) && (!F.isNum(f.bestZeros) || f.bestZeros < live.chainMinZeros)) {
        best.classList.add("offline");
        best.title = "below the previous block's on-chain minimum (" + live.chainMinZeros + " zeros)";
      }
      cell(tr, F.num(prevBest.get(f.farmerId)), "num");
      cell(tr, F.num(f.workers), "num");
      cell(tr, F.kale(f.projectedReward), "num projected");
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
    let note = live.farmers > (live.farmerList || []).length
      ? "the first " + live.farmerList.length + " of " + live.farmers + " farmers, best first. " : "";
    if (F.isNum(live.chainMinZeros) && F.isNum(live.chainMaxZeros)) {
      note += "On chain, the previous block's work ranged from " + live.chainMinZeros + " to " + live.chainMaxZeros +
        " zeros (this block's score bounds; a best below the minimum is marked). ";
    }
    if (previous) {
      const zs = (previous.farmers || []).map((f) => f.bestZeros).filter(F.isNum);
      if (zs.length) note += "Block " + previous.block + ": the pool's farmers found " + Math.min(...zs) + " to " + Math.max(...zs) + " zeros.";
    }
    $("prev-block-note").textContent = note;
  }

  function renderPoolCharts(pool) {
    const h = pool.history || [];
    const xs = h.map((b) => b.start);
    chart("chart-hashrate", [{ label: "hashrate", color: "#7bd88f", axis: rateAxis, value: rateValue }],
      [xs, h.map((b) => b.hashrate)]);
    const reasons = new Set();
    for (const b of h) for (const r of Object.keys(b.rejected || {})) reasons.add(r);
    const perMinute = (b, n) => n * 60 / (b.width || 60);
    const series = [{ label: "accepted", color: "#4caf50" }, { label: "stale", color: "#e0a526" }];
    const data = [xs, h.map((b) => perMinute(b, b.accepted)), h.map((b) => perMinute(b, b.stale))];
    const colors = ["#e05252", "#c678dd", "#61afef", "#d19a66"];
    [...reasons].sort().forEach((r, i) => {
      series.push({ label: "rejected: " + r, color: colors[i % colors.length] });
      data.push(h.map((b) => perMinute(b, (b.rejected || {})[r] || 0)));
    });
    chart("chart-shares", series, data);
    // online: the history's per-bucket counts (the most sampled in each), then this page's own
    // /stats/live samples newer than the newest bucket (live between two history reads)
    const on = [xs.slice(), h.map((b) => b.minersOnline || 0), h.map((b) => b.workersOnline || 0)];
    const newest = xs.length ? xs[xs.length - 1] : -Infinity;
    const o = state.online;
    for (let i = 0; i < o[0].length; i++) {
      if (o[0][i] > newest) { on[0].push(o[0][i]); on[1].push(o[1][i]); on[2].push(o[2][i]); }
    }
    chart("chart-online", [{ label: "miners", color: "#7bd88f" }, { label: "workers", color: "#61afef" }], on, 600);
    const onlineEl = $("chart-online");  // how many of its points came from the history (tests)
    if (onlineEl) onlineEl.dataset.historyPoints = String(h.filter((b) => b.workersOnline > 0).length);
  }

  async function refreshOverview() {
    const [live, pool, recent] = await Promise.all([
      get("stats/live?limit=100"), get("stats/pool?range=" + state.ranges.hashrate), get("stats/blocks?limit=3"),
    ]);
    if (state.route.page !== "overview") return;
    renderLive(live);
    const previous = live && recent
      ? (recent.blocks || []).find((b) => F.isNum(live.block) && b.block < live.block) || null : null;
    if (live) renderFarmers(live, previous);
    if (pool) renderPoolCharts(pool);
  }

  // ------------------------------------------------------------------ blocks

  function bestOf(b) {
    const zs = (b.farmers || []).map((f) => f.bestZeros).filter(F.isNum);
    return zs.length ? Math.max(...zs) : null;
  }

  function workText(b) {
    if (b.workOk === true) return "ok at " + F.clock(b.workAt * 1000);
    if (b.workOk === false) return "FAILED" + (b.workError ? ": " + b.workError : "");
    return "not yet";
  }

  async function refreshBlocks() {
    const before = state.blockCursors[state.blockCursors.length - 1];
    const page = await get("stats/blocks?limit=" + BLOCK_ROWS + (before === null ? "" : "&before=" + before));
    if (state.route.page !== "blocks" || !page) return;
    const fresh = document.createDocumentFragment();
    for (const b of page.blocks || []) {
      const tr = document.createElement("tr");
      tr.dataset.block = String(b.block);
      tr.addEventListener("click", () => { location.hash = "#/blocks/" + b.block; });
      cell(tr, String(b.block));
      cell(tr, F.num(b.planted), "num");
      cell(tr, F.kale(b.staked), "num");
      cell(tr, F.num(bestOf(b)), "num");
      cell(tr, workText(b), b.workOk === false ? "failed" : "");
      cell(tr, F.kale(b.harvested), "num");
      fresh.appendChild(tr);
    }
    $("block-rows").replaceChildren(fresh);
    $("blocks-newer").disabled = state.blockCursors.length <= 1;
    $("blocks-older").disabled = page.nextBefore === null || page.nextBefore === undefined;
    $("blocks-older").dataset.next = page.nextBefore === null ? "" : String(page.nextBefore);
  }

  async function refreshBlock(index) {
    const b = await get("stats/blocks/" + encodeURIComponent(index));
    if (state.route.page !== "block") return;
    setText("b-index", index);
    const facts = $("b-facts");
    facts.replaceChildren();
    const fact = (k, v) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      facts.append(dt, dd);
    };
    const body = $("b-farmers");
    body.replaceChildren();
    if (!b) { fact("status", "not in the history"); return; }
    fact("opened", F.isNum(b.timestamp) ? new Date(b.timestamp * 1000).toLocaleString() : "-");
    fact("farmers planted", F.num(b.planted));
    fact("staked", F.kale(b.staked) + " KALE");
    fact("work", workText(b));
    fact("harvested", b.harvested === null ? "not yet" : F.kale(b.harvested) + " KALE");
    if (F.isNum(b.minZeros) && F.isNum(b.maxZeros)) fact("on chain", "min " + b.minZeros + ", max " + b.maxZeros + " zeros");
    for (const f of b.farmers || []) {
      const tr = document.createElement("tr");
      tr.dataset.farmer = f.farmerId;
      cell(tr, F.farmerElement(f.farmerId));
      cell(tr, f.planted ? "yes" : "no");
      cell(tr, F.num(f.bestZeros), "num");
      cell(tr, F.isNum(f.gapSeconds) ? f.gapSeconds.toFixed(0) : "-", "num");
      cell(tr, f.worked === true ? "ok (" + F.num(f.workZeros) + " zeros)" : f.worked === false ? "failed" + (f.error ? ": " + f.error : "") : "-");
      cell(tr, F.kale(f.reward), "num");
      body.appendChild(tr);
    }
  }

  // ------------------------------------------------------------------ miners

  async function farmerRewards() {
    const cached = state.farmerRewards;
    if (cached && Date.now() - cached.at < POLL_MS) return cached.byId;
    const answer = await get("stats/farmers");
    const byId = new Map();
    for (const f of (answer && answer.farmers) || []) byId.set(f.farmerId, f.rewards);
    state.farmerRewards = { at: Date.now(), byId };
    return byId;
  }

  async function refreshMiners() {
    const s = state.minerSort;
    const page = await get("stats/miners?sort=" + s.sort + "&order=" + s.order + "&limit=" + PAGE_ROWS + "&offset=" + s.offset);
    if (state.route.page !== "miners" || !page) return;
    const rows = page.miners || [];
    const ids = rows.map((r) => r.minerId);
    const [live, rewards] = await Promise.all([
      ids.length ? get("stats/live/miners?ids=" + ids.map(encodeURIComponent).join(",")) : null, farmerRewards(),
    ]);
    const liveOf = new Map();
    for (const m of (live && live.miners) || []) {
      liveOf.set(m.minerId, m);
      F.learnFarmer(m.farmerId, m.address, m.name ? [m.name] : []);
    }
    const now = Date.now();
    const fresh = document.createDocumentFragment();
    for (const r of rows) {
      const l = liveOf.get(r.minerId) || {};
      const rejected = Object.values(r.rejected24h || {}).reduce((a, b) => a + b, 0);
      const total = r.accepted24h + r.stale24h + rejected;
      const tr = document.createElement("tr");
      tr.dataset.miner = r.minerId;
      tr.addEventListener("click", () => { location.hash = "#/miners/" + encodeURIComponent(r.minerId); });
      cell(tr, (l.name ? l.name + " " : "") + "(" + r.minerId.slice(0, 8) + ")").title = r.minerId;
      cell(tr, l.farmerId ? F.farmerElement(l.farmerId) : "-");
      const hr = cell(tr, F.rate(l.hashrate), "num hashrate");
      hr.title = "10-minute history figure (the sort key): " + F.rate(r.hashrate);
      cell(tr, F.rate(l.reportedHashrate), "num");
      const w = cell(tr, F.num(l.workersOnline) + " / " + F.num(r.workers), "num workers");
      if (l.workersOnline === 0) w.classList.add("offline");
      cell(tr, F.age(l.lastShareAt, now), "num");
      cell(tr, String(r.accepted24h), "num");
      cell(tr, F.pct(r.stale24h, total), "num");
      cell(tr, F.pct(rejected, total), "num");
      cell(tr, F.num(l.bestZeros), "num");
      cell(tr, l.farmerId ? F.kale(rewards.get(l.farmerId) || "0") : "-", "num");
      fresh.appendChild(tr);
    }
    $("miner-rows").replaceChildren(fresh);
    setText("miners-total", page.total + " miners");
    setText("miners-page", page.total ? (s.offset + 1) + "\u2013" + (s.offset + rows.length) : "none yet");
    $("miners-prev").disabled = s.offset === 0;
    $("miners-next").disabled = s.offset + rows.length >= page.total;
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.classList.toggle("sorted-desc", th.dataset.sort === s.sort && s.order === "desc");
      th.classList.toggle("sorted-asc", th.dataset.sort === s.sort && s.order === "asc");
    }
  }

  async function refreshMiner(minerId) {
    const id = encodeURIComponent(minerId);
    const [live, hist] = await Promise.all([get("stats/live/miners/" + id), get("stats/miners/" + id + "?range=" + state.ranges.miner)]);
    if (state.route.page !== "miner") return;
    if (!live) { setText("m-name", "unknown miner"); return; }
    F.learnFarmer(live.farmerId, live.address, live.name ? [live.name] : []);
    setText("m-name", (live.name || "") + " (" + minerId.slice(0, 8) + ")");
    $("m-farmer").replaceChildren(live.farmerId ? F.farmerElement(live.farmerId) : document.createTextNode("-"));
    setText("m-hashrate", F.rate(live.hashrate));
    setText("m-reported", F.rate(live.reportedHashrate));
    setText("m-workers", live.workersOnline + " / " + (live.workerList || []).length);
    setText("m-best", F.num(live.bestZeros));
    const now = Date.now();
    const fresh = document.createDocumentFragment();
    for (const w of live.workerList || []) {
      const tr = document.createElement("tr");
      tr.dataset.worker = w.worker;
      cell(tr, w.worker);
      cell(tr, w.online ? "online (" + w.transport + ")" : "offline", w.online ? "ok" : "offline");
      cell(tr, w.online ? F.rate(w.hashrate) : "-", "num");
      cell(tr, F.rate(w.reportedHashrate), "num");
      cell(tr, F.num(w.shareZeros), "num");
      cell(tr, F.num(w.accepted), "num");
      cell(tr, F.num(w.rejected), "num");
      cell(tr, F.age(w.lastShareAt, now), "num");
      cell(tr, w.agent || "-");
      fresh.appendChild(tr);
    }
    $("m-workers-rows").replaceChildren(fresh);
    if (hist) {
      const h = hist.history || [];
      chart("chart-miner", [{ label: "hashrate", color: "#7bd88f", axis: rateAxis, value: rateValue }],
        [h.map((b) => b.start), h.map((b) => b.hashrate)]);
    }
    // a farmer is in the rewards history once it was paid: ask for its blocks only then (no 404s)
    const paid = live.farmerId ? (await farmerRewards()).has(live.farmerId) : false;
    const rewards = paid ? await get("stats/farmers/" + encodeURIComponent(live.farmerId) + "?limit=20") : null;
    setText("m-rewards", rewards ? F.kale(rewards.rewards) : F.kale("0"));
    const rows = document.createDocumentFragment();
    for (const b of (rewards && rewards.blocks) || []) {
      const tr = document.createElement("tr");
      tr.dataset.block = String(b.block);
      cell(tr, String(b.block));
      cell(tr, F.kale(b.reward), "num");
      rows.appendChild(tr);
    }
    $("m-blocks").replaceChildren(rows);
  }

  // ------------------------------------------------------------------ events and alerts

  function renderAlerts() {
    const box = $("alerts");
    const fresh = document.createDocumentFragment();
    for (const a of state.alerts.values()) {
      const div = document.createElement("div");
      div.className = "alert " + String(a.severity || "critical");
      div.dataset.alert = String(a.kind);
      div.textContent = String(a.severity || "alert").toUpperCase() + ": " + String(a.summary || a.kind);
      fresh.appendChild(div);
    }
    box.replaceChildren(fresh);
    box.hidden = state.alerts.size === 0;
  }

  function renderEvents() {
    if (state.route.page !== "events") return;
    const select = $("event-kind");
    for (const k of [...state.kinds].sort()) {
      if (![...select.options].some((o) => o.value === k)) {
        const o = document.createElement("option"); o.value = k; o.textContent = k; select.appendChild(o);
      }
    }
    const fresh = document.createDocumentFragment();
    let shown = 0;
    for (let i = state.events.length - 1; i >= 0 && shown < SHOWN_EVENTS; i--) {
      const ev = state.events[i];
      if (state.eventKind && ev.kind !== state.eventKind) continue;
      shown++;
      const li = document.createElement("li");
      li.dataset.kind = ev.kind;
      if (ev.data.ok === false || (ev.kind === "alert" && ev.data.status !== "resolved")) li.className = "failed";
      const time = document.createElement("span"); time.className = "time"; time.textContent = F.clock(ev.at);
      const kind = document.createElement("span"); kind.className = "kind"; kind.textContent = ev.kind;
      li.append(time, kind, document.createTextNode(F.sentence(ev.kind, ev.data)));
      fresh.appendChild(li);
    }
    $("events").replaceChildren(fresh);
  }

  function keep(ev) {
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    if (ev.kind === "summary") return;  // periodic: the figures come from the API
    state.events.push({ at: ev.at, kind: ev.kind, data: d });
    state.kinds.add(ev.kind);
    if (state.events.length > MAX_EVENTS) state.events.splice(0, state.events.length - MAX_EVENTS);
    if (ev.kind === "alert" && typeof d.key === "string") {
      if (d.status === "resolved") state.alerts.delete(d.key); else state.alerts.set(d.key, d);
    }
  }

  function onEvent(ev) {
    if (ev.kind === "snapshot") {
      const d = ev.data && typeof ev.data === "object" ? ev.data : {};
      for (const r of Array.isArray(d.recent) ? d.recent : []) {
        if (r && typeof r === "object" && typeof r.kind === "string" && r.kind !== "snapshot") keep(r);
      }
    } else {
      keep(ev);
    }
    if (ev.kind === "block" && ev.data && F.isNum(ev.data.block)) setText("block", ev.data.block);
    renderAlerts();
    renderEvents();
    // news of the block (not the periodic summary, not miners coming and going): re-read the figures
    if (NEWS.has(ev.kind)) scheduleRefresh(NEWS_DELAY_MS);
  }

  let farmersLearnedAt = 0;  // when the farmer directory was last filled for the event log
  async function learnFarmers() {
    // the log names farmers by address and name: fill the directory (1,000 farmers at most) now and then
    if (Date.now() - farmersLearnedAt < 30000) return;
    farmersLearnedAt = Date.now();
    const live = await get("stats/live?limit=1000");
    for (const f of (live && live.farmerList) || []) F.learnFarmer(f.farmerId, f.address, f.names);
  }

  // ------------------------------------------------------------------ health badges

  async function refreshHealth() {
    const h = await get("health");
    const chain = $("chain"), backend = $("backend");
    if (!h || !h.checks) {
      chain.className = backend.className = "badge unknown";
      chain.textContent = "chain: unknown"; backend.textContent = "Backend: unknown";
      return;
    }
    state.health = h;
    const rpc = h.checks.rpc, be = h.checks.backend;
    chain.className = "badge " + (rpc === "ok" ? "good" : "bad");
    chain.textContent = "chain: " + (rpc === "ok" ? "ok" : "down");
    backend.className = "badge " + (be === "ok" ? "good" : "bad");
    backend.textContent = "Backend: " + (be === "ok" ? "ok" : String(be));
  }

  // ------------------------------------------------------------------ routing and refresh

  function parseRoute() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "blocks" && parts[1]) return { page: "block", arg: parts[1] };
    if (parts[0] === "blocks") return { page: "blocks", arg: null };
    if (parts[0] === "miners" && parts[1]) return { page: "miner", arg: parts[1] };
    if (parts[0] === "miners") return { page: "miners", arg: null };
    if (parts[0] === "events") return { page: "events", arg: null };
    return { page: "overview", arg: null };
  }

  async function refresh() {
    refreshTimer = null;
    const r = state.route;
    if (r.page === "overview") await refreshOverview();
    else if (r.page === "blocks") await refreshBlocks();
    else if (r.page === "block") { await learnFarmers(); await refreshBlock(r.arg); }
    else if (r.page === "miners") await refreshMiners();
    else if (r.page === "miner") await refreshMiner(r.arg);
    else if (r.page === "events") { await learnFarmers(); renderEvents(); }
    document.body.dataset.loaded = r.page;  // tests wait for this after a navigation
  }

  function scheduleRefresh(delay) {
    if (refreshTimer === null) refreshTimer = setTimeout(refresh, delay);
  }

  function route() {
    state.route = parseRoute();
    const page = state.route.page;
    delete document.body.dataset.loaded;
    for (const s of document.querySelectorAll("section.page")) s.hidden = s.dataset.page !== page;
    const nav = { overview: "overview", blocks: "blocks", block: "blocks", miners: "miners", miner: "miners", events: "events" }[page];
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.nav === nav);
    clearTimeout(refreshTimer);
    refreshTimer = null;
    refresh();
  }

  // ------------------------------------------------------------------ controls

  for (const group of document.querySelectorAll(".ranges")) {
    group.addEventListener("click", (e) => {
      const b = e.target.closest("button");
      if (!b) return;
      state.ranges[group.dataset.chart] = b.dataset.range;
      for (const x of group.querySelectorAll("button")) x.classList.toggle("on", x === b);
      refresh();
    });
  }
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const s = state.minerSort;
      if (s.sort === th.dataset.sort) s.order = s.order === "desc" ? "asc" : "desc";
      else { s.sort = th.dataset.sort; s.order = th.dataset.sort === "minerId" ? "asc" : "desc"; }
      s.offset = 0;
      refresh();
    });
  }
  $("miners-prev").addEventListener("click", () => { state.minerSort.offset = Math.max(0, state.minerSort.offset - PAGE_ROWS); refresh(); });
  $("miners-next").addEventListener("click", () => { state.minerSort.offset += PAGE_ROWS; refresh(); });
  $("blocks-older").addEventListener("click", (e) => {
    const next = e.target.dataset.next;
    if (next) { state.blockCursors.push(Number(next)); refresh(); }
  });
  $("blocks-newer").addEventListener("click", () => { if (state.blockCursors.length > 1) { state.blockCursors.pop(); refresh(); } });
  $("event-kind").addEventListener("change", (e) => { state.eventKind = e.target.value; renderEvents(); });

  // ------------------------------------------------------------------ start

  function setConn(text, cls) {
    const el = $("conn");
    el.textContent = text;
    el.className = "badge " + cls;
  }

  KP.debug = { state, charts };
  window.addEventListener("hashchange", route);
  setInterval(renderCountdowns, 250);
  setInterval(() => scheduleRefresh(0), POLL_MS);
  setInterval(refreshHealth, POLL_MS);
  refreshHealth();
  route();
  KP.stream.start(onEvent, setConn, (t) => setText("transport", t));
})();
