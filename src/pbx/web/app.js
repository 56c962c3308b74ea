/*
 * callbot softphone: a browser client of the Vodia PBX websocket protocol.
 *
 * This page is an independent second implementation of docs/protocol.md (the "§" references below
 * point at its sections). It talks to whatever serves it: the callbot emulator, or a PBX that
 * speaks the same protocol. Plain ES2020, no framework, no external resources.
 *
 * Test hooks: URL parameters `ext`, `password`, `autologin=1`, `autoanswer=1`, `dialect`
 * (modern|legacy, overrides detection), and the global `window.softphone` (see the end).
 */
'use strict';

(() => {
  /** Lower-case hex MD5 for the password login digest of §1 (md5.js, shared with sample.html). */
  const md5Hex = window.md5Hex;

  // ---------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const flag = (name) => ['1', 'true', 'yes'].includes((params.get(name) || '').toLowerCase());

  /** Our call ids: 32 lower-case hex digits (§4 `sdp-packet`). */
  function randomCallId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** §3: a reserved key counts when present with a non-empty, non-false value. */
  function present(v) {
    if (v === undefined || v === null || v === false || v === '' || v === 'false') return false;
    if (Array.isArray(v)) return v.length > 0;
    if (typeof v === 'object') return Object.keys(v).length > 0;
    return true;
  }

  /** Booleans arrive as JSON booleans or as the strings "true"/"false". */
  const truthy = (v) => v === true || v === 'true' || v === 1 || v === '1';

  /** §3: `sdp` values may be a string or `{type, sdp}`. */
  function sdpOf(v) {
    if (typeof v === 'string') return { type: null, sdp: v };
    if (v && typeof v === 'object') return { type: v.type || null, sdp: v.sdp || '' };
    return { type: null, sdp: '' };
  }

  const codeOf = (v) => {
    const n = parseInt(v, 10);
    return Number.isFinite(n) ? n : null;
  };

  function fmtDuration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const m = Math.floor(s / 60);
    const h = Math.floor(m / 60);
    const two = (x) => String(x).padStart(2, '0');
    return h ? `${h}:${two(m % 60)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
  }

  const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  // ---------------------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------------------

  const KEEPALIVE_MS = 30000;             // §2: avoid-disconnect on open and every 30 s
  const READY_FALLBACK_MS = 3000;         // §6 choice: ready 3 s after the bootstrap without an error
  const ENDED_LINGER_MS = 5000;           // how long a finished call stays on screen
  const AUTOANSWER_MS = 300;
  const REQUEST_TIMEOUT_MS = 10000;       // login request or socket opening that hangs counts as failed
  const LOGIN_SETTLE_ATTEMPTS = 2;        // login() reports CONNECTION_FAILED after the third failed try
  const STORE = 'callbot.softphone';

  const S = {
    connection: 'DISCONNECTED', // DISCONNECTED | CONNECTING | ACCESS_GRANTED | ACCESS_DENIED | CONNECTION_FAILED | CONNECTION_CLOSED (§8)
    detail: '',
    dialect: null,              // 'modern' | 'legacy' (§1, §6)
    extension: null,
    password: null,
    domain: null,
    info: null,                 // GET /emulator/info, when the server is the emulator
    ws: null,
    wantOnline: false,          // false after logout: no reconnect
    everOpen: false,            // a socket of this login has been open: closing means CONNECTION_CLOSED
    attempt: 0,                 // reconnect attempts since the last ACCESS_GRANTED
    generation: 0,              // bumped by login/logout: stale login replies are dropped
    reconnectAt: 0,
    reconnectTimer: null,
    keepaliveTimer: null,
    registerTimer: null,
    readyTimer: null,
    reconcile: false,           // the next call-state list is the complete one after a reconnect (§6)
    presenceFresh: false,       // a domain-state arrived on the current socket: presence is known
    loginWaiters: [],
    presence: new Map(),        // ext -> {name, online}
    call: null,                 // the active call
    shown: null,                // a finished call kept on screen for a moment
    shownTimer: null,
    stray: new Map(),           // callid -> candidate frames for a call id we do not know yet
    log: [],
    autoAnswer: flag('autoanswer'),
    trace: [],
  };

  // ---------------------------------------------------------------------------------------
  // Signalling trace (the "Signalling" panel) and console logging
  // ---------------------------------------------------------------------------------------

  function trace(dir, frame) {
    const text = JSON.stringify(frame, (k, v) =>
      (k === 'sdp' && typeof v === 'string' && v.length > 60 ? `${v.slice(0, 40)}… (${v.length} bytes)` : v));
    S.trace.push(`${fmtTime(Date.now())} ${dir} ${text}`);
    if (S.trace.length > 400) S.trace.splice(0, S.trace.length - 400);
    if (ui.traceOpen()) ui.renderTrace();
  }

  const debug = (...a) => console.debug('[softphone]', ...a);
  const warn = (...a) => console.warn('[softphone]', ...a);

  // ---------------------------------------------------------------------------------------
  // Connection: REST login (§1), socket (§2), bootstrap (§6), keepalive, reconnect (§6)
  // ---------------------------------------------------------------------------------------

  function setConnection(state, detail = '') {
    S.connection = state;
    S.detail = detail;
    // login() settles on a definite answer; a failed connection only after a few tries, since
    // the page keeps retrying (a transient failure is often gone by the next attempt).
    const settled = ['ACCESS_GRANTED', 'ACCESS_DENIED'].includes(state) ||
      (state === 'CONNECTION_FAILED' && S.attempt >= LOGIN_SETTLE_ATTEMPTS) ||
      (state === 'DISCONNECTED' && !S.wantOnline);
    if (settled) {
      const waiters = S.loginWaiters.splice(0);
      waiters.forEach((resolve) => resolve(state));
    }
    ui.render();
  }

  async function fetchInfo() {
    if (S.info) return S.info;
    try {
      const res = await fetch('/emulator/info', { credentials: 'include', cache: 'no-store' });
      if (res.ok) S.info = await res.json();
    } catch (e) {
      debug('no /emulator/info', e);
    }
    return S.info;
  }

  /** §1: "PBX/70.1" → major ≥ 69 is modern, below is legacy. */
  function dialectFromServer(server) {
    const m = /PBX\/(\d+)/i.exec(server || '');
    if (!m) return null;
    return parseInt(m[1], 10) >= 69 ? 'modern' : 'legacy';
  }

  /** Password login (§1): PUT /rest/system/session → the session id, or null when denied. */
  async function restLogin(ext, password) {
    const res = await fetch('/rest/system/session', {
      method: 'PUT',
      credentials: 'include',
      cache: 'no-store',
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'auth', value: `${ext} ${md5Hex(password)}` }),
    });
    const forced = (params.get('dialect') || '').toLowerCase();
    S.dialect = ['modern', 'legacy'].includes(forced) ? forced
      : dialectFromServer(res.headers.get('server'))
        || dialectFromServer(S.info && S.info.server)
        || (S.info && S.info.dialect) || 'modern';
    if (res.status >= 500) throw new Error(`HTTP ${res.status}`);
    if (res.status === 429) return { denied: 'too many failed attempts, wait a little' };
    if (!res.ok) return { denied: `login refused (HTTP ${res.status})` };
    const text = (await res.text()).trim();
    let body = text;
    try { body = JSON.parse(text); } catch { /* plain text */ }
    if (body && typeof body === 'object') body = body.session || body.value || body.token || '';
    // "Empty or `false` means denied."
    if (!body || body === 'false' || typeof body !== 'string') return { denied: 'wrong extension or password' };
    return { session: body };
  }

  /** Logs in and opens the socket; resolves with the resulting connection state. */
  function login(ext, password) {
    ext = String(ext || '').trim();
    password = String(password ?? '');
    if (S.call) hangup();
    closeSocket();
    clearTimeout(S.reconnectTimer);
    S.extension = ext;
    S.password = password;
    S.wantOnline = true;
    S.everOpen = false;
    S.attempt = 0;
    S.generation += 1;
    S.presence.clear();
    const done = new Promise((resolve) => S.loginWaiters.push(resolve));
    connect();
    return done;
  }

  async function connect() {
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    if (!S.wantOnline) return;
    const generation = S.generation;
    setConnection('CONNECTING', S.attempt ? `attempt ${S.attempt + 1}` : '');
    await fetchInfo();
    S.domain = (S.info && S.info.domain) || location.hostname;
    let result;
    try {
      result = await restLogin(S.extension, S.password); // a fresh session on every try (§6)
    } catch (e) {
      if (generation !== S.generation) return;
      return connectFailed(`login request failed: ${e.message || e}`);
    }
    if (!S.wantOnline || generation !== S.generation) return; // logged out or in again meanwhile
    if (result.denied) {
      S.wantOnline = false;
      setConnection('ACCESS_DENIED', result.denied);
      return;
    }
    openSocket(result.session);
  }

  /**
   * The login request or the socket failed. After a socket of this login has been open that is
   * CONNECTION_CLOSED, before it CONNECTION_FAILED (§8); either way we try again with backoff:
   * a failure is often transient (for example two tabs of one browser logging in at once
   * overwrite each other's `session` cookie, which the socket handshake also carries).
   */
  function connectFailed(why) {
    if (!S.wantOnline) return setConnection('DISCONNECTED');
    setConnection(S.everOpen ? 'CONNECTION_CLOSED' : 'CONNECTION_FAILED', why);
    scheduleReconnect();
  }

  /** §6: back off exponentially with jitter, 1 s, 2 s, 4 s … capped at 60 s. */
  function scheduleReconnect() {
    const base = Math.min(60000, 1000 * 2 ** S.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    S.attempt += 1;
    S.reconnectAt = Date.now() + delay;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = setTimeout(connect, delay);
    ui.render();
  }

  function openSocket(session) {
    const scheme = location.protocol === 'http:' ? 'ws' : 'wss';
    // §2 and §9: browsers cannot set the Cookie header, so the session also rides in the query.
    const q = new URLSearchParams({ domain: S.domain, user: S.extension, session });
    const ws = new WebSocket(`${scheme}://${location.host}/websocket?${q}`);
    S.ws = ws;
    const openTimer = setTimeout(() => {
      if (S.ws === ws && ws.readyState === WebSocket.CONNECTING) ws.close();
    }, REQUEST_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (S.ws !== ws) return;
      S.reconcile = S.everOpen; // a reconnect: reconcile calls from the first call-state (§6)
      S.everOpen = true;
      bootstrap();
    };
    ws.onmessage = (ev) => {
      if (S.ws !== ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return warn('not JSON', ev.data); }
      if (!frame || typeof frame !== 'object' || Array.isArray(frame)) return warn('not an object', ev.data);
      trace('◀', frame);
      try { onFrame(frame); } catch (e) { warn('frame handler failed', e, frame); }
    };
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      if (S.ws !== ws) return;
      S.ws = null;
      stopTimers();
      // Our registration went with the socket; the others' presence is unknown until the next
      // domain-state, so the list says UNKNOWN meanwhile.
      const own = S.presence.get(S.extension);
      if (own) own.online = false;
      S.presenceFresh = false;
      connectFailed(`socket closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`);
    };
  }

  function closeSocket() {
    stopTimers();
    const ws = S.ws;
    S.ws = null;
    if (ws) try { ws.close(1000, 'bye'); } catch { /* already closed */ }
  }

  function stopTimers() {
    clearInterval(S.keepaliveTimer);
    clearTimeout(S.registerTimer);
    clearTimeout(S.readyTimer);
  }

  function send(frame) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) {
      warn('socket not open, dropped', frame);
      return false;
    }
    trace('▶', frame);
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  /** §6 bootstrap, in order, then keepalive every 30 s (§2). */
  function bootstrap() {
    send({ action: 'avoid-disconnect' });
    send({ action: 'own-calls', subscribe: true });
    send({ action: 'orbit-calls', subscribe: true });
    send({ action: 'blf', add: [S.extension] });
    send({ action: 'ringtones' });
    send({ action: 'domain-calls', subscribe: true });
    sendRegister();
    S.keepaliveTimer = setInterval(() => send({ action: 'avoid-disconnect' }), KEEPALIVE_MS);
    // §6 choice: ready when the sip-register reply arrives, or 3 s after the bootstrap.
    S.readyTimer = setTimeout(() => {
      if (S.connection === 'CONNECTING' && S.ws) granted();
    }, READY_FALLBACK_MS);
  }

  function sendRegister() {
    send({ action: 'sip-register', useragent: 'callbot softphone (web)' });
  }

  function granted() {
    S.attempt = 0;
    setConnection('ACCESS_GRANTED');
  }

  function logout() {
    S.wantOnline = false;
    S.generation += 1;
    if (S.call) hangup();
    clearTimeout(S.reconnectTimer);
    closeSocket();
    S.presence.clear();
    setConnection('DISCONNECTED');
  }

  // ---------------------------------------------------------------------------------------
  // Frame decoding (§3) and dispatch
  // ---------------------------------------------------------------------------------------

  /** §3: reserved keys, in this order, win over `action`. */
  const RESERVED = ['sdp', 'invitesdp', 'candidate', 'bye', 'ringtones', 'response', 'cancel',
    'cancelresponse', 'info', 'change'];

  function frameKind(frame) {
    for (const key of RESERVED) if (present(frame[key])) return key;
    return typeof frame.action === 'string' ? frame.action : null;
  }

  function onFrame(f) {
    const kind = frameKind(f);
    switch (kind) {
      case 'sdp': return onSdp(f);
      case 'invitesdp': return onInvite(f);
      case 'candidate': return onRemoteCandidate(f);
      case 'bye': return onBye(f);
      case 'cancel': return onCancel(f);
      case 'cancelresponse': return debug('cancel confirmed', f.callid);
      // §5: payloads undocumented; choice: log them.
      case 'ringtones': case 'response': case 'info': case 'change': return debug(kind, f);
      case 'sip-register': return onRegister(f);
      case 'domain-state': return onDomainState(f);
      case 'user-state': case 'blf': return onPresence(f);
      case 'call-state': return onCallState(f);
      case 'callerid': return onCallerId(f);
      case 'rec-start': case 'rec-stop': return debug(kind, f);
      default: return debug('unknown frame ignored', f);
    }
  }

  function onRegister(f) {
    if (f.add !== undefined && !truthy(f.add)) {
      if (S.connection !== 'ACCESS_GRANTED') {
        S.wantOnline = false;
        closeSocket();
        setConnection('ACCESS_DENIED', 'registration refused');
      }
      return;
    }
    // §2: refresh at max(30, min(expires/2, expires-15)) seconds.
    const expires = parseInt(f.expires, 10);
    if (Number.isFinite(expires) && expires > 0) {
      clearTimeout(S.registerTimer);
      const secs = Math.max(30, Math.min(expires / 2, expires - 15));
      S.registerTimer = setTimeout(sendRegister, secs * 1000);
    }
    if (S.connection !== 'ACCESS_GRANTED') granted();
  }

  // ---------------------------------------------------------------------------------------
  // Presence (§5 domain-state / user-state / blf; §8 ONLINE / OFFLINE)
  // ---------------------------------------------------------------------------------------

  function setPresence(p) {
    const account = p && p.account !== undefined ? String(p.account) : '';
    if (!account) return;
    const old = S.presence.get(account) || {};
    S.presence.set(account, {
      name: p.name || old.name || extensionName(account) || '',
      online: truthy(p.registered),
      dnd: truthy(p.dnd),
    });
  }

  function onDomainState(f) {
    if (Array.isArray(f.accounts)) f.accounts.forEach(setPresence);
    S.presenceFresh = true;
    ui.render();
  }

  function onPresence(f) {
    setPresence(f);
    ui.render();
  }

  /** ONLINE, OFFLINE, or UNKNOWN while we are not connected (or not yet told again). */
  function presenceWord(p) {
    if (!S.presenceFresh || S.connection !== 'ACCESS_GRANTED') return 'UNKNOWN';
    return p.online ? 'ONLINE' : 'OFFLINE';
  }

  function extensionName(ext) {
    const e = S.info && Array.isArray(S.info.extensions) && S.info.extensions.find((x) => String(x.number) === String(ext));
    return e ? e.name : '';
  }

  // ---------------------------------------------------------------------------------------
  // Calls: common parts
  // ---------------------------------------------------------------------------------------

  /** Ozeki-style call states (§8), plus DIALING (offer sent, nothing heard back) and CANCELLED. */
  function newCall(direction, peer, id) {
    return {
      id,                 // the call id in use (modern outbound: the PBX's, once adopted)
      ourId: direction === 'outbound' ? id : null,
      direction,
      peer: String(peer),
      peerName: '',
      state: direction === 'outbound' ? 'DIALING' : 'RINGING',
      reason: '',
      code: null,
      cseq: undefined,    // the last cseq the PBX sent for this call, echoed unchanged (§3)
      started: Date.now(),
      connectedAt: null,
      ended: false,
      pc: null,
      local: null,        // MediaStream from getUserMedia
      remote: null,       // MediaStream of the remote audio
      remoteCandidates: [],
      localCandidates: [],
      holdLocal: false,   // keep local candidates back (modern outbound offer, which the PBX ignores)
      awaitingAdoption: direction === 'outbound',
      offerSent: false,   // outbound: our sdp-packet has gone out
      offerSdp: null,     // inbound: the PBX's offer
      answeredOffer: null, // the remote offer we last answered, and our answer to it
      answerSdp: null,
      acked: false,
      held: false,        // we put the call on hold
      remoteHeld: false,  // the other side put us on hold (call-state onhold)
      transferTo: null,
      digits: '',
      noMic: false,
      chain: Promise.resolve(),
    };
  }

  /** Runs async steps of one call in order, so frames are handled one after the other. */
  function serial(call, step) {
    call.chain = call.chain.then(() => (call.ended ? undefined : step())).catch((e) => {
      warn('call step failed', e);
    });
    return call.chain;
  }

  const matches = (call, id) => !!call && !!id && (id === call.id || id === call.ourId);

  function setCallState(call, state) {
    if (call.ended || call.state === state) return;
    call.state = state;
    if ((state === 'IN_CALL' || state === 'HOLD') && !call.connectedAt) call.connectedAt = Date.now();
    if (state !== 'RINGING') ring.stop();
    ui.render();
  }

  async function getMic() {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (e) {
      warn('no microphone', e);
      return null;
    }
  }

  function makePeerConnection(call) {
    // Host candidates only: the emulator and the page share a machine or a LAN (§7: trickle ICE).
    const pc = new RTCPeerConnection({ iceServers: [] });
    call.pc = pc;
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (!c || !c.candidate || call.ended) return;
      // Candidates of an offer that was rolled back belong to nothing: skip them.
      const ufrag = pc.localDescription && /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp);
      if (c.usernameFragment && ufrag && ufrag[1] !== c.usernameFragment) return;
      const candidate = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
      if (call.holdLocal) call.localCandidates.push(candidate);
      else sendLocalCandidate(call, candidate);
    };
    pc.ontrack = (ev) => {
      const stream = (ev.streams && ev.streams[0]) || new MediaStream([ev.track]);
      call.remote = stream;
      media.attachRemote(stream);
    };
    pc.onconnectionstatechange = () => {
      debug('pc', pc.connectionState);
      ui.render();
    };
    return pc;
  }

  /** §4 `ice-candidate`: trickle our candidates under the call id in use. */
  function sendLocalCandidate(call, candidate) {
    send({ action: 'ice-candidate', callid: call.id, candidate });
  }

  function flushLocalCandidates(call) {
    call.holdLocal = false;
    call.localCandidates.splice(0).forEach((c) => sendLocalCandidate(call, c));
  }

  /**
   * §5 `candidate`: a raw `candidate:` line; with `adr:[[ip,port]…]` one candidate per pair,
   * address and port (5th and 6th fields) replaced. Applied with m-line index 0 and no mid.
   */
  function candidateLines(f) {
    let line = f.candidate;
    if (line && typeof line === 'object') line = line.candidate;
    if (typeof line !== 'string' || !line) return [];
    if (!line.startsWith('candidate:') && line.startsWith('a=')) line = line.slice(2);
    if (!Array.isArray(f.adr) || !f.adr.length) return [line];
    const fields = line.split(' ');
    return f.adr.filter((p) => Array.isArray(p) && p.length >= 2).map(([ip, port]) => {
      const copy = fields.slice();
      copy[4] = String(ip);
      copy[5] = String(port);
      return copy.join(' ');
    });
  }

  function onRemoteCandidate(f) {
    const call = S.call;
    const lines = candidateLines(f);
    if (!lines.length) return;
    if (call && (!f.callid || matches(call, f.callid))) return addRemoteCandidates(call, lines);
    // Unknown call id: maybe the PBX's id for our outgoing call, before its `sdp` arrives (§6).
    if (f.callid) {
      const list = S.stray.get(f.callid) || [];
      list.push(...lines);
      S.stray.set(f.callid, list.slice(-50));
      if (S.stray.size > 20) S.stray.delete(S.stray.keys().next().value);
    }
  }

  function addRemoteCandidates(call, lines) {
    for (const candidate of lines) {
      // "candidates can arrive before the offer is applied: queue them" (§5)
      if (call.pc && call.pc.remoteDescription) {
        call.pc.addIceCandidate({ candidate, sdpMLineIndex: 0 }).catch((e) => debug('candidate refused', e.message));
      } else {
        call.remoteCandidates.push(candidate);
      }
    }
  }

  function flushRemoteCandidates(call) {
    const queued = call.remoteCandidates.splice(0);
    addRemoteCandidates(call, queued);
  }

  /** Answers a remote offer (inbound, modern outbound, or a re-offer mid-call) with `sdp-200ok`. */
  async function answerOffer(call, offerSdp, cseq) {
    const pc = call.pc;
    if (call.answeredOffer === offerSdp && call.answerSdp) {
      // The same offer again (modern: the final 200 repeats the 183's offer): same answer.
      send({ action: 'sdp-200ok', callid: call.id, cseq, sdp: { type: 'answer', sdp: call.answerSdp } });
      return;
    }
    if (pc.signalingState === 'have-local-offer') {
      // §6 modern: the PBX ignored our offer and made its own; roll ours back.
      await pc.setLocalDescription({ type: 'rollback' });
      call.localCandidates = [];
    }
    call.holdLocal = false;
    await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
    flushRemoteCandidates(call);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (call.ended) return;
    call.answeredOffer = offerSdp;
    call.answerSdp = pc.localDescription.sdp;
    send({ action: 'sdp-200ok', callid: call.id, cseq, sdp: { type: 'answer', sdp: call.answerSdp } });
  }

  /** Finishes the active call with a final state and writes the log entry. */
  function endCall(call, state, reason = '', code = null) {
    if (!call || call.ended) return;
    call.ended = true;
    call.endedAt = Date.now();
    call.state = state;
    call.reason = reason;
    call.code = code;
    const now = call.endedAt;
    ring.stop();
    if (call.pc) try { call.pc.close(); } catch { /* closed */ }
    if (call.local) call.local.getTracks().forEach((t) => t.stop());
    media.detach();
    S.log.push({
      direction: call.direction,
      peer: call.peer,
      state,
      started: call.started,
      duration_ms: call.connectedAt ? now - call.connectedAt : 0,
      reason: reason || '',
      code,
    });
    if (S.log.length > 200) S.log.shift();
    if (S.call === call) S.call = null;
    ui.transferOpen = false;
    showEnded(call);
    ui.render();
  }

  function showEnded(call) {
    clearTimeout(S.shownTimer);
    S.shown = call;
    S.shownTimer = setTimeout(() => {
      if (S.shown === call) S.shown = null;
      ui.render();
    }, ENDED_LINGER_MS);
  }

  /** §6 failures: 486/600 BUSY; 404 NOT_FOUND; 487 cancelled; others REJECTED. */
  function failureState(code) {
    if (code === 486 || code === 600) return 'BUSY';
    if (code === 404) return 'NOT_FOUND';
    if (code === 487) return 'CANCELLED';
    return 'REJECTED';
  }

  // ---------------------------------------------------------------------------------------
  // Outbound calls (§6: legacy and modern flows)
  // ---------------------------------------------------------------------------------------

  async function dial(number) {
    number = String(number ?? '').replace(/\s+/g, '');
    if (!number) return null;
    if (S.connection !== 'ACCESS_GRANTED') { warn('not connected'); return null; }
    if (S.call) { warn('already in a call'); return null; }
    media.ensureContext();
    const call = newCall('outbound', number, randomCallId());
    call.peerName = (S.presence.get(number) || {}).name || '';
    S.call = call;
    S.shown = null;
    ui.render();
    const local = await getMic();
    if (call.ended) { if (local) local.getTracks().forEach((t) => t.stop()); return null; }
    call.local = local;
    call.noMic = !local;
    media.attachLocal(local);
    const pc = makePeerConnection(call);
    if (local) local.getAudioTracks().forEach((t) => pc.addTrack(t, local));
    else pc.addTransceiver('audio', { direction: 'recvonly' });
    // §6 modern: the PBX ignores our offer, so its candidates are kept back until we know
    // whether the PBX answers it (then they are sent) or makes its own offer (then dropped).
    call.holdLocal = S.dialect === 'modern';
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (call.ended) return null;
    // §4 sdp-packet: `to`, our 32-hex callid, the offer.
    call.offerSent = send({ action: 'sdp-packet', to: number, callid: call.id, sdp: { type: 'offer', sdp: pc.localDescription.sdp } });
    if (!call.offerSent) endCall(call, 'REJECTED', 'not connected');
    return call.id;
  }

  function onSdp(f) {
    const call = S.call;
    if (!call || call.direction !== 'outbound') {
      // An `sdp` offer for an inbound call mid-call is a re-offer (§5).
      if (call && matches(call, f.callid) && call.pc) return onReOffer(call, f);
      return debug('sdp for no outgoing call', f.callid);
    }
    if (!matches(call, f.callid)) {
      // §6 modern: the first `sdp` under an unknown call id belongs to our waiting call: adopt it.
      if (!call.awaitingAdoption || !f.callid) return debug('sdp for another call', f.callid);
      debug(`adopting the PBX call id ${f.callid} (ours was ${call.id})`);
      call.id = f.callid;
      const early = S.stray.get(f.callid);
      S.stray.delete(f.callid);
      if (early) addRemoteCandidates(call, early);
    }
    call.awaitingAdoption = false;
    if (f.cseq !== undefined) call.cseq = f.cseq; // adopt its cseq (§6), echoed unchanged
    const cseq = f.cseq;
    const code = codeOf(f.code);
    if (code !== null && code >= 400) {
      send({ action: 'sip-ack', callid: call.id });
      return endCall(call, failureState(code), f.reason || '', code);
    }
    const { type, sdp } = sdpOf(f.sdp);
    // Offer or answer: by `sdp.type`, else by the dialect (§6).
    const kind = type || (S.dialect === 'modern' ? 'offer' : 'answer');
    serial(call, async () => {
      const pc = call.pc;
      if (!pc) return;
      if (kind === 'offer') {
        await answerOffer(call, sdp, cseq);
      } else if (pc.signalingState === 'have-local-offer') {
        // §6 legacy: the PBX answers our offer (180/183 early, 200 final); apply it once, and
        // rewrite a wrong `a=setup:actpass` (not valid in an answer) to `passive`.
        await pc.setRemoteDescription({ type: 'answer', sdp: sdp.replace(/a=setup:actpass/g, 'a=setup:passive') });
        flushRemoteCandidates(call);
        flushLocalCandidates(call);
      }
      if (call.ended) return;
      if (code !== null && code >= 200) {
        // A final response: acknowledge it (§4 sip-ack); the call is answered.
        if (!call.acked) {
          call.acked = true;
          send({ action: 'sip-ack', callid: call.id });
        }
        setCallState(call, call.held || call.remoteHeld ? 'HOLD' : 'IN_CALL');
      } else if (call.state === 'DIALING') {
        setCallState(call, 'RINGING');
      }
    });
  }

  /** A re-offer mid-call (`sdp` of type offer under a known call id): answer it. */
  function onReOffer(call, f) {
    const { type, sdp } = sdpOf(f.sdp);
    if (type && type !== 'offer') return debug('unexpected sdp', f);
    if (f.cseq !== undefined) call.cseq = f.cseq;
    serial(call, () => answerOffer(call, sdp, f.cseq));
  }

  // ---------------------------------------------------------------------------------------
  // Inbound calls (§6)
  // ---------------------------------------------------------------------------------------

  function onInvite(f) {
    const { sdp } = sdpOf(f.invitesdp);
    const cseq = f.cseq;
    const callid = f.callid;
    if (!callid) return warn('invitesdp without callid', f);
    const current = S.call;
    if (current && matches(current, callid)) {
      // The same call offered again: a mid-call re-offer.
      if (current.pc) serial(current, () => answerOffer(current, sdp, cseq));
      return;
    }
    // `from-user` is the bare number; `from` may be a SIP URI ("Ann" <sip:501@domain>).
    const rawFrom = String(f['from-user'] || f.from || '');
    const uri = /sips?:([^@;>]+)/.exec(rawFrom);
    const from = uri ? uri[1] : rawFrom;
    if (current) {
      // One call at a time: a second call gets 486 Busy Here.
      send({ action: 'sip-busy', callid, cseq, code: 486 });
      S.log.push({ direction: 'inbound', peer: from, state: 'BUSY', started: Date.now(), duration_ms: 0, reason: 'you were on another call', code: 486 });
      return ui.render();
    }
    const call = newCall('inbound', from, callid);
    call.peerName = f['from-display'] || (S.presence.get(from) || {}).name || '';
    call.cseq = cseq;
    call.inviteCseq = cseq;
    call.offerSdp = sdp;
    const early = S.stray.get(callid);
    S.stray.delete(callid);
    if (early) call.remoteCandidates.push(...early);
    S.call = call;
    S.shown = null;
    // §4 sip-ringing (180) at once.
    send({ action: 'sip-ringing', callid, cseq });
    ring.start();
    ui.render();
    if (S.autoAnswer) setTimeout(() => { if (S.call === call && call.state === 'RINGING') answer(); }, AUTOANSWER_MS);
  }

  async function answer() {
    const call = S.call;
    if (!call || call.direction !== 'inbound' || call.state !== 'RINGING' || call.answering) return false;
    call.answering = true;
    ring.stop();
    media.ensureContext();
    await serial(call, async () => {
      const pc = makePeerConnection(call);
      await pc.setRemoteDescription({ type: 'offer', sdp: call.offerSdp });
      flushRemoteCandidates(call);
      const local = await getMic();
      if (call.ended) { if (local) local.getTracks().forEach((t) => t.stop()); return; }
      call.local = local;
      call.noMic = !local;
      media.attachLocal(local);
      if (local) local.getAudioTracks().forEach((t) => pc.addTrack(t, local));
      const ans = await pc.createAnswer();
      await pc.setLocalDescription(ans);
      if (call.ended) return;
      call.answeredOffer = call.offerSdp;
      call.answerSdp = pc.localDescription.sdp;
      // §4 sdp-200ok with the invite's cseq.
      send({ action: 'sdp-200ok', callid: call.id, cseq: call.inviteCseq, sdp: { type: 'answer', sdp: call.answerSdp } });
      setCallState(call, 'IN_CALL');
    });
    return !call.ended && call.state === 'IN_CALL';
  }

  function reject() {
    const call = S.call;
    if (!call || call.direction !== 'inbound' || call.state !== 'RINGING') return false;
    // §4 sip-busy: 486 Busy Here.
    send({ action: 'sip-busy', callid: call.id, cseq: call.inviteCseq, code: 486 });
    endCall(call, 'REJECTED', 'rejected by you', 486);
    return true;
  }

  function onCancel(f) {
    // §6: the caller gave up; confirm with cancel-response.
    send({ action: 'cancel-response', callid: f.callid, cseq: f.cseq });
    const call = S.call;
    if (matches(call, f.callid)) endCall(call, 'CANCELLED', 'cancelled before answer');
  }

  // ---------------------------------------------------------------------------------------
  // During a call: hang-up, remote bye, hold, DTMF, transfer, call-state
  // ---------------------------------------------------------------------------------------

  function hangup() {
    const call = S.call;
    if (!call) return false;
    if (call.direction === 'inbound' && call.state === 'RINGING') return reject();
    // §4 sip-bye: `caller` says whether we placed the call; also cancels our unanswered call.
    // (Nothing to say when our offer has not gone out yet: the PBX does not know the call.)
    if (call.direction === 'inbound' || call.offerSent) {
      send({ action: 'sip-bye', callid: call.id, caller: call.direction === 'outbound' ? 'true' : 'false' });
    }
    const answered = !!call.connectedAt;
    endCall(call, answered ? 'COMPLETED' : 'CANCELLED', answered ? 'you hung up' : 'cancelled by you');
    return true;
  }

  function onBye(f) {
    // Confirm every bye (§6: theirs `bye` → `bye-response`).
    send({ action: 'bye-response', callid: f.callid, cseq: f.cseq });
    const call = S.call;
    if (!matches(call, f.callid)) return debug('bye for no active call', f.callid);
    const code = codeOf(f.code);
    let reason = f.reason || '';
    if (call.connectedAt) {
      if (call.transferTo) reason = `transferred to ${call.transferTo}`;
      return endCall(call, 'COMPLETED', reason || 'remote hung up', code);
    }
    if (call.direction === 'inbound') return endCall(call, 'CANCELLED', reason || 'caller hung up', code);
    // Our call failed before it was answered (§6 failures).
    endCall(call, code === null ? 'REJECTED' : failureState(code), reason, code);
  }

  function setHold(on) {
    const call = S.call;
    if (!call || !call.connectedAt || call.ended || !call.pc) return false;
    // §4 wrtc-hold: sendonly holds, sendrecv resumes; §6: stop sending media locally.
    send({ action: 'wrtc-hold', callid: call.id, holdcmd: on ? 'sendonly' : 'sendrecv' });
    call.held = on;
    if (call.local) call.local.getAudioTracks().forEach((t) => { t.enabled = !on; });
    setCallState(call, on || call.remoteHeld ? 'HOLD' : 'IN_CALL');
    ui.render();
    return true;
  }

  /** §6 DTMF: media only (RFC 4733 through the browser's RTCDTMFSender), no signalling frame. */
  function dtmf(digits) {
    const call = S.call;
    digits = String(digits ?? '').toUpperCase().replace(/[^0-9*#A-D]/g, '');
    if (!call || !call.pc || !digits || !call.connectedAt) return false;
    const sender = call.pc.getSenders().find((s) => s.track && s.track.kind === 'audio') || call.pc.getSenders()[0];
    if (!sender || !sender.dtmf || !sender.dtmf.canInsertDTMF) { warn('DTMF not possible on this call'); return false; }
    sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + digits, 120, 80);
    call.digits = (call.digits + digits).slice(-24);
    ui.render();
    return true;
  }

  function transfer(number) {
    const call = S.call;
    number = String(number ?? '').replace(/\s+/g, '');
    if (!call || !call.connectedAt || !number) return false;
    // §4 blind-transfer2: `id` (call id), `from` (own ext), `to`; the PBX then sends `bye`.
    call.transferTo = number;
    send({ action: 'blind-transfer2', id: call.id, from: S.extension, to: number });
    ui.render();
    return true;
  }

  /** §5 call-state: `calls:[{id, state|callstate, …}]`; we follow our own call's entry. */
  function onCallState(f) {
    const calls = Array.isArray(f.calls) ? f.calls : [];
    const call = S.call;
    if (S.reconcile) {
      // §6 reconnect: the first list is complete; a call the PBX no longer lists has ended.
      S.reconcile = false;
      if (call && !calls.some((c) => matches(call, c.id))) {
        return endCall(call, call.connectedAt ? 'COMPLETED' : 'REJECTED', 'lost with the connection');
      }
    }
    if (!call) return;
    for (const c of calls) {
      if (!matches(call, c.id)) continue;
      const st = String(c.state || c.callstate || '').toLowerCase();
      // The far end as the PBX lists it now: after a transfer, the new one.
      const far = call.direction === 'outbound'
        ? { number: c['to-number'] ?? c.to, name: c['to-name'] }
        : { number: c['from-number'] ?? c.from, name: c['from-name'] };
      if (far.number && String(far.number) !== call.peer) {
        call.peer = String(far.number);
        call.peerName = far.name || (S.presence.get(call.peer) || {}).name || '';
      } else if (far.name && !call.peerName) {
        call.peerName = far.name;
      }
      switch (st) {
        case 'ringback': case 'alerting': case 'ringing': case 'early':
          if (call.state === 'DIALING') setCallState(call, 'RINGING');
          break;
        case 'connected':
          call.remoteHeld = false;
          if (call.pc && call.pc.remoteDescription && !call.held) setCallState(call, 'IN_CALL');
          break;
        case 'onhold':   // the other side holds us
          call.remoteHeld = true;
          if (call.connectedAt) setCallState(call, 'HOLD');
          break;
        case 'holding':  // we hold
          if (call.connectedAt) setCallState(call, 'HOLD');
          break;
        case 'disconnected':
          // The `bye` normally says how it ended; if none comes, the call is over anyway.
          setTimeout(() => {
            if (S.call === call && !call.ended) endCall(call, call.connectedAt ? 'COMPLETED' : 'REJECTED', 'disconnected');
          }, 1500);
          break;
        default:
          break;
      }
    }
    ui.render();
  }

  function onCallerId(f) {
    const call = S.call;
    if (!matches(call, f.callid)) return;
    if (f.name) call.peerName = f.name;
    if (f.number) call.peer = String(f.number);
    ui.render();
  }

  // ---------------------------------------------------------------------------------------
  // Media on the page: remote playback, level meters (Web Audio), ring tone
  // ---------------------------------------------------------------------------------------

  const media = {
    ctx: null,
    remoteAnalyser: null,
    localAnalyser: null,
    remoteSource: null,
    localSource: null,
    buf: null,
    peaks: new WeakMap(),

    ensureContext() {
      if (!this.ctx) {
        const Ctx = window.AudioContext || window.webkitAudioContext;
        if (!Ctx) return null;
        this.ctx = new Ctx();
      }
      if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
      return this.ctx;
    },

    analyser(stream) {
      const ctx = this.ensureContext();
      if (!ctx || !stream || !stream.getAudioTracks().length) return [null, null];
      const source = ctx.createMediaStreamSource(stream);
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 1024;
      source.connect(analyser); // not to the destination: the <audio> element plays it
      return [source, analyser];
    },

    attachRemote(stream) {
      // The remote stream must play in an <audio autoplay> element: Chromium only decodes
      // (and reports audio energy for) remote WebRTC audio that is played out.
      const el = $('remote-audio');
      el.srcObject = stream;
      el.play().catch((e) => debug('autoplay refused', e.message));
      if (this.remoteSource) this.remoteSource.disconnect();
      [this.remoteSource, this.remoteAnalyser] = this.analyser(stream);
    },

    attachLocal(stream) {
      if (this.localSource) this.localSource.disconnect();
      [this.localSource, this.localAnalyser] = stream ? this.analyser(stream) : [null, null];
    },

    detach() {
      const el = $('remote-audio');
      el.srcObject = null;
      for (const key of ['remoteSource', 'localSource']) {
        if (this[key]) try { this[key].disconnect(); } catch { /* gone */ }
        this[key] = null;
      }
      this.remoteAnalyser = null;
      this.localAnalyser = null;
    },

    /**
     * The meter level 0..1 of `analyser`: the RMS of the last frame on a dB scale (-60 dBFS → 0,
     * 0 dBFS → 1), with a peak that falls back at 1.5 per second so short sounds stay visible.
     */
    level(analyser) {
      if (!analyser) return 0;
      const now = performance.now();
      const peak = this.peaks.get(analyser) || { value: 0, at: now };
      const value = Math.max(this.instant(analyser), peak.value - ((now - peak.at) / 1000) * 1.5);
      this.peaks.set(analyser, { value, at: now });
      return Math.max(0, value);
    },

    /** 0..1 from the RMS of the last frame: -60 dBFS → 0, 0 dBFS → 1. */
    instant(analyser) {
      if (!this.buf || this.buf.length !== analyser.fftSize) this.buf = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(this.buf);
      let sum = 0;
      for (let i = 0; i < this.buf.length; i++) sum += this.buf[i] * this.buf[i];
      const rms = Math.sqrt(sum / this.buf.length);
      if (rms <= 0) return 0;
      return Math.max(0, Math.min(1, (20 * Math.log10(rms) + 60) / 60));
    },
  };

  /** A soft double-ring for incoming calls, synthesised (no sound files). */
  const ring = {
    timer: null,
    start() {
      this.stop();
      const burst = () => {
        const ctx = media.ensureContext();
        if (!ctx || ctx.state !== 'running') return;
        const t0 = ctx.currentTime;
        const gain = ctx.createGain();
        gain.gain.value = 0;
        gain.connect(ctx.destination);
        for (const f of [400, 450]) {
          const o = ctx.createOscillator();
          o.frequency.value = f;
          o.connect(gain);
          o.start(t0);
          o.stop(t0 + 1.2);
        }
        for (const [on, off] of [[0, 0.4], [0.6, 1.0]]) {
          gain.gain.setValueAtTime(0.06, t0 + on);
          gain.gain.setValueAtTime(0, t0 + off);
        }
      };
      burst();
      this.timer = setInterval(burst, 3000);
    },
    stop() {
      clearInterval(this.timer);
      this.timer = null;
    },
  };

  /** A short local DTMF tone as feedback when a key is pressed in a call. */
  function keyTone(digit) {
    const pairs = { 1: [697, 1209], 2: [697, 1336], 3: [697, 1477], 4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
      7: [852, 1209], 8: [852, 1336], 9: [852, 1477], '*': [941, 1209], 0: [941, 1336], '#': [941, 1477] };
    const ctx = media.ctx;
    if (!ctx || ctx.state !== 'running' || !pairs[digit]) return;
    const t0 = ctx.currentTime;
    const gain = ctx.createGain();
    gain.gain.setValueAtTime(0.04, t0);
    gain.gain.setValueAtTime(0, t0 + 0.12);
    gain.connect(ctx.destination);
    for (const f of pairs[digit]) {
      const o = ctx.createOscillator();
      o.frequency.value = f;
      o.connect(gain);
      o.start(t0);
      o.stop(t0 + 0.13);
    }
  }

  async function audioStats() {
    const out = { packetsReceived: 0, packetsSent: 0, audioEnergy: 0, level: 0, micLevel: 0 };
    const call = S.call;
    if (!call || !call.pc) return out;
    try {
      const report = await call.pc.getStats();
      report.forEach((s) => {
        const audio = s.kind === 'audio' || s.mediaType === 'audio';
        if (s.type === 'inbound-rtp' && audio) {
          out.packetsReceived += s.packetsReceived || 0;
          out.audioEnergy += s.totalAudioEnergy || 0;
        } else if (s.type === 'outbound-rtp' && audio) {
          out.packetsSent += s.packetsSent || 0;
        }
      });
    } catch (e) {
      debug('getStats failed', e);
    }
    out.level = media.level(media.remoteAnalyser);
    out.micLevel = call.held ? 0 : media.level(media.localAnalyser);
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // User interface
  // ---------------------------------------------------------------------------------------

  const STATE_LABEL = {
    DIALING: 'Dialing…', RINGING: 'Ringing', IN_CALL: 'In call', HOLD: 'On hold', COMPLETED: 'Call ended',
    BUSY: 'Busy', REJECTED: 'Rejected', NOT_FOUND: 'Not found', CANCELLED: 'Cancelled',
  };

  const CONN_LABEL = {
    DISCONNECTED: 'Signed out', CONNECTING: 'Connecting…', ACCESS_GRANTED: 'Registered',
    ACCESS_DENIED: 'Access denied', CONNECTION_FAILED: 'Connection failed', CONNECTION_CLOSED: 'Connection lost',
  };

  const ui = {
    pending: false,
    transferOpen: false,

    traceOpen() { return $('trace') && $('trace').open; },

    renderTrace() {
      const pre = $('trace-text');
      pre.textContent = S.trace.join('\n');
      pre.scrollTop = pre.scrollHeight;
    },

    /** Coalesces renders into one per frame. */
    render() {
      if (ui.pending) return;
      ui.pending = true;
      requestAnimationFrame(() => { ui.pending = false; ui.draw(); });
      // Background tabs get no animation frames: draw anyway soon.
      setTimeout(() => { if (ui.pending) { ui.pending = false; ui.draw(); } }, 250);
    },

    draw() {
      const loggedIn = S.wantOnline || S.connection === 'ACCESS_GRANTED';
      document.body.classList.toggle('logged-in', loggedIn);
      $('login-panel').hidden = loggedIn;
      $('phone-panel').hidden = !loggedIn;

      // Connection badge
      const badge = $('conn-badge');
      badge.textContent = S.connection;
      badge.title = CONN_LABEL[S.connection] || '';
      badge.className = `badge conn-${S.connection.toLowerCase().replace(/_/g, '-')}`;
      let detail = S.detail;
      if (['CONNECTION_CLOSED', 'CONNECTION_FAILED'].includes(S.connection) && S.reconnectTimer) {
        const secs = Math.max(0, Math.ceil((S.reconnectAt - Date.now()) / 1000));
        detail = `${detail ? `${detail} · ` : ''}retrying in ${secs} s`;
      }
      $('conn-detail').textContent = detail;
      $('me').textContent = S.extension && loggedIn ? `${S.extension}${extensionName(S.extension) ? ` · ${extensionName(S.extension)}` : ''}` : '';
      $('dialect-tag').textContent = loggedIn && S.dialect ? `${S.dialect} dialect` : '';
      $('logout-btn').hidden = !loggedIn;
      $('login-error').textContent = !loggedIn && ['ACCESS_DENIED', 'CONNECTION_FAILED'].includes(S.connection)
        ? `${CONN_LABEL[S.connection]}: ${S.detail}` : '';

      ui.drawPresence();
      ui.drawCall();
      ui.drawLog();
    },

    drawPresence() {
      const list = $('presence-list');
      const entries = [...S.presence.entries()].sort((a, b) => a[0].localeCompare(b[0], undefined, { numeric: true }));
      const online = entries.filter(([, p]) => presenceWord(p) === 'ONLINE').length;
      const known = entries.length && presenceWord(entries[0][1]) !== 'UNKNOWN';
      $('presence-count').textContent = !entries.length ? '' : known ? `${online}/${entries.length} online` : 'presence unknown';
      const html = entries.map(([ext, p]) => {
        const me = ext === S.extension;
        const word = presenceWord(p);
        const cls = `presence-item ${word.toLowerCase()}${me ? ' me' : ''}`;
        return `<li class="${cls}" data-ext="${escapeHtml(ext)}" title="${me ? 'This is you' : `Call ${escapeHtml(ext)}`}">
          <span class="dot"></span>
          <span class="ext">${escapeHtml(ext)}</span>
          <span class="name">${escapeHtml(p.name || '')}</span>
          <span class="pstate">${me ? '<em>YOU</em> · ' : ''}${word}</span>
        </li>`;
      }).join('');
      list.classList.toggle('stale', S.connection !== 'ACCESS_GRANTED');
      if (list.dataset.html !== html) {
        list.innerHTML = html || '<li class="empty">No presence yet</li>';
        list.dataset.html = html;
      }
    },

    drawCall() {
      const call = S.call || S.shown;
      const active = S.call;
      const ready = S.connection === 'ACCESS_GRANTED';
      const panel = $('call-status');
      panel.className = `call-status ${call ? `st-${call.state.toLowerCase()}` : 'idle'}`;
      if (call) {
        $('call-state').textContent = call.state;
        $('call-state-label').textContent = STATE_LABEL[call.state] || '';
        $('call-peer').textContent = call.peer;
        $('call-peer-name').textContent = call.peerName || (S.presence.get(call.peer) || {}).name || '';
        $('call-dir').textContent = call.direction === 'outbound' ? '↗ outgoing' : '↙ incoming';
        let sub = '';
        if (call.ended) sub = call.reason + (call.code ? ` (${call.code})` : '');
        else if (call.transferTo) sub = `transferring to ${call.transferTo}…`;
        else if (call.state === 'HOLD') sub = call.held ? 'you put the call on hold' : 'the other side put you on hold';
        else if (call.noMic) sub = 'no microphone: listen only';
        $('call-sub').textContent = sub;
        const since = call.connectedAt;
        $('call-timer').textContent = since ? fmtDuration((call.ended ? (call.endedAt || Date.now()) : Date.now()) - since) : '';
        $('call-digits').textContent = call.digits ? `sent: ${call.digits}` : '';
      } else {
        $('call-state').textContent = ready ? 'READY' : S.connection;
        $('call-state-label').textContent = ready ? 'Enter a number or pick an extension' : (CONN_LABEL[S.connection] || '');
        for (const id of ['call-peer', 'call-peer-name', 'call-dir', 'call-sub', 'call-timer', 'call-digits']) $(id).textContent = '';
      }

      // Incoming banner
      const ringing = active && active.direction === 'inbound' && active.state === 'RINGING';
      $('incoming').hidden = !ringing;
      if (ringing) {
        $('incoming-from').textContent = active.peer;
        $('incoming-name').textContent = active.peerName || '';
      }

      // Controls
      const inCall = !!(active && active.connectedAt);
      const outgoing = !!(active && active.direction === 'outbound' && !active.connectedAt);
      $('idle-actions').hidden = !!active;
      $('call-actions').hidden = !active || ringing;
      $('call-btn').disabled = !ready;
      $('hold-btn').disabled = !inCall;
      $('hold-btn').textContent = active && active.held ? 'Resume' : 'Hold';
      $('hold-btn').classList.toggle('active', !!(active && active.held));
      $('transfer-btn').disabled = !inCall;
      $('transfer-btn').classList.toggle('active', ui.transferOpen && inCall);
      $('transfer-form').hidden = !(ui.transferOpen && inCall);
      $('hangup-btn').textContent = outgoing ? 'Cancel' : 'Hang up';
      $('number').placeholder = active ? (inCall ? 'Keypad sends DTMF' : '') : 'Number to call';
      $('number').disabled = !!active;
      $('keypad').classList.toggle('dtmf', inCall);
      $('meters').classList.toggle('live', !!(active && active.pc));
      $('autoanswer').checked = S.autoAnswer;
    },

    drawLog() {
      const body = $('log-body');
      const rows = S.log.slice().reverse().map((e) => `<tr class="log-${e.state.toLowerCase()}">
          <td>${fmtTime(e.started)}</td>
          <td title="${e.direction}">${e.direction === 'outbound' ? '↗ out' : '↙ in'}</td>
          <td class="num"><a href="#" data-dial="${escapeHtml(e.peer)}">${escapeHtml(e.peer)}</a></td>
          <td><span class="pill">${e.state}</span>${e.reason || e.code ? `<span class="why">${escapeHtml(e.reason || '')}${e.code ? ` (${e.code})` : ''}</span>` : ''}</td>
          <td class="dur">${e.duration_ms ? fmtDuration(e.duration_ms) : '–'}</td>
        </tr>`).join('');
      const html = rows || '<tr class="empty"><td colspan="5">No calls yet</td></tr>';
      if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
    },

    /** Level meters and the call timer, every animation frame. */
    tick() {
      const remote = media.level(media.remoteAnalyser);
      const local = S.call && S.call.held ? 0 : media.level(media.localAnalyser);
      $('meter-remote').style.setProperty('--level', remote.toFixed(3));
      $('meter-local').style.setProperty('--level', local.toFixed(3));
      requestAnimationFrame(ui.tick);
    },

    keyPressed(key) {
      media.ensureContext();
      const call = S.call;
      if (call && call.connectedAt) {
        keyTone(key);
        dtmf(key);
      } else if (!call) {
        const input = $('number');
        input.value += key;
      }
    },

    bind() {
      // Login form
      $('login-form').addEventListener('submit', async (ev) => {
        ev.preventDefault();
        media.ensureContext();
        const ext = $('login-ext').value.trim();
        const password = $('login-password').value;
        if (!ext) return;
        // The extension is remembered; the password only when asked (it would sit in
        // localStorage as plain text).
        const remembered = $('login-remember').checked ? { ext, password } : { ext };
        localStorage.setItem(STORE, JSON.stringify(remembered));
        $('login-btn').disabled = true;
        try { await login(ext, password); } finally { $('login-btn').disabled = false; }
      });
      $('login-ext').addEventListener('input', () => {
        // The desk extensions' default password is the extension number: a handy default.
        const pw = $('login-password');
        if (!pw.dataset.touched) pw.value = $('login-ext').value.trim();
      });
      $('login-password').addEventListener('input', (ev) => { ev.target.dataset.touched = '1'; });
      $('logout-btn').addEventListener('click', () => logout());

      // Presence: click to dial
      $('presence-list').addEventListener('click', (ev) => {
        const li = ev.target.closest('li[data-ext]');
        if (!li || li.classList.contains('me')) return;
        if (S.call) return;
        $('number').value = li.dataset.ext;
        dial(li.dataset.ext);
      });
      $('log-body').addEventListener('click', (ev) => {
        const a = ev.target.closest('a[data-dial]');
        if (!a) return;
        ev.preventDefault();
        if (!S.call) $('number').value = a.dataset.dial;
      });

      // Keypad
      $('keypad').addEventListener('click', (ev) => {
        const b = ev.target.closest('button[data-key]');
        if (b) ui.keyPressed(b.dataset.key);
      });
      $('backspace-btn').addEventListener('click', () => {
        const input = $('number');
        input.value = input.value.slice(0, -1);
      });
      $('dial-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        if (!S.call) dial($('number').value);
      });
      document.addEventListener('keydown', (ev) => {
        if (ev.target.closest('input, textarea, select') || ev.ctrlKey || ev.metaKey || ev.altKey) return;
        if (/^[0-9*#]$/.test(ev.key)) { ui.keyPressed(ev.key); ev.preventDefault(); }
        else if (ev.key === 'Enter' && !S.call && $('number').value) dial($('number').value);
        else if (ev.key === 'Escape' && S.call) hangup();
        else if (ev.key === 'Backspace' && !S.call) $('number').value = $('number').value.slice(0, -1);
      });

      // Call controls
      $('answer-btn').addEventListener('click', () => answer());
      $('reject-btn').addEventListener('click', () => reject());
      $('hangup-btn').addEventListener('click', () => hangup());
      $('hold-btn').addEventListener('click', () => setHold(!(S.call && S.call.held)));
      $('transfer-btn').addEventListener('click', () => {
        ui.transferOpen = !ui.transferOpen;
        ui.draw();
        if (ui.transferOpen) $('transfer-to').focus();
      });
      $('transfer-form').addEventListener('submit', (ev) => {
        ev.preventDefault();
        if (transfer($('transfer-to').value)) { ui.transferOpen = false; $('transfer-to').value = ''; }
        ui.draw();
      });
      $('autoanswer').addEventListener('change', (ev) => { S.autoAnswer = ev.target.checked; });
      $('trace').addEventListener('toggle', () => { if (ui.traceOpen()) ui.renderTrace(); });
      $('trace-clear').addEventListener('click', (ev) => { ev.preventDefault(); S.trace = []; ui.renderTrace(); });

      // Browsers start audio only after a gesture: resume on the first one.
      const resume = () => media.ensureContext();
      document.addEventListener('pointerdown', resume, { passive: true });
      document.addEventListener('keydown', resume);

      setInterval(() => { if (S.call || S.reconnectTimer) ui.draw(); }, 1000);
    },
  };

  async function fillLoginForm() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(STORE) || '{}') || {}; } catch { /* ignore */ }
    const ext = params.get('ext') || saved.ext || '';
    const password = params.get('password') ?? saved.password ?? ext;
    $('login-ext').value = ext;
    $('login-password').value = password;
    if (params.get('password') !== null || saved.password !== undefined) $('login-password').dataset.touched = '1';
    const info = await fetchInfo();
    if (info) {
      // The demo's accounts (an IVR bot on 500): show how to try it.
      $('demo-hint').hidden = !(info.extensions || []).some((e) => String(e.number) === '500' && e.name === 'IVR');
      $('server-info').textContent = `${info.server || 'PBX'} · domain ${info.domain} · ${info.dialect} dialect`;
      const list = $('ext-list');
      list.innerHTML = (info.extensions || []).map((e) =>
        `<option value="${escapeHtml(e.number)}">${escapeHtml(e.name || '')}</option>`).join('');
      const quick = $('ext-quick');
      quick.innerHTML = (info.extensions || []).map((e) =>
        `<button type="button" data-ext="${escapeHtml(e.number)}" title="${escapeHtml(e.name || '')}">${escapeHtml(e.number)}</button>`).join('');
      quick.addEventListener('click', (ev) => {
        const b = ev.target.closest('button[data-ext]');
        if (!b) return;
        $('login-ext').value = b.dataset.ext;
        if (!$('login-password').dataset.touched) $('login-password').value = b.dataset.ext;
        $('login-password').focus();
      });
    } else {
      $('server-info').textContent = location.host;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Public API for tests and the console: window.softphone
  // ---------------------------------------------------------------------------------------

  function publicCall(call) {
    if (!call) return null;
    return {
      id: call.id,
      direction: call.direction,
      peer: call.peer,
      state: call.state,
      active: !call.ended,
      held: call.held,
      remoteHeld: call.remoteHeld,
      connected_ms: call.connectedAt ? (call.endedAt || Date.now()) - call.connectedAt : 0,
      reason: call.reason || '',
      code: call.code,
    };
  }

  window.softphone = {
    state() {
      const presence = {};
      for (const [ext, p] of S.presence) presence[ext] = presenceWord(p);
      return {
        connection: S.connection,
        detail: S.detail,
        dialect: S.dialect,
        extension: S.extension,
        domain: S.domain,
        presence,
        call: publicCall(S.call || S.shown),
        log: S.log.map((e) => ({ ...e })),
      };
    },
    login,
    logout,
    dial,
    answer,
    reject,
    hangup,
    hold: () => setHold(true),
    resume: () => setHold(false),
    dtmf,
    transfer,
    audioStats,
    setAutoAnswer(on) { S.autoAnswer = !!on; ui.render(); },
    md5: md5Hex,
    trace: () => S.trace.slice(),
  };

  // ---------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------

  function start() {
    ui.bind();
    ui.draw();
    requestAnimationFrame(ui.tick);
    fillLoginForm().then(() => {
      if (flag('autologin') && $('login-ext').value) login($('login-ext').value, $('login-password').value);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
