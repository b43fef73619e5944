// exai dashboard. Dependency-free; the only library is the vendored uPlot.
//
// Data flow: a WebSocket to /ws/dashboard delivers `snapshot` (on every connect), then
// `event`, `stats` (1 s), `health` (on change), `lagged` and `resync` messages. The
// client-facing view (cards, charts, per-model table) reads `request` events: live, from the
// stats tick's `requests` section; for a past window (15 m … 7 d), from the rollups of
// /api/metrics/timeseries and /api/metrics/summary. Live charts are first loaded from history
// and then extended with every tick; after a reconnect or a `resync` they are reloaded, so
// the gap is filled.
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
    range: 'live',        // live, 15m, 1h, 6h, 24h, 7d
    window: null,         // the chosen past window's summary (from /api)
    today: null,          // today's request totals (from /api)
  };
  window.__exai = { state };

  // Past windows: their length and the rollup their charts read.
  const RANGES = {
    '15m': { s: 900, bucket: '1m' },
    '1h': { s: 3600, bucket: '1m' },
    '6h': { s: 6 * 3600, bucket: '1m' },
    '24h': { s: 24 * 3600, bucket: '1h' },
    '7d': { s: 7 * 86400, bucket: '1h' },
  };
  const WINDOW_REFRESH_MS = 30000;
  const TODAY_REFRESH_MS = 60000;

  // --- charts -----------------------------------------------------------------------------
  // Each chart holds [xs(seconds), ...series]; history points come first, live points after.
  // Client-facing: every series is read from `request` events (live ticks or rollups).
  const RATE_SERIES = [
    { key: 'requests', label: 'requests/s', stroke: '#3fb950' },
    { key: 'errors', label: 'errors/s', stroke: '#f85149' },
    { key: 's5xx', label: '5xx/s', stroke: '#ff7b72' },
    { key: 's4xx', label: '4xx/s', stroke: '#d29922' },
  ];
  const LAT_SERIES = [
    { key: 'p50', label: 'p50', stroke: '#3fb950' },
    { key: 'p95', label: 'p95', stroke: '#d29922' },
    { key: 'p99', label: 'p99', stroke: '#f85149' },
    { key: 'ttft', label: 'TTFT p95', stroke: '#58a6ff' },
  ];
  const RATE_KEYS = ['x'].concat(RATE_SERIES.map((s) => s.key));
  const LAT_KEYS = ['x'].concat(LAT_SERIES.map((s) => s.key));
  const empty = (keys) => Object.fromEntries(keys.map((k) => [k, []]));
  const series = { rate: empty(RATE_KEYS), latency: empty(LAT_KEYS) };
  let rateChart = null;
  let latencyChart = null;

  function chartWidth(id) { return Math.max(240, $(id).clientWidth || 500); }

  function makeChart(id, defs) {
    const axes = [{ stroke: '#8593a3', grid: { stroke: '#263241' }, ticks: { stroke: '#263241' } },
                  { stroke: '#8593a3', grid: { stroke: '#263241' }, ticks: { stroke: '#263241' }, size: 50 }];
    return new uPlot({
      width: chartWidth(id), height: 220, axes,
      legend: { show: false },
      scales: { x: { time: true } },
      series: [{}].concat(defs.map((d) => ({ label: d.label, stroke: d.stroke, width: 1.5, points: { show: false }, spanGaps: false }))),
    }, [[]].concat(defs.map(() => [])), $(id));
  }

  function makeCharts() {
    rateChart = makeChart('chart-rate', RATE_SERIES);
    latencyChart = makeChart('chart-latency', LAT_SERIES);
    window.__exai.charts = { rate: rateChart, latency: latencyChart };
    window.addEventListener('resize', () => {
      rateChart.setSize({ width: chartWidth('chart-rate'), height: 220 });
      latencyChart.setSize({ width: chartWidth('chart-latency'), height: 220 });
    });
  }

  // The legend under a chart: each series with its latest value, no hovering needed.
  function legend(id, defs, s, unit) {
    const items = defs.map((d) => {
      const values = s[d.key];
      let v = null;
      for (let i = values.length - 1; i >= 0; i--) { if (values[i] !== null && values[i] !== undefined) { v = values[i]; break; } }
      const span = el('span');
      span.dataset.series = d.key;
      const sw = el('span', null, 'swatch');
      sw.style.background = d.stroke;
      span.append(sw, document.createTextNode(d.label + ' ' + fmt(v) + (v === null ? '' : unit)));
      return span;
    });
    $(id).replaceChildren(...items);
  }

  function trim(s, keys, windowS) {
    const cutoff = Date.now() / 1000 - windowS;
    let n = 0;
    while (n < s.x.length && s.x[n] < cutoff) n++;
    if (n > 0) for (const k of keys) s[k].splice(0, n);
  }

  function redraw() {
    if (state.range === 'live') {
      trim(series.rate, RATE_KEYS, HISTORY_WINDOW_MS / 1000);
      trim(series.latency, LAT_KEYS, HISTORY_WINDOW_MS / 1000);
    }
    if (rateChart) rateChart.setData(RATE_KEYS.map((k) => series.rate[k]));
    if (latencyChart) latencyChart.setData(LAT_KEYS.map((k) => series.latency[k]));
    legend('legend-rate', RATE_SERIES, series.rate, '');
    legend('legend-latency', LAT_SERIES, series.latency, ' ms');
  }

  // Rollup points of `request` events as chart rows: per second rates and percentiles.
  function historyRows(points, bucketS, upTo) {
    const r = empty(RATE_KEYS);
    const l = empty(LAT_KEYS);
    for (const p of points) {
      if (upTo !== undefined && p.ts >= upTo) continue;
      // Plot each bucket at its middle so it lines up with per-second live points.
      const x = p.ts / 1000 + bucketS / 2;
      r.x.push(x); r.requests.push(p.count / bucketS); r.errors.push(p.errors / bucketS);
      r.s5xx.push(null); r.s4xx.push(null);
      l.x.push(x); l.p50.push(p.p50_ms); l.p95.push(p.p95_ms); l.p99.push(p.p99_ms); l.ttft.push(null);
    }
    return { r, l };
  }

  // Live mode: the last hour per minute from history; live points newer than the last
  // complete minute are kept, so x stays sorted and nothing is counted twice.
  async function loadHistory() {
    if (state.range !== 'live') return loadWindow();
    const since = Date.now() - HISTORY_WINDOW_MS;
    let req;
    try {
      req = await api('/api/metrics/timeseries?bucket=1m&type=request&since=' + since);
    } catch (e) {
      console.warn('history unavailable:', e.message);
      return;
    }
    if (state.range !== 'live') return;
    const currentMinute = Math.floor(Date.now() / 60000) * 60000;
    const liveFrom = currentMinute / 1000;
    const keep = (s, keys) => {
      const idx = s.x.findIndex((x) => x >= liveFrom);
      const out = {};
      for (const k of keys) out[k] = idx < 0 ? [] : s[k].slice(idx);
      return out;
    };
    const liveRate = keep(series.rate, RATE_KEYS);
    const liveLat = keep(series.latency, LAT_KEYS);
    const { r, l } = historyRows(req.points || [], 60, currentMinute);
    for (const k of RATE_KEYS) series.rate[k] = r[k].concat(liveRate[k]);
    for (const k of LAT_KEYS) series.latency[k] = l[k].concat(liveLat[k]);
    redraw();
  }

  // A past window: charts and cards from rollups, refreshed every WINDOW_REFRESH_MS.
  async function loadWindow() {
    const range = state.range;
    const def = RANGES[range];
    if (!def) return;
    const since = Date.now() - def.s * 1000;
    try {
      const [ts, summary] = await Promise.all([
        api('/api/metrics/timeseries?bucket=' + def.bucket + '&type=request&since=' + since),
        api('/api/metrics/summary?window=' + def.s + 's'),
      ]);
      if (state.range !== range) return;
      const { r, l } = historyRows(ts.points || [], def.bucket === '1h' ? 3600 : 60);
      series.rate = r;
      series.latency = l;
      state.window = summary;
      $('range-note').textContent = 'from rollups per ' + (def.bucket === '1h' ? 'hour' : 'minute') + ', refreshed ' + time(Date.now());
      redraw();
      renderClient();
    } catch (e) {
      $('range-note').textContent = 'history unavailable: ' + e.message;
    }
  }

  // Today's totals (since local midnight), from rollups.
  async function loadToday() {
    const midnight = new Date(); midnight.setHours(0, 0, 0, 0);
    const secs = Math.max(60, Math.ceil((Date.now() - midnight.getTime()) / 1000));
    try {
      state.today = await api('/api/metrics/summary?window=' + secs + 's');
      renderClient();
    } catch (e) {
      console.warn('today unavailable:', e.message);
    }
  }

  function setRange(range) {
    state.range = range;
    for (const b of document.querySelectorAll('#range button')) b.setAttribute('aria-pressed', String(b.dataset.range === range));
    $('range-note').textContent = range === 'live' ? 'live ticks, the last hour per minute before them' : 'loading…';
    $('chart-rate-note').textContent = range === 'live' ? '(per second; history per minute, then live)' : '(per second, averaged per bucket)';
    series.rate = empty(RATE_KEYS);
    series.latency = empty(LAT_KEYS);
    state.window = null;
    redraw();
    loadHistory();
    loadToday();
    renderClient();
  }
  for (const b of document.querySelectorAll('#range button')) b.addEventListener('click', () => setRange(b.dataset.range));
  setInterval(() => { if (state.range !== 'live') loadWindow(); }, WINDOW_REFRESH_MS);
  setInterval(loadToday, TODAY_REFRESH_MS);

  // Loads the event log from the history API (after a reconnect or resync).
  async function loadRecentEvents() {
    try {
      const page = await api('/api/events?limit=200');
      addEvents((page.events || []).slice().reverse(), false);
    } catch (e) {
      console.warn('event history unavailable:', e.message);
    }
  }

  function pushLive(stats) {
    if (stats.instance !== state.instance || state.range !== 'live') return;
    const x = stats.ts / 1000;
    const q = stats.requests || {};
    const cls = q.by_class || {};
    const s = series.rate;
    s.x.push(x); s.requests.push(q.rate || 0); s.errors.push(q.error_rate || 0);
    s.s5xx.push(cls['5xx'] || 0); s.s4xx.push(cls['4xx'] || 0);
    const l = series.latency;
    l.x.push(x); l.p50.push(q.p50_ms === undefined ? null : q.p50_ms); l.p95.push(q.p95_ms === undefined ? null : q.p95_ms);
    l.p99.push(q.p99_ms === undefined ? null : q.p99_ms); l.ttft.push(q.ttft_p95_ms === undefined ? null : q.ttft_p95_ms);
    redraw();
  }

  // --- plain words ------------------------------------------------------------------------
  const BREAKER_WORDS = { closed: 'healthy', half_open: 'recovering', open: 'unreachable' };
  function storeWords(breaker) { return BREAKER_WORDS[breaker] || breaker || '–'; }

  // Why the daemon is not ok: each component that is not, in words, naming its breaker.
  function healthReasons(h) {
    const out = [];
    for (const [name, a] of Object.entries(h.actors || {})) {
      if (a.state === 'failed') out.push('actor ' + name + ' failed');
      else if (a.state === 'restarting') out.push('actor ' + name + ' restarting');
    }
    for (const [name, c] of Object.entries(h.components || {})) {
      if (c.status === 'ok') continue;
      const d = c.detail || {};
      if (name.startsWith('provider:')) {
        const p = name.slice('provider:'.length);
        // Health messages may carry statuses only; the stats tick has every provider's breakers.
        const live = ((state.stats && state.stats.providers) || {})[p] || {};
        const breaker = (d.breaker && d.breaker.state) || live.breaker;
        if (breaker && breaker !== 'closed') out.push('provider ' + p + ': breaker ' + breaker.replace('_', '-'));
        for (const mb of (d.model_breakers || live.model_breakers || []).filter((b) => b.state !== 'closed')) out.push('provider ' + p + ', model ' + mb.model + ': breaker ' + mb.state.replace('_', '-'));
        if (!out.some((r) => r.startsWith('provider ' + p))) out.push('provider ' + p + ' ' + c.status);
      } else if (name === 'pipeline' || name === 'store') {
        const why = d.breaker && d.breaker !== 'closed' ? 'store breaker ' + d.breaker.replace('_', '-') + ', spilling to disk'
          : d.reachable === false ? 'store unreachable' : (d.spilled_bytes ? 'replaying spilled events' : c.status);
        if (!out.some((r) => r.startsWith('event store'))) out.push('event store: ' + why);
      } else if (name === 'cache') {
        out.push('cache: ' + (d.l2 === 'down' ? 'Redis down' : c.status));
      } else {
        out.push(name + ' ' + c.status);
      }
    }
    return out;
  }

  // --- rendering --------------------------------------------------------------------------
  function renderHealth(h) {
    if (!h) return;
    state.health = h;
    const pill = $('health-status');
    pill.dataset.status = h.status;
    pill.textContent = h.status === 'ok' ? 'healthy' : h.status;
    $('health-reason').textContent = h.status === 'ok' ? '' : healthReasons(h).join('; ');
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
      tr.append(cell(name), cell(c.status === 'ok' ? 'healthy' : c.status, 'st-' + c.status));
      return tr;
    });
    fillTable('components', comps);
  }

  function usd(n) {
    if (n === null || n === undefined) return '–';
    return '$' + (n < 0.01 && n > 0 ? n.toPrecision(2) : fmt(n, 2));
  }
  function sumRows(rows, k) {
    let any = false;
    let total = 0;
    for (const r of rows) if (r[k] !== null && r[k] !== undefined) { any = true; total += r[k]; }
    return any ? total : null;
  }

  // The model breaker of `model` from the latest stats (non-closed ones are listed).
  function modelBreaker(model) {
    const provs = Object.values((state.stats && state.stats.providers) || {});
    for (const p of provs) {
      for (const mb of p.model_breakers || []) if (mb.model === model) return mb.state;
    }
    return provs.length ? 'closed' : '–';
  }

  // The client-facing cards and the per-model table, for the live window or a past one.
  function renderClient() {
    const live = state.range === 'live';
    let q;
    let models;
    if (live) {
      q = (state.stats && state.stats.requests) || {};
      models = Object.entries(q.models || {}).map(([model, m]) => Object.assign({ model }, m));
      $('models-note').textContent = q.window_s ? '(the last ' + q.window_s + ' s)' : '';
      $('cost-window-label').textContent = 'USD, the last ' + (q.window_s || 60) + ' s';
    } else {
      const w = state.window || {};
      const t = w.requests || {};
      const span = (w.window_s || RANGES[state.range].s);
      q = {
        rate: t.count !== undefined ? t.count / span : null,
        error_rate: t.errors !== undefined ? t.errors / span : null,
        window_requests: t.count, window_errors: t.errors,
        p50_ms: t.p50_ms, p95_ms: t.p95_ms, p99_ms: t.p99_ms,
        by_status: null,
      };
      models = (w.models || []).map((m) => ({ model: m.model || '(unresolved)', requests: m.count, errors: m.errors, p95_ms: m.p95_ms,
        prompt_tokens: m.prompt_tokens, completion_tokens: m.completion_tokens, cost_usd: m.cost_usd }));
      $('models-note').textContent = '(the last ' + state.range + ')';
      $('cost-window-label').textContent = 'USD, the last ' + state.range;
    }
    $('req-rate').textContent = fmt(q.rate);
    setDl('req-detail', [
      ['in window', fmt(q.window_requests, 0)],
      ['2xx / 4xx / 5xx', live ? ['2xx', '4xx', '5xx'].map((c) => fmt((q.by_class || {})[c] || 0)).join(' / ') + ' /s' : '–'],
    ]);
    $('err-rate').textContent = fmt(q.error_rate);
    $('err-rate').className = 'big' + (q.error_rate > 0 ? ' st-open' : '');
    const codes = Object.entries(q.by_status || {}).filter(([code]) => Number(code) >= 400).sort();
    setDl('err-detail', [['errors in window', fmt(q.window_errors, 0)]].concat(
      codes.length ? codes.map(([code, rate]) => ['HTTP ' + code, fmt(rate) + ' /s']) : [['by code', live ? 'none' : '–']]));
    $('lat-p95').textContent = fmt(q.p95_ms);
    setDl('lat-detail', [
      ['p50 / p99', fmt(q.p50_ms) + ' / ' + fmt(q.p99_ms)],
      ['TTFT p50 / p95 / p99', live ? fmt(q.ttft_p50_ms) + ' / ' + fmt(q.ttft_p95_ms) + ' / ' + fmt(q.ttft_p99_ms) : '– (live only)'],
    ]);
    const windowCost = sumRows(models, 'cost_usd');
    $('cost-window').textContent = usd(windowCost);
    const today = (state.today && state.today.requests) || {};
    setDl('cost-detail', [
      ['tokens in window', fmt(sumRows(models, 'prompt_tokens'), 0) + ' in / ' + fmt(sumRows(models, 'completion_tokens'), 0) + ' out'],
      ['today tokens', fmt(today.prompt_tokens, 0) + ' in / ' + fmt(today.completion_tokens, 0) + ' out'],
      ['today cost', usd(today.cost_usd)],
    ]);
    const rows = models.sort((a, b) => (b.requests || 0) - (a.requests || 0)).map((m) => {
      const tr = el('tr');
      tr.dataset.model = m.model;
      const br = modelBreaker(m.model);
      tr.append(cell(m.model), cell(fmt(m.requests, 0), 'num'), cell(fmt(m.errors, 0), 'num' + (m.errors ? ' st-open' : '')),
        cell(fmt(m.p95_ms), 'num'), cell(fmt(m.prompt_tokens, 0), 'num'), cell(fmt(m.completion_tokens, 0), 'num'),
        cell(usd(m.cost_usd), 'num'), cell(br === 'closed' ? 'healthy' : br, 'st-' + br));
      return tr;
    });
    fillTable('models', rows);
    $('models-empty').hidden = rows.length > 0;
  }

  function renderStats(s) {
    state.stats = s;
    $('last-update').textContent = 'updated ' + time(s.ts);
    if (state.health && state.health.status !== 'ok') $('health-reason').textContent = healthReasons(state.health).join('; ');
    renderClient();
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
    $('pipeline-breaker').textContent = storeWords(p.breaker);
    $('pipeline-breaker').className = 'big st-' + (p.breaker || '');
    $('pipeline-breaker-note').textContent = p.breaker === 'open' ? 'store down: events spill to disk' : p.breaker === 'half_open' ? 'trying the store again' : 'persistence';
    setDl('pipeline-detail', [
      ['buffered', fmt(p.buffered, 0) + (p.capacity ? ' / ' + fmt(p.capacity, 0) : '')],
      ['spilled', bytes(p.spilled_bytes) + ' (' + fmt(p.spilled, 0) + ' events)'],
      ['last flush', ago(p.last_successful_flush)],
      ['flushed', fmt(p.flushed, 0)],
      ['store', (s.store && s.store.backend ? s.store.backend + ' ' : '') + (s.store ? (s.store.reachable ? 'reachable' : 'unreachable') : '–')],
    ]);
    const provs = Object.entries(s.providers || {}).sort(([a], [b]) => a.localeCompare(b)).map(([name, pr]) => {
      const tr = el('tr');
      tr.append(cell(name + (pr.simulated ? ' (simulated)' : '')), cell(pr.status === 'ok' ? 'healthy' : (pr.status || '–'), 'st-' + pr.status),
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
    const td = cell(pr.breaker === 'closed' ? 'healthy' : (pr.breaker || '–'), 'st-' + pr.breaker);
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
      const q = s.requests || {};
      const tr = el('tr');
      tr.dataset.instance = s.instance;
      const stale = now - s.ts > STALE_INSTANCE_MS;
      const status = s.health ? s.health.status : '–';
      tr.append(cell(s.instance + (s.instance === state.instance ? ' (this)' : '')), cell(stale ? 'stale' : status, 'st-' + (stale ? 'degraded' : status)),
        cell(fmt(s.events && s.events.rate), 'num'), cell(fmt(q.rate), 'num'), cell(fmt(q.p99_ms), 'num'), cell(time(s.ts)));
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
        loadToday();
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
