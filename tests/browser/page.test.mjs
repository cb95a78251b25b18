// Browser test of the benchcam web page against a running service (started by run.sh).
//
// Drives Debian's Chromium through playwright-core at phone sizes and checks what a person
// would: live frames arrive and change; recording starts, a clip shows up and plays; an
// experiment starts, gets a labelled and an unlabelled marker and stops from the page; its
// "Download all" ZIP unzips (fflate) to files whose SHA-256s match the manifest; its timing
// plot shows the frame count and the dropped frames that frames.csv holds (and counts drops
// it is given); a 2-minute span downloads as one MP4 that ffmpeg decodes fully, with the
// duration its headers announce (±1 frame); the storage history plot and hours left; the
// Benches card (this bench, and peers from a stubbed GET /api/v1/fleet, each linked); the
// login flow; the first-visit hint; the no_frame banner and the MJPEG fallback; and at
// 320x640, 390x844 and 844x390 (landscape) every tab is screenshotted, fits the width and
// has no serious or critical axe-core violation (dark, and light at 390x844).
// Screenshots of each step go to SCREENSHOT_DIR, with axe.json (every violation found).
//
// The 2-minute span needs 2 minutes of recording: recording starts near the beginning and
// the other checks run meanwhile; the span check waits for whatever time is left.
//
// Environment: BENCHCAM_URL (required, e.g. http://127.0.0.1:8080), SCREENSHOT_DIR
// (default target/test-output/browser), CHROMIUM (default /usr/bin/chromium),
// BENCHCAM_ASSETS_DIR (development only: serve index.html, app.js and style.css from this
// directory instead of the binary's embedded copies, to try page changes without a rebuild).
// Prints one line per check and a final "N passed, M failed"; exits 1 on any failure.

import { chromium } from 'playwright-core';
import { unzipSync } from 'fflate';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const require = createRequire(import.meta.url);
const AXE_PATH = require.resolve('axe-core/axe.min.js');
const run = promisify(execFile);

const BASE = process.env.BENCHCAM_URL;
const SHOTS = process.env.SCREENSHOT_DIR || 'target/test-output/browser';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ASSETS = process.env.BENCHCAM_ASSETS_DIR || '';
/** Clips rotate every 4 s (run.sh config); allow for encoder start-up and a slow CI machine. */
const CLIP_TIMEOUT_MS = 45000;
/** The span downloaded as one MP4. */
const SPAN_S = 120;
/** The whole run stops by itself after this, whatever hangs. */
const RUN_TIMEOUT_MS = 330000;
/** Smallest touch target of the experiment controls (a gloved thumb), CSS px. */
const MIN_TARGET = 48;
/** A frame at the pattern camera's 30 fps. */
const FRAME_S = 1 / 30;
const VIEWPORTS = [
  { width: 320, height: 640 },
  { width: 390, height: 844 },
  { width: 844, height: 390 },
];
const TABS = ['live', 'experiments', 'recording', 'streaming', 'status', 'settings'];
/** The browser's time zone: not UTC, so the span's local times must be converted. */
const TIME_ZONE = 'Europe/Berlin';

if (!BASE) {
  console.error('BENCHCAM_URL is not set (run tests/browser/run.sh)');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

let passed = 0;
let failed = 0;
const pageErrors = [];
const t0 = Date.now();

/** Runs one named check; a thrown error (or a timeout inside it) fails it. */
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok   - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed += 1;
    const lines = err && err.message ? err.message.split('\n') : [String(err)];
    // Playwright's timeouts name what they waited for on a later line.
    const waiting = lines.find((l) => /waiting for/.test(l));
    console.log(`FAIL - ${name}: ${lines[0]}${waiting && waiting !== lines[0] ? ` (${waiting.trim()})` : ''}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** Polls `probe` in the page until it returns a truthy value; returns that value. */
async function waitInPage(page, probe, arg, timeoutMs, what) {
  try {
    const handle = await page.waitForFunction(probe, arg, { timeout: timeoutMs, polling: 100 });
    return await handle.jsonValue();
  } catch (err) {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

async function shot(page, name, options = {}) {
  try {
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false, ...options });
  } catch (err) {
    console.log(`note: screenshot ${name} failed: ${err.message.split('\n')[0]}`);
  }
}

function watch(page, label) {
  page.on('pageerror', (err) => pageErrors.push(`${label}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') fs.appendFileSync(path.join(SHOTS, 'console.log'), `${label}: ${msg.text()}\n`);
  });
}

/** The service's API from the test itself (not through the page). */
async function apiGet(p) {
  const res = await fetch(`${BASE}${p}`);
  if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
  return res.headers.get('content-type')?.includes('json') ? res.json() : res.text();
}

