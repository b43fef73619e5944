// Real-browser test of the exai dashboard: the system Chromium (/usr/bin/chromium) driven by
// playwright-core, which never downloads a browser of its own.
//
// Usage: node tests/browser/dashboard.test.mjs <base-url> [--restart]
//
// Asserts, at 1440 px, that the page connects, shows actor health, draws a chart with points,
// and shows a newly generated event in its log within 2 s; that an upstream outage (calls to
// the mock upstream's failing model through /v1) makes the client-facing error rate rise
// above zero; that tokens and cost appear per model, live and in a past window read from the
// rollups. At 390 px it asserts that the page does not scroll sideways and that the event log
// wraps into rows that fit the screen. With --restart it then prints `RESTART` on
// stdout and waits for a line on stdin (the harness restarts the server on the same port
// meanwhile), and asserts that the page reconnects by itself and that its throughput chart
// has no gap across the restart. Saves a screenshot to test-artifacts/dashboard.png.
// Exits 0 on success; on failure prints the reason and exits 1.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const CHROMIUM = process.env.EXAI_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
const EVENT_DEADLINE_MS = 2000;
const PHONE = { width: 390, height: 844 };

// One /v1 chat completion against the server (from node, as a client would).
async function chat(model, prompt) {
  const resp = await fetch(base + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt }], cache: false }),
  });
  await resp.arrayBuffer();
  return resp.status;
}

const base = process.argv[2];
const withRestart = process.argv.includes('--restart');
if (!base) {
  console.error('usage: dashboard.test.mjs <base-url> [--restart]');
  process.exit(2);
}
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const artifacts = join(root, 'test-artifacts');
mkdirSync(artifacts, { recursive: true });

function log(msg) { console.log('[browser] ' + msg); }

