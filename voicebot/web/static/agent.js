/* voicebot agent desktop – desk protocol v1.
 *
 * Server side: voicebot/web/desk.py (WebSocket /api/desk, JSON messages, closes 4401 when
 * not signed in and 4403 when the user is not an agent), on top of voicebot/handoff/desk.py;
 * sign-in and sign-out through signin.js.
 *
 * Voicemail comes over HTTP (voicebot/web/voicemail_routes.py): the list every VM_REFRESH_MS
 * and whenever the desk says {"type": "voicemail"}; "Mark handled" and "Call back" are POSTs.
 *
 * Plain browser JavaScript: no build step, no dependencies, works offline. Everything the
 * server sends reaches the page through textContent, never innerHTML. All page state lives
 * in the one `state` object below; nothing is global.
 */
(() => {
  "use strict";

  // ------------------------------------------------------------------ constants

  const STATE_LABELS = {
    logged_out: "Logged out", ready: "Ready", not_ready: "Not ready",
    offered: "Incoming call", on_call: "On call", wrap_up: "Wrap-up",
  };
  const BUSY_STATES = new Set(["offered", "on_call", "wrap_up"]);
  const CANCEL_NOTICES = {
    taken: "Another agent took the call.",
    timeout: "Missed call: nobody answered in time.",
    caller_left: "The caller hung up before the call was answered.",
    rejected: "Call rejected.",
    failed: "The call could not be connected to you.",
    gone: "The call is no longer available.",
  };
  const ENDED_BY = { caller: "the caller hung up", agent: "you hung up", transfer: "transferred" };
  const AGENT_STATE_ORDER = ["ready", "offered", "on_call", "wrap_up", "not_ready", "logged_out"];
  const ICE_WAIT_MS = 2000;
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  const STALE_MS = 15000; // no message for this long although queues come every second: reconnect
  const TICK_MS = 250;
  const PENDING_MS = 5000; // hold, mute and hang-up get no reply when they did nothing
  const DTMF_RE = /\[DTMF ([0-9A-D*#]+)\]/gi;
  const BASE_TITLE = document.title;
  // an offer's kind (desk protocol: "call" when missing); anything else is some callback
  const KIND_LABELS = { callback: "Callback", voicemail_callback: "Voicemail callback" };
  const VM_REFRESH_MS = 10000;
  const VM_HANDLED_SHOWN = 20; // recently handled voicemails kept under the unhandled ones

  // ------------------------------------------------------------------ the one state object

  const state = {
    me: null, // {id, name, role}
    agent: null, // hello.agent: {id, name, phone}
    agentState: null,
    reason: null,
    stateSince: 0,
    next: null, // {state, reason} picked while busy; shown until it takes effect
    dispositions: [],
    notReadyReasons: [],
    queueNames: [],
    queueCards: new Map(), // queue name → its card's elements
    ws: null,
    wsAttempt: 0,
    wsRetryAt: 0,
    wsRetryTimer: null,
    wsLastMessageAt: 0,
    wsSawQueues: false,
    wsWanted: false, // false after sign-out, 4401 or 4403: no reconnecting
    offer: null, // {callId, ctx, ringS, at, phone, queue, kind, number, accepting}
    // {callId, ctx, queue, kind, number, connectedAt, held, heldAt, muted, ended, by, endedAt, dtmf, transferring}
    call: null,
    wrapUp: null, // {callId, call, deadline, submitted}
    rtc: null, // {pc, mic, callId}
    audio: null, // AudioContext, made on the first user gesture
    ring: null, // {gain, oscillators, timer}
    selectKeyAt: 0,
    selectTimer: null,
    toastTimer: null,
    vmItems: new Map(), // voicemail id → its list item's elements and last data
    vmKnown: null, // ids of the unhandled voicemails last shown (null before the first load)
    vmLoading: false,
    vmAgain: false, // a refresh was asked for while one was running
    vmBusy: new Set(), // ids with a POST in flight
  };

  // ------------------------------------------------------------------ small helpers

  const $ = (id) => document.getElementById(id);
  const now = () => Date.now();

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function setText(id, text) {
    const node = $(id);
    const value = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function fmtDuration(seconds) {
    const total = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function fmtClock(epochSeconds) {
    if (typeof epochSeconds !== "number" || !isFinite(epochSeconds)) return "";
    return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function fmtConfidence(confidence) {
    const c = Number(confidence);
    if (confidence === null || confidence === undefined || !isFinite(c)) return "";
    return `${Math.round(c <= 1 ? c * 100 : c)}%`;
  }

  function fmtValue(value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) return value.map(fmtValue).join(", ");
    if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${fmtValue(v)}`).join(", ");
    return String(value);
  }

  function stateLabel(name) {
    return STATE_LABELS[name] || String(name || "—");
  }

  function announce(text) {
    const node = $("announcer");
    node.textContent = "";
    setTimeout(() => { node.textContent = text; }, 50);
  }

  function toast(message) {
    setText("toast-text", message);
    show("toast", true);
    clearTimeout(state.toastTimer);
    state.toastTimer = setTimeout(() => show("toast", false), 10000);
  }

  function notice(message) {
    setText("notice", message);
    show("notice", Boolean(message));
  }

  function callerLine(ctx) {
    return ctx.caller_number || ctx.caller_name || "Unknown caller";
  }

  function kindLabel(kind) {
    return kind && kind !== "call" ? KIND_LABELS[kind] || "Callback" : "";
  }

  /** Who an offer or call is with: the number voicebot dials for a callback, else the caller. */
  function partyLine(item) {
    return item.number && kindLabel(item.kind) ? item.number : callerLine(item.ctx);
  }

  function fmtWhen(epochSeconds) {
    if (typeof epochSeconds !== "number" || !isFinite(epochSeconds)) return "";
    const date = new Date(epochSeconds * 1000);
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (date.toDateString() === new Date().toDateString()) return time;
    return `${date.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ${time}`;
  }

  function callerMeta(ctx) {
    const parts = [];
    if (ctx.caller_name && ctx.caller_number) parts.push(ctx.caller_name);
    if (ctx.channel) parts.push(ctx.channel);
    if (ctx.language) parts.push(ctx.language);
    return parts.join(" · ");
  }

  function intentLine(ctx) {
    if (!ctx.intent) return "—";
    const confidence = fmtConfidence(ctx.confidence);
    return confidence ? `${ctx.intent} · ${confidence}` : String(ctx.intent);
  }

  // ------------------------------------------------------------------ sign in / out (signin.js)

  function startDesk(principal) {
    state.me = principal || null;
    setText("agent-name", (principal && (principal.name || principal.id)) || "");
    document.title = BASE_TITLE;
    renderAll();
    state.wsWanted = true;
    connect();
    updateSoundButton();
    refreshVoicemails();
  }

  async function signOut() {
    state.wsWanted = false;
    if (state.agentState && state.agentState !== "logged_out") send({ type: "state", state: "logged_out", reason: null }, true);
    closeSocket();
    resetDesk();
    await VoicebotSignIn.signOut();
  }

  function resetDesk() {
    clearWork();
    state.agent = null;
    state.agentState = null;
    state.reason = null;
    state.next = null;
    state.queueCards.clear();
    $("queues").replaceChildren(el("p", "muted", "No queue data yet."));
    notice("");
    state.vmItems.clear();
    state.vmKnown = null;
    $("voicemails").replaceChildren(el("li", "vm-empty muted", "Loading voicemail…"));
    renderVoicemailCount(0);
    setText("vm-status", "");
  }

  // ------------------------------------------------------------------ WebSocket

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/api/desk`;
  }

  function connect() {
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = null;
    closeSocket();
    setWsStatus("connecting", "Connecting…");
    if (!$("ws-banner").hidden) setText("ws-banner-text", "Connection to the server lost. Reconnecting…");
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (err) {
      return scheduleReconnect();
    }
    state.ws = ws;
    state.wsSawQueues = false;
    ws.onopen = () => { state.wsLastMessageAt = now(); };
    ws.onmessage = (event) => onSocketMessage(ws, event);
    ws.onclose = (event) => onSocketClose(ws, event);
  }

  function closeSocket() {
    const ws = state.ws;
    if (!ws) return;
    state.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try { ws.close(1000); } catch (err) { /* already closed */ }
  }

  function onSocketClose(ws, event) {
    if (ws !== state.ws) return;
    state.ws = null;
    if (event.code === 4401) return sessionEnded("Your session has ended. Sign in again.");
    if (event.code === 4403) return sessionEnded("This account is not set up as an agent. Sign in with an agent account.");
    if (state.wsWanted) scheduleReconnect();
  }

  function sessionEnded(message) {
    state.wsWanted = false;
    setWsStatus("closed", "Offline");
    show("ws-banner", false);
    resetDesk();
    VoicebotSignIn.showLogin(message);
  }

  function scheduleReconnect() {
    const base = BACKOFF_MS[Math.min(state.wsAttempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    state.wsAttempt += 1;
    state.wsRetryAt = now() + delay;
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = setTimeout(connect, delay);
    show("ws-banner", true);
    renderReconnectCountdown();
  }

  function renderReconnectCountdown() {
    if (!state.wsRetryTimer) return;
    const left = Math.max(0, Math.ceil((state.wsRetryAt - now()) / 1000));
    setWsStatus("reconnecting", `Reconnecting in ${left} s`);
    setText("ws-banner-text", `Connection to the server lost (attempt ${state.wsAttempt}). Reconnecting in ${left} s…`);
  }

  function setWsStatus(status, text) {
    const node = $("ws-status");
    node.dataset.status = status;
    setText("ws-status", text);
  }

  function checkStaleSocket() {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !state.wsSawQueues) return;
    if (now() - state.wsLastMessageAt > STALE_MS) {
      closeSocket();
      scheduleReconnect();
    }
  }

  function send(message, quiet) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      if (!quiet) toast("Not connected to the server: the action was not sent. Try again when the connection is back.");
      return false;
    }
    ws.send(JSON.stringify(message));
    return true;
  }

  function onSocketMessage(ws, event) {
    if (ws !== state.ws) return;
    state.wsLastMessageAt = now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    const handler = message && Object.prototype.hasOwnProperty.call(HANDLERS, message.type) ? HANDLERS[message.type] : null;
    if (!handler) return; // unknown message types are ignored
    try {
      handler(message);
    } catch (err) {
      console.error("desk: failed to handle", message.type, err);
    }
  }

  // ------------------------------------------------------------------ message handlers

  function onHello(m) {
    state.wsAttempt = 0;
    clearTimeout(state.wsRetryTimer);
    state.wsRetryTimer = null;
    show("ws-banner", false);
    setWsStatus("open", "Connected");
    state.agent = m.agent || null;
    state.dispositions = Array.isArray(m.dispositions) ? m.dispositions.map(String) : [];
    state.notReadyReasons = Array.isArray(m.not_ready_reasons) ? m.not_ready_reasons.map(String) : [];
    state.queueNames = [];
    rememberQueueNames(m.queues);
    applyState(m.state, m.reason, m.call_id, true);
    renderAgent();
    renderStateSelect();
    renderDispositions();
    renderTransferQueues();
    renderQueues(m.queues);
    // a desktop reopened mid-call: the server says how long the agent has been in this state,
    // and sends the call's context so the caller is named again
    if (typeof m.in_state_s === "number") state.stateSince = now() - m.in_state_s * 1000;
    if (m.context && state.call && state.call.callId === m.call_id) {
      state.call.ctx = m.context;
      state.call.queue = m.context.queue || state.call.queue;
      if (m.kind) state.call.kind = String(m.kind);
      if (m.number) state.call.number = String(m.number);
      renderKind("call-kind", state.call);
      setText("call-caller", partyLine(state.call));
      renderCall();
    }
    refreshVoicemails(); // news sent while the socket was down
  }

  function onStateMessage(m) {
    applyState(m.state, m.reason, m.call_id, false);
  }

  function onQueues(m) {
    state.wsSawQueues = true;
    if (rememberQueueNames(m.queues)) renderTransferQueues();
    renderQueues(m.queues);
  }

  function onOffer(m) {
    if (state.offer && state.offer.callId !== m.call_id) dropOffer();
    const ctx = m.context || {};
    state.offer = {
      callId: m.call_id, ctx, queue: m.queue || ctx.queue || "", ringS: Number(m.ring_s) || 0,
      at: now(), phone: Boolean(m.phone), accepting: false,
      kind: typeof m.kind === "string" && m.kind ? m.kind : "call", number: m.number ? String(m.number) : "",
    };
    notice("");
    renderOffer();
    renderView();
    startRing();
    const label = kindLabel(state.offer.kind);
    announce(label ? `${label} to ${partyLine(state.offer)}, queue ${state.offer.queue}. ${ctx.summary || ""}`
      : `Incoming call from ${callerLine(ctx)}, queue ${state.offer.queue}. ${ctx.summary || ""}`);
    $(state.offer.phone ? "reject" : "accept").focus();
  }

  function onOfferCancelled(m) {
    const offer = state.offer;
    if (!offer || offer.callId !== m.call_id) return;
    dropOffer();
    notice(CANCEL_NOTICES[m.reason] || `The offer was withdrawn (${m.reason || "no reason given"}).`);
    announce(CANCEL_NOTICES[m.reason] || "The offer was withdrawn.");
    renderView();
  }

  function onAnswer(m) {
    const rtc = state.rtc;
    if (!rtc || rtc.callId !== m.call_id || !m.sdp) return;
    rtc.pc.setRemoteDescription({ type: "answer", sdp: m.sdp }).catch((err) => {
      toast(`Audio could not be set up: ${err.message}`);
    });
  }

  function onConnected(m) {
    const call = ensureCall(m.call_id);
    call.connectedAt = now();
    renderCall();
    renderView();
    announce(`Connected to ${partyLine(call)}.`);
    $("call-title").focus();
  }

  function onTranscript(m) {
    const turn = m.turn;
    if (!turn) return;
    const call = findCall(m.call_id);
    if (call) {
      call.ctx.transcript = (call.ctx.transcript || []).concat([turn]);
      if (call === state.call) appendTurn($("live-transcript"), $("call-transcript-scroll"), turn);
      return;
    }
    if (state.offer && state.offer.callId === m.call_id) {
      state.offer.ctx.transcript = (state.offer.ctx.transcript || []).concat([turn]);
      appendTurn($("offer-transcript"), $("offer-transcript").parentElement, turn);
    }
  }

  function onHeld(m) {
    const call = state.call;
    if (!call || call.callId !== m.call_id) return;
    call.held = Boolean(m.on);
    call.heldAt = call.held ? now() : 0;
    call.pending = null;
    renderCallControls();
    announce(call.held ? "The caller is on hold." : "The caller is back from hold.");
  }

  function onMuted(m) {
    const call = state.call;
    if (!call || call.callId !== m.call_id) return;
    call.muted = Boolean(m.on);
    call.pending = null;
    setMicEnabled(!call.muted);
    renderCallControls();
    announce(call.muted ? "You are muted." : "You are no longer muted.");
  }

  function onCallEnded(m) {
    const call = findCall(m.call_id);
    if (!call) return;
    call.ended = true;
    call.by = m.by || null;
    call.endedAt = now();
    closeMedia();
    if (call === state.call) {
      renderCall();
      $("call-title").focus();
    }
    if (state.wrapUp && state.wrapUp.call === call) renderWrapUp();
    announce(`Call ended: ${ENDED_BY[call.by] || "the call is over"}.`);
  }

  function onWrapUp(m) {
    const wrap = ensureWrapUp(m.call_id);
    const seconds = Number(m.seconds);
    wrap.deadline = isFinite(seconds) && seconds > 0 ? now() + seconds * 1000 : null;
    renderWrapUp();
    renderView();
  }

  function onError(m) {
    toast(String(m.message || "The server reported an error."));
    clearPending();
  }

  const HANDLERS = {
    hello: onHello, state: onStateMessage, queues: onQueues, offer: onOffer, offer_cancelled: onOfferCancelled,
    answer: onAnswer, connected: onConnected, transcript: onTranscript, held: onHeld, muted: onMuted,
    call_ended: onCallEnded, wrap_up: onWrapUp, error: onError, voicemail: refreshVoicemails,
  };

  // ------------------------------------------------------------------ agent state

  function applyState(name, reason, callId, fromHello) {
    const changed = name !== state.agentState || (reason || null) !== state.reason;
    if (changed || fromHello) state.stateSince = now();
    state.agentState = name || null;
    state.reason = reason || null;
    if (!BUSY_STATES.has(name)) {
      if (state.call) noticeCallOver(state.call);
      state.next = null;
      clearWork();
    } else if (name === "on_call" && callId) {
      ensureCall(callId);
    } else if (name === "wrap_up" && callId) {
      ensureWrapUp(callId);
    }
    renderAgent();
    renderStateSelect();
    renderView();
    renderVoicemailButtons();
  }

  function noticeCallOver(call) {
    notice(`Call with ${partyLine(call)} ended${call.by ? ` – ${ENDED_BY[call.by] || call.by}` : ""}.`);
  }

  function commitStateSelect() {
    clearTimeout(state.selectTimer);
    state.selectTimer = null;
    const choice = parseStateValue($("state-select").value);
    if (!choice) return;
    if (!BUSY_STATES.has(state.agentState) && choice.state === state.agentState && choice.reason === state.reason) return;
    if (!send({ type: "state", state: choice.state, reason: choice.reason })) return renderStateSelect();
    unlockAudio();
    if (BUSY_STATES.has(state.agentState)) state.next = choice;
    renderAgent();
  }

  function parseStateValue(value) {
    if (value === "ready" || value === "logged_out") return { state: value, reason: null };
    if (value === "not_ready") return { state: "not_ready", reason: null };
    if (value.startsWith("not_ready:")) return { state: "not_ready", reason: value.slice("not_ready:".length) };
    return null;
  }

  function stateValue(name, reason) {
    if (name === "not_ready") return reason ? `not_ready:${reason}` : (state.notReadyReasons.length ? `not_ready:${state.notReadyReasons[0]}` : "not_ready");
    return name;
  }

  // ------------------------------------------------------------------ offers and calls

  function ensureCall(callId) {
    if (state.call && state.call.callId === callId) return state.call;
    const offer = state.offer && state.offer.callId === callId ? state.offer : null;
    if (offer) {
      stopRing();
      state.offer = null;
    }
    if (state.rtc && state.rtc.callId !== callId) closeMedia();
    state.call = {
      callId, ctx: offer ? offer.ctx : { call_id: callId }, queue: offer ? offer.queue : "",
      kind: offer ? offer.kind : "call", number: offer ? offer.number : "",
      connectedAt: now(), held: false, heldAt: 0, muted: false, ended: false, by: null, endedAt: 0,
      dtmf: "", pending: null, transferring: false, phone: offer ? offer.phone : false,
    };
    resetCallView();
    renderCall();
    return state.call;
  }

  function ensureWrapUp(callId) {
    if (state.wrapUp && state.wrapUp.callId === callId) return state.wrapUp;
    const call = findCall(callId) || { callId, ctx: { call_id: callId }, queue: "", connectedAt: 0, ended: true };
    if (call === state.call) state.call = null;
    if (!call.ended) {
      call.ended = true;
      call.endedAt = now();
    }
    closeMedia();
    state.wrapUp = { callId, call, deadline: null, submitted: false };
    $("disposition").value = "";
    $("notes").value = "";
    show("wrap-up-error", false);
    setText("wrap-up-status", "");
    renderWrapUp();
    setTimeout(() => { if (state.wrapUp && !$("wrap-up").hidden) $("disposition").focus(); }, 0);
    return state.wrapUp;
  }

  function findCall(callId) {
    if (state.call && state.call.callId === callId) return state.call;
    if (state.wrapUp && state.wrapUp.callId === callId) return state.wrapUp.call;
    return null;
  }

  function dropOffer() {
    stopRing();
    if (state.offer && state.rtc && state.rtc.callId === state.offer.callId) closeMedia();
    state.offer = null;
  }

  function clearWork() {
    dropOffer();
    closeMedia();
    state.call = null;
    state.wrapUp = null;
  }

  function clearPending() {
    if (state.offer && state.offer.accepting) {
      state.offer.accepting = false;
      closeMedia();
      setOfferStatus("The server could not connect the call. Try again or reject it.", true);
      renderOfferButtons();
    }
    if (state.call) {
      state.call.pending = null;
      state.call.transferring = false;
      renderCallControls();
    }
    if (state.wrapUp && state.wrapUp.submitted) {
      state.wrapUp.submitted = false;
      setText("wrap-up-status", "");
      renderWrapUp();
    }
  }

  async function acceptOffer() {
    const offer = state.offer;
    if (!offer || offer.accepting || offer.phone) return;
    offer.accepting = true;
    stopRing();
    renderOfferButtons();
    setOfferStatus("Connecting your headset…", false);
    try {
      const sdp = await startMedia(offer.callId);
      if (state.offer !== offer) return closeMedia(); // withdrawn while we set up
      if (!send({ type: "accept", call_id: offer.callId, sdp })) throw new Error("not connected to the server");
      setOfferStatus("Connecting the call…", false);
    } catch (err) {
      closeMedia();
      if (state.offer !== offer) return;
      offer.accepting = false;
      renderOfferButtons();
      setOfferStatus(`Could not answer: ${err.message}. Fix it and accept again, or reject the call.`, true);
    }
  }

  function rejectOffer() {
    const offer = state.offer;
    if (!offer) return;
    if (!send({ type: "reject", call_id: offer.callId })) return;
    dropOffer();
    notice(CANCEL_NOTICES.rejected);
    renderView();
    $("work").focus();
  }

  function toggleHold() {
    const call = activeCall();
    if (!call || call.pending === "hold") return;
    if (send({ type: "hold", call_id: call.callId, on: !call.held })) setPending(call, "hold");
    renderCallControls();
  }

  function toggleMute() {
    const call = activeCall();
    if (!call || call.pending === "mute") return;
    const on = !call.muted;
    if (!send({ type: "mute", call_id: call.callId, on })) return;
    setPending(call, "mute");
    if (on) setMicEnabled(false); // stop sending at once; the server's "muted" confirms
    renderCallControls();
  }

  function sendDigit(key) {
    const call = activeCall();
    if (!call || !/^[0-9*#]$/.test(key)) return;
    if (!send({ type: "dtmf", call_id: call.callId, digits: key })) return;
    call.dtmf = (call.dtmf + key).slice(-24);
    setText("dtmf-sent", call.dtmf);
  }

  function transferCall() {
    const call = activeCall();
    if (!call || call.transferring) return;
    const agent = $("transfer-agent").value.trim();
    const queue = $("transfer-queue").value;
    const message = agent ? { type: "transfer", call_id: call.callId, agent } : { type: "transfer", call_id: call.callId, queue };
    if (!agent && !queue) return toast("Choose a queue or enter an agent id to transfer to.");
    if (!send(message)) return;
    call.transferring = true;
    renderCallControls();
  }

  function hangUp() {
    const call = activeCall();
    if (!call) return;
    if (send({ type: "hangup", call_id: call.callId })) {
      setPending(call, "hangup");
      renderCallControls();
    }
  }

  /** Disables a control until the server answers; gives it back if no answer comes. */
  function setPending(call, what) {
    call.pending = what;
    clearTimeout(call.pendingTimer);
    call.pendingTimer = setTimeout(() => {
      if (state.call !== call || call.pending !== what) return;
      call.pending = null;
      setMicEnabled(!call.muted);
      renderCallControls();
      if (!call.ended) toast(`The server did not confirm ${what === "hangup" ? "the hang-up" : what}. Try again.`);
    }, PENDING_MS);
  }

  function activeCall() {
    return state.call && !state.call.ended ? state.call : null;
  }

  function submitWrapUp(event) {
    if (event) event.preventDefault();
    const wrap = state.wrapUp;
    if (!wrap || wrap.submitted) return;
    const disposition = $("disposition").value;
    if (state.dispositions.length && !disposition) {
      setText("wrap-up-error", "Choose a disposition.");
      show("wrap-up-error", true);
      return $("disposition").focus();
    }
    show("wrap-up-error", false);
    const sent = send({ type: "wrap_up", call_id: wrap.callId, disposition: disposition || null, notes: $("notes").value });
    if (!sent) return;
    wrap.submitted = true;
    setText("wrap-up-status", "Saved. Waiting for the server…");
    renderWrapUp();
  }

  function wrapUpExpired() {
    const wrap = state.wrapUp;
    if (!wrap || wrap.submitted || wrap.expiredHandled) return;
    wrap.expiredHandled = true;
    const hasInput = $("disposition").value || $("notes").value.trim();
    if (hasInput && (!state.dispositions.length || $("disposition").value)) submitWrapUp();
  }

  // ------------------------------------------------------------------ media (WebRTC)

  async function startMedia(callId) {
    closeMedia();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this page cannot use the microphone (open it over HTTPS)");
    }
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.rtc = { pc, mic, callId };
    mic.getAudioTracks().forEach((track) => pc.addTrack(track, mic));
    pc.ontrack = (event) => playRemote(event);
    pc.onconnectionstatechange = () => {
      if (state.rtc && state.rtc.pc === pc && pc.connectionState === "failed") toast("The audio connection failed.");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, ICE_WAIT_MS);
    if (!state.rtc || state.rtc.pc !== pc) throw new Error("the call was withdrawn");
    return pc.localDescription.sdp;
  }

  function iceGathered(pc, timeoutMs) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, timeoutMs);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  function playRemote(event) {
    const audio = $("remote-audio");
    audio.srcObject = event.streams[0] || new MediaStream([event.track]);
    audio.play().catch(() => { /* autoplay blocked: the accept click normally allows it */ });
  }

  function setMicEnabled(enabled) {
    if (!state.rtc) return;
    state.rtc.mic.getAudioTracks().forEach((track) => { track.enabled = enabled; });
  }

  function closeMedia() {
    const rtc = state.rtc;
    if (!rtc) return;
    state.rtc = null;
    rtc.mic.getTracks().forEach((track) => track.stop());
    try { rtc.pc.close(); } catch (err) { /* already closed */ }
    $("remote-audio").srcObject = null;
  }

  // ------------------------------------------------------------------ ringer (WebAudio)

  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!state.audio) {
      try { state.audio = new Ctx(); } catch (err) { return null; }
      state.audio.onstatechange = updateSoundButton;
    }
    if (state.audio.state === "suspended") state.audio.resume().catch(() => {});
    updateSoundButton();
    return state.audio;
  }

  function updateSoundButton() {
    const blocked = !state.audio || state.audio.state !== "running";
    show("enable-sound", blocked && document.body.dataset.view === "desk");
  }

  function startRing() {
    stopRing();
    const ctx = state.audio || unlockAudio();
    if (!ctx) return;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    gain.connect(ctx.destination);
    const oscillators = [400, 450].map((frequency) => {
      const osc = ctx.createOscillator();
      osc.frequency.value = frequency;
      osc.connect(gain);
      osc.start();
      return osc;
    });
    const ring = () => ringBurst(ctx, gain);
    ring();
    state.ring = { gain, oscillators, timer: setInterval(ring, 3000) };
  }

  function ringBurst(ctx, gain) {
    // UK-style double ring: 0.4 s on, 0.2 s off, 0.4 s on, then silence until the next cycle
    const t = ctx.currentTime;
    const g = gain.gain;
    g.cancelScheduledValues(t);
    g.setValueAtTime(0, t);
    for (const [start, end] of [[0, 0.4], [0.6, 1.0]]) {
      g.setValueAtTime(0, t + start);
      g.linearRampToValueAtTime(0.15, t + start + 0.02);
      g.setValueAtTime(0.15, t + end - 0.02);
      g.linearRampToValueAtTime(0, t + end);
    }
  }

  function stopRing() {
    const ring = state.ring;
    if (!ring) return;
    state.ring = null;
    clearInterval(ring.timer);
    ring.oscillators.forEach((osc) => {
      try { osc.stop(); } catch (err) { /* not started */ }
      osc.disconnect();
    });
    ring.gain.disconnect();
  }

  // ------------------------------------------------------------------ rendering: header

  function renderAll() {
    renderAgent();
    renderStateSelect();
    renderView();
  }

  function renderAgent() {
    const agent = state.agent;
    const name = (agent && (agent.name || agent.id)) || (state.me && (state.me.name || state.me.id)) || "";
    setText("agent-name", name);
    setText("agent-phone", agent && agent.phone ? `Phone: ${agent.phone}` : "");
    show("agent-phone", Boolean(agent && agent.phone));
    const pill = $("agent-state");
    pill.dataset.state = state.agentState || "";
    setText("agent-state", state.agentState ? stateLabel(state.agentState) : "Connecting…");
    setText("state-reason", state.agentState === "not_ready" && state.reason ? state.reason : "");
    const next = state.next;
    setText("state-next", next ? `Next: ${stateLabel(next.state)}${next.reason ? ` (${next.reason})` : ""}` : "");
    show("state-next", Boolean(next));
    const busy = state.agentState === "offered" || state.agentState === "on_call";
    $("signout").disabled = busy;
    $("signout").title = busy ? "Finish the call before signing out" : "Log out of the queues and sign out";
  }

  function renderStateSelect() {
    const select = $("state-select");
    const options = [["ready", "Ready"]];
    const reasons = state.notReadyReasons.slice();
    if (state.reason && !reasons.includes(state.reason) && state.agentState === "not_ready") reasons.push(state.reason);
    if (reasons.length) reasons.forEach((r) => options.push([`not_ready:${r}`, `Not ready – ${r}`]));
    else options.push(["not_ready", "Not ready"]);
    options.push(["logged_out", state.agentState === "logged_out" ? "Logged out" : "Log out"]);
    const busy = BUSY_STATES.has(state.agentState);
    if (busy && !state.next) options.unshift(["", "After this call…"]);
    select.replaceChildren(...options.map(([value, label]) => optionEl(value, label, value === "")));
    select.value = busy ? (state.next ? stateValue(state.next.state, state.next.reason) : "") : stateValue(state.agentState, state.reason);
    select.disabled = !state.agentState;
  }

  function optionEl(value, label, disabled) {
    const option = el("option", "", label);
    option.value = value;
    option.disabled = Boolean(disabled);
    return option;
  }

  // ------------------------------------------------------------------ rendering: queues

  function rememberQueueNames(queues) {
    let added = false;
    (Array.isArray(queues) ? queues : []).forEach((q) => {
      const name = q && String(q.name);
      if (name && !state.queueNames.includes(name)) {
        state.queueNames.push(name);
        added = true;
      }
    });
    return added;
  }

  function renderQueues(queues) {
    if (!Array.isArray(queues)) return;
    const root = $("queues");
    if (!queues.length) {
      state.queueCards.clear();
      return root.replaceChildren(el("p", "muted", "You serve no queues."));
    }
    const seen = new Set();
    const cards = queues.map((q) => {
      const name = String(q.name);
      seen.add(name);
      const card = state.queueCards.get(name) || makeQueueCard(name);
      updateQueueCard(card, q);
      return card.root;
    });
    for (const name of [...state.queueCards.keys()]) if (!seen.has(name)) state.queueCards.delete(name);
    const same = cards.length === root.children.length && cards.every((c, i) => root.children[i] === c);
    if (!same) root.replaceChildren(...cards);
  }

  function makeQueueCard(name) {
    const root = el("section", "queue");
    root.dataset.queue = name;
    root.setAttribute("aria-label", `Queue ${name}`);
    const title = el("h3", "queue-name", name);
    const stats = el("div", "queue-stats");
    const waiting = el("div", "queue-stat");
    const waitingNum = el("span", "queue-num q-waiting", "0");
    waiting.append(waitingNum, el("span", "queue-label", "waiting"));
    const longest = el("div", "queue-stat");
    const longestNum = el("span", "queue-num q-longest", "0:00");
    longest.append(longestNum, el("span", "queue-label", "longest wait"));
    stats.append(waiting, longest);
    const agents = el("ul", "queue-agents q-agents");
    agents.setAttribute("aria-label", "Agents by state");
    root.append(title, stats, agents);
    const card = { root, waitingNum, longestNum, agents, agentsKey: "" };
    state.queueCards.set(name, card);
    return card;
  }

  function updateQueueCard(card, q) {
    const waiting = Array.isArray(q.waiting) ? q.waiting.length : 0;
    const longest = Number(q.longest_wait_s) || 0;
    card.root.dataset.waiting = String(waiting);
    card.root.dataset.level = waiting === 0 ? "calm" : longest >= 90 ? "alert" : longest >= 30 ? "warn" : "busy";
    if (card.waitingNum.textContent !== String(waiting)) card.waitingNum.textContent = String(waiting);
    const longestText = waiting ? fmtDuration(longest) : "0:00";
    if (card.longestNum.textContent !== longestText) card.longestNum.textContent = longestText;
    updateQueueAgents(card, q.agents || {});
  }

  function updateQueueAgents(card, agents) {
    const names = Object.keys(agents).sort((a, b) => stateRank(a) - stateRank(b));
    const key = names.map((n) => `${n}=${agents[n]}`).join(",");
    if (key === card.agentsKey) return;
    card.agentsKey = key;
    const items = names.filter((n) => Number(agents[n]) > 0).map((n) => {
      const li = el("li", "agent-chip");
      li.dataset.agentState = n;
      li.append(el("span", "chip-count", agents[n]), el("span", "chip-label", stateLabel(n)));
      return li;
    });
    card.agents.replaceChildren(...(items.length ? items : [el("li", "agent-chip empty", "No agents")]));
  }

  function stateRank(name) {
    const i = AGENT_STATE_ORDER.indexOf(name);
    return i < 0 ? AGENT_STATE_ORDER.length : i;
  }

  // ------------------------------------------------------------------ rendering: work area

  function renderView() {
    const view = state.offer ? "offer" : state.call ? "call" : state.wrapUp ? "wrap-up" : "idle";
    for (const id of ["idle", "offer", "call", "wrap-up"]) show(id, id === view);
    document.body.dataset.work = view;
    if (view === "idle") renderIdle();
    if (view !== "offer") document.title = BASE_TITLE;
  }

  function renderIdle() {
    const name = state.agentState;
    $("idle-light").dataset.state = name || "";
    const texts = {
      ready: ["Ready", "Waiting for the next call."],
      not_ready: [state.reason ? `Not ready – ${state.reason}` : "Not ready", "Choose Ready in the availability menu to take calls."],
      logged_out: ["Logged out", "Choose Ready in the availability menu to log in to your queues."],
      offered: ["Incoming call", "Answer on your phone or wait for the offer."],
      on_call: ["On call", "Waiting for the call's details…"],
      wrap_up: ["Wrap-up", "Waiting for the wrap-up form…"],
    };
    const [title, text] = texts[name] || ["Connecting…", "Connecting to the server."];
    setText("idle-title", title);
    setText("idle-text", text);
  }

  function renderOffer() {
    const offer = state.offer;
    const ctx = offer.ctx;
    const label = kindLabel(offer.kind);
    setText("offer-queue-name", offer.queue || "—");
    setText("offer-title-text", label || "Incoming call");
    renderKind("offer-kind", offer);
    $("offer").dataset.kind = offer.kind;
    setText("offer-kind-note", label ? `voicebot dials ${partyLine(offer)} when you take it, and puts you through`
      + " when they answer." : "");
    show("offer-kind-note", Boolean(label));
    setText("offer-caller", partyLine(offer));
    setText("offer-caller-meta", callerMeta(ctx));
    setText("offer-queue", offer.queue || "—");
    setText("offer-reason", ctx.reason || "—");
    renderPriority($("offer-priority"), ctx.priority);
    setText("offer-ivr-time", fmtDuration(ctx.time_in_ivr_s));
    setText("offer-intent", intentLine(ctx));
    setText("offer-summary", ctx.summary || "No summary.");
    fillSlots($("offer-slots"), ctx.slots);
    fillTranscript($("offer-transcript"), ctx.transcript);
    const scroller = $("offer-transcript").parentElement;
    scroller.scrollTop = scroller.scrollHeight;
    show("accept", !offer.phone);
    show("offer-phone-note", offer.phone);
    setOfferStatus("", false);
    renderOfferButtons();
    tickOffer();
  }

  function renderPriority(node, priority) {
    const p = Number(priority) || 0;
    node.textContent = String(p);
    node.classList.toggle("priority-high", p > 0);
  }

  function renderOfferButtons() {
    const offer = state.offer;
    if (!offer) return;
    $("accept").disabled = offer.accepting;
    $("reject").disabled = offer.accepting;
    $("accept").setAttribute("aria-busy", String(offer.accepting));
  }

  function setOfferStatus(text, isError) {
    setText("offer-status", text);
    $("offer-status").classList.toggle("is-error", Boolean(isError));
    show("offer-status", Boolean(text));
  }

  function resetCallView() {
    const call = state.call;
    const ctx = call.ctx;
    setText("call-queue", call.queue || ctx.queue || "—");
    renderKind("call-kind", call);
    $("call").dataset.kind = call.kind || "call";
    setText("call-caller", partyLine(call));
    setText("call-caller-meta", callerMeta(ctx));
    setText("call-summary", ctx.summary || "No summary.");
    setText("call-intent", intentLine(ctx));
    setText("call-reason", ctx.reason || "—");
    renderPriority($("call-priority"), ctx.priority);
    fillSlots($("call-slots"), ctx.slots);
    fillTranscript($("call-history"), ctx.transcript);
    $("live-transcript").replaceChildren();
    setText("dtmf-sent", "—");
    $("transfer-agent").value = "";
    const scroller = $("call-transcript-scroll");
    scroller.scrollTop = scroller.scrollHeight;
  }

  function renderCall() {
    if (!state.call) return;
    renderCallControls();
    tickCall();
  }

  function renderCallControls() {
    const call = state.call;
    if (!call) return;
    const live = !call.ended;
    const hold = $("hold");
    hold.textContent = call.held ? "Unhold" : "Hold";
    hold.setAttribute("aria-pressed", String(call.held));
    hold.disabled = !live || call.pending === "hold";
    const mute = $("mute");
    mute.textContent = call.muted ? "Unmute" : "Mute";
    mute.setAttribute("aria-pressed", String(call.muted));
    mute.disabled = !live || call.pending === "mute";
    $("hangup").disabled = !live || call.pending === "hangup";
    $("transfer-go").disabled = !live || call.transferring;
    $("transfer-go").textContent = call.transferring ? "Transferring…" : transferLabel();
    document.querySelectorAll("#keypad button").forEach((b) => { b.disabled = !live; });
    $("transfer-queue").disabled = !live;
    $("transfer-agent").disabled = !live;
    $("call").dataset.ended = String(call.ended);
  }

  function transferLabel() {
    const agent = $("transfer-agent").value.trim();
    const queue = $("transfer-queue").value;
    if (agent) return `Transfer to agent ${agent}`;
    return queue ? `Transfer to ${queue}` : "Transfer";
  }

  function callStatus(call) {
    if (call.ended) return ["ended", `Call ended – ${ENDED_BY[call.by] || "over"}`];
    if (call.held) return ["held", `On hold ${fmtDuration((now() - call.heldAt) / 1000)}${call.muted ? " · muted" : ""}`];
    if (call.muted) return ["muted", "Connected · muted"];
    return ["connected", "Connected"];
  }

  function renderTransferQueues() {
    const select = $("transfer-queue");
    const current = select.value;
    select.replaceChildren(optionEl("", "Choose a queue…", false), ...state.queueNames.map((n) => optionEl(n, n, false)));
    select.value = state.queueNames.includes(current) ? current : "";
    if (state.call) renderCallControls();
  }

  function renderDispositions() {
    const select = $("disposition");
    const current = select.value;
    const placeholder = optionEl("", state.dispositions.length ? "Choose a disposition…" : "No dispositions configured", false);
    select.replaceChildren(placeholder, ...state.dispositions.map((d) => optionEl(d, d, false)));
    select.value = state.dispositions.includes(current) ? current : "";
  }

  function renderWrapUp() {
    const wrap = state.wrapUp;
    if (!wrap) return;
    const call = wrap.call;
    const parts = [`${kindLabel(call.kind) || "Call"} with ${partyLine(call)}`];
    if (call.connectedAt) parts.push(`talk time ${fmtDuration(((call.endedAt || now()) - call.connectedAt) / 1000)}`);
    if (call.by) parts.push(ENDED_BY[call.by] || call.by);
    setText("wrap-up-call", parts.join(" · "));
    setText("wrap-up-summary", call.ctx.summary || "");
    show("wrap-up-summary", Boolean(call.ctx.summary));
    $("wrap-up-submit").disabled = wrap.submitted;
    tickWrapUp();
  }

  // ------------------------------------------------------------------ transcripts and slots

  function fillTranscript(list, turns) {
    const items = (Array.isArray(turns) ? turns : []).map(turnItem);
    list.replaceChildren(...(items.length ? items : [el("li", "turn-empty muted", "No conversation yet.")]));
  }

  function appendTurn(list, scroller, turn) {
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
    const empty = list.querySelector(".turn-empty");
    if (empty) empty.remove();
    list.append(turnItem(turn));
    if (nearBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  function turnItem(turn) {
    const speaker = ["caller", "bot", "agent"].includes(turn.speaker) ? turn.speaker : "other";
    const text = String(turn.text === undefined || turn.text === null ? "" : turn.text);
    const li = el("li", `turn turn-${speaker}`);
    li.dataset.speaker = speaker;
    const meta = el("div", "turn-meta");
    meta.append(el("span", "turn-who", speakerLabel(speaker, turn.agent)), el("time", "turn-time", fmtClock(turn.at)));
    const body = el("div", "turn-text");
    if (appendTextWithKeys(body, text)) li.classList.add("turn-dtmf");
    li.append(meta, body);
    return li;
  }

  function speakerLabel(speaker, agentId) {
    if (speaker === "caller") return "Caller";
    if (speaker === "bot") return "Bot";
    if (speaker === "agent") {
      if (agentId && state.agent && String(agentId) === String(state.agent.id)) return "You";
      return agentId ? `Agent ${agentId}` : "Agent";
    }
    return speaker;
  }

  /** Writes text into node, showing "[DTMF 4]" as key caps; returns whether the text was only keys. */
  function appendTextWithKeys(node, text) {
    let last = 0;
    let onlyKeys = false;
    for (const match of text.matchAll(DTMF_RE)) {
      if (match.index > last) node.append(text.slice(last, match.index));
      const keys = el("span", "dtmf");
      keys.setAttribute("aria-label", `keypad ${match[1]}`);
      for (const key of match[1]) keys.append(el("kbd", "", key));
      node.append(keys);
      last = match.index + match[0].length;
      onlyKeys = text.trim() === match[0];
    }
    if (last < text.length) node.append(text.slice(last));
    return onlyKeys;
  }

  function fillSlots(table, slots) {
    const entries = slots && typeof slots === "object" ? Object.entries(slots) : [];
    const body = el("tbody");
    if (!entries.length) {
      const row = el("tr");
      row.append(el("td", "muted", "Nothing collected."));
      body.append(row);
    }
    for (const [key, value] of entries) {
      const row = el("tr");
      row.dataset.slot = key;
      row.append(el("th", "", key), el("td", "", fmtValue(value)));
      body.append(row);
    }
    table.replaceChildren(body);
  }

  function renderKind(id, item) {
    const label = kindLabel(item.kind);
    const node = $(id);
    node.dataset.kind = item.kind || "call";
    setText(id, label);
    show(id, Boolean(label));
  }

  // ------------------------------------------------------------------ voicemail

  /** Loads the voicemails of the agent's queues; one request at a time, a request made
   *  meanwhile runs once after it. */
  function refreshVoicemails() {
    if (!state.wsWanted) return;
    if (state.vmLoading) {
      state.vmAgain = true;
      return;
    }
    state.vmLoading = true;
    fetch("/api/voicemails?limit=200", { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(async (response) => {
        if (!response.ok) throw new Error(await errorText(response));
        return response.json();
      })
      .then((list) => {
        if (!state.wsWanted) return;
        renderVoicemails(Array.isArray(list) ? list : []);
        setText("vm-status", "");
      })
      .catch((err) => {
        if (state.wsWanted) setText("vm-status", `Could not load voicemail (${err.message}); retrying.`);
      })
      .finally(() => {
        state.vmLoading = false;
        if (state.vmAgain) {
          state.vmAgain = false;
          refreshVoicemails();
        }
      });
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
    } catch (err) { /* not JSON */ }
    return `the server answered ${response.status}`;
  }

  function myId() {
    return state.agent ? String(state.agent.id) : null;
  }

  /** The one assigned to this agent first (voicemail is routed as work after live calls),
   *  then unhandled (newest first), then the most recently handled. Items are kept and
   *  updated in place, so a message being played keeps playing through a refresh. */
  function renderVoicemails(list) {
    const valid = list.filter((v) => v && v.id !== undefined && v.id !== null);
    const mine = (v) => (v.assigned_to && v.assigned_to === myId() ? 1 : 0);
    const unhandled = valid.filter((v) => !v.handled)
      .sort((a, b) => mine(b) - mine(a) || (Number(b.at) || 0) - (Number(a.at) || 0));
    const handled = valid.filter((v) => v.handled)
      .sort((a, b) => (Number(b.handled_at) || 0) - (Number(a.handled_at) || 0)).slice(0, VM_HANDLED_SHOWN);
    if (state.vmKnown) {
      const fresh = unhandled.filter((v) => !state.vmKnown.has(String(v.id)));
      if (fresh.length === 1) announce(`New voicemail from ${fresh[0].caller || "an unknown caller"}.`);
      else if (fresh.length > 1) announce(`${fresh.length} new voicemails.`);
    }
    state.vmKnown = new Set(unhandled.map((v) => String(v.id)));
    const seen = new Set();
    const nodes = unhandled.concat(handled).map((v) => {
      const id = String(v.id);
      seen.add(id);
      const item = state.vmItems.get(id) || makeVoicemail(id);
      updateVoicemail(item, v);
      return item.root;
    });
    for (const id of [...state.vmItems.keys()]) if (!seen.has(id)) state.vmItems.delete(id);
    const root = $("voicemails");
    if (!nodes.length) {
      root.replaceChildren(el("li", "vm-empty muted", "No voicemail for your queues."));
    } else {
      const same = nodes.length === root.children.length && nodes.every((n, i) => root.children[i] === n);
      if (!same) root.replaceChildren(...nodes);
    }
    renderVoicemailCount(unhandled.length);
    renderVoicemailButtons();
  }

  function makeVoicemail(id) {
    const root = el("li", "voicemail");
    root.dataset.id = id;
    const head = el("div", "vm-row");
    const caller = el("span", "vm-caller");
    const time = el("time", "vm-time");
    const queue = el("span", "vm-queue");
    const length = el("span", "vm-length");
    const meta = el("span", "vm-meta muted");
    meta.append(time, " · ", queue, " · ", length);
    const handledBy = el("span", "vm-handled-by");
    head.append(caller, meta, handledBy);
    const transcript = el("p", "vm-transcript");
    const audio = document.createElement("audio");
    audio.className = "vm-audio";
    audio.controls = true;
    audio.preload = "none";
    audio.src = `/api/voicemails/${encodeURIComponent(id)}/audio`;
    const actions = el("div", "vm-actions");
    const handled = el("button", "btn btn-small vm-handled", "Mark handled");
    handled.type = "button";
    const callback = el("button", "btn btn-small btn-primary vm-callback", "Call back");
    callback.type = "button";
    actions.append(handled, callback);
    root.append(head, transcript, audio, actions);
    const item = { root, caller, time, queue, length, handledBy, transcript, audio, handled, callback, data: null };
    state.vmItems.set(id, item);
    return item;
  }

  function updateVoicemail(item, v) {
    item.data = v;
    const caller = String(v.caller || "Unknown caller");
    const put = (node, text) => { if (node.textContent !== text) node.textContent = text; };
    put(item.caller, caller);
    put(item.time, fmtWhen(v.at));
    if (typeof v.at === "number") item.time.dateTime = new Date(v.at * 1000).toISOString();
    put(item.queue, String(v.queue || "—"));
    put(item.length, fmtDuration(Math.round(Number(v.duration_s) || 0)));
    const transcript = String(v.transcript || "").trim();
    put(item.transcript, transcript || "No transcript.");
    item.transcript.classList.toggle("muted", !transcript);
    const by = v.handled_by ? ` by ${v.handled_by}` : "";
    const assigned = !v.handled && v.assigned_to
      ? (v.assigned_to === myId() ? "Assigned to you" : `With ${v.assigned_to}`) : "";
    put(item.handledBy, v.handled ? `Handled${by}${v.handled_at ? ` ${fmtWhen(v.handled_at)}` : ""}` : assigned);
    item.root.dataset.handled = String(Boolean(v.handled));
    item.root.dataset.assigned = !v.handled && v.assigned_to === myId() ? "me" : v.assigned_to ? "other" : "";
    item.root.dataset.queue = String(v.queue || "");
    item.root.setAttribute("aria-label", `Voicemail from ${caller}, ${fmtWhen(v.at)}`);
    item.audio.setAttribute("aria-label", `Play the voicemail from ${caller}`);
    put(item.handled, v.handled ? "Handled" : "Mark handled");
  }

  function renderVoicemailButtons() {
    const busy = BUSY_STATES.has(state.agentState);
    for (const [id, item] of state.vmItems) {
      const pending = state.vmBusy.has(id);
      item.handled.disabled = pending || Boolean(item.data && item.data.handled);
      item.callback.disabled = pending || busy;
      item.callback.title = busy ? "Finish your call first" : `Call ${item.caller.textContent} now and talk to them`;
      item.root.setAttribute("aria-busy", String(pending));
    }
  }

  function renderVoicemailCount(count) {
    const badge = $("vm-count");
    badge.dataset.count = String(count);
    setText("vm-count", String(count));
    badge.setAttribute("aria-label", `${count} not handled`);
  }

  function onVoicemailClick(event) {
    const button = event.target.closest("button.vm-handled, button.vm-callback");
    const item = button && button.closest(".voicemail[data-id]");
    if (!item || button.disabled) return;
    if (button.classList.contains("vm-handled")) markVoicemailHandled(item.dataset.id);
    else callBackVoicemail(item.dataset.id);
  }

  async function postVoicemail(id, action) {
    state.vmBusy.add(id);
    renderVoicemailButtons();
    try {
      const response = await fetch(`/api/voicemails/${encodeURIComponent(id)}/${action}`, {
        method: "POST", headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(await errorText(response));
      return await response.json();
    } finally {
      state.vmBusy.delete(id);
      renderVoicemailButtons();
    }
  }

  async function markVoicemailHandled(id) {
    try {
      const v = await postVoicemail(id, "handled");
      const item = state.vmItems.get(id);
      if (item) updateVoicemail(item, v);
      announce("Voicemail marked handled.");
    } catch (err) {
      toast(`The voicemail was not marked handled: ${err.message}`);
    }
    refreshVoicemails();
  }

  async function callBackVoicemail(id) {
    const item = state.vmItems.get(id);
    const who = (item && item.data && item.data.caller) || "the caller";
    unlockAudio(); // inside the click: the ringer and the call's audio may play
    try {
      await postVoicemail(id, "callback");
      notice(`Calling ${who} back: you are put through when they answer.`);
      announce(`Calling ${who} back.`);
    } catch (err) {
      toast(`Could not call ${who} back: ${err.message}`);
    }
  }

  // ------------------------------------------------------------------ clocks

  function tick() {
    setText("state-timer", fmtDuration((now() - state.stateSince) / 1000));
    if (state.offer) tickOffer();
    if (state.call) tickCall();
    if (state.wrapUp) tickWrapUp();
    renderReconnectCountdown();
    checkStaleSocket();
  }

  function tickOffer() {
    const offer = state.offer;
    const elapsed = (now() - offer.at) / 1000;
    const left = Math.max(0, offer.ringS - elapsed);
    setText("offer-countdown", String(Math.ceil(left)));
    $("offer-ringbar").style.width = offer.ringS ? `${(100 * left) / offer.ringS}%` : "0%";
    setText("offer-queue-time", fmtDuration((Number(offer.ctx.time_in_queue_s) || 0) + elapsed));
    const what = kindLabel(offer.kind) || "Incoming call";
    document.title = Math.floor(elapsed) % 2 ? BASE_TITLE : `☎ ${what} – ${partyLine(offer)}`;
  }

  function tickCall() {
    const call = state.call;
    const end = call.ended ? call.endedAt : now();
    setText("call-timer", fmtDuration((end - call.connectedAt) / 1000));
    const [status, text] = callStatus(call);
    $("call-status").dataset.status = status;
    setText("call-status", text);
  }

  function tickWrapUp() {
    const wrap = state.wrapUp;
    if (!wrap.deadline) return setText("wrap-up-countdown", "—");
    const left = Math.max(0, (wrap.deadline - now()) / 1000);
    setText("wrap-up-countdown", fmtDuration(Math.ceil(left)));
    $("wrap-up-countdown").classList.toggle("urgent", left <= 10);
    if (left <= 0) wrapUpExpired();
  }

  // ------------------------------------------------------------------ wiring

  function onStateSelectChange() {
    clearTimeout(state.selectTimer);
    // A closed <select> changes on arrow keys: wait for the agent to settle before acting.
    if (now() - state.selectKeyAt < 200) state.selectTimer = setTimeout(commitStateSelect, 1200);
    else commitStateSelect();
  }

  function onStateSelectKey(event) {
    if (event.key === "Enter" && state.selectTimer) commitStateSelect();
    else state.selectKeyAt = now();
  }

  function onShortcut(event) {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    const shortcuts = {
      KeyA: [() => state.offer && !state.offer.phone, acceptOffer],
      KeyR: [() => state.offer, rejectOffer],
      KeyH: [activeCall, toggleHold],
      KeyM: [activeCall, toggleMute],
    };
    const shortcut = shortcuts[event.code];
    if (!shortcut || !shortcut[0]()) return;
    event.preventDefault();
    shortcut[1]();
  }

  function wire() {
    $("signout").addEventListener("click", signOut);
    $("state-select").addEventListener("change", onStateSelectChange);
    $("state-select").addEventListener("keydown", onStateSelectKey);
    $("state-select").addEventListener("blur", () => { if (state.selectTimer) commitStateSelect(); });
    $("ws-retry-now").addEventListener("click", () => { state.wsAttempt = 0; connect(); });
    $("toast-close").addEventListener("click", () => show("toast", false));
    $("enable-sound").addEventListener("click", unlockAudio);
    $("accept").addEventListener("click", acceptOffer);
    $("reject").addEventListener("click", rejectOffer);
    $("hold").addEventListener("click", toggleHold);
    $("mute").addEventListener("click", toggleMute);
    $("hangup").addEventListener("click", hangUp);
    $("keypad").addEventListener("click", (e) => {
      const button = e.target.closest("button[data-key]");
      if (button) sendDigit(button.dataset.key);
    });
    $("transfer-go").addEventListener("click", transferCall);
    $("transfer-queue").addEventListener("change", renderCallControls);
    $("transfer-agent").addEventListener("input", renderCallControls);
    $("wrap-up-form").addEventListener("submit", submitWrapUp);
    $("disposition").addEventListener("change", () => show("wrap-up-error", false));
    $("notes").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submitWrapUp(e); });
    $("voicemails").addEventListener("click", onVoicemailClick);
    document.addEventListener("keydown", onShortcut);
    document.addEventListener("pointerdown", unlockAudio, { capture: true, passive: true });
    document.addEventListener("keydown", unlockAudio, { capture: true, passive: true });
    window.addEventListener("beforeunload", (e) => {
      if (state.offer || activeCall()) {
        e.preventDefault();
        e.returnValue = "";
      }
    });
    setInterval(tick, TICK_MS);
    setInterval(refreshVoicemails, VM_REFRESH_MS);
  }

  function boot() {
    wire();
    renderTransferQueues();
    renderDispositions();
    VoicebotSignIn.start({
      view: "desk", onSignedIn: startDesk,
      onSubmit: unlockAudio,  // inside the click: the browser lets the ringer sound from now on
      onSignedOut: () => { document.title = `Sign in – ${BASE_TITLE}`; },
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
