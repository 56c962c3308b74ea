// The callbot dashboard: reads /api/status (twice a second) and /api/calls, draws bots, live
// calls, the campaign and recent calls with their recordings. Read-only: it changes nothing.
// Every value from the daemon is put on the page as text, never as HTML (caller names come
// from the wire).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'callbot-dashboard-token';
  const S = { token: '', status: null, calls: [], totalCalls: -1, needToken: false, errors: 0 };

  // A link may carry the token in its fragment (never sent to the server); keep it for this tab.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, '', location.pathname + location.search);
  }
  S.token = sessionStorage.getItem(TOKEN_KEY) || '';

  async function api(path) {
    const headers = S.token ? { Authorization: `Bearer ${S.token}` } : {};
    const response = await fetch(path, { headers, cache: 'no-store' });
    if (response.status === 401) {
      S.needToken = true;
      throw new Error('token');
    }
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    S.needToken = false;
    return response.json();
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const cell of cells) {
      const td = document.createElement('td');
      if (cell instanceof Node) td.append(cell);
      else if (cell && typeof cell === 'object') {
        td.append(cell.node || document.createTextNode(cell.text ?? ''));
        if (cell.num) td.className = 'num';
      } else td.textContent = cell ?? '';
      tr.append(td);
    }
    return tr;
  }

  function empty(tbody, columns, text) {
    const tr = el('tr', null, 'empty');
    const td = el('td', text);
    td.colSpan = columns;
    tr.append(td);
    tbody.replaceChildren(tr);
  }

  function clock(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const m = Math.floor(s / 60);
    return m >= 60 ? `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`
      : `${m}:${String(s % 60).padStart(2, '0')}`;
  }

  function ago(atMs) {
    if (!S.status) return '';
    const s = Math.round((S.status.now_ms - atMs) / 1000);
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    return new Date(atMs).toLocaleString();
  }

  function noted(note, className) {
    const box = document.createElement('div');
    if (!note) return box;
    box.append(el('div', note.text, className), el('div', ago(note.at_ms), 'when'));
    return box;
  }

  function badge(text, kind) {
    return el('span', text, `badge ${kind || ''}`);
  }

  function drawBots(status) {
    const tbody = $('bots').tBodies[0];
    tbody.replaceChildren(...status.bots.map((bot) => {
      const link = badge(bot.connection, bot.registered ? 'ok' : 'bad');
      const script = document.createElement('div');
      script.append(el('div', `${bot.reloads} reload(s), ${bot.script_errors} error(s)`));
      if (bot.last_reload) {
        script.append(noted({ ...bot.last_reload, text: bot.last_reload_failed ? `reload failed: ${bot.last_reload.text}` : 'reloaded' },
          bot.last_reload_failed ? 'error' : 'when'));
      }
      if (bot.last_script_error) script.append(noted(bot.last_script_error, 'error'));
      const presence = bot.clients_known ? `${bot.clients_online}/${bot.clients_known} online` : '—';
      return row([
        el('b', bot.name), bot.extension, link, presence,
        { text: `${bot.active_calls} / ${bot.total_calls}`, num: true },
        script, noted(bot.last_error, 'error'),
      ]);
    }));
  }

  /** The far end's loudness: a bar from -70 dBFS (silence) to 0 (full scale), and the number. */
  function level(dbfs) {
    const box = el('div', null, 'level');
    const meter = el('div', null, 'meter');
    const bar = el('div');
    const width = dbfs == null ? 0 : Math.max(0, Math.min(100, (dbfs + 70) / 70 * 100));
    bar.style.width = `${width}%`;
    meter.title = 'what the bot hears';
    meter.dataset.dbfs = dbfs == null ? '' : dbfs.toFixed(1);
    meter.append(bar);
    box.append(meter, el('span', dbfs == null ? '—' : `${Math.round(dbfs)} dB`));
    return box;
  }

  function drawLive(status) {
    const tbody = $('live').tBodies[0];
    const calls = status.bots.flatMap((bot) => bot.calls.map((call) => ({ bot: bot.name, ...call })));
    $('live-count').textContent = calls.length ? `(${calls.length})` : '';
    if (!calls.length) return empty(tbody, 9, 'No calls right now');
    tbody.replaceChildren(...calls.map((call) => {
      const expected = call.packets_received + call.packets_lost;
      const loss = expected ? `${(100 * call.packets_lost / expected).toFixed(1)} %` : '—';
      const duration = call.talk_ms != null ? clock(call.talk_ms) : `ringing ${clock(call.age_ms)}`;
      const from = call.from_name ? `${call.from} (${call.from_name})` : call.from;
      const tr = row([
        call.bot, from, call.to, badge(call.state || 'SETUP', call.state === 'IN_CALL' ? 'ok' : 'warn'),
        { text: duration, num: true }, call.codec || '—', { text: loss, num: true },
        { text: `${call.jitter_ms.toFixed(1)} ms`, num: true }, level(call.level_dbfs),
      ]);
      tr.dataset.call = call.id;
      return tr;
    }));
  }

  function drawCampaign(status) {
    const campaign = status.campaign;
    $('campaign-card').hidden = !campaign;
    if (!campaign) return;
    $('campaign-bot').textContent = `via ${campaign.bot}${campaign.finished ? ' · finished' : ''}`;
    $('campaign-bar').style.width = `${campaign.total ? 100 * campaign.done / campaign.total : 0}%`;
    const states = Object.entries(campaign.by_state).map(([state, n]) => `${n} ${state}`).join(', ');
    const eta = campaign.finished ? '' : campaign.eta_secs == null ? ' · ETA after the first call'
      : ` · ETA ${clock(campaign.eta_secs * 1000)}`;
    $('campaign-text').textContent =
      `${campaign.done}/${campaign.total} done · ${campaign.active} active · ${campaign.failed} failed${eta}${states ? ` · ${states}` : ''}`;
  }

  // Waveforms are drawn once per recording; the canvas keeps them across redraws.
  const waveforms = new Map();

  function drawWaveform(canvas, waveform, played) {
    const ctx = canvas.getContext('2d');
    const { width, height } = canvas;
    ctx.clearRect(0, 0, width, height);
    const lanes = waveform.peaks.length;
    const colours = ['#4aa3ff', '#2fbf71'];
    waveform.peaks.forEach((peaks, lane) => {
      const top = lane * height / lanes;
      const mid = top + height / lanes / 2;
      const scale = height / lanes / 2;
      ctx.fillStyle = colours[lane % colours.length];
      peaks.forEach(([low, high], x) => {
        const px = x * width / peaks.length;
        ctx.globalAlpha = px / width < played ? 1 : 0.55;
        ctx.fillRect(px, mid - high * scale, Math.max(1, width / peaks.length), Math.max(1, (high - low) * scale));
      });
    });
    ctx.globalAlpha = 1;
  }

  function recording(file) {
    const box = el('div', null, 'recording');
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 48;
    canvas.title = 'left: the far end · right: the bot';
    const audio = document.createElement('audio');
    audio.controls = true;
    audio.preload = 'metadata';
    audio.src = file.url;
    audio.dataset.name = file.name;
    box.append(canvas, audio);
    let waveform = waveforms.get(file.name);
    const redraw = () => waveform && drawWaveform(canvas, waveform, audio.duration ? audio.currentTime / audio.duration : 0);
    if (waveform) redraw();
    else {
      api(`${file.waveform}?buckets=${canvas.width}`).then((w) => {
        waveform = w;
        waveforms.set(file.name, w);
        canvas.dataset.drawn = '1';
        redraw();
      }).catch(() => { canvas.title = 'no waveform'; });
    }
    audio.addEventListener('timeupdate', redraw);
    canvas.addEventListener('click', (ev) => {
      if (!audio.duration) return;
      audio.currentTime = audio.duration * ev.offsetX / canvas.clientWidth;
      audio.play();
    });
    return box;
  }

  function drawRecent() {
    const tbody = $('recent').tBodies[0];
    // A recording being played is never redrawn away.
    if ([...tbody.querySelectorAll('audio')].some((a) => !a.paused)) return;
    if (!S.calls.length) return empty(tbody, 7, 'No finished calls yet');
    tbody.replaceChildren(...S.calls.map((call) => {
      const outcome = [call.state, call.reason, call.code].filter((x) => x != null).join(' · ');
      const files = el('div');
      for (const file of call.recordings) files.append(recording(file));
      const ended = call.end ? new Date(call.end).toLocaleTimeString() : '';
      const tr = row([
        ended, call.bot, `${call.from} → ${call.to}`,
        badge(outcome, call.state === 'COMPLETED' ? 'ok' : 'warn'),
        { text: clock(call.duration_ms || 0), num: true },
        [call.digits, call.result].filter(Boolean).join(' · '), files,
      ]);
      tr.dataset.call = call.call_id;
      return tr;
    }));
  }

  function drawHeader(status) {
    const registered = status.bots.filter((b) => b.registered).length;
    const live = status.bots.reduce((n, b) => n + b.active_calls, 0);
    $('summary').textContent =
      `v${status.version} · ${registered}/${status.bots.length} bots registered · ${live} live call(s) · up ${clock(status.now_ms - status.started_ms)}`;
    const pill = $('connection');
    pill.textContent = status.ready ? 'ready' : 'not ready';
    pill.className = `pill ${status.ready ? 'ok' : 'bad'}`;
  }

  async function refreshRecent() {
    const body = await api('api/calls?limit=30');
    S.calls = body.calls;
    drawRecent();
  }

  async function tick() {
    try {
      const status = await api('api/status');
      S.status = status;
      S.errors = 0;
      const total = status.bots.reduce((n, b) => n + b.total_calls - b.active_calls, 0);
      if (total !== S.totalCalls) {
        S.totalCalls = total;
        await refreshRecent();
      }
      drawHeader(status);
      drawCampaign(status);
      drawBots(status);
      drawLive(status);
    } catch (e) {
      S.errors += 1;
      const pill = $('connection');
      pill.textContent = S.needToken ? 'token needed' : 'daemon unreachable';
      pill.className = 'pill bad';
    }
    $('token-form').hidden = !S.needToken;
    $('main').hidden = S.needToken;
    setTimeout(tick, S.needToken ? 2000 : 500);
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    S.token = $('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, S.token);
    S.totalCalls = -1;
  });

  // For tests and curious people: the latest data the page drew.
  window.dashboard = {
    status: () => S.status,
    calls: () => S.calls,
    needsToken: () => S.needToken,
  };
  tick();
})();
