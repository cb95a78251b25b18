// Browser test of the benchcam web page against a running service (started by run.sh).
//
// Drives Debian's Chromium through playwright-core at phone sizes and checks what a person
// would: the live view plays the camera's H.264 through Media Source Extensions (the frame
// number the test pattern burns into the picture rises, read back off the <video> by
// tests/browser/pattern.mjs; capture → picture latency from the burned-in clock; a second
// viewer left open for minutes stays at the live edge with its buffer trimmed; a new init
// segment mid-stream restarts the video), and falls back to JPEG frames (no MSE, the
// service's h264_unavailable, a broken init segment) and to MJPEG (no WebSocket, or one
// that fails twice), saying which mode it is in; recording starts, a clip shows up and plays; an
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
// Prints one line per check and a final "N passed, M failed"; exits 1 on any failure. A
// check that cannot run here (H.264 in a Chromium without it) prints SKIP and why, and is
// counted in neither.

import { chromium } from 'playwright-core';
import { unzipSync } from 'fflate';
import { patternReader } from './pattern.mjs';
import { CHROMIUM_ARGS, routeAssets } from './chromium.mjs';
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
/** Clips rotate every 4 s (run.sh config); allow for encoder start-up and a slow CI machine. */
const CLIP_TIMEOUT_MS = 45000;
/** The span downloaded as one MP4. */
const SPAN_S = 120;
/** The whole run stops by itself after this, whatever hangs. */
const RUN_TIMEOUT_MS = 420000;
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
const skipped = [];
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
    if (err instanceof Skip) {
      skipped.push(`${name}: ${err.message}`);
      console.log(`SKIP - ${name}: ${err.message}`);
      return;
    }
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

// --- Live view: what the picture shows ------------------------------------------------

/** The camera's mode (from GET /api/v1/cameras): the pattern's glyph scale follows it. */
let cameraMode = { width: 1280, height: 720, fps: 30 };
const READER_SRC = patternReader.toString();

/** The pattern's text read off `selector` (#live-video or #live-img): {text, frame, msOfDay}
 *  or null when the element has no picture. */
const readPicture = (page, selector) => page.evaluate(({ src, selector, w, h }) => {
  window.__readPattern ||= (0, eval)(`(${src})`);
  const el = document.querySelector(selector);
  return el ? window.__readPattern(el, w, h) : null;
}, { src: READER_SRC, selector, w: cameraMode.width, h: cameraMode.height });

/** The <video>'s playback, as the browser reports it. */
const videoState = (page) => page.evaluate(() => {
  const v = document.querySelector('#live-video');
  const q = typeof v.getVideoPlaybackQuality === 'function' ? v.getVideoPlaybackQuality() : {};
  const b = v.buffered;
  return {
    hidden: v.hidden, readyState: v.readyState, currentTime: v.currentTime, paused: v.paused,
    width: v.videoWidth, height: v.videoHeight, error: v.error ? `${v.error.code}: ${v.error.message}` : null,
    totalFrames: q.totalVideoFrames ?? null, droppedFrames: q.droppedVideoFrames ?? null,
    bufferedStart: b.length ? b.start(0) : null, bufferedEnd: b.length ? b.end(b.length - 1) : null,
    visibility: document.visibilityState,
  };
});

const viewMode = (page) => page.evaluate(() => document.querySelector('#viewer').dataset.mode);

/** Waits until the page has settled on a mode (not "pending"); returns it. */
const settledMode = (page, timeoutMs = 15000) => waitInPage(page, () => {
  const mode = document.querySelector('#viewer').dataset.mode;
  return mode && mode !== 'pending' ? mode : null;
}, null, timeoutMs, '#viewer[data-mode] to be h264, jpeg or mjpeg');

/**
 * Capture → picture latency of live H.264 for `ms`: at each picture the browser presents
 * (requestVideoFrameCallback) the capture time the pattern burned in is read off that very
 * frame and compared with when it is shown (same machine, same clock). Also the frame
 * numbers, which must never go backwards.
 */
