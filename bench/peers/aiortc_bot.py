#!/usr/bin/env python3
"""A Vodia PBX answering bot built on aiortc: the Python peer of `callbot bench --compare`.

For every --extension it logs in (third-party login), opens the PBX websocket, registers, and then
answers every incoming call: it plays --prompt in a loop and records the call to
<record-dir>/<callid>.wav. Protocol references (§n) are to docs/protocol.md.

Recording: stereo, 8 kHz, 16-bit, on one timeline paced by what we send (left = the caller,
right = us; received audio placed by RTP timestamp), like callbot's own recorder. Whatever the
codec, received audio is resampled to 8 kHz.

DTMF: not supported. aiortc has no telephone-event codec (aiortc.codecs.CODECS lists only
Opus, G.722, PCMU and PCMA), so its answer never negotiates RFC 4733 and its receiver drops
packets of payload types it did not negotiate; there is nothing to echo back.

stdout lines (flushed): `READY <ext>`, `ANSWERED <callid>`, `ENDED <callid>`. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fractions
import json
import logging
import os
import random
import signal
import ssl
import sys
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

log = logging.getLogger("aiortc_bot")

RATE = 8000  # the prompt and the recording run at 8 kHz mono 16-bit
FRAME_SAMPLES = RATE // 50  # 20 ms (§7: ptime 20)
FRAME_BYTES = FRAME_SAMPLES * 2
KEEPALIVE_SECS = 30  # §2
WRITE_DELAY = 5 * FRAME_BYTES  # the recording is written 100 ms behind what we send
MAX_SKEW = 2 * RATE  # received audio this far ahead of the timeline re-anchors it (samples)
# §3: flat frames carry one of these keys; they are checked in this order, before `action`.
RESERVED_KEYS = ("sdp", "invitesdp", "candidate", "bye", "ringtones", "response", "cancel",
                 "cancelresponse", "info", "change")


FATAL_BEFORE_READY = (PermissionError, aiohttp.ClientResponseError,
                      aiohttp.ClientConnectorCertificateError)

_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Any) -> None:
    """Run a coroutine in the background, holding a reference until it is done (asyncio docs)."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def say(line: str) -> None:
    print(line, flush=True)


def present(value: Any) -> bool:
    """§3: a reserved key counts when present with a non-empty, non-false value."""
    return value not in (None, False, "", "false", {}, [])


def frame_kind(msg: dict[str, Any]) -> str:
    for key in RESERVED_KEYS:
        if present(msg.get(key)):
            return key
    return str(msg.get("action", ""))


def sdp_of(value: Any) -> tuple[str, str]:
    """§3: `sdp` values are a string or {"type":…,"sdp":…}; returns (type, sdp)."""
    if isinstance(value, dict):
        return str(value.get("type", "offer")), str(value.get("sdp", ""))
    return "offer", str(value)


