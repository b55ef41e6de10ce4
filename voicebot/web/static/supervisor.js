/*
 * voicebot supervisor console. Server side: voicebot/web/supervisor.py (WebSocket
 * /api/supervisor: "calls" snapshots in; monitor / mode / stop / take_over / move /
 * agent_state orders out). Sign-in through POST /api/login, GET /api/me, POST /api/logout.
 * Monitoring is a WebRTC leg of the supervisor's own: their microphone is heard only in
 * whisper (by the agent) or barge (by both), and after taking a call over from the bot.
 */
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const ICE_WAIT_MS = 2000;
  const state = { me: null, ws: null, wanted: false, retry: null, calls: [], agents: [], queues: [],
                  selected: null, rtc: null, monitoring: null };

  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const fmt = (s) => (s === null || s === undefined) ? "" : (s >= 60 ? `${Math.floor(s / 60)}m ${Math.round(s % 60)}s` : `${Math.round(s)}s`);
  const toast = (text) => { $("toast").textContent = text || ""; };

  // ------------------------------------------------------------------ sign in / out

  async function checkSession() {
    try {
      const response = await fetch("/api/me", { credentials: "same-origin" });
      if (response.ok) return start(await response.json());
    } catch (err) { return showLogin("Cannot reach the server."); }
    showLogin("");
  }

  function showLogin(message) {
    $("console-view").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message;
    $("login-error").hidden = !message;
    $("login-submit").disabled = false;
  }

  async function login(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    if (!user || !password) return showLogin("Enter your user name and password.");
    $("login-submit").disabled = true;
    let response;
    try {
      response = await fetch("/api/login", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user, password }) });
    } catch (err) { return showLogin("Cannot reach the server."); }
    if (!response.ok) return showLogin(response.status === 401 ? "Wrong user name or password." : `Sign-in failed (${response.status}).`);
    $("login-password").value = "";
    start(await response.json());
  }

  function start(principal) {
    if (!principal || (principal.role !== "supervisor" && principal.role !== "admin")) {
      return showLogin("This console is for supervisors and admins.");
    }
    state.me = principal;
    $("login-view").hidden = true;
    $("console-view").hidden = false;
    $("me").textContent = principal.name || principal.id;
    state.wanted = true;
    connect();
  }

  async function signOut() {
    state.wanted = false;
    closeMedia();
    if (state.ws) state.ws.close();
    try { await fetch("/api/logout", { method: "POST", credentials: "same-origin" }); } catch (err) { /* expires anyway */ }
    showLogin("");
  }

  // ------------------------------------------------------------------ WebSocket

  function connect() {
    clearTimeout(state.retry);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/supervisor`);
    state.ws = ws;
    ws.onopen = () => { $("link-state").textContent = "live"; };
    ws.onmessage = (event) => receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      $("link-state").textContent = "offline";
      if (event.code === 4401) return showLogin("Your session has ended. Sign in again.");
      if (event.code === 4403) return showLogin("This console is for supervisors and admins.");
      if (state.wanted) state.retry = setTimeout(connect, 2000);
    };
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
    else toast("Not connected to the server.");
  }

  function receive(message) {
    switch (message.type) {
      case "calls":
        state.calls = message.calls; state.agents = message.agents; state.queues = message.queues;
        if (state.monitoring && !state.calls.some((c) => c.call_id === state.monitoring.callId)) {
          closeMedia();  // the call is over
          toast("The call you were on has ended.");
        }
        render();
        break;
      case "answer":
        if (state.rtc && state.rtc.callId === message.call_id) {
          state.rtc.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
          state.monitoring = { callId: message.call_id, mode: message.mode };
          render();
        }
        break;
      case "done":
        if (message.order === "mode" && state.monitoring) state.monitoring.mode = message.mode;
        if (message.order === "take_over" && state.monitoring) state.monitoring.mode = "taken over";
        if (message.order === "stop" || message.order === "hang_up") closeMedia();
        toast(`${message.order.replace("_", " ")}: done`);
        render();
        break;
      case "error":
        if (message.order === "monitor") closeMedia();
        toast(message.message);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ monitoring

  async function monitor(mode) {
    const callId = state.selected;
    if (!callId) return;
    if (state.monitoring && state.monitoring.callId === callId) return send({ type: "mode", call_id: callId, mode });
    closeMedia();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return toast("No microphone here (open the console over HTTPS).");
    try {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      const pc = new RTCPeerConnection({ iceServers: [] });
      state.rtc = { pc, mic, callId };
      mic.getAudioTracks().forEach((track) => pc.addTrack(track, mic));
      pc.ontrack = (event) => {
        const audio = $("remote-audio");
        audio.srcObject = event.streams[0] || new MediaStream([event.track]);
        audio.play().catch(() => {});
      };
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc);
      send({ type: "monitor", call_id: callId, mode, sdp: pc.localDescription.sdp });
    } catch (err) {
      closeMedia();
      toast(`Cannot monitor: ${err.message || err}`);
    }
  }

  function iceGathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, ICE_WAIT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
  }

  function closeMedia() {
    const rtc = state.rtc;
    state.rtc = null;
    state.monitoring = null;
    if (!rtc) return;
    rtc.mic.getTracks().forEach((track) => track.stop());
    try { rtc.pc.close(); } catch (err) { /* closed */ }
    $("remote-audio").srcObject = null;
  }

  // ------------------------------------------------------------------ drawing

  function render() {
    const calls = state.calls;
    $("call-count").textContent = String(calls.length);
    $("no-calls").hidden = calls.length > 0;
    const rows = calls.map((call) => {
      const tr = el("tr");
      tr.dataset.callId = call.call_id;
      tr.setAttribute("aria-selected", String(call.call_id === state.selected));
      tr.append(el("td", "", call.caller || call.channel));
      const st = el("td"); const pill = el("span", "pill", call.state); pill.dataset.state = call.state; st.append(pill); tr.append(st);
      tr.append(el("td", "", call.queue ? `${call.queue}${call.waiting_s !== null ? " · " + fmt(call.waiting_s) : ""}` : ""));
      tr.append(el("td", "", call.agent || ""));
      tr.append(el("td", "", call.intent ? `${call.intent} (${Math.round((call.confidence || 0) * 100)}%)` : ""));
      const flags = el("td"); call.flags.forEach((f) => flags.append(el("span", "flag", f.replace(/_/g, " ")))); tr.append(flags);
      tr.append(el("td", "", call.monitor ? `${call.monitor.supervisor}: ${call.monitor.mode}` : ""));
      tr.addEventListener("click", () => { state.selected = call.call_id; render(); });
      return tr;
    });
    $("calls").replaceChildren(...rows);
    renderAgents();
    renderDetail();
  }

  function renderAgents() {
    const rows = state.agents.map((agent) => {
      const tr = el("tr");
      tr.dataset.agent = agent.id;
      tr.append(el("td", "", agent.name || agent.id));
      const pill = el("span", "pill", agent.state.replace("_", " ")); pill.dataset.state = agent.state;
      const st = el("td"); st.append(pill); tr.append(st);
      tr.append(el("td", "", fmt(agent.in_state_s)));
      tr.append(el("td", "", agent.call_id ? agent.call_id.slice(0, 8) : ""));
      const steer = el("td");
      [["ready", "Ready"], ["not_ready", "Not ready"], ["logged_out", "Log out"]].forEach(([value, label]) => {
        const b = el("button", "btn", label);
        b.type = "button";
        b.dataset.state = value;
        b.disabled = agent.state === value;
        b.addEventListener("click", () => send({ type: "agent_state", agent: agent.id, state: value, reason: value === "not_ready" ? "supervisor" : null }));
        steer.append(b);
      });
      tr.append(steer);
      return tr;
    });
    $("agents").replaceChildren(...rows);
  }

  function renderDetail() {
    const call = state.calls.find((c) => c.call_id === state.selected);
    $("detail").hidden = !call;
    if (!call) return;
    $("detail-caller").textContent = call.caller || call.channel;
    $("detail-state").textContent = call.state;
    $("detail-state").dataset.state = call.state;
    $("detail-where").textContent = [call.queue && `queue ${call.queue}`, call.waiting_s !== null && `waiting ${fmt(call.waiting_s)}`,
      call.agent && `with ${call.agent}`, `on the line ${fmt(call.duration_s)}`].filter(Boolean).join(" · ");
    $("detail-intent").textContent = call.intent ? `${call.intent} (${Math.round((call.confidence || 0) * 100)}%)` : "none yet";
    $("detail-summary").textContent = call.summary || "";
    $("detail-flags").replaceChildren(...call.flags.map((f) => el("span", "flag", f.replace(/_/g, " "))));
    const mine = state.monitoring && state.monitoring.callId === call.call_id ? state.monitoring.mode : null;
    ["listen", "whisper", "barge"].forEach((mode) => $(`btn-${mode}`).setAttribute("aria-pressed", String(mine === mode)));
    const withAgent = call.state === "connected" && mine !== "taken over";
    $("btn-whisper").disabled = !withAgent;
    $("btn-barge").disabled = !withAgent;
    $("btn-takeover").disabled = !(call.state === "ivr" && mine === "listen");
    $("btn-stop").disabled = !mine;
    $("btn-stop").textContent = mine === "taken over" ? "Hang up" : "Stop";
    $("monitor-status").textContent = mine ? `You are on this call: ${mine}.` : (call.monitor ? `${call.monitor.supervisor} is on this call.` : "");
    const waiting = call.state === "queued" || call.state === "offered";
    $("move-row").hidden = !waiting;
    const select = $("move-queue");
    if (select.options.length !== state.queues.length) {
      select.replaceChildren(...state.queues.map((q) => { const o = el("option", "", q); o.value = q; return o; }));
    }
    const items = call.transcript.map((t) => {
      const li = el("li", "", t.text);
      li.dataset.speaker = t.speaker === "agent" && t.agent ? `${t.speaker} (${t.agent})` : t.speaker;
      return li;
    });
    $("detail-transcript").replaceChildren(...items);
  }

  // ------------------------------------------------------------------ wiring

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("sign-out").addEventListener("click", signOut);
    $("btn-listen").addEventListener("click", () => monitor("listen"));
    $("btn-whisper").addEventListener("click", () => monitor("whisper"));
    $("btn-barge").addEventListener("click", () => monitor("barge"));
    $("btn-takeover").addEventListener("click", () => state.selected && send({ type: "take_over", call_id: state.selected }));
    $("btn-stop").addEventListener("click", () => {
      if (!state.selected) return;
      const talking = state.monitoring && state.monitoring.mode === "taken over";
      send({ type: talking ? "hang_up" : "stop", call_id: state.selected });
    });
    $("btn-move").addEventListener("click", () => {
      const priority = $("move-priority").value;
      send({ type: "move", call_id: state.selected, queue: $("move-queue").value || null,
             priority: priority === "" ? null : Number(priority) });
    });
    checkSession();
  });
})();
