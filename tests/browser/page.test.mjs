// Browser test of the benchcam web page against a running service (started by run.sh).
//
// Drives Debian's Chromium through playwright-core at phone size and checks what a person
// would: live frames arrive and change, recording starts, a clip shows up and plays in the
// page, recording stops; plus the no_frame banner and the MJPEG fallback, with the
// WebSocket replaced by Playwright. Screenshots of each step go to SCREENSHOT_DIR.
//
// Environment: BENCHCAM_URL (required, e.g. http://127.0.0.1:8080), SCREENSHOT_DIR
// (default target/test-output/browser), CHROMIUM (default /usr/bin/chromium).
// Prints one line per check and a final "N passed, M failed"; exits 1 on any failure.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BASE = process.env.BENCHCAM_URL;
const SHOTS = process.env.SCREENSHOT_DIR || 'target/test-output/browser';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Clips rotate every 4 s (run.sh config); allow for encoder start-up and a slow CI machine. */
const CLIP_TIMEOUT_MS = 45000;
/** The whole run stops by itself after this, whatever hangs. */
const RUN_TIMEOUT_MS = 240000;

if (!BASE) {
  console.error('BENCHCAM_URL is not set (run tests/browser/run.sh)');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

let passed = 0;
let failed = 0;
const pageErrors = [];

/** Runs one named check; a thrown error (or a timeout inside it) fails it. */
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   - ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL - ${name}: ${err && err.message ? err.message.split('\n')[0] : err}`);
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

async function shot(page, name) {
  try {
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
  } catch (err) {
    console.log(`note: screenshot ${name} failed: ${err.message}`);
  }
}

function watch(page, label) {
  page.on('pageerror', (err) => pageErrors.push(`${label}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') fs.appendFileSync(path.join(SHOTS, 'console.log'), `${label}: ${msg.text()}\n`);
  });
}

const chips = (page) => page.evaluate(() => ({
  frames: Number(document.querySelector('#chip-frames').dataset.value),
  connection: document.querySelector('#chip-connection').dataset.state,
  streaming: document.querySelector('#chip-streaming').dataset.state,
  src: document.querySelector('#live-img').getAttribute('src') || '',
}));

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'benchcam-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
    hasTouch: true,
    colorScheme: 'dark',
  });
  try {
    await runChecks(context);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function runChecks(context) {
  const page = context.pages()[0] || await context.newPage();
  watch(page, 'main');
  page.setDefaultTimeout(15000);

  await check('page loads and lists the cameras', async () => {
    const res = await page.goto(`${BASE}/`, { waitUntil: 'load' });
    assert(res && res.ok(), `GET / answered ${res && res.status()}`);
    const ids = await waitInPage(page, () => {
      const ids = Array.from(document.querySelectorAll('#camera-select option')).map((o) => o.value).filter(Boolean);
      return ids.length ? ids : null;
    }, null, 10000, 'a camera in #camera-select');
    assert(ids.includes('cam0'), `cameras listed: ${ids.join(', ')}`);
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
    await page.click('#tab-recording');
    await page.waitForSelector('#panel-recording:not([hidden])');
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
  });

  await check('Stop recording', async () => {
    await page.click('#clip-player-close').catch(() => {});
    await page.click('#rec-stop');
    await waitInPage(page, () => document.querySelector('#rec-state').dataset.state === 'idle',
      null, 10000, '#rec-state to say not recording');
    await shot(page, '06-recording-stopped');
  });

  await check('an experiment starts and stops from the page and shows its manifest', async () => {
    await page.click('#tab-experiments');
    await page.waitForSelector('#panel-experiments:not([hidden])');
    await page.fill('#exp-id', 'browser-1');
    await page.fill('#exp-method', 'page test');
    await page.click('#exp-start');
    await page.waitForSelector('#exp-list li[data-id="browser-1"][data-state="running"]', { timeout: 10000 });
    await shot(page, '07-experiment-running');
    page.once('dialog', (d) => d.accept());
    await page.click('#exp-list li[data-id="browser-1"] .exp-stop');
    // Stop waits for the post-roll, then archives; the list shows it archived.
    await page.waitForSelector('#exp-list li[data-id="browser-1"][data-state="archived"]', { timeout: 30000 });
    await page.click('#exp-list li[data-id="browser-1"] .exp-view');
    await page.waitForSelector('#exp-manifest:not([hidden])');
    const files = await page.$$eval('#exp-files li', (lis) => lis.map((li) => li.dataset.file));
    assert(files.some((f) => f.endsWith('.mp4')), `archived files listed: ${files.join(', ')}`);
    assert(files.includes('frames.csv'), `frames.csv listed: ${files.join(', ')}`);
    const events = await page.$$eval('#exp-events tbody tr', (rows) => rows.length);
    assert(events >= 2, `start and stop events shown (${events})`);
    await shot(page, '08-experiment-manifest');
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
    const state = await chips(p);
    assert(state.streaming === 'no_frame', `streaming chip is "${state.streaming}"`);
    await shot(p, '09-no-frame-banner');
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
    await shot(p, '10-mjpeg-fallback');
    await p.close();
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
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