async function apiPost(p, body) {
  const res = await fetch(`${BASE}${p}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** frames.csv counted here, independently of the page: rows, frame-number gaps, driver drops. */
function countFrames(csv, camera) {
  const [header, ...lines] = csv.trim().split('\n');
  const cols = header.split(',');
  const at = (name) => cols.indexOf(name);
  let frames = 0;
  let gaps = 0;
  let driver = 0;
  let previous = null;
  for (const line of lines) {
    const f = line.split(',');
    if (f[at('camera')] !== camera) continue;
    frames += 1;
    const n = Number(f[at('frame_number')]);
    if (previous !== null && n > previous + 1) gaps += n - previous - 1;
    previous = n;
    driver += Number(f[at('driver_dropped_before')]);
  }
  return { frames, gaps, driver, dropped: gaps + driver };
}

/** Local wall time in TIME_ZONE as a datetime-local input takes it: 2026-12-01T16:30:05. */
function localInput(ms) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', {
    timeZone: TIME_ZONE, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
}

/** Serious and critical axe-core violations on the page as it is; every one is logged. */
const axeLog = [];
async function axeSerious(page, where) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: AXE_PATH });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 4).map((n) => `${n.target.join(' ')}${n.failureSummary ? ` — ${n.failureSummary.split('\n').slice(1).join(' ').trim()}` : ''}`),
    }));
  });
  axeLog.push({ where, violations });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

async function openTab(page, tab) {
  await page.click(`#tab-${tab}`);
  // Attached, not "visible": sideways the live panel's only content is the fixed viewer.
  await page.waitForSelector(`#panel-${tab}:not([hidden])`, { state: 'attached' });
}

const chips = (page) => page.evaluate(() => ({
  frames: Number(document.querySelector('#chip-frames').dataset.value),
  connection: document.querySelector('#chip-connection').dataset.state,
  streaming: document.querySelector('#chip-streaming').dataset.state,
  src: document.querySelector('#live-img').getAttribute('src') || '',
}));

/** Width and height of each selector's element, for the touch-target checks. */
const boxes = (page, selectors) => page.evaluate((list) => list.map((sel) => {
  const el = document.querySelector(sel);
  if (!el) return { sel, missing: true };
  const r = el.getBoundingClientRect();
  return { sel, w: r.width, h: r.height, visible: r.width > 0 && r.height > 0 };
}), selectors);

function assertTargets(found) {
  for (const b of found) {
    assert(!b.missing, `${b.sel} is missing`);
    assert(b.visible, `${b.sel} is not visible`);
    assert(b.w >= MIN_TARGET && b.h >= MIN_TARGET, `${b.sel} is ${b.w.toFixed(0)}x${b.h.toFixed(0)} px, under ${MIN_TARGET} px`);
  }
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'benchcam-chromium-'));
  const downloads = fs.mkdtempSync(path.join(os.tmpdir(), 'benchcam-downloads-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // A page Playwright serves counts as public, and public pages may not open sockets
      // to 127.0.0.1; only with BENCHCAM_ASSETS_DIR.
      ...(ASSETS ? ['--disable-features=LocalNetworkAccessChecks'] : []),
    ],
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
    hasTouch: true,
    colorScheme: 'dark',
    timezoneId: TIME_ZONE,
    acceptDownloads: true,
  });
  if (ASSETS) {
    const files = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/style.css': 'style.css' };
    const types = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
    await context.route((url) => url.origin === new URL(BASE).origin && url.pathname in files, (route) => {
      const file = files[new URL(route.request().url()).pathname];
      route.fulfill({ body: fs.readFileSync(path.join(ASSETS, file)), contentType: types[file.split('.').pop()] });
    });
    console.log(`note: page assets from ${ASSETS}, not the binary`);
  }
  try {
    await runChecks(context, downloads);
  } finally {
    fs.writeFileSync(path.join(SHOTS, 'axe.json'), JSON.stringify(axeLog, null, 1));
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    fs.rmSync(downloads, { recursive: true, force: true });
  }
}

