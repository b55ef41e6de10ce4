/* voicebot wallboard: signs in through signin.js, then follows the WebSocket
 * /api/wallboard, one whole board per message (see voicebot/web/wallboard_routes.py), and
 * shows each queue's figures in the colour the server chose against the queue's thresholds.
 *
 * The connection is kept alive: a dropped socket is opened again with a growing delay (1 s to
 * 10 s); a close with 4401 (not signed in) or 4403 (not a supervisor) shows the sign-in form;
 * a socket that never opened asks /api/me whether the session is still good; and a socket
 * silent for longer than the server's heartbeat (a board every ten seconds) is dropped and
 * opened again. */
(() => {
  "use strict";

  const STALE_MS = 25000;
  const BACKOFF_MS = [1000, 2000, 5000, 10000];
  const SESSION_ENDED = "Your session has ended. Sign in again.";
  const NOT_ALLOWED = "The wallboard needs a supervisor or admin account.";
  const state = { socket: null, lastMessage: 0, tiles: new Map(), wanted: false, retry: null, attempt: 0 };

  const $ = (id) => document.getElementById(id);
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
    const pct = Math.round(fraction * 1000) / 10;
    return `${Number.isInteger(pct) ? pct : pct.toFixed(1)}%`;
  }

  function fmtCount(n) {
    return n === null || n === undefined ? "—" : String(n);
  }

  const FORMATS = {
    waiting: fmtCount, longest_wait_s: fmtDuration, service_level: fmtPercent,
    asa_s: fmtDuration, abandon_rate: fmtPercent, callbacks_pending: fmtCount,
  };

  function limitText(name, band) {
    if (!band) return "";
    const f = FORMATS[name];
    const word = band.lower_is_worse ? "below" : "above";
    return `amber ${word} ${f(band.amber)}, red ${word} ${f(band.red)}`;
  }

  // ------------------------------------------------------------------ rendering

  function tileFor(queue) {
    let tile = state.tiles.get(queue.name);
    if (!tile) {
      tile = $("queue-template").content.firstElementChild.cloneNode(true);
      tile.dataset.queue = queue.name;
      tile.querySelector(".queue-name").textContent = queue.name;
      state.tiles.set(queue.name, tile);
    }
    return tile;
  }

  function renderQueue(queue) {
    const tile = tileFor(queue);
    for (const [name, format] of Object.entries(FORMATS)) {
      const box = tile.querySelector(`[data-figure="${name}"]`);
      const fig = queue[name] || { value: null, colour: "none" };
      const text = format(fig.value);
      const value = box.querySelector(".value");
      if (value.textContent !== text) value.textContent = text;
      if (box.dataset.colour !== fig.colour) box.dataset.colour = fig.colour;
      box.title = limitText(name, queue.thresholds && queue.thresholds[name]);
    }
    for (const box of tile.querySelectorAll("[data-state]")) {
      const text = String(queue.agents[box.dataset.state] ?? 0);
      const value = box.querySelector(".value");
      if (value.textContent !== text) value.textContent = text;
    }
    tile.querySelector(".today").textContent =
      `Today: ${queue.offered} offered · ${queue.answered} answered · ${queue.abandoned} abandoned` +
      (queue.connected ? ` · ${queue.connected} talking now` : "");
    return tile;
  }

  function render(board) {
    const tiles = board.queues.map(renderQueue);
    const names = new Set(board.queues.map((q) => q.name));
    for (const name of [...state.tiles.keys()]) if (!names.has(name)) state.tiles.delete(name);
    const list = $("queues");
    tiles.forEach((tile, i) => { if (list.children[i] !== tile) list.insertBefore(tile, list.children[i] || null); });
    while (list.children.length > tiles.length) list.lastElementChild.remove();

    const c = board.centre;
    setText("centre-waiting", fmtCount(c.waiting));
    setText("centre-longest", fmtDuration(c.longest_wait_s));
    setText("centre-ready", fmtCount(c.agents.ready));
    setText("centre-busy", fmtCount(c.agents.busy));
    setText("centre-wrap-up", fmtCount(c.agents.wrap_up));
    setText("centre-not-ready", fmtCount(c.agents.not_ready));
    setText("centre-calls", fmtCount(c.calls));
    setText("centre-containment", fmtPercent(c.containment.value));
  }

  // ------------------------------------------------------------------ the stream

  function status(kind, text) {
    const box = $("stream-status");
    box.dataset.status = kind;
    box.textContent = text;
  }

  function connect() {
    closeSocket();
    clearTimeout(state.retry);
    if (!state.wanted) return;
    if (state.attempt === 0) status("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/wallboard`);
    let opened = false;
    state.socket = socket;
    state.lastMessage = Date.now();
    socket.onopen = () => { opened = true; };
    socket.onmessage = (event) => {
      state.lastMessage = Date.now();
      let board;
      try {
        board = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      render(board);
      state.attempt = 0;
      status("live", "Live");
    };
    socket.onclose = (event) => {
      if (socket !== state.socket) return;
      state.socket = null;
      if (event.code === 4401) return VoicebotSignIn.showLogin(SESSION_ENDED);
      if (event.code === 4403) return VoicebotSignIn.showLogin(NOT_ALLOWED);
      status("lost", "Reconnecting…");
      const delay = BACKOFF_MS[Math.min(state.attempt, BACKOFF_MS.length - 1)];
      state.attempt += 1;
      clearTimeout(state.retry);
      state.retry = setTimeout(opened ? connect : recheck, delay);  // never opened: a proxy or the session?
    };
  }

  function closeSocket() {
    if (state.socket) {
      const socket = state.socket;
      state.socket = null;
      socket.onopen = socket.onmessage = socket.onclose = null;
      try { socket.close(1000); } catch (err) { /* already closed */ }
    }
  }

  async function recheck() {
    let response;
    try {
      response = await fetch("/api/me", { credentials: "same-origin" });
    } catch (err) {
      return connect();  // the server is away: connect() keeps trying, more slowly each time
    }
    if (response.status === 401) return VoicebotSignIn.showLogin(SESSION_ENDED);
    if (response.ok && !VoicebotSignIn.allows(await response.json())) return VoicebotSignIn.showLogin(NOT_ALLOWED);
    connect();
  }

  function watchdog() {
    if (state.wanted && state.socket && Date.now() - state.lastMessage > STALE_MS) {
      status("lost", "Reconnecting…");
      connect();
    }
  }

  // ------------------------------------------------------------------ sign in / out (signin.js)

  function start() {
    state.wanted = true;
    state.attempt = 0;
    connect();
  }

  function stop() {
    state.wanted = false;
    closeSocket();
    clearTimeout(state.retry);
    state.tiles.clear();
    $("queues").replaceChildren();
  }

  function tickClock() {
    setText("clock", new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }));
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signout").addEventListener("click", VoicebotSignIn.signOut);
    tickClock();
    setInterval(tickClock, 1000);
    setInterval(watchdog, 5000);
    VoicebotSignIn.start({
      view: "board", roles: ["supervisor", "admin"], onSignedIn: start, onSignedOut: stop,
      refused: (me) => `${me.name || me.id} is an agent: the wallboard needs a supervisor or admin account.`,
    });
  });
})();
