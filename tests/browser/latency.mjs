// Live H.264 latency in Chromium, as a benchmark (DESIGN §9): run by
// `BROWSER_SCRIPT=latency.mjs tests/browser/run.sh` (tests/bench.sh --browser), against the
// service run.sh starts (the pattern camera, MJPEG with driver-like jitter, transcoded to
// H.264 for the live view).
//
// - first picture: a page opened on the live view, from its subscribe message to the first
//   picture the <video> presents (requestVideoFrameCallback), `FIRST_PICTURE_TRIES` times,
//   each in a fresh page;
// - capture → picture: for `LATENCY_SECONDS` at every picture presented, the capture time
//   the pattern burned into that very frame (read through a canvas) against the time it is
//   shown, on one machine and one clock; p50 / p95 / p99 / max, and per 10 s window, so a
//   latency that grows shows;
// - where the time goes: how far the playhead was behind the newest buffered frame, and the
//   page's own counters (jumps to the live edge, fragments dropped, pictures played fast).
//
// Prints `note: ...` lines, then `FIGURE|...` rows for tests/bench.sh's table. Exits 1 when
// it cannot measure (no H.264 in this Chromium, no picture).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { patternReader } from './pattern.mjs';
import { CHROMIUM_ARGS, routeAssets } from './chromium.mjs';

const BASE = process.env.BENCHCAM_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SECONDS = Number(process.env.LATENCY_SECONDS || 30);
const FIRST_PICTURE_TRIES = Number(process.env.FIRST_PICTURE_TRIES || 5);
if (!BASE) {
  console.error('latency.mjs: BENCHCAM_URL is required (tests/browser/run.sh sets it)');
  process.exit(2);
}

/** When the page first asked for a stream, and when the <video> first showed a picture. */
function installProbes() {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function sendProbed(data) {
    if (typeof data === 'string' && data.includes('"subscribe"') && !window.__subscribedAt) {
      window.__subscribedAt = performance.now();
    }
    return send.call(this, data);
  };
  document.addEventListener('DOMContentLoaded', () => {
    const video = document.querySelector('#live-video');
    video.requestVideoFrameCallback((now, meta) => { window.__firstPictureAt = meta.expectedDisplayTime || now; });
  });
}

async function openLive(context) {
  const page = await context.newPage();
  await page.addInitScript(installProbes);
  await page.goto(`${BASE}/#live`, { waitUntil: 'load' });
  const mode = await page.waitForFunction(() => {
    const m = document.querySelector('#viewer').dataset.mode;
    return m && m !== 'pending' ? m : null;
  }, null, { timeout: 15000, polling: 50 }).then((h) => h.jsonValue());
  if (mode !== 'h264') throw new Error(`the page settled on ${mode}, not h264`);
  const first = await page.waitForFunction(() => (window.__firstPictureAt && window.__subscribedAt
    ? window.__firstPictureAt - window.__subscribedAt : null), null, { timeout: 10000, polling: 20 })
    .then((h) => h.jsonValue());
  return { page, first };
}

