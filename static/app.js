// exai dashboard. Dependency-free; the only library is the vendored uPlot.
//
// Data flow: a WebSocket to /ws/dashboard delivers `snapshot` (on every connect), then
// `event`, `stats` (1 s), `health` (on change), `lagged` and `resync` messages. Charts are
// first loaded from /api/metrics/timeseries and then extended with every stats tick; after a
// reconnect or a `resync` they are reloaded from history, so the gap is filled.
'use strict';

(function () {
  const HISTORY_WINDOW_MS = 60 * 60 * 1000; // charts show the last hour
  const MAX_LOG_ROWS = 500;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 10000;
  const STALE_INSTANCE_MS = 15000;

  // --- token ------------------------------------------------------------------------------
  const params = new URLSearchParams(location.search);
  let token = params.get('token') || sessionStorage.getItem('exai.dashboard.token') || '';
  if (token) sessionStorage.setItem('exai.dashboard.token', token);

  function askToken() {
    const t = window.prompt('Dashboard token (EXAI_DASHBOARD_TOKEN):');
    if (t) {
      sessionStorage.setItem('exai.dashboard.token', t);
      const url = new URL(location.href);
      url.searchParams.set('token', t);
      location.replace(url.toString());
    }
  }

  async function api(path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    const resp = await fetch(path, { headers, cache: 'no-store' });
    if (resp.status === 401) { askToken(); throw new Error('unauthorized'); }
    if (!resp.ok) throw new Error(path + ': HTTP ' + resp.status);
    return resp.json();
  }

  // --- helpers ----------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    if (typeof n !== 'number') return String(n);
    const d = digits === undefined ? (Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2) : digits;
    return n.toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: 0 });
  }
  function bytes(n) {
    if (n === null || n === undefined) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return fmt(n, 1) + ' ' + units[i];
  }
  function time(ts) {
    const d = new Date(ts);
    return d.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }
  function ago(iso) {
    if (!iso) return '–';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 60 ? fmt(s, 0) + ' s ago' : s < 3600 ? fmt(s / 60, 0) + ' min ago' : new Date(iso).toLocaleString();
  }
  function setDl(id, pairs) {
    const dl = $(id);
    dl.replaceChildren();
    for (const [k, v] of pairs) { dl.append(el('dt', k), el('dd', v)); }
  }
  function fillTable(id, rows) {
    const tbody = document.querySelector('#' + id + ' tbody');
    tbody.replaceChildren(...rows);
  }
  function cell(text, cls) { return el('td', text, cls); }

  // --- state ------------------------------------------------------------------------------
  const state = {
    instance: null,
    health: null,
    stats: null,
    instances: new Map(), // instance -> latest stats (other instances)
    seen: new Set(),      // event ids in the log
    lastEventTs: 0,
    connected: false,
    lagged: 0,
  };
  window.__exai = { state };

  // --- charts -----------------------------------------------------------------------------
  // Each chart holds [xs(seconds), ...series]; history points come first, live points after.
  const series = {
    rate: { x: [], events: [], requests: [], errors: [] },
    latency: { x: [], p50: [], p95: [], p99: [] },
  };
  let rateChart = null;
  let latencyChart = null;

  function chartWidth(id) { return Math.max(300, $(id).clientWidth || 500); }

  function makeCharts() {
    const axes = [{ stroke: '#8593a3', grid: { stroke: '#263241' }, ticks: { stroke: '#263241' } },
                  { stroke: '#8593a3', grid: { stroke: '#263241' }, ticks: { stroke: '#263241' }, size: 55 }];
    rateChart = new uPlot({
      width: chartWidth('chart-rate'), height: 220, axes,
      scales: { x: { time: true } },
      series: [{}, { label: 'events/s', stroke: '#58a6ff', width: 1.5, points: { show: false } },
               { label: 'requests/s', stroke: '#3fb950', width: 1.5, points: { show: false } },
               { label: 'errors/s', stroke: '#f85149', width: 1.5, points: { show: false } }],
    }, [[], [], [], []], $('chart-rate'));
    latencyChart = new uPlot({
      width: chartWidth('chart-latency'), height: 220, axes,
      scales: { x: { time: true } },
      series: [{}, { label: 'p50', stroke: '#3fb950', width: 1.5, points: { show: false } },
               { label: 'p95', stroke: '#d29922', width: 1.5, points: { show: false } },
               { label: 'p99', stroke: '#f85149', width: 1.5, points: { show: false } }],
    }, [[], [], [], []], $('chart-latency'));
    window.__exai.charts = { rate: rateChart, latency: latencyChart };
    window.addEventListener('resize', () => {
      rateChart.setSize({ width: chartWidth('chart-rate'), height: 220 });
      latencyChart.setSize({ width: chartWidth('chart-latency'), height: 220 });
    });
  }

  function trim(s, keys) {
    const cutoff = Date.now() / 1000 - HISTORY_WINDOW_MS / 1000;
    let n = 0;
    while (n < s.x.length && s.x[n] < cutoff) n++;
    if (n > 0) for (const k of keys) s[k].splice(0, n);
  }

  function redraw() {
    trim(series.rate, ['x', 'events', 'requests', 'errors']);
    trim(series.latency, ['x', 'p50', 'p95', 'p99']);
    if (rateChart) rateChart.setData([series.rate.x, series.rate.events, series.rate.requests, series.rate.errors]);
    if (latencyChart) latencyChart.setData([series.latency.x, series.latency.p50, series.latency.p95, series.latency.p99]);
  }

  // Loads the last hour per minute; live points newer than the last history bucket are kept.
  async function loadHistory() {
    const since = Date.now() - HISTORY_WINDOW_MS;
    let all, req;
    try {
      [all, req] = await Promise.all([
        api('/api/metrics/timeseries?bucket=1m&since=' + since),
        api('/api/metrics/timeseries?bucket=1m&type=provider.request&since=' + since),
      ]);
    } catch (e) {
      console.warn('history unavailable:', e.message);
      return;
    }
    const byTs = new Map();
    for (const p of all.points || []) byTs.set(p.ts, { events: p.count / 60, requests: 0, errors: 0, p: null });
    for (const p of req.points || []) {
      const row = byTs.get(p.ts) || { events: 0, requests: 0, errors: 0, p: null };
      row.requests = p.count / 60; row.errors = p.errors / 60; row.p = p;
      byTs.set(p.ts, row);
    }
    // Only complete minutes come from history; the current minute is drawn from live points
    // (kept from before a reconnect), so x stays sorted and nothing is counted twice.
    const currentMinute = Math.floor(Date.now() / 60000) * 60000;
    const tss = [...byTs.keys()].filter((ts) => ts < currentMinute).sort((a, b) => a - b);
    const liveFrom = currentMinute / 1000;
    const keep = (s, keys) => {
      const idx = s.x.findIndex((x) => x >= liveFrom);
      const out = {};
      for (const k of keys) out[k] = idx < 0 ? [] : s[k].slice(idx);
      return out;
    };
    const liveRate = keep(series.rate, ['x', 'events', 'requests', 'errors']);
    const liveLat = keep(series.latency, ['x', 'p50', 'p95', 'p99']);
    const r = { x: [], events: [], requests: [], errors: [] };
    const l = { x: [], p50: [], p95: [], p99: [] };
    for (const ts of tss) {
      const row = byTs.get(ts);
      // Plot each minute at its middle so it lines up with per-second live points.
      const x = ts / 1000 + 30;
      r.x.push(x); r.events.push(row.events); r.requests.push(row.requests); r.errors.push(row.errors);
      if (row.p) { l.x.push(x); l.p50.push(row.p.p50_ms); l.p95.push(row.p.p95_ms); l.p99.push(row.p.p99_ms); }
    }
    for (const k of Object.keys(r)) series.rate[k] = r[k].concat(liveRate[k]);
    for (const k of Object.keys(l)) series.latency[k] = l[k].concat(liveLat[k]);
    redraw();
  }

  // Fills the event log from the history API (after a reconnect or resync).
  async function loadRecentEvents() {
    try {
      const page = await api('/api/events?limit=200');
      addEvents((page.events || []).slice().reverse(), false);
    } catch (e) {
      console.warn('event history unavailable:', e.message);
    }
  }

  function pushLive(stats) {
    if (stats.instance !== state.instance) return;
    const x = stats.ts / 1000;
    const provs = Object.values(stats.providers || {});
    const sum = (k) => provs.reduce((a, p) => a + (p[k] || 0), 0);
    const worst = (k) => provs.reduce((a, p) => (p[k] === null || p[k] === undefined ? a : Math.max(a === null ? 0 : a, p[k])), null);
    const s = series.rate;
    s.x.push(x); s.events.push(stats.events ? stats.events.rate : 0); s.requests.push(sum('rate')); s.errors.push(sum('error_rate'));
    const l = series.latency;
    l.x.push(x); l.p50.push(worst('p50_ms')); l.p95.push(worst('p95_ms')); l.p99.push(worst('p99_ms'));
    redraw();
  }

  // --- rendering --------------------------------------------------------------------------
  function renderHealth(h) {
    if (!h) return;
    state.health = h;
    const pill = $('health-status');
    pill.dataset.status = h.status;
    pill.textContent = 'health ' + h.status;
    const actors = Object.entries(h.actors || {}).map(([name, a]) => {
      const tr = el('tr');
      tr.dataset.actor = name;
      tr.append(cell(name), cell(a.state, 'state-' + a.state), cell(a.restarts, 'num'),
        cell(a.last_error || '', 'err'), cell(a.last_restart_at ? ago(a.last_restart_at) : '–'));
      if (a.last_error) tr.children[3].title = a.last_error;
      return tr;
    });
    fillTable('actors', actors);
    const comps = Object.entries(h.components || {}).map(([name, c]) => {
      const tr = el('tr');
      tr.append(cell(name), cell(c.status, 'st-' + c.status));
      return tr;
    });
    fillTable('components', comps);
  }

  function renderStats(s) {
    state.stats = s;
    $('last-update').textContent = 'updated ' + time(s.ts);
    $('events-rate').textContent = fmt(s.events && s.events.rate);
    setDl('events-detail', [
      ['recorded', fmt(s.events && s.events.recorded, 0)],
      ['queued', fmt(s.events && s.events.queued, 0)],
      ['lost', fmt(s.events && s.events.dropped, 0)],
      ['dashboard lagged', fmt(state.lagged, 0)],
    ]);
    const c = s.cache || {};
    const ratio = c.window_hit_ratio !== null && c.window_hit_ratio !== undefined ? c.window_hit_ratio : c.hit_ratio;
    $('cache-ratio').textContent = ratio === undefined || ratio === null ? '–' : fmt(ratio * 100, 1) + ' %';
    setDl('cache-detail', [
      ['hits / misses', fmt(c.hits, 0) + ' / ' + fmt(c.misses, 0)],
      ['entries', fmt(c.entries, 0)],
      ['bytes', bytes(c.bytes)],
      ['evictions', fmt(c.evictions, 0)],
      ['L2', c.l2 === undefined ? '–' : String(c.l2)],
    ]);
    const ws = s.ws || {};
    $('ws-sessions').textContent = fmt(ws.sessions, 0);
    // MCP sessions and calls (issue 15), from /health's `mcp` component.
    const mcp = ((state.health || {}).components || {}).mcp || {};
    setDl('ws-detail', [
      ['dashboard sessions', fmt(ws.dashboard_sessions, 0)],
      ['MCP sessions', fmt(mcp.sessions, 0)],
      ['MCP calls', fmt(mcp.calls_in_flight, 0)],
      ['instances', String(1 + [...state.instances.keys()].length)],
    ]);
    const p = s.pipeline || {};
    $('pipeline-breaker').textContent = p.breaker || '–';
    $('pipeline-breaker').className = 'big st-' + (p.breaker || '');
    setDl('pipeline-detail', [
      ['buffered', fmt(p.buffered, 0) + (p.capacity ? ' / ' + fmt(p.capacity, 0) : '')],
      ['spilled', bytes(p.spilled_bytes) + ' (' + fmt(p.spilled, 0) + ' events)'],
      ['last flush', ago(p.last_successful_flush)],
      ['flushed', fmt(p.flushed, 0)],
      ['store', (s.store && s.store.backend ? s.store.backend + ' ' : '') + (s.store ? (s.store.reachable ? 'reachable' : 'unreachable') : '–')],
    ]);
    const provs = Object.entries(s.providers || {}).sort(([a], [b]) => a.localeCompare(b)).map(([name, pr]) => {
      const tr = el('tr');
      tr.append(cell(name + (pr.simulated ? ' (simulated)' : '')), cell(pr.status || '–', 'st-' + pr.status),
        breakerCell(pr), cell(fmt(pr.rate), 'num'), cell(fmt(pr.error_rate), 'num'),
        cell(fmt(pr.requests, 0), 'num'), cell(fmt(pr.errors, 0), 'num'), cell(fmt(pr.p50_ms), 'num'),
        cell(fmt(pr.p95_ms), 'num'), cell(fmt(pr.p99_ms), 'num'), cell(fmt(pr.in_flight, 0), 'num'));
      return tr;
    });
    fillTable('providers', provs);
    $('providers-empty').hidden = provs.length > 0;
    renderInstances();
  }

  // The provider-wide breaker, then each model breaker that is not closed, with its model.
  function breakerCell(pr) {
    const td = cell(pr.breaker || '–', 'st-' + pr.breaker);
    for (const mb of (pr.model_breakers || []).filter((b) => b.state !== 'closed')) {
      const wait = mb.retry_after_ms != null ? ' (' + Math.ceil(mb.retry_after_ms / 1000) + ' s)' : '';
      td.append(el('div', mb.model + ': ' + mb.state + wait, 'st-' + mb.state));
    }
    return td;
  }

  function renderInstances() {
    const now = Date.now();
    const rows = [];
    const all = [];
    if (state.stats) all.push(state.stats);
    for (const s of state.instances.values()) all.push(s);
    for (const s of all) {
      const provs = Object.values(s.providers || {});
      const req = provs.reduce((a, p) => a + (p.rate || 0), 0);
      const p99 = provs.reduce((a, p) => (p.p99_ms == null ? a : Math.max(a || 0, p.p99_ms)), null);
      const tr = el('tr');
      tr.dataset.instance = s.instance;
      const stale = now - s.ts > STALE_INSTANCE_MS;
      const status = s.health ? s.health.status : '–';
      tr.append(cell(s.instance + (s.instance === state.instance ? ' (this)' : '')), cell(stale ? 'stale' : status, 'st-' + (stale ? 'degraded' : status)),
        cell(fmt(s.events && s.events.rate), 'num'), cell(fmt(req), 'num'), cell(fmt(p99), 'num'), cell(time(s.ts)));
      rows.push(tr);
    }
    fillTable('instances', rows);
    $('instances-panel').hidden = state.instances.size === 0;
  }

  // --- event log --------------------------------------------------------------------------
  function matches(tr, filter) {
    return !filter || tr.dataset.search.includes(filter);
  }
  function addEvents(events, fresh) {
    if ($('log-pause').checked && fresh) return;
    const tbody = document.querySelector('#events tbody');
    const filter = $('log-filter').value.trim().toLowerCase();
    const frag = [];
    for (const e of events) {
      if (!e || !e.id || state.seen.has(e.id)) continue;
      state.seen.add(e.id);
      const data = JSON.stringify(e.data);
      const tr = el('tr', null, (fresh ? 'fresh ' : '') + (e.data && e.data.ok === false ? 'fail' : ''));
      tr.dataset.type = e.type;
      tr.dataset.id = e.id;
      tr.dataset.ts = e.ts;
      tr.dataset.search = (e.type + ' ' + e.source + ' ' + e.instance + ' ' + data).toLowerCase();
      tr.append(cell(time(e.ts)), cell(e.instance), cell(e.type), cell(e.source), cell(data.length > 300 ? data.slice(0, 300) + '…' : data, 'data'));
      tr.hidden = !matches(tr, filter);
      frag.push(tr);
    }
    if (!frag.length) return;
    // Newest first; events can arrive out of order across instances, so insert by ts.
    for (const tr of frag) {
      const ts = Number(tr.dataset.ts);
      let before = tbody.firstChild;
      while (before && Number(before.dataset.ts) > ts) before = before.nextSibling;
      tbody.insertBefore(tr, before);
    }
    while (tbody.children.length > MAX_LOG_ROWS) {
      const last = tbody.lastChild;
      state.seen.delete(last.dataset.id);
      last.remove();
    }
    $('log-count').textContent = tbody.children.length + ' shown';
  }
  $('log-filter').addEventListener('input', () => {
    const filter = $('log-filter').value.trim().toLowerCase();
    for (const tr of document.querySelectorAll('#events tbody tr')) tr.hidden = !matches(tr, filter);
  });

  // --- connection -------------------------------------------------------------------------
  let attempt = 0;
  let ws = null;
  let everConnected = false;

  function setConn(s, text) {
    const pill = $('conn-state');
    pill.dataset.state = s;
    pill.textContent = text || s;
    state.connected = s === 'live';
  }

  function onMessage(msg) {
    switch (msg.type) {
      case 'snapshot':
        state.instance = msg.instance;
        $('instance').textContent = msg.instance;
        renderHealth(msg.health);
        for (const [name, s] of Object.entries(msg.instances || {})) state.instances.set(name, s);
        if (msg.stats) renderStats(msg.stats);
        addEvents(msg.events || [], false);
        loadHistory();
        if (everConnected) loadRecentEvents();
        everConnected = true;
        break;
      case 'event':
        addEvents([msg.event], true);
        break;
      case 'stats':
        if (msg.instance === state.instance) {
          renderStats(msg);
          pushLive(msg);
        } else {
          state.instances.set(msg.instance, msg);
          renderInstances();
        }
        break;
      case 'health':
        if (msg.instance === state.instance) renderHealth(msg.health);
        break;
      case 'lagged':
        state.lagged += msg.dropped;
        break;
      case 'resync':
        loadHistory();
        loadRecentEvents();
        break;
      default:
        break;
    }
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = scheme + '//' + location.host + '/ws/dashboard' + (token ? '?token=' + encodeURIComponent(token) : '');
    setConn(attempt === 0 ? 'connecting' : 'reconnecting', attempt === 0 ? 'connecting' : 'reconnecting…');
    ws = new WebSocket(url);
    ws.onopen = () => { attempt = 0; setConn('live'); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onMessage(msg);
    };
    ws.onclose = (ev) => {
      ws = null;
      attempt++;
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
      const why = ev.reason ? ' (' + ev.reason + ')' : '';
      setConn(attempt > 3 ? 'offline' : 'reconnecting', 'reconnecting in ' + (delay / 1000).toFixed(1) + ' s' + why);
      setTimeout(connect, delay);
    };
  }

  makeCharts();
  connect();
  setInterval(renderInstances, 5000);
})();
