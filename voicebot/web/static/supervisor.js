/*
 * voicebot supervisor console. Server side: voicebot/web/supervisor.py (WebSocket
 * /api/supervisor: "calls" snapshots in; monitor / mode / stop / take_over / move /
 * agent_state orders out). Sign-in and sign-out through signin.js.
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

  // ------------------------------------------------------------------ sign in / out (signin.js)

  const REFUSED = "This console is for supervisors and admins.";

  function start(principal) {
    state.me = principal;
    $("me").textContent = principal.name || principal.id;
    state.wanted = true;
    connect();
  }

  function stop() {
    state.wanted = false;
    clearTimeout(state.retry);
    closeMedia();
    if (state.ws) state.ws.close();
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
      if (event.code === 4401) return VoicebotSignIn.showLogin("Your session has ended. Sign in again.");
      if (event.code === 4403) return VoicebotSignIn.showLogin(REFUSED);
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

  // Rows are kept per call and per agent and only their cells are rewritten, so a row being
  // clicked is never swapped for a new one by the next second's snapshot.
  const rows = { calls: new Map(), agents: new Map() };

  function keyedRow(kind, key, make) {
    let tr = rows[kind].get(key);
    if (!tr) {
      tr = make();
      rows[kind].set(key, tr);
    }
    return tr;
  }

  function setCells(tr, values) {
    values.forEach((value, i) => {
      const td = tr.children[i];
      if (typeof value === "string") {
        if (td.textContent !== value) td.textContent = value;
      } else {
        value(td);
      }
    });
  }

  function placeRows(body, kind, keys) {
    const live = new Set(keys);
    for (const [key, tr] of rows[kind]) {
      if (!live.has(key)) { tr.remove(); rows[kind].delete(key); }
    }
    keys.forEach((key, i) => {
      const tr = rows[kind].get(key);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
  }

  function pill(td, text, dataState) {
    let span = td.firstElementChild;
    if (!span) { span = el("span", "pill"); td.append(span); }
    if (span.textContent !== text) span.textContent = text;
    span.dataset.state = dataState;
  }

  function render() {
    const calls = state.calls;
    $("call-count").textContent = String(calls.length);
    $("no-calls").hidden = calls.length > 0;
    calls.forEach((call) => {
      const tr = keyedRow("calls", call.call_id, () => {
        const row = el("tr");
        row.dataset.callId = call.call_id;
        for (let i = 0; i < 7; i++) row.append(el("td"));
        row.addEventListener("click", () => { state.selected = row.dataset.callId; render(); });
        return row;
      });
      tr.setAttribute("aria-selected", String(call.call_id === state.selected));
      const flags = call.flags.map((f) => f.replace(/_/g, " "));
      setCells(tr, [
        call.caller || call.channel,
        (td) => pill(td, call.state, call.state),
        call.queue ? `${call.queue}${call.waiting_s !== null ? " · " + fmt(call.waiting_s) : ""}` : "",
        call.agent || "",
        call.intent ? `${call.intent} (${Math.round((call.confidence || 0) * 100)}%)` : "",
        (td) => {
          if (td.dataset.flags !== flags.join(",")) {
            td.dataset.flags = flags.join(",");
            td.replaceChildren(...flags.map((f) => el("span", "flag", f)));
          }
        },
        call.monitor ? `${call.monitor.supervisor}: ${call.monitor.mode}` : "",
      ]);
    });
    placeRows($("calls"), "calls", calls.map((c) => c.call_id));
    renderAgents();
    renderDetail();
  }

  function renderAgents() {
    state.agents.forEach((agent) => {
      const tr = keyedRow("agents", agent.id, () => {
        const row = el("tr");
        row.dataset.agent = agent.id;
        for (let i = 0; i < 4; i++) row.append(el("td"));
        const steer = el("td");
        [["ready", "Ready"], ["not_ready", "Not ready"], ["logged_out", "Log out"]].forEach(([value, label]) => {
          const b = el("button", "btn", label);
          b.type = "button";
          b.dataset.state = value;
          b.addEventListener("click", () => send({ type: "agent_state", agent: agent.id, state: value,
                                                   reason: value === "not_ready" ? "supervisor" : null }));
          steer.append(b);
        });
        row.append(steer);
        return row;
      });
      setCells(tr, [
        agent.name || agent.id,
        (td) => pill(td, agent.state.replace("_", " "), agent.state),
        fmt(agent.in_state_s),
        agent.call_id ? agent.call_id.slice(0, 8) : "",
        (td) => td.querySelectorAll("button").forEach((b) => { b.disabled = agent.state === b.dataset.state; }),
      ]);
    });
    placeRows($("agents"), "agents", state.agents.map((a) => a.id));
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
    const list = $("detail-transcript");
    const last = call.transcript[call.transcript.length - 1];
    const version = `${call.call_id}:${call.transcript.length}:${last ? last.text : ""}`;
    if (list.dataset.version !== version) {  // redrawn only when it changed: a reader keeps their place
      list.dataset.version = version;
      list.replaceChildren(...call.transcript.map((t) => {
        const li = el("li", "", t.text);
        li.dataset.speaker = t.speaker;
        if (t.agent) li.dataset.agent = t.agent;
        li.prepend(el("strong", "", `${t.speaker === "agent" && t.agent ? t.agent : t.speaker}: `));
        return li;
      }));
    }
  }

  // ------------------------------------------------------------------ wiring

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-out").addEventListener("click", VoicebotSignIn.signOut);
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
    VoicebotSignIn.start({ view: "console", roles: ["supervisor", "admin"], refused: () => REFUSED,
                           onSignedIn: start, onSignedOut: stop });
  });
})();