const stdinLines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((res) => stdinLines.once('line', res));

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
let page;
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') log('console error: ' + m.text()); });

  await page.goto(base + '/dashboard', { waitUntil: 'load' });

  // 1. Connects.
  await page.waitForSelector('#conn-state[data-state="live"]', { timeout: 10000 });
  log('connected');

  // 2. Shows actor health.
  await page.waitForSelector('#actors tbody tr[data-actor="dashboard"]', { timeout: 10000 });
  const actorRows = await page.$$eval('#actors tbody tr', (rows) => rows.map((r) => r.textContent));
  if (!actorRows.some((t) => t.includes('running'))) throw new Error('no running actor shown: ' + actorRows.join(' | '));
  log('actor health shown: ' + actorRows.length + ' actors');

  // 3. Draws a chart with points (live stats ticks every second extend it).
  await page.waitForFunction(() => {
    const c = window.__exai && window.__exai.charts && window.__exai.charts.rate;
    return c && c.data[0].length >= 2 && document.querySelector('#chart-rate canvas');
  }, null, { timeout: 10000 });
  const points = await page.evaluate(() => window.__exai.charts.rate.data[0].length);
  log('chart points: ' + points);

  // 4. A new event appears in the log within 2 s of its generation: make the dashboard
  //    broadcaster itself panic; the supervisor restarts it and records actor.restarted.
  const t0 = Date.now();
  const resp = await fetch(base + '/debug/fault/dashboard/panic', { method: 'POST' });
  if (resp.status !== 202) throw new Error('fault injection answered ' + resp.status);
  await page.waitForSelector('#events tbody tr[data-type="actor.restarted"]', { timeout: EVENT_DEADLINE_MS });
  const elapsed = Date.now() - t0;
  log('actor.restarted shown after ' + elapsed + ' ms');
  if (elapsed > EVENT_DEADLINE_MS) throw new Error('event took ' + elapsed + ' ms');
  // The restart shows in actor health too.
  await page.waitForFunction(() => {
    const row = document.querySelector('#actors tbody tr[data-actor="dashboard"]');
    return row && row.children[2].textContent === '1';
  }, null, { timeout: 5000 });

  // 5. Tokens and cost: successful calls show per model, with a cost (the test prices the
  //    mock model), in the live view.
  for (let i = 0; i < 3; i++) {
    const status = await chat('mock-echo', 'count these five words ' + i);
    if (status !== 200) throw new Error('mock-echo answered ' + status);
  }
  await page.waitForFunction(() => {
    const row = document.querySelector('#models tbody tr[data-model="mock-echo"]');
    return row && Number(row.children[4].textContent.replace(/[^0-9]/g, '')) > 0 && row.children[6].textContent.startsWith('$');
  }, null, { timeout: 10000 });
  const costText = await page.$eval('#cost-window', (e) => e.textContent);
  if (!costText.startsWith('$')) throw new Error('no cost shown: ' + costText);
  log('tokens and cost shown live: ' + costText);

  // 6. An outage: the upstream fails every call; clients get errors, and the page says so.
  const statuses = [];
  for (let i = 0; i < 8; i++) statuses.push(await chat('mock-500', 'outage ' + i));
  if (!statuses.every((s) => s >= 500)) throw new Error('outage calls answered ' + statuses.join(','));
  await page.waitForFunction(() => {
    const s = window.__exai.state.stats;
    const errors = window.__exai.charts.rate.data[2];
    return s && s.requests && s.requests.error_rate > 0 && errors.some((v) => v > 0)
      && Number(document.querySelector('#err-rate').textContent) > 0;
  }, null, { timeout: 10000 });
  const errLegend = await page.$eval('#legend-rate [data-series="errors"]', (e) => e.textContent);
  const codes = await page.$eval('#err-detail', (e) => e.textContent);
  if (!/HTTP 5\d\d/.test(codes)) throw new Error('error codes not shown: ' + codes);
  log('outage shown: ' + errLegend + '; ' + codes + ' (clients got ' + [...new Set(statuses)].join(',') + ')');

  // 7. A past window reads the rollups: the model's tokens and cost are there too.
  await page.click('#range button[data-range="1h"]');
  await page.waitForFunction(() => {
    const row = document.querySelector('#models tbody tr[data-model="mock-echo"]');
    return window.__exai.state.range === '1h' && window.__exai.state.window && row
      && row.children[6].textContent.startsWith('$');
  }, null, { timeout: 15000 });
  log('1 h window from rollups: ' + await page.$eval('#models tbody tr[data-model="mock-echo"]', (r) => r.textContent));
  await page.click('#range button[data-range="live"]');

  // Let a few more ticks land for the screenshot.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });
  log('screenshot saved');

  // 8. Phone width: no sideways scroll, and the event log wraps into rows that fit.
  const phone = await browser.newContext({ viewport: PHONE });
  const small = await phone.newPage();
  small.on('pageerror', (e) => pageErrors.push(String(e)));
  await small.goto(base + '/dashboard', { waitUntil: 'load' });
  await small.waitForSelector('#conn-state[data-state="live"]', { timeout: 10000 });
  await small.waitForSelector('#events tbody tr', { timeout: 10000 });
  await small.waitForTimeout(1500);
  const layout = await small.evaluate(() => {
    const width = window.innerWidth;
    const rows = [...document.querySelectorAll('#events tbody tr')].slice(0, 20);
    const data = rows.map((r) => r.querySelector('td.data')).filter(Boolean);
    return {
      width,
      scrollWidth: document.documentElement.scrollWidth,
      widest: Math.max(...rows.map((r) => r.getBoundingClientRect().right)),
      wraps: data.every((d) => getComputedStyle(d).whiteSpace !== 'nowrap'),
      tallest: Math.max(...data.map((d) => d.getBoundingClientRect().height)),
      lineHeight: data.length ? parseFloat(getComputedStyle(data[0]).lineHeight) || 16 : 16,
    };
  });
  log('390 px: ' + JSON.stringify(layout));
  if (layout.scrollWidth > layout.width) throw new Error('the page scrolls sideways at 390 px: ' + layout.scrollWidth + ' > ' + layout.width);
  if (layout.widest > layout.width + 0.5) throw new Error('an event row is wider than the screen: ' + layout.widest);
  if (!layout.wraps) throw new Error('event data does not wrap at 390 px');
  if (!(layout.tallest > layout.lineHeight * 1.5)) throw new Error('no event wraps onto several lines at 390 px');
  await small.screenshot({ path: join(artifacts, 'dashboard-390.png'), fullPage: true });
  await phone.close();

  if (withRestart) {
    const before = await page.evaluate(() => window.__exai.charts.rate.data[0].slice());
    const restartAt = Date.now() / 1000;
    console.log('RESTART');
    await nextLine();
    // 5. Recovers by itself after the server restart ...
    await page.waitForSelector('#conn-state[data-state="reconnecting"], #conn-state[data-state="offline"], #conn-state[data-state="live"]');
    await page.waitForFunction((t) => {
      const s = window.__exai.state;
      return s.connected && s.stats && s.stats.ts / 1000 > t;
    }, restartAt, { timeout: 20000 });
    log('reconnected after restart');
    // ... and its chart has no gap: history (per minute) or live points cover every minute
    // from the first point before the restart to now.
    await page.waitForTimeout(2500);
    const xs = await page.evaluate(() => window.__exai.charts.rate.data[0].slice());
    if (!xs.length || xs[0] > before[0] + 60) throw new Error('history before the restart is missing');
    let maxGap = 0;
    for (let i = 1; i < xs.length; i++) maxGap = Math.max(maxGap, xs[i] - xs[i - 1]);
    for (let i = 1; i < xs.length; i++) if (xs[i] < xs[i - 1]) throw new Error('chart x not sorted');
    log('max gap between chart points: ' + maxGap.toFixed(1) + ' s over ' + xs.length + ' points');
    if (maxGap > 61) throw new Error('chart has a gap of ' + maxGap + ' s');
    await page.screenshot({ path: join(artifacts, 'dashboard-after-restart.png'), fullPage: true });
  }
  if (pageErrors.length) throw new Error('page errors: ' + pageErrors.join('; '));
  log('PASS');
} catch (e) {
  failed = true;
  console.error('[browser] FAIL: ' + (e && e.stack ? e.stack : e));
  if (page) {
    try { await page.screenshot({ path: join(artifacts, 'dashboard-failure.png'), fullPage: true }); } catch (_) { /* ignore */ }
  }
} finally {
  stdinLines.close();
  await browser.close();
}
process.exit(failed ? 1 : 0);