async function sampleLatency(page, ms) {
  const result = await page.evaluate(async ({ src, w, h, ms }) => {
    window.__readPattern ||= (0, eval)(`(${src})`);
    const video = document.querySelector('#live-video');
    if (typeof video.requestVideoFrameCallback !== 'function') return { error: 'no requestVideoFrameCallback' };
    const samples = [];
    await new Promise((resolve) => {
      const until = performance.now() + ms;
      const onFrame = (now, meta) => {
        const read = window.__readPattern(video, w, h);
        if (read && read.msOfDay !== null && read.frame !== null) {
          const shownAt = Date.now() + ((meta.expectedDisplayTime || now) - performance.now());
          let captured = Math.floor(shownAt / 864e5) * 864e5 + read.msOfDay;
          if (captured > shownAt + 432e5) captured -= 864e5; // read just after midnight UTC
          samples.push({ frame: read.frame, latencyMs: shownAt - captured });
        } else {
          samples.push({ frame: null, text: read ? read.text : null });
        }
        if (performance.now() < until) video.requestVideoFrameCallback(onFrame);
        else resolve();
      };
      video.requestVideoFrameCallback(onFrame);
      setTimeout(resolve, ms + 3000); // no picture at all: the caller sees no samples
    });
    return { samples };
  }, { src: READER_SRC, w: cameraMode.width, h: cameraMode.height, ms });
  if (result.error) throw new Error(result.error);
  const read = result.samples.filter((s) => s.frame !== null);
  const latencies = read.map((s) => s.latencyMs).sort((a, b) => a - b);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  let backwards = 0;
  for (let i = 1; i < read.length; i += 1) if (read[i].frame < read[i - 1].frame) backwards += 1;
  return {
    shown: result.samples.length, read: read.length, unread: result.samples.filter((s) => s.frame === null).map((s) => s.text),
    p50: at(0.5), p95: at(0.95), max: latencies[latencies.length - 1], backwards,
    firstFrame: read[0]?.frame ?? null, lastFrame: read[read.length - 1]?.frame ?? null,
  };
}

const formatLatency = (l) => `${l.read} pictures read of ${l.shown} shown: p50 ${l.p50?.toFixed(0)} ms, p95 ${l.p95?.toFixed(0)} ms, max ${l.max?.toFixed(0)} ms`;

/** Test-only probes, installed before the page's own script: when the page first asked
 *  for a stream, when the <video> first showed a picture, and how often it was emptied
 *  (a new MediaSource: a new init segment, or leaving H.264). */
function installLiveProbes() {
  if (typeof window.WebSocket === 'function') {
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function sendProbed(data) {
      if (typeof data === 'string' && data.includes('"subscribe"')) {
        window.__subscribes = (window.__subscribes || []).concat([{ at: performance.now(), message: data }]);
      }
      return send.call(this, data);
    };
  }
  window.__emptied = 0;
  document.addEventListener('emptied', () => { window.__emptied += 1; }, true);
  document.addEventListener('DOMContentLoaded', () => {
    const video = document.querySelector('#live-video');
    if (video && typeof video.requestVideoFrameCallback === 'function') {
      video.requestVideoFrameCallback((now, meta) => { window.__firstPictureAt = meta.expectedDisplayTime || now; });
    }
  });
}