/** Capture → picture for `seconds`, at every picture presented. */
async function sample(page, mode, seconds) {
  return page.evaluate(async ({ src, w, h, ms }) => {
    const read = (0, eval)(`(${src})`);
    const video = document.querySelector('#live-video');
    const samples = [];
    let unread = 0;
    await new Promise((resolve) => {
      const t0 = performance.now();
      const onFrame = (now, meta) => {
        const r = read(video, w, h);
        if (r && r.msOfDay !== null && r.frame !== null) {
          const shownAt = Date.now() + ((meta.expectedDisplayTime || now) - performance.now());
          let captured = Math.floor(shownAt / 864e5) * 864e5 + r.msOfDay;
          if (captured > shownAt + 432e5) captured -= 864e5;
          const b = video.buffered;
          const behind = b.length ? b.end(b.length - 1) - video.currentTime : 0;
          const delay = Number(document.querySelector('#chip-behind').dataset.displayDelayMs);
          samples.push({ at: now - t0, frame: r.frame, ms: shownAt - captured, behind, fast: video.playbackRate > 1, delay });
        } else {
          unread += 1;
        }
        if (now - t0 < ms) video.requestVideoFrameCallback(onFrame);
        else resolve();
      };
      video.requestVideoFrameCallback(onFrame);
    });
    return { samples, unread };
  }, { src: patternReader.toString(), w: mode.width, h: mode.height, ms: seconds * 1000 });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const stats = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: quantile(s, 0.5), p95: quantile(s, 0.95), p99: quantile(s, 0.99), max: s[s.length - 1] };
};
const fmt = (x) => (x === undefined ? '—' : x.toFixed(0));

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'benchcam-latency-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 1,
    isMobile: true,
  });
  await routeAssets(context, BASE);
  try {
    const cams = await (await fetch(`${BASE}/api/v1/cameras`)).json();
    const cam = (Array.isArray(cams) ? cams : cams.cameras || []).find((c) => c.id === 'cam0');
    const mode = cam && cam.mode ? cam.mode : { width: 1280, height: 720 };
    const h264 = await (context.pages()[0] || await context.newPage())
      .evaluate(() => !!window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c01f"'));
    if (!h264) throw new Error(`${CHROMIUM} plays no H.264 through MSE`);

    const firsts = [];
    for (let i = 0; i < FIRST_PICTURE_TRIES; i += 1) {
      const { page, first } = await openLive(context);
      firsts.push(first);
      await page.close();
    }
    const f = stats(firsts);
    console.log(`note: first H.264 picture after the subscribe, ${f.n} fresh pages: ${firsts.map(fmt).join(', ')} ms (max ${fmt(f.max)})`);

    const { page } = await openLive(context);
    await page.waitForTimeout(2000); // past the start, when the playhead first finds the edge
    const counters = () => page.evaluate(() => {
      const d = document.querySelector('#chip-behind').dataset;
      return { jumps: Number(d.jumps), dropped: Number(d.dropped) };
    });
    const before = await counters();
    const { samples, unread } = await sample(page, mode, SECONDS);
    const after = await counters();
    if (samples.length < SECONDS * 5) throw new Error(`only ${samples.length} pictures read in ${SECONDS} s (${unread} unread)`);
    let backwards = 0;
    for (let i = 1; i < samples.length; i += 1) if (samples[i].frame < samples[i - 1].frame) backwards += 1;
    const all = stats(samples.map((s) => s.ms));
    console.log(`note: capture → picture, H.264 via MSE, ${SECONDS} s: ${all.n} pictures read (${unread} unread), `
      + `p50 ${fmt(all.p50)} ms, p95 ${fmt(all.p95)} ms, p99 ${fmt(all.p99)} ms, max ${fmt(all.max)} ms; frame number backwards ${backwards} times`);
    const windows = [];
    for (let t = 0; t < SECONDS * 1000; t += 10000) {
      const w = stats(samples.filter((s) => s.at >= t && s.at < t + 10000).map((s) => s.ms));
      if (w.n) windows.push(`${t / 1000}-${t / 1000 + 10} s p50 ${fmt(w.p50)} / p95 ${fmt(w.p95)}`);
    }
    console.log(`note: per 10 s: ${windows.join('; ')}`);
    const behind = stats(samples.map((s) => s.behind * 1000));
    const fast = samples.filter((s) => s.fast).length;
    const delay = stats(samples.map((s) => s.delay).filter(Number.isFinite));
    console.log(`note: the page's own median, fragment arrival → picture on screen: p50 ${fmt(delay.p50)} ms, `
      + `p95 ${fmt(delay.p95)} ms (the rest of capture → picture is the service and the socket)`);
    console.log(`note: playhead behind the newest buffered frame: p50 ${fmt(behind.p50)} ms, p95 ${fmt(behind.p95)} ms, `
      + `max ${fmt(behind.max)} ms; ${fast} of ${samples.length} pictures played fast; `
      + `${after.jumps - before.jumps} jumps to the live edge, ${after.dropped - before.dropped} fragments dropped`);
    const load = os.loadavg()[0].toFixed(1);
    console.log(`FIGURE|capture → picture in Chromium via MSE, p50 / p95 / p99, ${SECONDS} s, loopback (load ${load})|`
      + `${fmt(all.p50)} / ${fmt(all.p95)} / ${fmt(all.p99)} ms|—|—|p95 ≤ 250 ms|${all.p95 <= 250 ? 'pass' : 'FAIL'}`);
    console.log(`FIGURE|first picture for a new viewer, Chromium via MSE, worst of ${f.n}|${fmt(f.max)} ms after the subscribe|—|—|≤ 500 ms|${f.max <= 500 ? 'pass' : 'FAIL'}`);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`latency.mjs: ${err.message}`);
  process.exit(1);
});
