/*
 * The WebSocket sample client: written for callbot, after the PBX vendor's WebSocket page.
 *
 * It handles frames exactly as the vendor's sample does, and nothing more, so that it sees the
 * wire the way a client written from that page sees it:
 *   - on open: {action: "avoid-disconnect"} (and every 30 s);
 *   - a call: a new peer connection, its offer as {action: "sdp-packet", to, sdp: <offer>, callid};
 *   - every frame with `sdp`: that text is the answer to our offer;
 *   - every frame with `candidate`: that line, with sdpMid "" and sdpMLineIndex 0;
 *   - `bye`: {action: "bye-response", callid}, and the call is over;
 *   - our candidates: {action: "ice-candidate", candidate: <the browser's candidate>} (no callid);
 *   - hold: the peer connection is closed and {action: "wrtc-hold", holdcmd: "sendonly"} sent;
 *     resume: a new peer connection whose offer goes in {action: "wrtc-hold", holdcmd: "sendrecv"};
 *   - hang up: {action: "sip-bye", caller: "true"|"false", callid};
 *   - transfer: {action: "blind-transfer2", id, from, to};
 *   - DTMF: RTCDTMFSender (RFC 4733 in the media, no frame).
 * Where the vendor's sample names a variable it never set (the call id in hang-up and hold),
 * this page sends the call's id.
 *
 * Test hooks: window.sample (see the end).
 */
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const KEEPALIVE_MS = 30000;

  let socket = null;
  let peercon = null;
  let localStream = null;
  let dtmfSender = null;
  let keepalive = null;
  const phone = { extension: '', callDir: 'none', callid: '', ended: null };
  /** Every frame both ways, newest last (kept short). */
  const frames = [];

  function note(text) {
    const log = $('log');
    log.textContent += `${new Date().toISOString().slice(11, 23)} ${text}\n`;
    log.scrollTop = log.scrollHeight;
  }

  function remember(direction, frame) {
    frames.push({ direction, frame });
    if (frames.length > 500) frames.shift();
  }

  function doSend(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return note('not connected');
    remember('out', message);
    note(`→ ${JSON.stringify(message).slice(0, 160)}`);
    socket.send(JSON.stringify(message));
  }

  /** 32 lower-case hex digits. */
  function createCallId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // --- Logging in and the socket ---------------------------------------------------------

  /** Password login (PUT /rest/system/session), then the socket; resolves once it is open. */
  async function login(extension, password, domain) {
    const response = await fetch('/rest/system/session', {
      method: 'PUT',
      credentials: 'include',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'auth', value: `${extension} ${window.md5Hex(password)}` }),
    });
    const session = await response.json().catch(() => null);
    if (!session || typeof session !== 'string') throw new Error(`login as ${extension} denied`);
    phone.extension = extension;
    // The session also rides in the query: a browser cannot set the Cookie header itself.
    const query = new URLSearchParams({ domain, user: extension, session });
    return startWebSocket(`wss://${location.host}/websocket?${query}`);
  }

  function startWebSocket(url) {
    socket = new WebSocket(url);
    socket.onclose = onClose;
    socket.onmessage = onMessage;
    socket.onerror = () => note('socket error');
    return new Promise((resolve, reject) => {
      socket.onopen = () => { onOpen(); resolve(true); };
      socket.addEventListener('close', () => reject(new Error('the socket closed')), { once: true });
    });
  }

  function onOpen() {
    note('connected');
    doSend({ action: 'avoid-disconnect' });
    keepalive = setInterval(() => doSend({ action: 'avoid-disconnect' }), KEEPALIVE_MS);
  }

  function onClose() {
    clearInterval(keepalive);
    note('disconnected');
  }

  function onMessage(evt) {
    const msg = JSON.parse(evt.data);
    remember('in', msg);
    note(`← ${evt.data.slice(0, 160)}`);
    if (msg.sdp) {
      if (!peercon) return;
      const description = new RTCSessionDescription({ type: 'answer', sdp: msg.sdp });
      peercon.setRemoteDescription(description).then(
        () => note('remote SDP applied'),
        (error) => note(`remote SDP failed: ${error}`),
      );
    } else if (msg.candidate) {
      if (!peercon) return;
      peercon.addIceCandidate(new RTCIceCandidate({ candidate: msg.candidate, sdpMid: '', sdpMLineIndex: 0 }))
        .catch((error) => note(`candidate failed: ${error}`));
    } else if (msg.bye) {
      doSend({ action: 'bye-response', callid: msg.callid });
      endcall(false);
    }
  }

  // --- Calls -----------------------------------------------------------------------------

  /** A new call to `destNumber`, or (`resume`) a new peer connection for the held call. */
  async function makecall(destNumber, resume = false) {
    if (!resume) {
      phone.callDir = 'caller';
      phone.ended = null;
    }
    const iceServers = params.get('stun') ? [{ urls: params.get('stun') }] : [];
    const pc = new RTCPeerConnection({ iceServers });
    peercon = pc;
    pc.onicecandidate = (evt) => doSend({ action: 'ice-candidate', candidate: evt.candidate });
    pc.ontrack = (evt) => {
      $('remoteAudio').srcObject = evt.streams[0];
    };
    pc.onconnectionstatechange = () => note(`media ${pc.connectionState}`);
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    localStream = stream.getTracks()[0];
    dtmfSender = pc.getSenders()[0].dtmf;
    const desc = await pc.createOffer({ offerToReceiveAudio: true, offerToReceiveVideo: false });
    await pc.setLocalDescription(desc);
    if (resume) {
      doSend({ action: 'wrtc-hold', holdcmd: 'sendrecv', sdp: desc, callid: phone.callid, calldir: phone.callDir });
    } else {
      phone.callid = createCallId();
      doSend({ action: 'sdp-packet', to: destNumber, sdp: desc, callid: phone.callid });
    }
    return phone.callid;
  }

  function closeMedia() {
    if (localStream) localStream.stop();
    if (peercon) peercon.close();
    localStream = null;
    peercon = null;
    dtmfSender = null;
  }

  /** Ends the call: `local` when we hang up, otherwise the PBX said `bye`. */
  function endcall(local) {
    closeMedia();
    if (local) {
      doSend({ action: 'sip-bye', caller: phone.callDir === 'caller' ? 'true' : 'false', callid: phone.callid });
    }
    phone.ended = local ? 'local' : 'remote';
    phone.callDir = 'none';
    return true;
  }

  function holdcall() {
    closeMedia();
    doSend({ action: 'wrtc-hold', callid: phone.callid, holdcmd: 'sendonly', calldir: phone.callDir === 'caller' ? 'caller' : 'callee' });
    return true;
  }

  function resumecall() {
    return makecall('', true);
  }

  function transfer(to) {
    doSend({ action: 'blind-transfer2', id: phone.callid, from: phone.extension, to });
    return true;
  }

  function dtmf(keys) {
    if (!dtmfSender || !dtmfSender.canInsertDTMF) return false;
    dtmfSender.insertDTMF(keys, 160, 80);
    return true;
  }

  // --- Test hooks and the form -----------------------------------------------------------

  /** Packets and audio energy received on the current peer connection. */
  async function audioStats() {
    const result = { connection: peercon ? peercon.connectionState : 'none', packetsReceived: 0, audioEnergy: 0 };
    if (!peercon) return result;
    (await peercon.getStats()).forEach((report) => {
      if (report.type === 'inbound-rtp' && report.kind === 'audio') {
        result.packetsReceived = report.packetsReceived || 0;
        result.audioEnergy = report.totalAudioEnergy || 0;
      }
    });
    return result;
  }

  window.sample = {
    login,
    call: (number) => makecall(number),
    hangup: () => endcall(true),
    hold: holdcall,
    resume: resumecall,
    dtmf,
    transfer,
    audioStats,
    state: () => ({
      socket: socket ? socket.readyState : null,
      connection: peercon ? peercon.connectionState : 'none',
      callid: phone.callid,
      callDir: phone.callDir,
      ended: phone.ended,
    }),
    frames: () => frames.slice(),
  };

  function bind() {
    $('domain').value = params.get('domain') || location.hostname;
    const run = (promise) => Promise.resolve(promise).catch((error) => note(String(error)));
    $('login').onclick = () => run(login($('ext').value, $('password').value, $('domain').value));
    $('call').onclick = () => run(makecall($('number').value));
    $('hangup').onclick = () => endcall(true);
    $('hold').onclick = holdcall;
    $('resume').onclick = () => run(resumecall());
    $('dtmf').onclick = () => dtmf($('keys').value);
    $('transfer').onclick = () => transfer($('target').value);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', bind);
  else bind();
})();