def load_prompt(path: str) -> list[bytes]:
    """Decode any audio file into 20 ms chunks of 8 kHz mono s16, shared by every call."""
    pcm = bytearray()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                pcm += bytes(out.planes[0])[: out.samples * 2]
    for out in resampler.resample(None):
        pcm += bytes(out.planes[0])[: out.samples * 2]
    if not pcm:
        raise ValueError(f"{path}: no audio")
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [bytes(pcm[i:i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)]


class Recorder:
    """Both directions on one timeline (left = the caller, right = us), like callbot's recorder.

    The timeline advances with the frames we send ("now"). Received audio is placed by its RTP
    timestamp relative to an anchor (the first frame lands at "now"), so network jitter and
    lost packets do not shift it; samples are written WRITE_DELAY behind "now" so late packets
    still land in place. Audio later than that, or a timestamp jump, re-anchors at "now".
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wav: wave.Wave_write | None = wave.open(str(path), "wb")
        self.wav.setnchannels(2)
        self.wav.setsampwidth(2)
        self.wav.setframerate(RATE)
        self.local = bytearray()  # sent, not yet written: timeline [written, now)
        self.remote = bytearray()  # received, from timeline position `written` on (gaps = 0)
        self.written = self.now = 0  # timeline positions, in samples
        self.anchor: tuple[int, int] | None = None  # (RTP time in 8 kHz samples, position)
        self.next_pos: int | None = None  # where the next contiguous received frame goes
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self.task: asyncio.Task[None] | None = None

    def listen(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.create_task(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()  # decoded by aiortc (PCMU 8 kHz, Opus 48 kHz stereo…)
                if (isinstance(frame, av.AudioFrame) and frame.pts is not None
                        and frame.time_base is not None):
                    rtp = int(frame.pts * frame.time_base * RATE)
                    pcm = b"".join(bytes(out.planes[0])[: out.samples * 2]
                                   for out in self.resampler.resample(frame))
                    self.on_received(rtp, pcm)
        except MediaStreamError:
            pass

    def on_received(self, rtp: int, pcm: bytes) -> None:
        pos = None if self.anchor is None else self.anchor[1] + rtp - self.anchor[0]
        if pos is None or pos < self.written or pos > self.now + MAX_SKEW:
            self.anchor, pos = (rtp, self.now), self.now
        elif self.next_pos is not None and abs(pos - self.next_pos) < FRAME_SAMPLES // 2:
            pos = self.next_pos  # contiguous: ignore the resampler's sample or two of slack
        self.next_pos = pos + len(pcm) // 2
        offset = (pos - self.written) * 2
        if len(self.remote) < offset + len(pcm):
            self.remote += bytes(offset + len(pcm) - len(self.remote))
        self.remote[offset:offset + len(pcm)] = pcm

    def on_sent(self, local: bytes) -> None:
        self.local += local
        self.now += len(local) // 2
        while len(self.local) >= WRITE_DELAY + FRAME_BYTES:
            self._write(FRAME_BYTES)

    def _write(self, size: int) -> None:
        right = bytes(self.local[:size])
        left = bytes(self.remote[:size]).ljust(size, b"\0")
        del self.local[:size], self.remote[:size]
        self.written += size // 2
        out = bytearray(size * 2)  # interleave 16-bit samples: L0 R0 L1 R1 …
        out[0::4], out[1::4] = left[0::2], left[1::2]
        out[2::4], out[3::4] = right[0::2], right[1::2]
        if self.wav is not None:
            self.wav.writeframesraw(out)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.wav is not None:
            self._write(len(self.local))  # what is left of the timeline
            empty = self.wav.getnframes() == 0
            self.wav.close()  # patches the header lengths
            self.wav = None
            if empty:  # cancelled, or no media ever flowed: leave no empty file behind
                self.path.unlink(missing_ok=True)


class PromptTrack(MediaStreamTrack):
    """Plays the prompt in a loop, paced in real time like aiortc's own AudioStreamTrack."""

    kind = "audio"

    def __init__(self, chunks: list[bytes], recorder: Recorder) -> None:
        super().__init__()
        self.chunks, self.recorder = chunks, recorder
        self.index, self.pts = 0, 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        else:
            self.pts += FRAME_SAMPLES
            delay = self.start + self.pts / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        chunk = self.chunks[self.index]
        self.index = (self.index + 1) % len(self.chunks)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(chunk)
        frame.pts, frame.sample_rate = self.pts, RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self.recorder.on_sent(chunk)
        return frame


class Call:
    """One inbound call (§6 Inbound): its peer connection, recording and queued candidates."""

    def __init__(self, ext: Extension, callid: str, cseq: Any) -> None:
        self.ext, self.callid, self.cseq = ext, callid, cseq
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: LAN/loopback only
        self.recorder = Recorder(ext.bot.record_dir / f"{callid}.wav")
        self.mid: str | None = None
        self.remote_set = False
        self.pending: list[dict[str, Any]] = []  # §5: candidates can arrive before the offer
        self.ended = False
        self.pc.on("track", self.recorder.listen)
        self.pc.on("connectionstatechange", self._on_state)

    async def _on_state(self) -> None:
        if self.pc.connectionState == "failed":
            log.warning("%s: media failed", self.callid)
            await self.end(send_bye=True)

    async def answer(self, offer: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            # §5/§7: candidates refer to the one audio m-line (index 0, its mid if any).
            self.mid = self.pc.getTransceivers()[0].mid
            self.remote_set = True
            for msg in self.pending:
                await self.add_candidate(msg)
            self.pending.clear()
            self.pc.addTrack(PromptTrack(self.ext.bot.prompt, self.recorder))
            # aiortc gathers all its candidates in setLocalDescription, so the answer holds them
            # and there is nothing to trickle afterwards.
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as err:  # noqa: BLE001 - a bad offer: 488 (§4 sip-busy)
            log.warning("%s: cannot answer: %s", self.callid, err)
            if not self.ended:
                await self.ext.send({"action": "sip-busy", "callid": self.callid,
                                     "cseq": self.cseq, "code": 488})
                await self.end(send_bye=False)
            return
        if self.ended:  # hung up while we were gathering
            return
        desc = self.pc.localDescription
        await self.ext.send({"action": "sdp-200ok", "callid": self.callid, "cseq": self.cseq,
                             "sdp": {"type": desc.type, "sdp": desc.sdp}})
        say(f"ANSWERED {self.callid}")
        log.info("%s: answered with %s", self.callid,
                 next((ln for ln in desc.sdp.splitlines() if ln.startswith("a=rtpmap:")), "?"))

    async def reoffer(self, offer: str, cseq: Any) -> None:
        """§5: be ready for mid-call re-offers (hold, media changes) and answer them."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as err:  # noqa: BLE001
            log.warning("%s: re-offer refused: %s", self.callid, err)
            return
        desc = self.pc.localDescription
        await self.ext.send({"action": "sdp-200ok", "callid": self.callid, "cseq": cseq,
                             "sdp": {"type": desc.type, "sdp": desc.sdp}})

    async def add_candidate(self, msg: dict[str, Any]) -> None:
        if not self.remote_set:
            self.pending.append(msg)
            return
        value = msg["candidate"]
        line = value.get("candidate", "") if isinstance(value, dict) else str(value)
        line = line.strip()
        if line.startswith("a="):
            line = line[2:]
        if line.startswith("candidate:"):
            line = line[len("candidate:"):]
        if not line:
            return  # end-of-candidates
        bits = line.split()
        if len(bits) < 8:
            log.debug("%s: bad candidate %r", self.callid, line)
            return
        # §5: `adr:[[ip,port]…]` means one candidate per pair, replacing address and port
        # (the 5th and 6th fields of the candidate line).
        pairs = msg.get("adr") or [[bits[4], bits[5]]]
        for ip, port in pairs:
            bits[4], bits[5] = str(ip), str(port)
            try:
                cand = candidate_from_sdp(" ".join(bits))
            except (AssertionError, ValueError, IndexError):
                log.debug("%s: bad candidate %r", self.callid, line)
                return
            cand.sdpMid, cand.sdpMLineIndex = self.mid, 0  # one audio m-line (§7)
            log.debug("%s: remote candidate %s:%s", self.callid, cand.ip, cand.port)
            await self.pc.addIceCandidate(cand)

    async def end(self, send_bye: bool) -> None:
        if self.ended:
            return
        self.ended = True
        self.ext.calls.pop(self.callid, None)
        if send_bye:  # §4: we are never the caller here
            await self.ext.send({"action": "sip-bye", "callid": self.callid, "caller": "false"})
        await self.pc.close()
        self.recorder.close()
        say(f"ENDED {self.callid}")


class Extension:
    """One websocket connection registered as an extension (§1, §2, §6 bootstrap)."""

    def __init__(self, bot: Bot, number: str) -> None:
        self.bot, self.number = bot, number
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.calls: dict[str, Call] = {}
        self.early: dict[str, list[dict[str, Any]]] = {}  # candidates before their invitesdp
        self.ready = False
        self.reregister: asyncio.TimerHandle | None = None

    async def send(self, msg: dict[str, Any]) -> None:
        if self.ws is not None and not self.ws.closed:
            try:
                await self.ws.send_str(json.dumps(msg))
            except ConnectionError as err:
                log.warning("%s: send failed: %s", self.number, err)

    async def login(self) -> str:
        """§1 third-party login: admin mints a one-time token, the token becomes a session."""
        url = self.bot.base_url + "rest/system/session"
        http = self.bot.http
        body = {"name": "3rd", "username": self.number, "domain": self.bot.domain}
        async with http.post(url, json=body, headers=self.bot.admin_auth) as resp:
            resp.raise_for_status()
            text = (await resp.text()).strip()
        token = _token(text, ("session", "value", "token"))
        if not token:
            raise PermissionError(f"third-party login for {self.number} refused: {text!r}")
        async with http.post(url, json={"name": "session", "value": token}) as resp:
            resp.raise_for_status()
            cookie = resp.cookies.get("session")
            text = (await resp.text()).strip()
        session = cookie.value if cookie is not None else _token(text, ("session", "value"))
        if not session:
            raise PermissionError(f"no session for {self.number}: {text!r}")
        return session

    async def run(self) -> None:
        """Connect, serve, and reconnect with exponential backoff and jitter (§6 Reconnect)."""
        backoff = 1.0
        while not self.bot.stopping.is_set():
            try:
                await self.serve(await self.login())
                backoff = 1.0
            except (aiohttp.ClientError, OSError, PermissionError) as err:
                log.warning("%s: %s", self.number, err)
                if not self.ready and isinstance(err, FATAL_BEFORE_READY):
                    # A refused login or an untrusted certificate will not heal by retrying:
                    # fail fast so whoever waits for READY learns at once.
                    log.error("%s: giving up", self.number)
                    self.bot.exit_code = 2
                    self.bot.stopping.set()
            # Choice: a call whose signalling socket died is ended locally (its bye can no
            # longer reach us) instead of being reconciled from the next call-state.
            for call in list(self.calls.values()):
                await call.end(send_bye=False)
            if self.bot.stopping.is_set():
                break
            delay = min(60.0, backoff) * random.uniform(0.8, 1.2)
            backoff *= 2
            try:
                await asyncio.wait_for(self.bot.stopping.wait(), delay)
            except TimeoutError:
                pass

    async def serve(self, session: str) -> None:
        base = self.bot.base_url
        url = (base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
               + f"websocket?domain={self.bot.domain}&user={self.number}")
        headers = {"Cookie": f"session={session}", "Origin": base.rstrip("/")}
        async with self.bot.http.ws_connect(url, headers=headers, max_msg_size=0) as ws:
            self.ws = ws
            own = {"subscribe": True}
            for msg in ({"action": "avoid-disconnect"}, {"action": "own-calls", **own},
                        {"action": "orbit-calls", **own}, {"action": "blf", "add": [self.number]},
                        {"action": "ringtones"}, {"action": "domain-calls", **own}):
                await self.send(msg)
            await self.register()
            timers = [asyncio.create_task(self.keepalive())]
            try:
                async for wsmsg in ws:
                    if wsmsg.type != aiohttp.WSMsgType.TEXT:
                        break  # §2: no binary frames; CLOSE/ERROR ends the connection
                    try:
                        msg = json.loads(wsmsg.data)
                    except json.JSONDecodeError:
                        continue
                    if not isinstance(msg, dict):
                        continue
                    try:
                        await self.dispatch(msg)
                    except Exception:  # noqa: BLE001 - one bad frame must not end the socket
                        log.exception("%s: frame %.200s failed", self.number, wsmsg.data)
            finally:
                for t in timers:
                    t.cancel()
                if self.reregister is not None:
                    self.reregister.cancel()
                self.ws = None
        log.info("%s: socket closed", self.number)

    async def register(self) -> None:
        await self.send({"action": "sip-register", "useragent": "aiortc-bot/1.0"})

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECS)
            await self.send({"action": "avoid-disconnect"})

    async def dispatch(self, msg: dict[str, Any]) -> None:
        kind = frame_kind(msg)
        callid = str(msg.get("callid", ""))
        call = self.calls.get(callid)
        if kind == "invitesdp":
            await self.incoming(msg, callid)
        elif kind == "candidate":
            if call is not None:
                await call.add_candidate(msg)
            elif callid:
                self.early.setdefault(callid, []).append(msg)
            elif self.calls:  # no callid: choice: the newest call
                await list(self.calls.values())[-1].add_candidate(msg)
        elif kind == "bye":  # remote hang-up (§6): confirm, then tear down
            await self.send({"action": "bye-response", "callid": msg.get("callid"),
                             "cseq": msg.get("cseq")})
            self.early.pop(callid, None)
            if call is not None:
                await call.end(send_bye=False)
        elif kind == "cancel":  # caller gave up before the answer
            await self.send({"action": "cancel-response", "callid": msg.get("callid"),
                             "cseq": msg.get("cseq")})
            self.early.pop(callid, None)
            if call is not None:
                await call.end(send_bye=False)
        elif kind == "sdp" and call is not None:
            typ, sdp = sdp_of(msg["sdp"])
            if typ == "offer":
                spawn(call.reoffer(sdp, msg.get("cseq")))
        elif kind == "sip-register" and present(msg.get("add")):
            if not self.ready:
                self.ready = True
                say(f"READY {self.number}")
            # §2: refresh at max(30, min(expires/2, expires-15)) seconds.
            expires = float(msg.get("expires") or 0)
            if expires > 0:
                if self.reregister is not None:
                    self.reregister.cancel()
                refresh = max(30.0, min(expires / 2, expires - 15))
                self.reregister = asyncio.get_running_loop().call_later(
                    refresh, lambda: spawn(self.register()))
        else:
            log.debug("%s: ignored %s frame", self.number, kind or "unknown")

    async def incoming(self, msg: dict[str, Any], callid: str) -> None:
        """§6 Inbound: ring at once, answer in a task so other calls' frames keep flowing."""
        if not callid or callid in self.calls:
            return
        await self.send({"action": "sip-ringing", "callid": callid, "cseq": msg.get("cseq")})
        _, offer = sdp_of(msg["invitesdp"])
        call = Call(self, callid, msg.get("cseq"))
        self.calls[callid] = call
        call.pending.extend(self.early.pop(callid, []))
        spawn(call.answer(offer))


def _token(text: str, keys: tuple[str, ...]) -> str:
    """§1: a reply body is plain text, a JSON string, or an object with one of `keys`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, dict):
        return next((str(value[k]) for k in keys if present(value.get(k))), "")
    return str(value) if isinstance(value, str) else ""


class Bot:
    def __init__(self, args: argparse.Namespace) -> None:
        self.base_url = args.url if args.url.endswith("/") else args.url + "/"
        self.domain: str = args.domain
        self.record_dir = Path(args.record_dir)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        self.prompt = load_prompt(args.prompt)
        admin = f"{args.admin_user}:{os.environ.get('PBX_ADMIN_PASSWORD', '')}"
        self.admin_auth = {"Authorization": "Basic " + base64.b64encode(admin.encode()).decode()}
        self.stopping = asyncio.Event()
        self.exit_code = 0
        if args.insecure:
            self.tls: ssl.SSLContext | bool = False
        else:
            self.tls = ssl.create_default_context(cafile=args.ca_file)
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.tls, limit=0),
            cookie_jar=aiohttp.DummyCookieJar())  # we pass the session cookie ourselves
        self.extensions = [Extension(self, n) for n in args.extension]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        tasks = [asyncio.create_task(e.run()) for e in self.extensions]
        await self.stopping.wait()
        # Clean exit: hang up every call (finishing its recording), then close the sockets.
        for ext in self.extensions:
            await asyncio.gather(*(c.end(send_bye=True) for c in list(ext.calls.values())))
            if ext.ws is not None:
                await ext.ws.close()
        await asyncio.wait(tasks, timeout=5)
        await self.http.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="PBX base URL, https://host:port/")
    p.add_argument("--domain", required=True)
    p.add_argument("--extension", action="append", required=True, help="repeat for more")
    p.add_argument("--prompt", required=True, help="audio file played in a loop to callers")
    p.add_argument("--record-dir", required=True)
    p.add_argument("--admin-user", default="admin", help="password: $PBX_ADMIN_PASSWORD")
    p.add_argument("--insecure", action="store_true", help="do not check the PBX certificate")
    p.add_argument("--ca-file", help="trust this CA (PEM) for the PBX")
    p.add_argument("--media-address", action="append",
                   help="host candidate address; repeat for more (default: every interface "
                        "but loopback, aioice's choice)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.WARNING)  # not aiortc's own logs
    if args.media_address:
        # aioice has no setting for this; replacing its address lookup is the usual way.
        addresses = list(args.media_address)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: addresses

    async def start() -> int:
        bot = Bot(args)
        await bot.run()
        return bot.exit_code

    sys.exit(asyncio.run(start()))


if __name__ == "__main__":
    main()