/** A check that cannot run here says why, loudly, and counts as neither passed nor failed. */
class Skip extends Error {}

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
    args: CHROMIUM_ARGS,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
    hasTouch: true,
    colorScheme: 'dark',
    timezoneId: TIME_ZONE,
    acceptDownloads: true,
  });
  await routeAssets(context, BASE);
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

  // Whether this Chromium plays H.264 through Media Source Extensions (Debian's is built
  // with its ffmpeg and the proprietary codecs; a Chromium without them must say so here).
  let h264Why = '';
  await check('this Chromium can play H.264 through Media Source Extensions', async () => {
    const mse = await page.evaluate((codec) => ({
      mediaSource: typeof window.MediaSource, managed: typeof window.ManagedMediaSource,
      h264: !!window.MediaSource && MediaSource.isTypeSupported(`video/mp4; codecs="${codec}"`),
      rvfc: 'requestVideoFrameCallback' in HTMLVideoElement.prototype,
    }), 'avc1.42c01f');
    const list = await apiGet('/api/v1/cameras');
    const cam = (Array.isArray(list) ? list : list.cameras || []).find((c) => c.id === 'cam0');
    if (cam && cam.mode && cam.mode.width) cameraMode = cam.mode;
    console.log(`note: MediaSource ${mse.mediaSource}, ManagedMediaSource ${mse.managed}, `
      + `isTypeSupported('video/mp4; codecs="avc1.42c01f"') ${mse.h264}, requestVideoFrameCallback ${mse.rvfc}`);
    if (!mse.h264) {
      h264Why = `${CHROMIUM} answers isTypeSupported('video/mp4; codecs="avc1.42c01f"') = false (built without proprietary codecs?)`;
      throw new Skip(`NO H.264 IN THIS CHROMIUM: ${h264Why}; the live H.264 checks below are skipped, only the JPEG and MJPEG paths are tested`);
    }
  });

  await check('live view plays H.264 via MSE: mode H.264, the frame number in the picture rises, the video plays', async () => {
    if (h264Why) throw new Skip(h264Why);
    const mode = await settledMode(page);
    const note = await page.textContent('#quality-note');
    assert(mode === 'h264', `the page shows ${mode}, not H.264 (its note: "${note}")`);
    await waitInPage(page, () => {
      const v = document.querySelector('#live-video');
      return !v.hidden && v.readyState >= 2 && v.videoWidth > 0 && v.currentTime > 0;
    }, null, 10000, 'a playing picture in #live-video');
    const before = { video: await videoState(page), picture: await readPicture(page, '#live-video'), chips: await chips(page) };
    await page.waitForTimeout(1000);
    const after = { video: await videoState(page), picture: await readPicture(page, '#live-video'), chips: await chips(page) };
    assert(!after.video.error, `video error ${after.video.error}`);
    assert(before.picture.frame !== null && after.picture.frame !== null,
      `the frame number is not readable in the picture: "${before.picture.text}", then "${after.picture.text}"`);
    const frames = after.picture.frame - before.picture.frame;
    assert(frames >= 10, `the picture went from frame ${before.picture.frame} to ${after.picture.frame} in 1 s`);
    const decoded = after.video.totalFrames - before.video.totalFrames;
    assert(decoded >= 10, `getVideoPlaybackQuality().totalVideoFrames rose by ${decoded} in 1 s`);
    const played = after.video.currentTime - before.video.currentTime;
    assert(played >= 0.5, `currentTime advanced ${played.toFixed(3)} s in 1 s`);
    assert(after.chips.frames > before.chips.frames, `#chip-frames stayed at ${after.chips.frames}`);
    assert(after.chips.connection === 'live' && after.chips.streaming === 'streaming',
      `chips say ${after.chips.connection} / ${after.chips.streaming}`);
    assert(await page.isHidden('#live-img'), 'the <img> shows beside the <video>');
    assert((await page.textContent('#chip-mode')).trim() === 'H.264', 'the mode chip does not say H.264');
    assert(/recording's stream/.test(note) && /fallback/.test(note), `the quality note says "${note}"`);
    const behind = after.video.bufferedEnd - after.video.currentTime;
    console.log(`note: H.264 ${after.video.width}x${after.video.height}, frames ${before.picture.frame} → ${after.picture.frame} in the picture, `
      + `${decoded} decoded, ${played.toFixed(2)} s played in 1 s, ${behind.toFixed(2)} s behind the buffered end`);
    await shot(page, '01-live-h264');
    // Quality does not change the H.264 stream (it is the recording's): pressing it leaves
    // the video playing as it is.
    await page.click('#quality-low');
    await page.waitForTimeout(700);
    const low = { picture: await readPicture(page, '#live-video'), mode: await viewMode(page), width: (await videoState(page)).width };
    await page.click('#quality-medium');
    assert(low.mode === 'h264' && low.width === after.video.width, `after Low: mode ${low.mode}, ${low.width} px wide`);
    assert(low.picture.frame > after.picture.frame, `after Low the picture stayed at frame ${low.picture.frame}`);
  });

  await check('live H.264 capture → picture latency, read off the clock in the picture', async () => {
    if (h264Why) throw new Skip(h264Why);
    assert(await viewMode(page) === 'h264', 'not in H.264 mode');
    const l = await sampleLatency(page, 3000);
    console.log(`note: capture → picture (H.264, MSE): ${formatLatency(l)} (DESIGN §9 target: p95 ≤ 250 ms, measured by a benchmark, not here)`);
    // 30 fps shown when the machine is idle; a busy 2-core box shows fewer, all read.
    assert(l.read >= 15, `only ${l.read} of ${l.shown} pictures in 3 s had a readable clock (unread: ${l.unread.slice(0, 3).join(' | ')})`);
    assert(l.backwards === 0, `the frame number went backwards ${l.backwards} times`);
    // Loose on purpose (a loaded 2-core CI box): the page jumps to the live edge past 0.5 s.
    assert(l.p95 < 1000, `p95 ${l.p95.toFixed(0)} ms: the page does not keep to the live edge`);
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

  // A second viewer stays on the live view while the other checks run (until the span
  // check, minutes later): its latency must not grow and its buffer must stay trimmed.
  let watcher = null;
  let watcherStart = null;
  await check('a new viewer gets its first H.264 picture quickly', async () => {
    if (h264Why) throw new Skip(h264Why);
    watcher = await context.newPage();
    watch(watcher, 'watcher');
    await watcher.addInitScript(installLiveProbes);
    await watcher.goto(`${BASE}/#live`);
    const mode = await settledMode(watcher);
    assert(mode === 'h264', `the second viewer shows ${mode}`);
    const first = await waitInPage(watcher, () => (window.__firstPictureAt && window.__subscribes
      ? { ms: window.__firstPictureAt - window.__subscribes[0].at, asked: window.__subscribes[0].message } : null),
    null, 10000, 'the first picture in #live-video');
    assert(first.asked.includes('"codec":"h264"'), `the page asked ${first.asked}`);
    console.log(`note: first H.264 picture ${first.ms.toFixed(0)} ms after the subscribe (DESIGN §9 target: ≤ 500 ms, measured by a benchmark)`);
    assert(first.ms < 3000, `first picture ${first.ms.toFixed(0)} ms after the subscribe`);
    await watcher.waitForTimeout(1000);
    const latency = await sampleLatency(watcher, 3000);
    assert(latency.read >= 15, `only ${latency.read} readable pictures in 3 s`);
    watcherStart = { at: Date.now(), latency, video: await videoState(watcher) };
    console.log(`note: the second viewer at the start: ${formatLatency(latency)}`);
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

  await check('without MSE (MediaSource removed) the page shows JPEG frames, and says so', async () => {
    const p = await context.newPage();
    watch(p, 'no-mse');
    await p.addInitScript(() => {
      delete window.MediaSource;
      delete window.ManagedMediaSource;
      delete window.WebKitMediaSource;
    });
    await p.addInitScript(installLiveProbes);
    await p.goto(`${BASE}/#live`);
    const mode = await settledMode(p);
    assert(mode === 'jpeg', `mode is ${mode}, not jpeg`);
    const asked = await p.evaluate(() => (window.__subscribes || []).map((s) => s.message));
    assert(asked.length >= 1 && asked.every((m) => !m.includes('h264')), `the page asked ${asked.join(', ')}`);
    const first = await waitInPage(p, () => {
      const n = Number(document.querySelector('#chip-frames').dataset.value);
      const src = document.querySelector('#live-img').getAttribute('src') || '';
      return n > 0 && src ? { n, src } : null;
    }, null, 15000, 'the first frame (#chip-frames > 0)');
    const later = await waitInPage(p, (before) => {
      const n = Number(document.querySelector('#chip-frames').dataset.value);
      const src = document.querySelector('#live-img').getAttribute('src') || '';
      return n >= before.n + 3 && src !== before.src ? { n, src } : null;
    }, first, 15000, `the frame counter to pass ${first.n + 3} and the image to change`);
    assert(later.src.startsWith('blob:'), `live image is not a Blob URL: ${later.src.slice(0, 60)}`);
    const state = await chips(p);
    assert(state.connection === 'live' && state.streaming === 'streaming', `chips say ${state.connection} / ${state.streaming}`);
    assert(await p.isHidden('#live-video'), 'the <video> shows in JPEG mode');
    // The src flips to a new Blob URL for every frame: sample until one has decoded.
    const decodedPicture = () => waitInPage(p, ({ src, w, h }) => {
      const img = document.querySelector('#live-img');
      if (!img.complete || img.naturalWidth === 0) return null;
      window.__readPattern ||= (0, eval)(`(${src})`);
      const read = window.__readPattern(img, w, h);
      return read && read.frame !== null ? { ...read, w: img.naturalWidth } : null;
    }, { src: READER_SRC, w: cameraMode.width, h: cameraMode.height }, 5000, 'a decoded JPEG whose frame number reads');
    const a = await decodedPicture();
    await p.waitForTimeout(1000);
    const b = await decodedPicture();
    assert(b.frame > a.frame, `the picture's frame number went from ${a.frame} to ${b.frame} in 1 s`);
    const note = await p.textContent('#quality-note');
    assert(/^JPEG frames: quality sets/.test(note) && /Media Source Extensions/.test(note), `the quality note says "${note}"`);
    assert((await p.textContent('#chip-mode')).trim() === 'JPEG', 'the mode chip does not say JPEG');
    console.log(`note: JPEG ${a.w} px wide, frames ${a.frame} → ${b.frame} in the picture`);
    await shot(p, '16a-jpeg-without-mse');
    await p.close();
  });

  await check('without WebSocket the page shows the MJPEG stream, and says so', async () => {
    const p = await context.newPage();
    watch(p, 'no-websocket');
    await p.addInitScript(() => { delete window.WebSocket; });
    await p.goto(`${BASE}/#live`);
    const mode = await settledMode(p, 10000);
    assert(mode === 'mjpeg', `mode is ${mode}, not mjpeg`);
    const src = await p.getAttribute('#live-img', 'src');
    assert(src && src.includes('/stream.mjpg?quality='), `img src is ${src}`);
    await waitInPage(p, () => document.querySelector('#live-img').naturalWidth > 0, null, 15000, 'an MJPEG picture in #live-img');
    assert(await p.isHidden('#live-video'), 'the <video> shows in MJPEG mode');
    // The <img> shows each part of the multipart stream as it comes; a canvas gets the newest.
    const a = await readPicture(p, '#live-img');
    await p.waitForTimeout(1500);
    const b = await readPicture(p, '#live-img');
    assert(a && b && a.frame !== null && b.frame !== null, `the frame number is not readable: "${a && a.text}", "${b && b.text}"`);
    assert(b.frame > a.frame, `the MJPEG picture's frame number went from ${a.frame} to ${b.frame} in 1.5 s`);
    assert((await p.textContent('#chip-mode')).trim() === 'MJPEG', 'the mode chip does not say MJPEG');
    assert(/^MJPEG stream: quality sets/.test(await p.textContent('#quality-note')), 'the quality note does not describe MJPEG');
    await shot(p, '16b-mjpeg-without-websocket');
    await p.close();
  });

  // The service in between: the real stream, with one thing changed in the messages of
  // DESIGN §5 (routeWebSocket with connectToServer).
  await check('h264_unavailable: the page asks for JPEG frames on the same socket and shows them', async () => {
    const p = await context.newPage();
    watch(p, 'h264-unavailable');
    let sockets = 0;
    const asked = [];
    await p.routeWebSocket(/\/api\/v1\/cameras\/[^/]+\/ws$/, (ws) => {
      sockets += 1;
      const server = ws.connectToServer();
      ws.onMessage((message) => {
        const msg = JSON.parse(String(message));
        if (msg.type === 'subscribe') asked.push(msg.codec || 'jpeg');
        if (msg.type === 'subscribe' && msg.codec === 'h264') {
          ws.send(JSON.stringify({ type: 'error', code: 'h264_unavailable', message: 'test: this camera records MJPEG' }));
        } else {
          server.send(message);
        }
      });
    });
    await p.goto(`${BASE}/#live`);
    const mode = await settledMode(p);
    assert(mode === 'jpeg', `mode is ${mode}`);
    await waitInPage(p, () => Number(document.querySelector('#chip-frames').dataset.value) >= 3, null, 15000, 'three JPEG frames');
    if (!h264Why) assert(asked[0] === 'h264', `the page asked ${asked.join(', ')} first`);
    assert(asked[asked.length - 1] === 'jpeg', `the page asked ${asked.join(', ')}`);
    assert(sockets === 1, `${sockets} sockets: the plain subscribe should go on the same one`);
    const note = await p.textContent('#quality-note');
    if (!h264Why) assert(note.includes('No H.264 from this camera: test: this camera records MJPEG.'), `the note says "${note}"`);
    await p.close();
  });

  await check('a broken H.264 init segment: the page falls back to JPEG frames for good and says so', async () => {
    if (h264Why) throw new Skip(h264Why);
    const p = await context.newPage();
    watch(p, 'mse-broken');
    let sockets = 0;
    const asked = [];
    await p.routeWebSocket(/\/api\/v1\/cameras\/[^/]+\/ws$/, (ws) => {
      sockets += 1;
      const first = sockets === 1;
      const server = ws.connectToServer();
      ws.onMessage((message) => {
        const msg = JSON.parse(String(message));
        if (msg.type === 'subscribe') asked.push(msg.codec || 'jpeg');
        server.send(message);
      });
      let initNext = false;
      server.onMessage((message) => {
        if (typeof message === 'string') {
          initNext = first && JSON.parse(message).type === 'init';
          ws.send(message);
        } else if (initNext) {
          // An init segment of the right boxes with nothing sensible inside.
          const broken = Buffer.alloc(64, 0xAB);
          broken.writeUInt32BE(24, 0); broken.write('ftyp', 4, 'latin1');
          broken.writeUInt32BE(40, 24); broken.write('moov', 28, 'latin1');
          ws.send(broken);
          initNext = false;
        } else {
          ws.send(message);
        }
      });
    });
    await p.goto(`${BASE}/#live`);
    await p.waitForSelector('#toast-area .toast', { timeout: 10000 });
    const toastText = await p.textContent('#toast-area');
    assert(/H\.264 video failed .*showing JPEG frames/.test(toastText), `toast says "${toastText}"`);
    await waitInPage(p, () => document.querySelector('#viewer').dataset.mode === 'jpeg'
      && Number(document.querySelector('#chip-frames').dataset.value) > 3
      && (document.querySelector('#live-img').getAttribute('src') || '').startsWith('blob:'), null, 15000, 'JPEG frames after the failure');
    assert(asked[0] === 'h264' && asked[asked.length - 1] === 'jpeg' && sockets >= 2, `asked ${asked.join(', ')} over ${sockets} sockets`);
    const note = await p.textContent('#quality-note');
    assert(/H\.264 video failed on this page/.test(note), `the note says "${note}"`);
    // "For this page load": a reconnect asks for JPEG again.
    // Waited for by the new subscribe, then by JPEG frames again: the frames chip still shows
    // the count from before the click, so it alone could pass before the page reconnects.
    const before = asked.length;
    await p.click('#live-reconnect');
    for (const t0 = Date.now(); asked.length === before;) {
      assert(Date.now() - t0 < 15000, 'no subscribe within 15 s of Reconnect');
      await new Promise((r) => setTimeout(r, 50));
    }
    await waitInPage(p, () => document.querySelector('#viewer').dataset.mode === 'jpeg'
      && Number(document.querySelector('#chip-frames').dataset.value) > 3, null, 15000, 'JPEG frames after Reconnect');
    const after = asked.slice(before);
    assert(after.every((c) => c === 'jpeg') && await viewMode(p) === 'jpeg', `after Reconnect the page asked ${after.join(', ')} and shows ${await viewMode(p)}`);
    await shot(p, '16c-mse-failed');
    await p.close();
  });

  await check('a new init segment mid-stream (encoder restart): the video starts over and keeps playing', async () => {
    if (h264Why) throw new Skip(h264Why);
    const p = await context.newPage();
    watch(p, 'reinit');
    await p.addInitScript(installLiveProbes);
    let resend = false;
    let resent = 0;
    let dropped = 0;
    await p.routeWebSocket(/\/api\/v1\/cameras\/[^/]+\/ws$/, (ws) => {
      const server = ws.connectToServer();
      let init = null;
      let pending = null; // the text message whose bytes come next
      let skipUntilKey = false;
      server.onMessage((message) => {
        if (typeof message === 'string') {
          const msg = JSON.parse(message);
          pending = msg;
          if (msg.type === 'frame' && msg.codec === 'h264' && resend && init) {
            // As the service does after a restart: the init again, then a keyframe first.
            resend = false;
            resent += 1;
            ws.send(JSON.stringify(init.msg));
            ws.send(init.bytes);
            skipUntilKey = true;
          }
          if (msg.type === 'frame' && skipUntilKey) {
            if (!msg.keyframe) { dropped += 1; return; }
            skipUntilKey = false;
          }
          ws.send(message);
          return;
        }
        const meta = pending;
        pending = null;
        if (meta && meta.type === 'init') init = { msg: meta, bytes: message };
        if (meta && meta.type === 'frame' && skipUntilKey) return; // its text was dropped
        ws.send(message);
      });
    });
    await p.goto(`${BASE}/#live`);
    assert(await settledMode(p) === 'h264', 'not in H.264 mode');
    await waitInPage(p, () => document.querySelector('#live-video').currentTime > 0.5, null, 10000, 'the video to play');
    const emptiedBefore = await p.evaluate(() => window.__emptied);
    resend = true;
    await waitInPage(p, (n) => window.__emptied > n, emptiedBefore, 10000, 'the <video> to be emptied for the new init segment');
    // Playing again from the new init segment.
    await waitInPage(p, () => {
      const v = document.querySelector('#live-video');
      return v.readyState >= 2 && v.currentTime > 0 && !v.paused;
    }, null, 10000, 'the video to play again');
    const a = await readPicture(p, '#live-video');
    await p.waitForTimeout(1000);
    const b = await readPicture(p, '#live-video');
    assert(a.frame !== null && b.frame !== null && b.frame > a.frame, `after the new init the picture went from "${a.text}" to "${b.text}"`);
    assert(await viewMode(p) === 'h264', 'the page left H.264');
    assert(await p.isHidden('#toast-area .toast'), `a toast: ${await p.textContent('#toast-area')}`);
    console.log(`note: init sent again ${resent} time(s), ${dropped} fragments before the next keyframe left out; frames ${a.frame} → ${b.frame} after it`);
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

  await check('minutes later the second viewer is still at the live edge: latency has not grown, old video is trimmed', async () => {
    if (h264Why) throw new Skip(h264Why);
    assert(watcher && watcherStart, 'the second viewer never started');
    const minutes = (Date.now() - watcherStart.at) / 60000;
    const mode = await viewMode(watcher);
    assert(mode === 'h264', `after ${minutes.toFixed(1)} min the second viewer shows ${mode}`);
    const latency = await sampleLatency(watcher, 3000);
    const video = await videoState(watcher);
    const chip = await watcher.evaluate(() => ({ ...document.querySelector('#chip-behind').dataset }));
    const kept = video.bufferedEnd - video.bufferedStart;
    const decoded = video.totalFrames - watcherStart.video.totalFrames;
    const expected = ((Date.now() - watcherStart.at) / 1000) * cameraMode.fps;
    console.log(`note: the second viewer after ${minutes.toFixed(1)} min: ${formatLatency(latency)} (at the start p95 ${watcherStart.latency.p95.toFixed(0)} ms); `
      + `${kept.toFixed(1)} s buffered, ${decoded} frames decoded of ~${expected.toFixed(0)} sent, ${video.droppedFrames} dropped by the browser, `
      + `${chip.jumps} jumps to the live edge, ${chip.dropped} fragments dropped by the page; now ${Number(chip.value).toFixed(2)} s behind the buffered end, `
      + `a fragment shown ${chip.displayDelayMs} ms (median) after it arrived; page ${video.visibility}`);
    assert(latency.read >= 15, `only ${latency.read} readable pictures in 3 s`);
    assert(latency.backwards === 0, `the frame number went backwards ${latency.backwards} times`);
    assert(latency.p95 < Math.max(1000, watcherStart.latency.p95 + 250),
      `p95 latency ${latency.p95.toFixed(0)} ms now, ${watcherStart.latency.p95.toFixed(0)} ms ${minutes.toFixed(1)} min ago`);
    // The page keeps 10 s behind the playhead and removes in steps of 2 s; the browser
    // removes whole groups of pictures (up to the next keyframe).
    assert(kept <= 20, `${kept.toFixed(1)} s of video buffered: old video is not removed`);
    assert(decoded >= expected * 0.5, `${decoded} frames decoded in ${minutes.toFixed(1)} min, ~${expected.toFixed(0)} were sent`);
    await shot(watcher, '20-watcher-later');
    await watcher.close();
    watcher = null;
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
if (skipped.length) console.log(`${skipped.length} SKIPPED (not run, not passed):\n  ${skipped.join('\n  ')}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
