// KALE Pooler dashboard: formatting, farmer names and the event log's sentences (window.KP.fmt).
// Nothing from the network is ever parsed as HTML: text goes in with textContent.
"use strict";

(function () {
  const KP = (window.KP = window.KP || {});

  function isNum(v) { return typeof v === "number" && Number.isFinite(v); }

  function kale(stroops) {
    // "25050000000" (7 decimals) -> "2505.0000000"; exact, no floating point
    if (stroops === null || stroops === undefined) return "-";
    const s = String(stroops);
    if (!/^[0-9]+$/.test(s)) return "-";
    const padded = s.padStart(8, "0");
    return padded.slice(0, -7).replace(/^0+(?=\d)/, "") + "." + padded.slice(-7);
  }

  function rate(h) {
    if (!isNum(h)) return "-";
    const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s"];
    let i = 0;
    while (h >= 1000 && i < units.length - 1) { h /= 1000; i++; }
    return h.toFixed(1) + " " + units[i];
  }

  function clock(ms) {
    if (!isNum(ms)) return "--:--:--";
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function countdown(target, now) {
    if (!isNum(target)) return "-";
    let s = Math.round((target - now) / 1000);
    if (s <= 0) return "passed";
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
    return h > 0 ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function age(unixSeconds, nowMs) {
    // minute resolution (the API's last-share time is the start of a 1-minute bucket)
    if (!isNum(unixSeconds)) return "never";
    const s = Math.max(0, Math.round(nowMs / 1000 - unixSeconds));
    if (s < 120) return "< 2 min";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d";
  }

  function pct(part, whole) {
    if (!isNum(part) || !isNum(whole) || whole <= 0) return "0.0";
    return (100 * part / whole).toFixed(1);
  }

  function num(v) { return isNum(v) ? String(v) : "-"; }

  // ------------------------------------------------------------------ farmers

  // farmerId -> {address, names}: filled from /stats/live and /stats/live/miners answers
  const farmers = new Map();

  function learnFarmer(farmerId, address, names) {
    if (typeof farmerId !== "string" || !farmerId) return;
    const known = farmers.get(farmerId) || { address: null, names: [] };
    if (typeof address === "string" && address) known.address = address;
    for (const n of names || []) if (typeof n === "string" && n && !known.names.includes(n)) known.names.push(n);
    farmers.set(farmerId, known);
  }

  function shortAddress(a) { return a.length > 12 ? a.slice(0, 5) + "\u2026" + a.slice(-4) : a; }

  // "GABCD…WXYZ (rig-1)": the short G-address and the names its miners gave; the full one on hover
  function farmerLabel(farmerId) {
    const known = farmers.get(String(farmerId));
    if (!known || !known.address) return shortAddress(String(farmerId));
    const name = known.names.length ? " (" + known.names.join(", ") + ")" : "";
    return shortAddress(known.address) + name;
  }

  // an element showing a farmer: short form, the full address in its title, click copies it
  function farmerElement(farmerId) {
    const span = document.createElement("span");
    span.className = "addr";
    span.dataset.farmer = String(farmerId);
    span.textContent = farmerLabel(farmerId);
    const known = farmers.get(String(farmerId));
    const full = known && known.address ? known.address : String(farmerId);
    span.title = full + " (click to copy)";
    span.addEventListener("click", (e) => {
      e.stopPropagation();
      if (navigator.clipboard) navigator.clipboard.writeText(full).catch(() => {});
    });
    return span;
  }

  // ------------------------------------------------------------------ event sentences

  function okText(d) { return d.ok ? "ok" : "FAILED" + (d.error ? " (" + d.error + ")" : ""); }
  function count(n, one, many) { const v = isNum(n) ? n : 0; return v + " " + (v === 1 ? one : many); }
  function blockOf(d) { return isNum(d.block) ? "block " + d.block : "the block"; }

  const PHASES = {
    idle: "is idle", planting: "is planting", mining: "is mining", submitting: "is submitting work",
    worked: "has its work in", closed: "is closed", paused: "is paused (the farm contract is paused)",
  };

  // Any value as plain words, never JSON: for kinds this page does not know yet.
  function plain(d) {
    const parts = [];
    for (const [k, v] of Object.entries(d)) {
      if (v === null || v === undefined) continue;
      if (typeof v === "object") parts.push(k + " (" + (Array.isArray(v) ? v.length + " items" : "details") + ")");
      else parts.push(k + " " + String(v));
    }
    return parts.join(", ");
  }

  function sentence(kind, d) {
    switch (kind) {
      case "snapshot": {
        const s = d.summary && typeof d.summary === "object" ? d.summary : {};
        return "connected: " + (isNum(s.block) ? "block " + s.block : "no block yet") + ", " +
          count(s.miners, "miner", "miners") + " online";
      }
      case "block": return "block " + num(d.block) + " opened (entropy " + String(d.entropy || "-").slice(0, 12) +
        "\u2026), work at " + clock(d.workAt) + ", ends " + clock(d.blockEndsAt);
      case "phase": return blockOf(d) + " " + (PHASES[d.phase] || ("is in phase " + String(d.phase || "unknown")));
      case "plant": return d.ok
        ? blockOf(d) + " planted: " + count(d.successfulPlants, "farmer", "farmers") + ", " + kale(d.totalStaked) +
          " KALE staked" + (d.failedPlants ? ", " + d.failedPlants + " failed" : "")
        : blockOf(d) + " plant FAILED" + (d.error ? ": " + d.error : "");
      case "work": return blockOf(d) + " work " + okText(d) + ": " +
        count((d.submissions || []).length, "farmer", "farmers") + " submitted, " + num(d.validNonces || 0) +
        " valid, " + num(d.invalidNonces || 0) + " invalid";
      case "harvest": return blockOf(d) + " harvest " + okText(d) + ": " +
        count(d.successfulHarvests, "farmer", "farmers") + " harvested, " + kale(d.totalRewards || "0") + " KALE" +
        (d.failedHarvests ? ", " + d.failedHarvests + " failed" : "");
      case "miner": return "miner " + String(d.minerId || "-") + " of farmer " + farmerLabel(d.farmerId) + " " +
        String(d.event || "changed") + (d.worker ? " (worker " + d.worker + ")" : "");
      case "farmer": return "farmer " + farmerLabel(d.farmerId) + " " + String(d.status || "changed") + " in " +
        blockOf(d) + (isNum(d.zeros) ? " with " + d.zeros + " zeros" : "") +
        (d.reward ? ", reward " + kale(d.reward) + " KALE" : "") + (d.reason ? ": " + d.reason : "");
      case "summary": return blockOf(d) + ": " + count(d.miners, "miner", "miners") + ", " + rate(d.hashrate);
      case "chain": return "chain RPC " + (d.ok ? "back" : "DOWN") + (d.detail ? ": " + d.detail : "");
      case "alert": return (d.status === "resolved" ? "resolved" : String(d.severity || "alert").toUpperCase()) +
        ": " + String(d.summary || d.kind || "an alert");
      default: return kind + ": " + plain(d);
    }
  }

  KP.fmt = { isNum, kale, rate, clock, countdown, age, pct, num, sentence, learnFarmer, farmerLabel, farmerElement, shortAddress, farmers };
})();
