// KALE Pooler dashboard: plain JS, no build step. Reads the event stream described in docs/events.md
// (WebSocket /ws/events, Server-Sent Events /events as the fallback) and renders it.
//
// Theory of operation: one `state` object is the page's model; every stream object goes through
// handle(), which updates `state` and re-renders the parts it touched. Nothing from the stream is ever
// parsed as HTML: text goes in with textContent and elements are built with createElement.
// Connection: try the WebSocket; a transport that fails before opening makes the next attempt use the
// other one; every retry waits an exponential, jittered delay (reset once a stream delivers data).
"use strict";

(function () {
  const MAX_EVENTS = 50;   // recent-event lines kept on the page
  const MAX_BLOCKS = 20;   // reward rows kept on the page

  const state = {
    block: null,          // current block index
    phase: null,          // current phase name
    workAt: null,         // unix ms: when the pool submits work for this block
    blockEndsAt: null,    // unix ms: when the block is expected to end
    summary: null,        // the last `summary` data
    bestZeros: {},        // farmerId -> zeros, current block
    blocks: new Map(),    // block -> {block, planted, worked: [{farmerId, zeros}], rewards: [{farmerId, reward}], totalRewards, failed}
    chain: null,          // {ok, detail} from the last `chain` event
  };

  const $ = (id) => document.getElementById(id);

  function setText(id, value) {
    const el = $(id);
    const text = value === null || value === undefined || value === "" ? "-" : String(value);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function isNum(v) { return typeof v === "number" && Number.isFinite(v); }

  // ------------------------------------------------------------------ formatting

  function formatKale(stroops) {
    // "25050000000" (7 decimals) -> "2505.0000000"; exact, no floating point
    const s = String(stroops === undefined || stroops === null ? "0" : stroops);
    if (!/^[0-9]+$/.test(s)) return s;
    const padded = s.padStart(8, "0");
    return padded.slice(0, -7).replace(/^0+(?=\d)/, "") + "." + padded.slice(-7);
  }

  function formatRate(h) {
    if (!isNum(h)) return "-";
    const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s"];
    let i = 0;
    while (h >= 1000 && i < units.length - 1) { h /= 1000; i++; }
    return h.toFixed(1) + " " + units[i];
  }

  function formatClock(ms) {
    if (!isNum(ms)) return "--:--:--";
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function formatCountdown(target, now) {
    if (!isNum(target)) return "-";
    let s = Math.round((target - now) / 1000);
    if (s <= 0) return "passed";
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h > 0 ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function okText(d) { return d.ok ? "ok" : "FAILED" + (d.error ? " (" + d.error + ")" : ""); }

  function describe(kind, d) {
    switch (kind) {
      case "snapshot": return "connected: block " + (d.summary ? d.summary.block : "-") + ", " +
        (d.recent || []).length + " recent events";
      case "block": return "block " + d.block + " opened, entropy " + String(d.entropy || "").slice(0, 12) +
        "..., work at " + formatClock(d.workAt) + ", ends " + formatClock(d.blockEndsAt);
      case "phase":
        if (isNum(d.block) && state.block !== null && d.block < state.block) break;  // late news of an old block
        if (isNum(d.block)) setBlock(d.block);
        if (typeof d.phase === "string") state.phase = d.phase;
        if (isNum(d.workAt)) state.workAt = d.workAt;
        if (isNum(d.blockEndsAt)) state.blockEndsAt = d.blockEndsAt;
        break;
      case "plant": return "block " + d.block + " plant " + okText(d) + ": " + (d.successfulPlants || 0) +
        " planted, " + (d.failedPlants || 0) + " failed, staked " + formatKale(d.totalStaked) + " KALE";
      case "work": return "block " + d.block + " work " + okText(d) + ": " + (d.submissions || []).length +
        " submitted, " + (d.validNonces || 0) + " valid, " + (d.invalidNonces || 0) + " invalid";
      case "harvest": return "block " + d.block + " harvest " + okText(d) + ": " + (d.successfulHarvests || 0) +
        " harvested, " + (d.failedHarvests || 0) + " failed, rewards " + formatKale(d.totalRewards) + " KALE";
      case "miner": return "miner " + d.minerId + " (farmer " + d.farmerId + ") " + d.event +
        (d.worker ? " worker " + d.worker : "");
      case "summary": return "block " + d.block + " " + d.phase + ": " + (d.miners || 0) + " miners, " +
        formatRate(d.hashrate);
      case "chain": return "chain " + (d.ok ? "ok" : "DOWN") + (d.detail ? ": " + d.detail : "");
      case "alert": return (d.status === "resolved" ? "resolved" : String(d.severity || "alert").toUpperCase()) +
        ": " + String(d.summary || d.kind);
      default: return JSON.stringify(d).slice(0, 200);
    }
  }

  // ------------------------------------------------------------------ rendering

  function renderHeader() {
    setText("block", state.block);
    setText("phase", state.phase);
    const s = state.summary || {};
    setText("miners", isNum(s.miners) ? s.miners : 0);
    setText("workers", isNum(s.workers) ? s.workers : 0);
    setText("hashrate", formatRate(s.hashrate));
    setText("accepted", isNum(s.accepted) ? s.accepted : 0);
    setText("rejected", isNum(s.rejected) ? s.rejected : 0);
    renderCountdowns();
  }

  function renderCountdowns() {
    const now = Date.now();
    setText("work-countdown", formatCountdown(state.workAt, now));
    setText("end-countdown", formatCountdown(state.blockEndsAt, now));
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function renderBest() {
    const body = $("best-zeros");
    const rows = Object.entries(state.bestZeros).sort((a, b) => b[1] - a[1]);
    const fresh = document.createDocumentFragment();
    for (const [farmer, zeros] of rows) {
      const tr = document.createElement("tr");
      tr.dataset.farmer = farmer;
      cell(tr, farmer);
      cell(tr, String(zeros), "num");
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
  }

  function renderRewards() {
    const body = $("rewards");
    const blocks = [...state.blocks.values()].sort((a, b) => b.block - a.block).slice(0, MAX_BLOCKS);
    const fresh = document.createDocumentFragment();
    for (const b of blocks) {
      const tr = document.createElement("tr");
      tr.dataset.block = String(b.block);
      cell(tr, String(b.block));
      cell(tr, b.planted === null || b.planted === undefined ? "-" : String(b.planted), "num");
      cell(tr, b.worked.length ? b.worked.map((w) => w.farmerId + " (" + w.zeros + ")").join(", ") : "-");
      const total = b.totalRewards !== null && b.totalRewards !== undefined
        ? b.totalRewards
        : (b.rewards.length ? sumStroops(b.rewards.map((r) => r.reward)) : null);
      const td = cell(tr, total === null ? "-" : formatKale(total), "num");
      if (b.rewards.length) td.title = b.rewards.map((r) => r.farmerId + ": " + formatKale(r.reward)).join("\n");
      fresh.appendChild(tr);
    }
    body.replaceChildren(fresh);
    while (state.blocks.size > MAX_BLOCKS * 2) state.blocks.delete(Math.min(...state.blocks.keys()));
  }

  function sumStroops(values) {
    let total = 0n;
    for (const v of values) {
      if (/^[0-9]+$/.test(String(v))) total += BigInt(String(v));
    }
    return total.toString();
  }

  function addEvent(ev) {
    const list = $("events");
    const li = document.createElement("li");
    li.dataset.kind = String(ev.kind);
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    if (d.ok === false) li.className = "failed";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = formatClock(ev.at);
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = String(ev.kind);
    li.append(time, kind, document.createTextNode(describe(String(ev.kind), d)));
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function renderChain() {
    const el = $("chain");
    if (!state.chain) { el.className = "badge unknown"; el.textContent = "chain: unknown"; return; }
    el.className = "badge " + (state.chain.ok ? "good" : "bad");
    el.textContent = "chain: " + (state.chain.ok ? "ok" : "down");
    el.title = state.chain.detail || "";
  }

  // ------------------------------------------------------------------ the model

  function blockRow(index) {
    let b = state.blocks.get(index);
    if (!b) {
      b = { block: index, planted: null, worked: [], rewards: [], totalRewards: null };
      state.blocks.set(index, b);
    }
    return b;
  }

  function setBlock(index) {
    if (index !== state.block) state.bestZeros = {};  // best zeros are per block
    state.block = index;
  }

  function applySummary(s) {
    if (!s || typeof s !== "object") return;
    state.summary = s;
    if (isNum(s.block)) setBlock(s.block);
    if (typeof s.phase === "string") state.phase = s.phase;
    if (isNum(s.workAt)) state.workAt = s.workAt;
    if (isNum(s.blockEndsAt)) state.blockEndsAt = s.blockEndsAt;
    if (s.bestZeros && typeof s.bestZeros === "object") state.bestZeros = Object.assign({}, s.bestZeros);
  }

  function apply(kind, d) {
    switch (kind) {
      case "snapshot": {
        applySummary(d.summary);
        for (const b of Array.isArray(d.blocks) ? d.blocks : []) {
          if (!b || !isNum(b.block)) continue;
          const row = blockRow(b.block);
          if (b.planted !== undefined) row.planted = b.planted;
          if (Array.isArray(b.worked)) row.worked = b.worked;
          if (Array.isArray(b.rewards)) row.rewards = b.rewards;
          if (b.totalRewards !== undefined) row.totalRewards = b.totalRewards;
        }
        for (const ev of Array.isArray(d.recent) ? d.recent : []) {
          if (ev && typeof ev === "object" && ev.kind !== "snapshot") addEvent(ev);
        }
        break;
      }
      case "block":
        if (isNum(d.block)) {
          setBlock(d.block);
          blockRow(d.block);
        }
        if (isNum(d.workAt)) state.workAt = d.workAt;
        if (isNum(d.blockEndsAt)) state.blockEndsAt = d.blockEndsAt;
        break;
      case "phase":
        if (typeof d.phase === "string" && (!isNum(d.block) || d.block === state.block || state.block === null)) {
          state.phase = d.phase;
          if (isNum(d.block)) state.block = d.block;
        }
        if (isNum(d.workAt)) state.workAt = d.workAt;
        if (isNum(d.blockEndsAt)) state.blockEndsAt = d.blockEndsAt;
        break;
      case "plant":
        if (isNum(d.block)) blockRow(d.block).planted = isNum(d.successfulPlants) ? d.successfulPlants : 0;
        break;
      case "work":
        if (isNum(d.block)) {
          blockRow(d.block).worked = (Array.isArray(d.submissions) ? d.submissions : [])
            .filter((s) => s && typeof s === "object")
            .map((s) => ({ farmerId: String(s.farmerId), zeros: s.zeros }));
        }
        break;
      case "harvest":
        if (isNum(d.block)) {
          const row = blockRow(d.block);
          if (Array.isArray(d.rewards)) row.rewards = d.rewards;
          if (d.totalRewards !== undefined) row.totalRewards = d.totalRewards;
        }
        break;
      case "summary":
        applySummary(d);
        break;
      case "chain":
        state.chain = { ok: !!d.ok, detail: typeof d.detail === "string" ? d.detail : "" };
        break;
    }
  }

  function handle(ev) {
    if (!ev || typeof ev !== "object" || ev.type !== "event" || typeof ev.kind !== "string") return;
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    apply(ev.kind, d);
    if (ev.kind !== "summary") addEvent(ev);  // summaries are periodic: shown in the cards, not the log
    renderHeader();
    renderBest();
    renderRewards();
    renderChain();
    setText("updated", formatClock(Date.now()));
  }

  // ------------------------------------------------------------------ connection

  const conn = {
    transport: "ws",      // the transport the next attempt uses
    attempt: 0,           // failures since data last arrived: grows the retry delay
    timer: null,          // pending retry
    current: null,        // the live WebSocket or EventSource
  };

  function setConn(text, cls) {
    const el = $("conn");
    el.textContent = text;
    el.className = "badge " + cls;
  }

  function retry(opened) {
    if (conn.current) {
      const c = conn.current;
      conn.current = null;
      try { c.close(); } catch (e) { /* already closed */ }
    }
    if (!opened) conn.transport = conn.transport === "ws" ? "sse" : "ws";
    const delay = Math.min(30000, 500 * 2 ** conn.attempt);
    conn.attempt++;
    const wait = delay / 2 + Math.random() * delay / 2;
    setConn("reconnecting in " + Math.ceil(wait / 1000) + " s", "bad");
    clearTimeout(conn.timer);
    conn.timer = setTimeout(connect, wait);
  }

  function onData(text) {
    conn.attempt = 0;
    let ev;
    try { ev = JSON.parse(text); } catch (e) { return; }
    handle(ev);
  }

  function streamUrl(path, ws) {
    const loc = window.location;
    const base = loc.pathname.replace(/[^/]*$/, "");
    if (ws) return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + base + path;
    return base + path;
  }

  function connect() {
    conn.timer = null;
    let opened = false;
    let done = false;
    const fail = () => { if (!done) { done = true; retry(opened); } };
    if (conn.transport === "ws" && "WebSocket" in window) {
      setConn("connecting (WebSocket)", "warn");
      const ws = new WebSocket(streamUrl("ws/events", true));
      conn.current = ws;
      ws.onopen = () => { opened = true; setConn("live", "good"); setText("transport", "WebSocket"); };
      ws.onmessage = (m) => { if (typeof m.data === "string") onData(m.data); };
      ws.onerror = fail;
      ws.onclose = fail;
    } else {
      setConn("connecting (SSE)", "warn");
      const es = new EventSource(streamUrl("events", false));
      conn.current = es;
      es.onopen = () => { opened = true; setConn("live", "good"); setText("transport", "Server-Sent Events"); };
      es.onmessage = (m) => onData(m.data);
      es.onerror = fail;  // EventSource would retry by itself; we retry ourselves to alternate transports
    }
  }

  setInterval(renderCountdowns, 250);
  connect();
})();