async function runChecks(context, downloads) {
  const page = context.pages()[0] || await context.newPage();
  watch(page, 'main');
  page.setDefaultTimeout(15000);
  let recordingSince = null;
  const expId = `browser-${Date.now().toString(36)}`;

  await check('page loads and lists the cameras', async () => {
    const res = await page.goto(`${BASE}/`, { waitUntil: 'load' });
    assert(res && res.ok(), `GET / answered ${res && res.status()}`);
    const ids = await waitInPage(page, () => {
      const ids = Array.from(document.querySelectorAll('#camera-select option')).map((o) => o.value).filter(Boolean);
      return ids.length ? ids : null;
    }, null, 10000, 'a camera in #camera-select');
    assert(ids.includes('cam0'), `cameras listed: ${ids.join(', ')}`);
  });

  await check('a first-visit hint shows, and "Got it" puts it away for good', async () => {
    await page.waitForSelector('#hint:not([hidden])', { timeout: 5000 });
    await shot(page, '00-first-visit-hint');
    await page.click('#hint-dismiss');
    await page.waitForSelector('#hint', { state: 'hidden' });
    const stored = await page.evaluate(() => localStorage.getItem('benchcam.hint-seen'));
    assert(stored === '1', `localStorage benchcam.hint-seen is ${stored}`);
  });

  await check('live view shows changing frames over the WebSocket', async () => {
    const first = await waitInPage(page, () => {
      const n = Number(document.querySelector('#chip-frames').dataset.value);
      const src = document.querySelector('#live-img').getAttribute('src') || '';
      return n > 0 && src ? { n, src } : null;
    }, null, 15000, 'the first frame (#chip-frames > 0)');
    const later = await waitInPage(page, (before) => {
      const n = Number(document.querySelector('#chip-frames').dataset.value);
      const src = document.querySelector('#live-img').getAttribute('src') || '';
      return n >= before.n + 3 && src !== before.src ? { n, src } : null;
    }, first, 15000, `the frame counter to pass ${first.n + 3} and the image to change`);
    assert(later.src.startsWith('blob:'), `live image is not a Blob URL: ${later.src.slice(0, 60)}`);
    const state = await chips(page);
    assert(state.connection === 'live', `connection chip is "${state.connection}", not live`);
    assert(state.streaming === 'streaming', `streaming chip is "${state.streaming}"`);
    // The src flips to a new Blob URL for every frame, so sample until one has decoded
    // (naturalWidth is 0 while the newest frame is still loading).
    const size = await waitInPage(page, () => {
      const img = document.querySelector('#live-img');
      return img.complete && img.naturalWidth > 0 ? { w: img.naturalWidth, h: img.naturalHeight } : null;
    }, null, 5000, 'a decoded live picture').catch(() => ({ w: 0, h: 0 }));
    assert(size.w > 0 && size.h > 0, 'the live image has no decoded picture');
    await shot(page, '01-live');
  });

  await check('Start recording', async () => {
    await openTab(page, 'recording');
    // The state comes from /api/v1/health; if the service already records (auto recording),
    // stop first so that Start is what this check exercises.
    await page.waitForFunction(() => document.querySelector('#rec-state').dataset.state !== 'unknown',
      null, { timeout: 5000 }).catch(() => {});
    if (await page.getAttribute('#rec-state', 'data-state') === 'recording') {
      await page.click('#rec-stop');
      await waitInPage(page, () => document.querySelector('#rec-state').dataset.state === 'idle',
        null, 10000, '#rec-state to say not recording before the start');
    }
    await page.waitForSelector('#rec-start:not([disabled])', { timeout: 10000 });
    await shot(page, '02-recording-idle');
    await page.click('#rec-start');
    await waitInPage(page, () => document.querySelector('#rec-state').dataset.state === 'recording',
      null, 10000, '#rec-state to say recording');
    recordingSince = Date.now();
    await shot(page, '03-recording-started');
  });

  let clip = null;
  await check('a complete clip appears in the clip list', async () => {
    clip = await waitInPage(page, () => {
      const li = document.querySelector('#clip-list li[data-complete="true"]');
      return li ? { filename: li.dataset.filename, camera: li.dataset.camera } : null;
    }, null, CLIP_TIMEOUT_MS, 'a complete clip in #clip-list');
    assert(/\.mp4$/i.test(clip.filename), `clip file name ${clip.filename}`);
    await shot(page, '04-clip-listed');
  });

  await check('the clip plays in the page', async () => {
    assert(clip, 'no clip to play');
    const li = page.locator(`#clip-list li[data-filename="${clip.filename}"]`);
    await li.locator('.clip-play').click();
    const result = await waitInPage(page, () => {
      const video = document.querySelector('#clip-video');
      if (video.error) return { error: `media error ${video.error.code}: ${video.error.message}` };
      if (video.readyState >= 2 || video.currentTime > 0) {
        return { readyState: video.readyState, currentTime: video.currentTime, w: video.videoWidth };
      }
      return null;
    }, null, 20000, '#clip-video to reach readyState >= 2 or to play');
    assert(!result.error, result.error);
    assert(result.w > 0, 'the video has no picture size');
    const src = await page.getAttribute('#clip-video', 'src');
    assert(src && src.includes(`/api/v1/clips/${clip.camera}/`), `video src ${src}`);
    await page.waitForTimeout(700);
    await shot(page, '05-clip-playing');
    await page.click('#clip-player-close').catch(() => {});
  });

  await check('an experiment starts from the page: big buttons, elapsed time, cameras', async () => {
    await openTab(page, 'experiments');
    await page.waitForSelector('#exp-form:not([hidden])', { timeout: 10000 });
    assertTargets(await boxes(page, ['#exp-start', '#exp-arm']));
    await page.fill('#exp-id', expId);
    await page.fill('#exp-method', 'page test');
    await shot(page, '06-experiment-new');
    await page.click('#exp-start');
    await page.waitForSelector('#exp-running:not([hidden])', { timeout: 10000 });
    assert((await page.textContent('#exp-run-id')).trim() === expId, 'the running card names the experiment');
    const cameras = await page.textContent('#exp-run-cameras');
    assert(cameras.includes('cam0'), `cameras shown: ${cameras}`);
    await waitInPage(page, () => Number(document.querySelector('#exp-elapsed').dataset.seconds) >= 2,
      null, 8000, 'the elapsed time to reach 0:02');
    const elapsed = await page.textContent('#exp-elapsed');
    assert(/^\d+:\d\d$/.test(elapsed.trim()), `elapsed time reads "${elapsed}"`);
    assertTargets(await boxes(page, ['#exp-mark', '#exp-stop']));
    await page.waitForSelector(`#exp-list li[data-id="${expId}"][data-state="running"]`);
    await shot(page, '07-experiment-running');
  });

  await check('Mark with a label, and Mark from the strip on another tab', async () => {
    await page.fill('#mark-label', 'reagent added');
    await page.click('#exp-mark');
    await page.waitForSelector('#exp-run-events li[data-kind="marker"]', { timeout: 10000 });
    const shown = await page.textContent('#exp-run-events');
    assert(shown.includes('reagent added'), `events shown: ${shown}`);
    assert(await page.inputValue('#mark-label') === '', 'the label field empties after marking');
    await shot(page, '08-experiment-marked');
    await openTab(page, 'live');
    await page.waitForSelector('#exp-strip:not([hidden])', { timeout: 5000 });
    assertTargets(await boxes(page, ['#exp-strip-mark']));
    await page.waitForTimeout(500); // the Mark buttons take a moment before the next press
    await page.click('#exp-strip-mark');
    await shot(page, '09-strip-mark');
    const state = await waitInPage(page, async (id) => {
      const r = await fetch(`/api/v1/experiments/${id}`);
      const j = await r.json();
      const events = (j.experiment || j).events || [];
      return events.filter((e) => e.kind === 'marker').length >= 2 ? events : null;
    }, expId, 10000, 'two marker events in the experiment');
    const markers = state.filter((e) => e.kind === 'marker');
    assert(markers[0].label === 'reagent added', `first marker's label is ${JSON.stringify(markers[0].label)}`
      + ' (the service must keep {"label"} of POST /marker)');
    assert(!markers[1].label, `the strip's marker has no label (${markers[1].label})`);
    await openTab(page, 'experiments');
  });

  let manifest = null;
  await check('the experiment stops from the page (after a confirmation) and is archived', async () => {
    await page.click('#exp-stop');
    await page.waitForSelector('#exp-stop-confirm:not([hidden])');
    assertTargets(await boxes(page, ['#exp-stop-yes', '#exp-stop-no']));
    await shot(page, '10-experiment-stop-confirm');
    await page.click('#exp-stop-yes');
    // Stop waits for the post-roll (5 s), then archives; the list shows it archived.
    await page.waitForSelector(`#exp-list li[data-id="${expId}"][data-state="archived"]`, { timeout: 40000 });
    await page.waitForSelector('#exp-form:not([hidden])');
    manifest = await apiGet(`/api/v1/experiments/${expId}`);
    assert(Array.isArray(manifest.files) && manifest.files.length > 0, 'the manifest lists files');
  });

  await check('the card shows start, duration, clips and size as the service lists them', async () => {
    const item = (await apiGet('/api/v1/experiments')).find((e) => e.experiment_id === expId);
    assert(item, 'the experiment is listed');
    const facts = await page.$$eval(`#exp-list li[data-id="${expId}"] [data-fact]`,
      (els) => Object.fromEntries(els.map((el) => [el.dataset.fact, el.querySelector('dd').textContent])));
    await page.locator(`#exp-list li[data-id="${expId}"]`).screenshot({ path: path.join(SHOTS, '11-experiment-card.png') }).catch(() => {});
    const missing = ['duration_s', 'clips', 'size_bytes'].filter((k) => typeof item[k] !== 'number');
    assert(missing.length === 0, `GET /api/v1/experiments lacks ${missing.join(', ')} for an archived experiment`);
    assert(facts.clips === String(item.clips), `card says ${facts.clips} clips, the service ${item.clips}`);
    assert(facts.clips === String(manifest.clips.length), `card says ${facts.clips} clips, the manifest ${manifest.clips.length}`);
    assert(/ (s|min|h)$/.test(facts.duration), `duration reads "${facts.duration}"`);
    const seconds = (manifest.stop.monotonic_us - manifest.start.monotonic_us) / 1e6;
    assert(Math.abs(item.duration_s - seconds) < 0.01, `duration_s ${item.duration_s} vs the manifest's ${seconds}`);
    assert(/ (B|KB|MB|GB)$/.test(facts.size), `size reads "${facts.size}"`);
    const bytes = manifest.files.reduce((n, f) => n + f.size, 0);
    assert(item.size_bytes === bytes, `size_bytes ${item.size_bytes} vs the manifest's files ${bytes}`);
  });

  await check('details show the summary, events and files without raw microseconds', async () => {
    await page.waitForSelector('#exp-manifest:not([hidden])');
    const files = await page.$$eval('#exp-files li', (lis) => lis.map((li) => li.dataset.file));
    assert(files.some((f) => f.endsWith('.mp4')), `archived files listed: ${files.join(', ')}`);
    assert(files.includes('frames.csv'), `frames.csv listed: ${files.join(', ')}`);
    const kinds = await page.$$eval('#exp-events tbody tr', (rows) => rows.map((r) => r.dataset.kind));
    assert(kinds.filter((k) => k === 'marker').length === 2 && kinds.includes('start') && kinds.includes('stop'),
      `events shown: ${kinds.join(', ')}`);
    const summary = await page.textContent('#exp-summary');
    assert(!/\b\d{6,}\b/.test(summary) && !/\bus\b/.test(summary), `the summary shows raw numbers: ${summary}`);
    assert(summary.includes('10 s before the start'), `the summary names the pre-roll: ${summary}`);
  });

  await check('the timing plot shows the frame count and the dropped frames of frames.csv', async () => {
    const stats = await page.waitForSelector('#exp-plots .plot-stats[data-camera="cam0"]', { timeout: 20000 });
    const csv = await apiGet(`/api/v1/experiments/${expId}/files/frames.csv`);
    const want = countFrames(csv, 'cam0');
    const shown = await stats.evaluate((el) => ({
      frames: el.dataset.frames, dropped: el.dataset.dropped,
      framesText: el.querySelector('.frames-count').textContent.replace(/,/g, ''),
      droppedText: el.querySelector('.dropped-count').textContent.replace(/,/g, ''),
      text: el.textContent,
    }));
    assert(shown.framesText === String(want.frames) && shown.frames === String(want.frames),
      `plot says ${shown.framesText} frames, frames.csv has ${want.frames}`);
    assert(shown.droppedText === String(want.dropped) && shown.dropped === String(want.dropped),
      `plot says ${shown.droppedText} dropped, frames.csv has ${want.dropped} (${want.gaps} gaps + ${want.driver} by the driver)`);
    const clipFrames = manifest.clips.filter((c) => c.camera === 'cam0').reduce((n, c) => n + c.frame_count, 0);
    assert(want.frames === clipFrames, `frames.csv has ${want.frames} rows, the manifest's clips ${clipFrames} frames`);
    const svg = await page.$eval('#exp-plots figure[data-camera="cam0"] svg', (el) => ({
      drops: Array.from(el.querySelectorAll('.drop')).reduce((n, d) => n + Number(d.dataset.count), 0),
      events: Array.from(el.querySelectorAll('.ev')).map((e) => e.dataset.kind),
    }));
    assert(svg.drops === want.dropped, `the plot marks ${svg.drops} dropped frames, frames.csv has ${want.dropped}`);
    assert(svg.events.length === manifest.events.length, `the plot draws ${svg.events.length} events, the manifest has ${manifest.events.length}`);
    assert(svg.events.filter((k) => k === 'marker').length === 2, `markers drawn: ${svg.events.join(', ')}`);
    await page.locator('#exp-timing').scrollIntoViewIfNeeded();
    await shot(page, '12-timing-plot');
    await page.locator('#exp-timing').screenshot({ path: path.join(SHOTS, '12-timing-plot-only.png') }).catch(() => {});
    console.log(`note: cam0 ${want.frames} frames, ${want.dropped} dropped (${want.gaps} frame-number gaps, ${want.driver} by the driver)`);
  });

  await check('the plot counts every gap and driver drop it is given', async () => {
    // frames.csv with three rows taken out (a gap of 3) and 5 driver drops added.
    const csv = await apiGet(`/api/v1/experiments/${expId}/files/frames.csv`);
    const lines = csv.trim().split('\n');
    const cam0 = lines.map((l, i) => [l, i]).filter(([l]) => l.startsWith('cam0,')).map(([, i]) => i);
    assert(cam0.length > 40, `only ${cam0.length} cam0 rows`);
    const cols = lines[0].split(',');
    const driverCol = cols.indexOf('driver_dropped_before');
    const bump = lines[cam0[30]].split(',');
    bump[driverCol] = String(Number(bump[driverCol]) + 5);
    lines[cam0[30]] = bump.join(',');
    const removed = new Set([cam0[10], cam0[11], cam0[12]]);
    const doctored = `${lines.filter((_, i) => !removed.has(i)).join('\n')}\n`;
    const want = countFrames(doctored, 'cam0');
    const before = countFrames(csv, 'cam0');
    assert(want.frames === before.frames - 3 && want.gaps === before.gaps + 3, 'the doctored CSV is as meant');
    const p = await context.newPage();
    watch(p, 'doctored-csv');
    await p.route(`**/api/v1/experiments/${expId}/files/frames.csv`, (route) => route.fulfill({ body: doctored, contentType: 'text/csv' }));
    await p.goto(`${BASE}/#experiments`);
    await p.click(`#exp-list li[data-id="${expId}"] .exp-view`);
    const stats = await p.waitForSelector('#exp-plots .plot-stats[data-camera="cam0"]', { timeout: 15000 });
    const shown = await stats.evaluate((el) => ({ frames: el.dataset.frames, dropped: el.dataset.dropped, gaps: el.dataset.gaps, driver: el.dataset.driver }));
    assert(shown.frames === String(want.frames), `plot says ${shown.frames} frames, want ${want.frames}`);
    assert(shown.dropped === String(want.dropped), `plot says ${shown.dropped} dropped, want ${want.dropped}`);
    assert(shown.gaps === String(want.gaps) && shown.driver === String(want.driver),
      `plot says ${shown.gaps} gaps + ${shown.driver} driver, want ${want.gaps} + ${want.driver}`);
    await p.close();
  });

  await check('"Download all" gives one ZIP whose files match the manifest\'s SHA-256s', async () => {
    const link = page.locator(`#exp-list li[data-id="${expId}"] .exp-zip`);
    assertTargets(await boxes(page, [`#exp-list li[data-id="${expId}"] .exp-zip`]));
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), link.click()]);
    const file = path.join(downloads, 'experiment.zip');
    await download.saveAs(file);
    assert(new URL(download.url()).pathname === `/api/v1/experiments/${expId}/download.zip`, `downloaded ${download.url()}`);
    const entries = unzipSync(new Uint8Array(fs.readFileSync(file)));
    const names = Object.keys(entries);
    for (const f of manifest.files) {
      const entry = entries[`${expId}/${f.name}`];
      assert(entry, `${expId}/${f.name} is not in the ZIP (it has ${names.join(', ')})`);
      assert(entry.length === f.size, `${f.name}: ${entry.length} bytes, the manifest says ${f.size}`);
      assert(sha256(entry) === f.sha256, `${f.name}: SHA-256 ${sha256(entry)}, the manifest says ${f.sha256}`);
    }
    const inZip = JSON.parse(Buffer.from(entries[`${expId}/manifest.json`]).toString('utf8'));
    assert(JSON.stringify(inZip) === JSON.stringify(manifest), 'the ZIP\'s manifest.json is the manifest');
    assert(names.length === manifest.files.length + 1, `the ZIP has ${names.length} entries, the manifest ${manifest.files.length} files + itself`);
    console.log(`note: ZIP ${fs.statSync(file).size} bytes, ${names.length} files, all SHA-256s match`);
  });

  await check('"Video" on the card is the span from start to stop', async () => {
    const href = await page.getAttribute(`#exp-list li[data-id="${expId}"] .exp-video[data-camera="cam0"]`, 'href');
    const url = new URL(href, BASE);
    const item = (await apiGet('/api/v1/experiments')).find((e) => e.experiment_id === expId);
    assert(Date.parse(url.searchParams.get('start')) === Date.parse(item.started_at), `start=${url.searchParams.get('start')}, started_at ${item.started_at}`);
    assert(Date.parse(url.searchParams.get('end')) === Date.parse(item.stopped_at), `end=${url.searchParams.get('end')}, stopped_at ${item.stopped_at}`);
    const head = await fetch(url, { method: 'HEAD' });
    assert(head.ok && Number(head.headers.get('x-benchcam-span-frames')) > 0, `HEAD ${url.pathname}: ${head.status}`);
  });

  await check('the access-code dialog: 401 asks, "Not now" leaves an Unlock button, a wrong code is refused', async () => {
    const p = await context.newPage();
    watch(p, 'login');
    let unlocked = false;
    await p.route('**/api/v1/experiments', (route) => (unlocked || route.request().method() !== 'GET'
      ? route.continue()
      : route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":{"code":"unauthorized","message":"access token required"}}' })));
    await p.route('**/api/v1/login', (route) => {
      const { token } = JSON.parse(route.request().postData() || '{}');
      if (token === 'right-code') {
        unlocked = true;
        route.fulfill({ status: 200, contentType: 'application/json', body: '{"ok":true}' });
      } else {
        route.fulfill({ status: 401, contentType: 'application/json', body: '{"error":{"code":"unauthorized","message":"wrong token"}}' });
      }
    });
    await p.goto(`${BASE}/#experiments`);
    await p.waitForSelector('#login:not([hidden])', { timeout: 10000 });
    assert(await p.evaluate(() => document.activeElement && document.activeElement.id === 'login-token'), 'the code field has the focus');
    await shot(p, '13-login');
    await p.click('#login-cancel');
    await p.waitForSelector('#lock-button:not([hidden])');
    await p.waitForTimeout(4500); // a poll in between must not ask again
    assert(await p.isHidden('#login'), 'the dialog came back by itself after "Not now"');
    await p.click('#lock-button');
    await p.waitForSelector('#login:not([hidden])');
    await p.fill('#login-token', 'wrong-code');
    await p.click('#login-submit');
    await p.waitForSelector('#login-error:not([hidden])');
    const error = await p.textContent('#login-error');
    assert(/not the access code/i.test(error), `error says "${error}"`);
    await shot(p, '14-login-wrong');
    await p.fill('#login-token', 'right-code');
    await p.keyboard.press('Enter');
    await p.waitForSelector('#login', { state: 'hidden' });
    await p.waitForSelector('#lock-button', { state: 'hidden' });
    await p.waitForSelector(`#exp-list li[data-id="${expId}"]`, { timeout: 10000 });
    await p.close();
  });

  // The next two replace the WebSocket inside the browser, so the page logic is checked
  // against exactly the messages of DESIGN §5, whatever the service's camera is doing.
  await check('no_frame shows a banner with the reason', async () => {
    const p = await context.newPage();
    watch(p, 'no_frame');
    await p.routeWebSocket(/\/api\/v1\/cameras\/[^/]+\/ws$/, (ws) => {
      ws.onMessage((message) => {
        const msg = JSON.parse(String(message));
        if (msg.type === 'subscribe') ws.send(JSON.stringify({ type: 'no_frame', reason: 'not_capturing' }));
      });
    });
    await p.goto(`${BASE}/#live`);
    await p.waitForSelector('#banner:not([hidden])', { timeout: 10000 });
    const text = await p.textContent('#banner');
    assert(text.includes('Camera is not capturing'), `banner says "${text.trim()}"`);
    await waitInPage(p, () => document.querySelector('#chip-streaming').dataset.state === 'no_frame',
      null, 3000, 'the streaming chip to say no_frame');
    await p.waitForTimeout(1500);
    assert(await p.isVisible('#banner'), 'the banner went away while no_frame stands');
    await shot(p, '15-no-frame-banner');
    await p.close();
  });

  await check('falls back to MJPEG when the WebSocket fails twice', async () => {
    const p = await context.newPage();
    watch(p, 'mjpeg');
    await p.routeWebSocket(/\/api\/v1\/cameras\/[^/]+\/ws$/, (ws) => { ws.close({ code: 1011, reason: 'test: refused' }); });
    await p.goto(`${BASE}/#live`);
    await waitInPage(p, () => document.querySelector('#chip-connection').dataset.state === 'mjpeg',
      null, 15000, 'the connection chip to say mjpeg fallback');
    const src = await p.getAttribute('#live-img', 'src');
    assert(src && src.includes('/stream.mjpg?quality='), `img src is ${src}`);
    await waitInPage(p, () => document.querySelector('#live-img').naturalWidth > 0,
      null, 15000, 'an MJPEG picture in #live-img');
    await shot(p, '16-mjpeg-fallback');
    await p.close();
  });

  await check('the status tab shows storage over 24 hours and the hours left, as the service says', async () => {
    const res = await fetch(`${BASE}/api/v1/storage/history`);
    assert(res.ok, `GET /api/v1/storage/history answered ${res.status}: the service lacks it`);
    const history = await res.json();
    await openTab(page, 'status');
    await waitInPage(page, () => document.querySelector('#storage-left').textContent !== '–', null, 10000, 'the hours left');
    const shown = await page.evaluate(() => ({
      left: document.querySelector('#storage-left').dataset.hoursLeft,
      text: document.querySelector('#storage-left').textContent,
      points: document.querySelector('#storage-plot path.line')?.dataset.points ?? null,
    }));
    if (typeof history.hours_left === 'number') {
      assert(Number(shown.left) === history.hours_left && / left at this rate$/.test(shown.text), `page: "${shown.text}", service: ${history.hours_left} h`);
    } else {
      assert(shown.left === '' && !/left at this rate/.test(shown.text), `page: "${shown.text}", service: no hours_left`);
    }
    const samples = history.samples.length;
    assert(samples < 2 ? shown.points === null : shown.points === String(samples), `plot has ${shown.points} points, the service ${samples} samples`);
    await shot(page, '17-status-storage');
  });

  await check('the storage plot draws a day of samples and the hours left', async () => {
    // 24 h of samples every 5 minutes, recording 1.2 GB per hour, from the API's contract.
    const now = Date.now();
    const samples = Array.from({ length: 288 }, (_, i) => {
      const t = now - (287 - i) * 300e3;
      const used = 20e9 + i * 0.1e9 - (i > 200 ? 8e9 : 0);
      return { t: new Date(t).toISOString(), t_us: t * 1000, used_bytes: used, free_bytes: 64e9 - used, total_bytes: 64e9 };
    });
    const body = JSON.stringify({ interval_s: 300, samples, recording_bytes_per_hour: 1.2e9, hours_left: 37.5 });
    const p = await context.newPage();
    watch(p, 'storage');
    await p.route('**/api/v1/storage/history', (route) => route.fulfill({ contentType: 'application/json', body }));
    await p.goto(`${BASE}/#status`);
    await p.waitForSelector('#storage-plot path.line', { timeout: 10000 });
    const shown = await p.evaluate(() => ({
      text: document.querySelector('#storage-left').textContent,
      rate: document.querySelector('#storage-rate').textContent,
      points: document.querySelector('#storage-plot path.line').dataset.points,
    }));
    assert(shown.text === '38 h of recording left at this rate', `hours left reads "${shown.text}"`);
    assert(shown.rate.includes('1.2 GB per hour'), `rate reads "${shown.rate}"`);
    assert(shown.points === '288', `${shown.points} points drawn`);
    await p.locator('[data-testid="storage-card"]').screenshot({ path: path.join(SHOTS, '18-storage-plot.png') }).catch(() => {});
    await p.close();
  });

  await check('the Benches card lists this bench and every peer GET /api/v1/fleet names, each linked to its page', async () => {
    const fleet = await apiGet('/api/v1/fleet');
    await openTab(page, 'status');
    await waitInPage(page, (name) => document.querySelector('#bench-list li[data-self="true"]')?.dataset.name === name,
      fleet.this.name, 10000, `this bench (${fleet.this.name}) in the Benches card`);
    // Two peers as mDNS would report them, and one whose link is not a plain http:// page.
    const peer = (name, url, extra) => ({
      name, instance: `${name}-1a2b3c4d._benchcam._tcp.local.`, host: `${name}-1a2b3c4d.local`, addresses: [],
      port: 8080, url, last_seen_s: 4.2, version: '0.1.0', state: 'ok', cameras: 2, cameras_recording: 1,
      last_experiment: null, free_bytes: 12e9, uptime_s: 600, ...extra,
    });
    const body = JSON.stringify({
      announcing: true, browsing: true, peers_evicted: 0, this: fleet.this,
      peers: [
        peer('bench-b', 'http://10.77.0.2:8080/', { last_experiment: { id: 'run-7', method: 'drop', state: 'running' } }),
        peer('bench-c', 'http://[fd00::3]:80/', { state: 'degraded' }),
        peer('hostile', 'javascript:alert(1)', { state: '<b>x</b>' }),
      ],
    });
    const p = await context.newPage();
    watch(p, 'benches');
    await p.route('**/api/v1/fleet', (route) => route.fulfill({ contentType: 'application/json', body }));
    await p.goto(`${BASE}/#status`);
    await p.waitForSelector('#bench-list li[data-name="hostile"]', { timeout: 10000 });
    const shown = await p.evaluate(() => Array.from(document.querySelectorAll('#bench-list li')).map((li) => ({
      name: li.dataset.name, self: li.dataset.self, href: li.querySelector('a')?.getAttribute('href') ?? null,
      state: li.querySelector('.status-badge').dataset.status, text: li.textContent,
    })));
    assert(shown.length === 4, `${shown.length} benches listed: ${JSON.stringify(shown)}`);
    assert(shown[0].self === 'true' && shown[0].href === null, 'this bench comes first, unlinked');
    assert(shown[1].name === 'bench-b' && shown[1].href === 'http://10.77.0.2:8080/', `bench-b: ${JSON.stringify(shown[1])}`);
    assert(/2 cameras, 1 recording/.test(shown[1].text) && /last experiment run-7 \(running\)/.test(shown[1].text) && /12\.0 GB free/.test(shown[1].text),
      `bench-b reads "${shown[1].text}"`);
    assert(shown[2].href === 'http://[fd00::3]:80/' && shown[2].state === 'degraded', `bench-c: ${JSON.stringify(shown[2])}`);
    assert(shown[3].href === null && shown[3].state === 'unknown', `the hostile peer is listed unlinked: ${JSON.stringify(shown[3])}`);
    assert(await p.evaluate(() => document.querySelector('#benches-count').textContent) === '3 other benches', 'the count');
    await p.locator('[data-testid="benches"]').screenshot({ path: path.join(SHOTS, '19-benches.png') }).catch(() => {});
    await p.close();
  });

  // At each size every tab, with an experiment running (the busiest screens), its details
  // open on the Experiments tab, and axe on all of it.
  const second = `${expId}-b`;
  await check('at 320x640, 390x844 and 844x390 every tab fits, has 48 px controls and no serious axe violation', async () => {
    const started = await apiPost('/api/v1/experiments', { experiment_id: second, method: 'viewport pass' });
    assert(started.status === 201, `starting ${second}: ${started.status} ${JSON.stringify(started.json)}`);
    await apiPost(`/api/v1/experiments/${second}/marker`, { label: 'viewports' });
    const problems = [];
    try {
      for (const vp of VIEWPORTS) {
        await page.setViewportSize(vp);
        const size = `${vp.width}x${vp.height}`;
        for (const tab of TABS) {
          await openTab(page, tab);
          if (tab === 'experiments') {
            await page.waitForSelector('#exp-running:not([hidden])', { timeout: 10000 });
            if (await page.isHidden('#exp-manifest')) {
              await page.click(`#exp-list li[data-id="${expId}"] .exp-view`);
              await page.waitForSelector('#exp-plots .plot-stats', { timeout: 15000 });
            }
            const controls = await boxes(page, ['#exp-mark', '#exp-stop']);
            try { assertTargets(controls); } catch (err) { problems.push(`${size} ${err.message}`); }
            await page.evaluate(() => window.scrollTo(0, 0));
          }
          if (tab === 'live') await page.waitForTimeout(300);
          await shot(page, `vp-${size}-${tab}`);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          if (overflow > 1) problems.push(`${size} ${tab}: ${overflow} px wider than the screen`);
          for (const v of await axeSerious(page, `${size} dark ${tab}`)) {
            problems.push(`${size} ${tab}: axe ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(' | ')}`);
          }
          // Sideways the live view fills the screen; its button leaves to the tab bar.
          if (await page.evaluate(() => document.body.classList.contains('live-full'))) await page.click('#live-full');
        }
        if (vp.width > vp.height) {
          await openTab(page, 'live');
          const viewer = (await boxes(page, ['#viewer']))[0];
          if (Math.abs(viewer.w - vp.width) > 1 || Math.abs(viewer.h - vp.height) > 1) {
            problems.push(`${size}: the live view is ${viewer.w}x${viewer.h}, not full screen`);
          }
          await page.click('#live-full');
          await page.waitForSelector('#panel-live .controls', { state: 'visible' });
          await page.waitForSelector('.tabbar', { state: 'visible' });
          await shot(page, `vp-${size}-live-exit-full`);
        }
      }
      // The light theme, at one size.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.emulateMedia({ colorScheme: 'light' });
      for (const tab of TABS) {
        await openTab(page, tab);
        await shot(page, `vp-390x844-light-${tab}`);
        for (const v of await axeSerious(page, `390x844 light ${tab}`)) {
          problems.push(`light ${tab}: axe ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(' | ')}`);
        }
      }
    } finally {
      // Whatever failed above, the later checks get the phone size and theme back.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.emulateMedia({ colorScheme: 'dark' });
    }
    assert(problems.length === 0, problems.join(' ;; '));
  });

  await check('every control is reachable by keyboard: the tab bar with arrow keys, the stop confirmation', async () => {
    await openTab(page, 'live');
    await page.focus('#tab-live');
    await page.keyboard.press('ArrowRight');
    await page.waitForSelector('#panel-experiments:not([hidden])');
    assert(await page.evaluate(() => document.activeElement.id === 'tab-experiments'), 'ArrowRight moves to the Experiments tab');
    // Stop the second experiment by keyboard alone.
    await page.focus('#exp-stop');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#exp-stop-confirm:not([hidden])');
    assert(await page.evaluate(() => document.activeElement.id === 'exp-stop-yes'), '"Yes, stop" has the focus');
    await page.keyboard.press('Enter');
    await page.waitForSelector(`#exp-list li[data-id="${second}"][data-state="archived"]`, { timeout: 40000 });
    // Every button, link and field on every tab has a name a screen reader can say.
    const unnamed = await page.evaluate(async (tabs) => {
      const out = [];
      for (const tab of tabs) {
        document.querySelector(`#tab-${tab}`).click();
        await new Promise((r) => setTimeout(r, 200));
        for (const el of document.querySelectorAll('button, a[href], input, select, textarea')) {
          const r = el.getBoundingClientRect();
          if (!r.width || !r.height) continue;
          const name = (el.getAttribute('aria-label') || el.labels?.[0]?.textContent || el.textContent || el.title || '').trim();
          if (!name) out.push(`${tab}: ${el.outerHTML.slice(0, 80)}`);
        }
      }
      return out;
    }, TABS);
    assert(unnamed.length === 0, `controls without a name: ${unnamed.join(' | ')}`);
  });

  await check('Arm waits for the trigger, Disarm takes it back', async () => {
    await openTab(page, 'experiments');
    await page.waitForSelector('#exp-form:not([hidden])', { timeout: 10000 });
    const armed = `${expId}-armed`;
    await page.fill('#exp-id', armed);
    await page.click('#exp-arm');
    await page.waitForSelector('#exp-armed:not([hidden])', { timeout: 10000 });
    assert((await page.textContent('#exp-armed-id')).trim() === armed, 'the armed card names it');
    assertTargets(await boxes(page, ['#exp-disarm']));
    await shot(page, '19-experiment-armed');
    await page.click('#exp-disarm');
    await page.waitForSelector('#exp-form:not([hidden])', { timeout: 10000 });
    const listed = (await apiGet('/api/v1/experiments')).some((e) => e.experiment_id === armed);
    assert(!listed, 'the disarmed experiment is still listed');
  });

  await check(`a ${SPAN_S / 60}-minute span downloads as one MP4 that decodes fully, with the announced duration (±1 frame)`, async () => {
    assert(recordingSince, 'recording never started');
    // The span: from 4 s after recording started, whole seconds (what the inputs take).
    const fromMs = Math.ceil((recordingSince + 4000) / 1000) * 1000;
    const toMs = fromMs + SPAN_S * 1000;
    // Its last frames must be on disk: wait until 3 s past its end.
    const wait = toMs + 3000 - Date.now();
    if (wait > 0) {
      console.log(`note: waiting ${(wait / 1000).toFixed(0)} s for ${SPAN_S} s of recording`);
      await page.waitForTimeout(wait);
    }
    await openTab(page, 'recording');
    // "Last 5 minutes": its times are taken when it is pressed.
    const [last5] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), page.click('#span-last5')]);
    const last = new URL(last5.url());
    const lastEnd = Date.parse(last.searchParams.get('end'));
    assert(lastEnd - Date.parse(last.searchParams.get('start')) === 300000 && Math.abs(lastEnd - Date.now()) < 5000,
      `"Last 5 minutes" asked ${last.search}`);
    await last5.cancel();
    await page.fill('#span-from', localInput(fromMs));
    await page.fill('#span-to', localInput(toMs));
    await waitInPage(page, () => document.querySelector('#span-info').dataset.ok === 'true' && /frames/.test(document.querySelector('#span-info').textContent),
      null, 20000, 'the span preview');
    const href = await page.getAttribute('#span-download', 'href');
    const asked = new URL(href, BASE);
    assert(Date.parse(asked.searchParams.get('start')) === fromMs && Date.parse(asked.searchParams.get('end')) === toMs,
      `the link asks ${asked.search}, want ${new Date(fromMs).toISOString()} to ${new Date(toMs).toISOString()} (local ${TIME_ZONE} times converted)`);
    await shot(page, '20-span-ready');
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), page.click('#span-download')]);
    const file = path.join(downloads, 'span.mp4');
    await download.saveAs(file);
    const head = await fetch(download.url(), { method: 'HEAD' });
    assert(head.ok, `HEAD of the span: ${head.status}`);
    const hdr = (n) => head.headers.get(n);
    const size = fs.statSync(file).size;
    assert(size === Number(hdr('content-length')), `downloaded ${size} bytes, Content-Length ${hdr('content-length')}`);
    // One full decode: no error output, and how many frames it decoded.
    const decoded = await run('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, '-fps_mode', 'passthrough', '-enc_time_base', '-1',
      '-f', 'null', '-', '-progress', 'pipe:1'], { maxBuffer: 64 << 20 });
    assert(decoded.stderr.trim() === '', `ffmpeg: ${decoded.stderr.trim().slice(0, 300)}`);
    const decodedFrames = Number([...decoded.stdout.matchAll(/^frame=(\d+)$/gm)].pop()?.[1]);
    const probe = JSON.parse((await run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-count_packets',
      '-show_entries', 'stream=codec_name,nb_read_packets:format=duration', '-of', 'json', file])).stdout);
    const frames = Number(hdr('x-benchcam-span-frames'));
    const announced = Number(hdr('x-benchcam-span-duration'));
    const start = Date.parse(hdr('x-benchcam-span-start'));
    const end = Date.parse(hdr('x-benchcam-span-end'));
    const probed = Number(probe.format.duration);
    console.log(`note: span ${size} bytes, ${frames} frames, ${announced} s announced, ffprobe ${probed} s, decoded ${decodedFrames} frames, `
      + `first frame ${((fromMs - start) / 1000).toFixed(3)} s before the asked start, last ${((toMs - end) / 1000).toFixed(3)} s before the asked end`);
    assert(probe.streams[0].codec_name === 'h264', `codec ${probe.streams[0].codec_name}`);
    assert(decodedFrames === frames, `ffmpeg decoded ${decodedFrames} frames, the service announced ${frames}`);
    assert(Number(probe.streams[0].nb_read_packets) === frames, `ffprobe counts ${probe.streams[0].nb_read_packets} packets`);
    // The file lasts from its first frame to its last plus that last frame's own duration:
    // one frame, i.e. the interval to the next captured frame (longer than 1/30 s when
    // frames were dropped right there; ffprobe reports no usable per-packet durations for
    // these fragments). The headers are in whole ms.
    const pts = (await run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time',
      '-of', 'csv=p=0', file], { maxBuffer: 16 << 20 })).stdout.trim().split('\n').map((l) => Number(l.split(',')[0])).sort((a, b) => a - b);
    const longest = Math.max(...pts.slice(1).map((t, i) => t - pts[i]));
    const captured = (end - start) / 1000;
    const lastFrame = announced - captured;
    assert(pts.length === frames, `${pts.length} packet times for ${frames} frames`);
    // It starts at the keyframe at or before the asked start: the start of the fragment
    // holding it. A fragment ends with the first frame 500 ms (run.sh's fragment_duration)
    // after its start, so it begins at most 500 ms + the longest frame interval early.
    assert(start <= fromMs + 1 && fromMs - start <= 500 + longest * 1000 + 2,
      `first frame at ${hdr('x-benchcam-span-start')}, asked ${new Date(fromMs).toISOString()} (longest interval ${longest.toFixed(3)} s)`);
    // It ends with the last frame captured by the asked end. The frame after it is not in the
    // file, so its interval is allowed up to the file's longest or 250 ms, whichever is more.
    const after = Math.max(longest, 0.25);
    assert(end <= toMs && toMs - end <= after * 1000 + 2,
      `last frame at ${hdr('x-benchcam-span-end')}, asked ${new Date(toMs).toISOString()} (longest interval ${longest.toFixed(3)} s)`);
    assert(lastFrame >= -0.002 && lastFrame <= after + 0.002,
      `announced ${announced} s vs ${captured} s from its first to its last frame: the last frame would last ${lastFrame.toFixed(3)} s (allowed ${after.toFixed(3)} s)`);
    assert(Math.abs(probed - announced) <= FRAME_S, `ffprobe says ${probed} s, the service ${announced} s (±1 frame)`);
    assert(Math.abs(pts[pts.length - 1] - pts[0] - captured) <= FRAME_S,
      `the file's frames span ${(pts[pts.length - 1] - pts[0]).toFixed(3)} s, the headers ${captured} s (±1 frame)`);
    assert(announced >= SPAN_S - after - 0.002 && announced <= SPAN_S + 0.5 + longest + after + 0.002, `${announced} s for a ${SPAN_S} s span`);
  });

  await check('Stop recording', async () => {
    await openTab(page, 'recording');
    await page.click('#rec-stop');
    await waitInPage(page, () => document.querySelector('#rec-state').dataset.state === 'idle',
      null, 10000, '#rec-state to say not recording');
    await shot(page, '21-recording-stopped');
  });

  await check('toasts: at most two at a time, and they go away by themselves', async () => {
    await openTab(page, 'recording');
    // Start, stop, start, stop in quick succession (buttons forced on, so some answer 409):
    // four or more different messages, never more than two on screen.
    const most = await page.evaluate(async () => {
      let most = 0;
      const count = () => { most = Math.max(most, document.querySelectorAll('#toast-area .toast').length); };
      const seen = new MutationObserver(count);
      seen.observe(document.querySelector('#toast-area'), { childList: true });
      for (const id of ['#rec-start', '#rec-stop', '#rec-start', '#rec-stop', '#rec-stop']) {
        const button = document.querySelector(id);
        button.disabled = false;
        button.click();
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 1500));
      seen.disconnect();
      return most;
    });
    await shot(page, '22-toasts');
    assert(most >= 1 && most <= 2, `${most} toasts on screen at once`);
    await waitInPage(page, () => document.querySelectorAll('#toast-area .toast').length === 0, null, 15000, 'the toasts to go away');
    await apiPost('/api/v1/cameras/cam0/recording/stop');
  });

  await check('after a reload the first-visit hint stays away', async () => {
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#camera-select option[value="cam0"]', { state: 'attached', timeout: 10000 });
    assert(await page.isHidden('#hint'), 'the hint shows again');
  });

  await check('no uncaught errors in the page', async () => {
    assert(pageErrors.length === 0, pageErrors.join(' | '));
  });
}

const guard = setTimeout(() => {
  console.log(`FAIL - the run did not finish within ${RUN_TIMEOUT_MS / 1000} s`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, RUN_TIMEOUT_MS);

try {
  await main();
} catch (err) {
  failed += 1;
  console.log(`FAIL - browser session: ${err && err.message ? err.message.split('\n')[0] : err}`);
}
clearTimeout(guard);
console.log(`browser checks took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
