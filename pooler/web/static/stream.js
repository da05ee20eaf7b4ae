// KALE Pooler dashboard: the live event stream (window.KP.stream).
// WebSocket /ws/events first; a transport that fails before opening makes the next attempt use the
// other one (Server-Sent Events /events), one that opened and dropped starts again from the WebSocket; every retry waits an exponential, jittered delay (reset once
// a stream delivers data). The #conn badge says "live" or "reconnecting in N s".
"use strict";

(function () {
  const KP = (window.KP = window.KP || {});

  function start(onEvent, setConn, setTransport) {
    const conn = {
      transport: "ws",   // the transport the next attempt uses
      attempt: 0,        // failures since data last arrived: grows the retry delay
      timer: null,       // pending retry
      current: null,     // the live WebSocket or EventSource
    };

    function retry(opened) {
      if (conn.current) {
        const c = conn.current;
        conn.current = null;
        try { c.close(); } catch (e) { /* already closed */ }
      }
      // a transport that never opened: try the other one next; one that worked and dropped (a Pooler
      // restart): start again from the WebSocket, so a fallback to SSE does not stick for good
      conn.transport = opened ? "ws" : (conn.transport === "ws" ? "sse" : "ws");
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
      if (ev && typeof ev === "object" && ev.type === "event" && typeof ev.kind === "string") onEvent(ev);
    }

    function url(path, ws) {
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
        const ws = new WebSocket(url("ws/events", true));
        conn.current = ws;
        ws.onopen = () => { opened = true; setConn("live", "good"); setTransport("WebSocket"); };
        ws.onmessage = (m) => { if (typeof m.data === "string") onData(m.data); };
        ws.onerror = fail;
        ws.onclose = fail;
      } else {
        setConn("connecting (SSE)", "warn");
        const es = new EventSource(url("events", false));
        conn.current = es;
        es.onopen = () => { opened = true; setConn("live", "good"); setTransport("Server-Sent Events"); };
        es.onmessage = (m) => onData(m.data);
        es.onerror = fail;  // EventSource would retry by itself; we retry ourselves to alternate transports
      }
    }

    connect();
  }

  KP.stream = { start };
})();
