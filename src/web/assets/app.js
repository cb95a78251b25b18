// benchcam page: live view (WebSocket, MJPEG fallback), experiments (start, mark, stop,
// cards, one-ZIP downloads, frame-timing plots), recording, clips and spans of time as one
// MP4, streaming sessions, health, storage history and GPIO, settings. Plain browser
// JavaScript, no build step, no libraries: this file is embedded in the benchcam binary as
// it is. Plots are hand-drawn SVG from the service's own numbers (manifest, frames.csv,
// storage history); nothing is made up or smoothed.
//
// Protocol and endpoints: DESIGN.md §4 (HTTP API) and §5 (WebSocket live view), README
// "HTTP API". Element ids used here are also what tests/browser/page.test.mjs relies on.
'use strict';

(() => {
  // ---------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  /** Builds an element; strings become text nodes, so API data is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== 'string') node[key] = value;
      else node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  /** An SVG element with attributes; numbers are rounded to 0.1 px to keep paths short. */
  function s(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      node.setAttribute(key, typeof value === 'number' ? String(Math.round(value * 10) / 10) : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const store = {
    get(key, fallback) {
      try { return localStorage.getItem('benchcam.' + key) ?? fallback; } catch { return fallback; }
    },
    set(key, value) {
      try { localStorage.setItem('benchcam.' + key, value); } catch { /* private mode: not kept */ }
    },
  };

  const numberFormat = new Intl.NumberFormat('en-US');
  const formatCount = (n) => (typeof n === 'number' && isFinite(n) ? numberFormat.format(n) : '–');

  /** Bytes in decimal units (what disks are sold in): 512 B, 3.4 MB, 12 GB. */
  function formatBytes(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes)) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let value = Math.abs(bytes);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    const sign = bytes < 0 ? '−' : '';
    return `${sign}${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
  }

  function formatGb(gb) {
    return typeof gb === 'number' ? formatBytes(gb * 1e9) : '–';
  }

  /** Seconds as a person says them: 850 ms, 4.2 s, 12 s, 5 min 07 s, 2 h 03 min, 3 d 4 h. */
  function formatDuration(seconds) {
    if (typeof seconds !== 'number' || !isFinite(seconds)) return '–';
    if (seconds < 0) return `−${formatDuration(-seconds)}`;
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    const total = Math.round(seconds);
    const d = Math.floor(total / 86400);
    const hh = Math.floor((total % 86400) / 3600);
    const mm = Math.floor((total % 3600) / 60);
    const ss = total % 60;
    if (d > 0) return `${d} d ${hh} h`;
    if (hh > 0) return `${hh} h ${pad2(mm)} min`;
    return `${mm} min ${pad2(ss)} s`;
  }

  /** Hours as a person says them: 40 min, 5.5 h, 37 h, 12 days. */
  function formatHours(hours) {
    if (typeof hours !== 'number' || !isFinite(hours)) return '–';
    if (hours < 1) return `${Math.max(0, Math.round(hours * 60))} min`;
    if (hours < 10) return `${hours.toFixed(1)} h`;
    if (hours < 72) return `${Math.round(hours)} h`;
    return `${Math.round(hours / 24)} days`;
  }

  /** A running stopwatch: 0:07, 12:34, 1:02:03. */
  function formatElapsed(seconds) {
    const total = Math.max(0, Math.floor(seconds || 0));
    const hh = Math.floor(total / 3600);
    const mm = Math.floor((total % 3600) / 60);
    const ss = total % 60;
    return hh > 0 ? `${hh}:${pad2(mm)}:${pad2(ss)}` : `${mm}:${pad2(ss)}`;
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  function clockTime(date) {
    return `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
  }

  function dayOf(date) {
    return `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}`;
  }

  /** RFC 3339 time → local "HH:MM:SS", with the date when it is not today. */
  function formatTime(value, { ms = false } = {}) {
    if (value === null || value === undefined || value === '') return '–';
    const date = value instanceof Date ? value : new Date(value);
    if (isNaN(date)) return String(value);
    const sameDay = date.toDateString() === new Date().toDateString();
    const time = ms ? `${clockTime(date)}.${String(date.getMilliseconds()).padStart(3, '0')}` : clockTime(date);
    return sameDay ? time : `${dayOf(date)} ${time}`;
  }

  const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;

  /** An API value for a person: times local (with ms), counts grouped, yes/no. */
  function formatScalar(value) {
    if (value === null || value === undefined) return '–';
    if (typeof value === 'number') return Number.isInteger(value) ? formatCount(value) : value.toFixed(2);
    if (typeof value === 'string' && ISO_TIME.test(value)) {
      const date = new Date(value);
      if (!isNaN(date)) return formatTime(date, { ms: true });
    }
    if (typeof value === 'boolean') return value ? 'yes' : 'no';
    if (Array.isArray(value)) return value.length && value.every((v) => typeof v !== 'object') ? value.join(', ') : `${value.length} items`;
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  /** Lists come either bare or wrapped ({"clips": [...]}); accept both. */
  function asList(data, key) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data[key])) return data[key];
    return [];
  }

  const seg = encodeURIComponent;

  /** The service's clock minus this phone's (ms), from health answers; spans and elapsed
   *  times use the box's clock, which a phone's may differ from. */
  let serverOffsetMs = 0;
  const serverNow = () => Date.now() + serverOffsetMs;

  // ---------------------------------------------------------------------------
  // Toasts: at most two on screen, each leaves by itself
  // ---------------------------------------------------------------------------

  const MAX_TOASTS = 2;

  function toast(message, kind = 'info', ms = 3500) {
    const area = $('#toast-area');
    // Identical messages (e.g. the same error from a poll) are shown once.
    for (const existing of $$('.toast', area)) {
      if (existing.textContent === message) return;
    }
    const node = h('div', { class: 'toast', 'data-kind': kind, role: kind === 'error' ? 'alert' : 'status' }, message);
    node.addEventListener('click', () => node.remove());
    area.append(node);
    while (area.children.length > MAX_TOASTS) area.firstElementChild.remove();
    setTimeout(() => node.remove(), kind === 'error' ? ms + 2500 : ms);
  }

  // ---------------------------------------------------------------------------
  // API: JSON in and out, {"error":{"code","message"}} on failure, 401 → login, retry once
  // ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** One request; the body as text. 401 asks for the access code once, then retries. */
  async function request(method, path, { body, accept = 'application/json', retryAfterLogin = true, timeoutMs = 15000 } = {}) {
    const init = { method, headers: { Accept: accept }, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    init.signal = abort.signal;
    let res;
    let text;
    try {
      res = await fetch(path, init);
      text = method === 'HEAD' ? '' : await res.text();
    } catch (err) {
      throw new ApiError(0, 'network', 'Cannot reach benchcam (network or service down)');
    } finally {
      clearTimeout(timer);
    }
    // After "Not now", reads that the lock refuses wait for the Unlock button; an action
    // (POST, PATCH) asks again.
    const declined = loginDeclined && (method === 'GET' || method === 'HEAD');
    if (res.status === 401 && retryAfterLogin && !declined) {
      await requireLogin();
      return request(method, path, { body, accept, retryAfterLogin: false, timeoutMs });
    }
    if (res.status === 401) showLocked(true);
    if (!res.ok) {
      let error = null;
      try { error = JSON.parse(text).error; } catch { /* not JSON */ }
      throw new ApiError(
        res.status,
        (error && error.code) || `http_${res.status}`,
        (error && error.message) || `${res.status} ${res.statusText || 'error'} (${method} ${path})`,
      );
    }
    return { res, text };
  }

  async function api(method, path, body, { retryAfterLogin = true, timeoutMs = 15000 } = {}) {
    const { text } = await request(method, path, { body, retryAfterLogin, timeoutMs });
    if (!text) return null;
    try { return JSON.parse(text); } catch { return null; }
  }

  function reportError(err, prefix) {
    const message = err && err.message ? err.message : String(err);
    toast(prefix ? `${prefix}: ${message}` : message, 'error');
  }

  const backgroundShown = new Map();

  /** For errors of periodic refreshes: an unreachable service is already shown by the health
   *  dot and the connection chip, and the same message is not repeated within 30 s. */
  function reportBackground(err, prefix) {
    if (err && (err.status === 0 || err.status === 401)) return;
    const key = `${prefix}: ${err && err.message}`;
    const now = Date.now();
    if (now - (backgroundShown.get(key) || 0) < 30000) return;
    backgroundShown.set(key, now);
    reportError(err, prefix);
  }

  // ---------------------------------------------------------------------------
  // Login (access code): one dialog shared by every request that got 401
  // ---------------------------------------------------------------------------

  let loginWaiters = null;
  let focusBeforeLogin = null;
  let loginDeclined = false;

  function requireLogin() {
    return new Promise((resolve, reject) => {
      if (loginWaiters) { loginWaiters.push({ resolve, reject }); return; }
      loginWaiters = [{ resolve, reject }];
      focusBeforeLogin = document.activeElement;
      $('#login-error').hidden = true;
      $('#login-token').value = '';
      $('#login').hidden = false;
      $('#login-token').focus();
    });
  }

  function finishLogin(ok) {
    const waiters = loginWaiters || [];
    loginWaiters = null;
    loginDeclined = !ok;
    $('#login').hidden = true;
    showLocked(!ok);
    if (focusBeforeLogin && document.contains(focusBeforeLogin)) focusBeforeLogin.focus();
    focusBeforeLogin = null;
    for (const w of waiters) {
      if (ok) w.resolve();
      else w.reject(new ApiError(401, 'unauthorized', 'Locked: the access code is needed for this'));
    }
  }

  /** The top bar's Unlock button: there while the page knows it lacks the code. */
  function showLocked(locked) {
    $('#lock-button').hidden = !locked;
  }

  function initLogin() {
    $('#login-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const token = $('#login-token').value;
      const error = $('#login-error');
      if (!token) {
        error.textContent = 'Enter the access code.';
        error.hidden = false;
        $('#login-token').focus();
        return;
      }
      const button = $('#login-submit');
      button.disabled = true;
      try {
        await api('POST', '/api/v1/login', { token }, { retryAfterLogin: false });
        if (loginWaiters) finishLogin(true);
        else { $('#login').hidden = true; showLocked(false); loginDeclined = false; }
        toast('Unlocked');
      } catch (err) {
        error.textContent = err.status === 401 ? 'That is not the access code. Try again.'
          : err.status === 429 ? 'Too many wrong codes from this phone: wait a minute, then try again.'
            : err.message;
        error.hidden = false;
        $('#login-token').select();
      } finally {
        button.disabled = false;
      }
    });
    $('#login-cancel').addEventListener('click', () => finishLogin(false));
    $('#login').addEventListener('keydown', (event) => {
      if (event.key === 'Escape') { event.preventDefault(); finishLogin(false); }
      if (event.key === 'Tab') {
        // Keep the keyboard inside the dialog while it is open.
        const focusable = $$('#login input, #login button');
        const first = focusable[0];
        const last = focusable[focusable.length - 1];
        if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
        else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
      }
    });
    $('#lock-button').addEventListener('click', () => {
      requireLogin().then(() => refreshAll(), () => {});
    });
  }

  // ---------------------------------------------------------------------------
  // Shared state
  // ---------------------------------------------------------------------------

  const QUALITIES = ['low', 'medium', 'high'];

  const app = {
    cameras: [],
    camera: store.get('camera', ''),
    quality: QUALITIES.includes(store.get('quality')) ? store.get('quality') : 'medium',
    tab: 'live',
    /** camera id → true/false, from health, the WebSocket status and our own start/stop. */
    recording: {},
  };

  function pageVisible() { return document.visibilityState !== 'hidden'; }

  /** After unlocking: load what the lock kept away. */
  function refreshAll() {
    loadCameras();
    refreshHealth();
    if (tabEnter[app.tab]) tabEnter[app.tab]();
  }

  // ---------------------------------------------------------------------------
  // Tabs (the hash keeps the tab across reloads: #live, #experiments, ...); the tab bar
  // is an ARIA tablist: arrow keys, Home and End move between tabs
  // ---------------------------------------------------------------------------

  const TABS = ['live', 'experiments', 'recording', 'streaming', 'status', 'settings'];
  const tabEnter = {};
  const tabLeave = {};

  function showTab(name, { updateHash = true } = {}) {
    if (!TABS.includes(name)) name = 'live';
    const previous = app.tab;
    if (previous !== name && tabLeave[previous]) tabLeave[previous]();
    app.tab = name;
    for (const tab of TABS) {
      $(`#panel-${tab}`).hidden = tab !== name;
      const button = $(`#tab-${tab}`);
      button.setAttribute('aria-selected', String(tab === name));
      button.tabIndex = tab === name ? 0 : -1;
    }
    if (updateHash && location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
    liveFull.update();
    if (tabEnter[name]) tabEnter[name]();
  }

  function initTabs() {
    for (const button of $$('.tablist [data-tab]')) {
      button.addEventListener('click', () => showTab(button.dataset.tab));
    }
    $('.tablist').addEventListener('keydown', (event) => {
      const index = TABS.indexOf(app.tab);
      const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: TABS.length - 1 }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      const name = TABS[(next + TABS.length) % TABS.length];
      showTab(name);
      $(`#tab-${name}`).focus();
    });
    window.addEventListener('hashchange', () => showTab(location.hash.slice(1), { updateHash: false }));
  }

  /** Runs `task` every `ms` while the page is visible and `active()` holds; returns a kick(). */
  function poller(task, ms, active) {
    let timer = null;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      timer = null;
      if (!pageVisible() || !active()) return;
      if (!running) {
        running = true;
        try { await task(); } catch (err) { /* each task reports its own errors */ }
        running = false;
      }
      clearTimeout(timer);
      if (pageVisible() && active()) timer = setTimeout(tick, typeof ms === 'function' ? ms() : ms);
    }
    document.addEventListener('visibilitychange', () => { if (pageVisible()) tick(); });
    return tick;
  }

  // ---------------------------------------------------------------------------
  // First visit: a short hint, until "Got it"
  // ---------------------------------------------------------------------------

  function initHint() {
    if (store.get('hint-seen', '') === '1') return;
    $('#hint').hidden = false;
    $('#hint-dismiss').addEventListener('click', () => {
      store.set('hint-seen', '1');
      $('#hint').hidden = true;
      $('#main').focus({ preventScroll: true });
    });
  }

  // ---------------------------------------------------------------------------
  // Cameras
  // ---------------------------------------------------------------------------

  async function loadCameras() {
    const select = $('#camera-select');
    let list;
    try {
      list = asList(await api('GET', '/api/v1/cameras'), 'cameras');
    } catch (err) {
      // An older service without the camera list: its health names the cameras too.
      const health = err.status === 404 ? await api('GET', '/api/v1/health').catch(() => null) : null;
      list = health && Array.isArray(health.cameras) ? health.cameras.filter((cam) => cam && cam.id) : null;
      if (!list) {
        select.replaceChildren(h('option', { value: '' }, err.status === 401 ? 'Locked' : 'No connection'));
        reportBackground(err, 'Cameras');
        if (err.status !== 401) setTimeout(loadCameras, 5000);
        return;
      }
    }
    app.cameras = list;
    select.replaceChildren(...list.map((cam) => {
      const label = cam.name && cam.name !== cam.id ? `${cam.id} · ${cam.name}` : cam.id;
      return h('option', { value: cam.id }, label);
    }));
    if (list.length === 0) {
      select.replaceChildren(h('option', { value: '' }, 'No camera'));
      selectCamera('');
      live.setOverlay('No camera found');
      setTimeout(loadCameras, 10000);
      return;
    }
    const keep = list.some((cam) => cam.id === app.camera) ? app.camera : list[0].id;
    select.value = keep;
    selectCamera(keep, { force: true });
  }

  function selectCamera(id, { force = false } = {}) {
    if (id === app.camera && !force) return;
    const changed = id !== app.camera;
    app.camera = id;
    if (id) store.set('camera', id);
    $('#rec-camera').textContent = id || '–';
    $('#span-camera').textContent = id || 'the camera';
    $('#snapshot-link').href = id ? `/api/v1/cameras/${seg(id)}/snapshot.jpg` : '#';
    renderRecordingState();
    if (changed) {
      live.restart();
      clips.reset();
      spans.reset();
    } else if (force) {
      // The camera list came (again) and names the camera already shown: keep its live
      // view (a restart would drop a no_frame banner it has just shown), start it if idle.
      live.resume();
    }
    if ((changed || force) && app.tab === 'recording') { clips.refresh(); spans.refresh(); }
  }

  function initCameraSelect() {
    $('#camera-select').addEventListener('change', (event) => selectCamera(event.target.value));
  }

  // ---------------------------------------------------------------------------
  // Live H.264: the service's fMP4 (one init segment, then one moof+mdat per frame, over
  // the WebSocket, DESIGN §5) played with Media Source Extensions, held at the live edge
  // ---------------------------------------------------------------------------

  /** ManagedMediaSource where present (iOS Safari 17.1+ has only that), else MediaSource. */
  function mseClass() { return window.ManagedMediaSource || window.MediaSource || null; }
  /** Asked about before the service names its codec: Constrained Baseline, level 3.1. */
  const H264_PROBE_CODEC = 'avc1.42c01f';
  const h264Type = (codec) => `video/mp4; codecs="${codec}"`;
  function mseSupports(codec) {
    const Source = mseClass();
    try { return !!Source && Source.isTypeSupported(h264Type(codec)); } catch { return false; }
  }
  /** The playhead jumps to the live edge when it falls this far behind what is buffered (s)… */
  const LIVE_MAX_BEHIND_S = 0.5;
  /** …to this much before the end of the newest frame (s): about two frames at 30 fps. The
   *  service's timeline has no holes (src/encode/live_timeline.rs), so a late frame makes the
   *  playhead wait, not jump. */
  const LIVE_TARGET_BEHIND_S = 0.07;
  /** Past the first the video plays 25 % fast, without a visible jump, until back under
   *  the second (s): a stall (a late frame, a busy decoder) leaves the playhead that much
   *  further behind, and at 1x it would stay there. (tests/browser/latency.mjs, idle 2-core
   *  VM: capture → picture p50 / p95 80 / 105 ms; 119 / 164 ms with 0.1 s, 0.15 s and 1.1x.) */
  const LIVE_CATCHUP_FROM_S = 0.12;
  const LIVE_CATCHUP_UNTIL_S = 0.07;
  const LIVE_CATCHUP_RATE = 1.25;
  /** Video kept behind the playhead (s); older is removed, in steps of 2 s or more, so a
   *  page left open for hours holds ~10 s of video. */
  const MSE_KEEP_S = 10;
  /** Fragments waiting for the SourceBuffer beyond this (3 s at 30 fps): the decoder does
   *  not keep up; they are dropped and appending resumes at the next keyframe. */
  const MSE_QUEUE_MAX = 90;
  /** No decoded picture this long after the first fragment: MSE counts as failed. */
  const MSE_FIRST_PICTURE_MS = 3000;

  /** The first box named `type` directly inside bytes [start, end) of `view`:
   *  {start, end} of its payload, or null. Sizes that do not fit end the walk. */
  function findBox(view, start, end, type) {
    let at = start;
    while (at + 8 <= end) {
      let size = view.getUint32(at);
      let header = 8;
      if (size === 1 && at + 16 <= end) { size = Number(view.getBigUint64(at + 8)); header = 16; } else if (size === 0) size = end - at;
      if (size < header || at + size > end) return null;
      const name = String.fromCharCode(view.getUint8(at + 4), view.getUint8(at + 5), view.getUint8(at + 6), view.getUint8(at + 7));
      if (name === type) return { start: at + header, end: at + size };
      at += size;
    }
    return null;
  }

  /** The payload of the box at `path` (e.g. ['moof', 'traf', 'tfdt']), or null. */
  function boxAt(buffer, path) {
    const view = new DataView(buffer);
    let box = { start: 0, end: buffer.byteLength };
    for (const type of path) {
      box = findBox(view, box.start, box.end, type);
      if (!box) return null;
    }
    return { view, ...box };
  }

  /** A fragment's baseMediaDecodeTime (tfdt, in the track's timescale), or null. */
  function fragmentDecodeTime(buffer) {
    const box = boxAt(buffer, ['moof', 'traf', 'tfdt']);
    if (!box || box.end - box.start < 8) return null;
    const version = box.view.getUint8(box.start);
    if (version === 1) return box.end - box.start >= 12 ? Number(box.view.getBigUint64(box.start + 4)) : null;
    return box.view.getUint32(box.start + 4);
  }

  /** The video track's timescale from the init segment's mdhd, or null. */
  function initTimescale(buffer) {
    const box = boxAt(buffer, ['moov', 'trak', 'mdia', 'mdhd']);
    if (!box) return null;
    const offset = box.view.getUint8(box.start) === 1 ? 20 : 12;
    return box.end - box.start >= offset + 4 ? box.view.getUint32(box.start + offset) || null : null;
  }

  /**
   * One init segment's stream in the <video>: a MediaSource (or ManagedMediaSource) with one
   * SourceBuffer, fed in order from a queue (appendBuffer is never called while updating),
   * the playhead held near the newest frame and old video removed. A new init segment gets
   * a new player (the old one is closed first). `events.fail(reason)` is called once when
   * MSE fails (SourceBuffer or decode error, no picture in time); `events.picture()` on the
   * first decoded picture; `events.blocked()` when the browser refuses to play and
   * `events.playing()` when a tap then started it.
   */
  class H264Player {
    constructor(video, init, events) {
      this.video = video;
      this.codec = init.codec;
      this.width = init.width;
      this.height = init.height;
      this.events = events;
      /** ArrayBuffers waiting for the SourceBuffer, oldest first; the init segment first. */
      this.queue = [];
      this.sourceBuffer = null;
      this.closed = false;
      this.failed = false;
      /** Fragments were dropped: the next one appended must be a keyframe. */
      this.waitKeyframe = false;
      this.dropped = 0;
      this.jumps = 0;
      this.jumpedAt = -Infinity;
      this.timescale = 90000;
      /** decode time (timescale ticks) → performance.now() when the fragment arrived, newest ~150. */
      this.arrivals = new Map();
      /** performance.now() of pictures shown in the last 2 s (requestVideoFrameCallback). */
      this.shownTimes = [];
      /** Milliseconds from a fragment's arrival to its picture on screen, newest 60. */
      this.displayDelays = [];
      this.behindS = null;
      this.pictureSeen = false;
      this.firstFragmentAt = 0;
      this.pictureTimer = null;
      this.frameCallback = null;
      this.playing = false;
      /** The browser refused to start playing (autoplay policy): a tap starts it. */
      this.blocked = false;

      const Source = mseClass();
      const managed = !!window.ManagedMediaSource && Source === window.ManagedMediaSource;
      this.source = new Source();
      video.muted = true;
      // ManagedMediaSource plays only with remote playback (AirPlay) off or given its own source.
      if (managed) video.disableRemotePlayback = true;
      // One way of attaching at a time: an object URL in src, srcObject cleared.
      if ('srcObject' in video && video.srcObject) video.srcObject = null;
      this.objectUrl = URL.createObjectURL(this.source);
      video.src = this.objectUrl;
      this.source.addEventListener('sourceopen', () => this.onSourceOpen(), { once: true });
      this.onVideoError = () => {
        const err = video.error;
        this.fail(err ? `decode error ${err.code}${err.message ? `: ${err.message}` : ''}` : 'video error');
      };
      this.onLoadedData = () => this.checkPicture(false);
      video.addEventListener('error', this.onVideoError);
      video.addEventListener('loadeddata', this.onLoadedData);
      if (typeof video.requestVideoFrameCallback === 'function') {
        const onFrame = (now, meta) => {
          if (this.closed) return;
          this.onShown(now, meta);
          this.frameCallback = video.requestVideoFrameCallback(onFrame);
        };
        this.frameCallback = video.requestVideoFrameCallback(onFrame);
      }
    }

    onSourceOpen() {
      if (this.closed) return;
      // The object URL has done its job once the source is open.
      URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
      let sourceBuffer;
      try {
        sourceBuffer = this.source.addSourceBuffer(h264Type(this.codec));
      } catch (err) {
        this.fail(`addSourceBuffer(${this.codec}): ${err.name}`);
        return;
      }
      this.sourceBuffer = sourceBuffer;
      sourceBuffer.addEventListener('updateend', () => {
        if (this.closed) return;
        this.keepLive();
        this.pump();
      });
      sourceBuffer.addEventListener('error', () => this.fail('SourceBuffer error'));
      this.pump();
    }

    appendInit(data) {
      this.timescale = initTimescale(data) || this.timescale;
      this.queue.push(data);
      this.pump();
    }

    /** One frame's moof+mdat; `arrivedAt` is performance.now() when its message came. */
    appendFragment(data, keyframe, arrivedAt) {
      if (this.closed) return;
      if (this.waitKeyframe && !keyframe) { this.dropped += 1; return; }
      this.waitKeyframe = false;
      if (this.queue.length >= MSE_QUEUE_MAX) {
        // The decoder falls behind: drop what waits (never the init segment) and go on at a keyframe.
        const keep = this.sourceBuffer ? [] : this.queue.slice(0, 1);
        this.dropped += this.queue.length - keep.length;
        this.queue = keep;
        if (!keyframe) { this.waitKeyframe = true; this.dropped += 1; return; }
      }
      const decodeTime = fragmentDecodeTime(data);
      if (decodeTime !== null) {
        this.arrivals.set(decodeTime, arrivedAt);
        if (this.arrivals.size > 150) this.arrivals.delete(this.arrivals.keys().next().value);
      }
      if (!this.firstFragmentAt) {
        this.firstFragmentAt = performance.now();
        this.pictureTimer = setTimeout(() => this.checkPicture(true), MSE_FIRST_PICTURE_MS);
      }
      this.queue.push(data);
      this.pump();
    }

    pump() {
      const sourceBuffer = this.sourceBuffer;
      if (this.closed || !sourceBuffer || sourceBuffer.updating || this.source.readyState !== 'open') return;
      if (this.trim(MSE_KEEP_S, 2)) return; // a remove() runs; its updateend pumps again
      const data = this.queue.shift();
      if (!data) return;
      try {
        sourceBuffer.appendBuffer(data);
      } catch (err) {
        if (err.name !== 'QuotaExceededError') { this.fail(`appendBuffer: ${err.name}`); return; }
        // The browser's buffer is full: free all but the last second before the playhead
        // and try again; with nothing to free, drop what waits and go on at a keyframe.
        this.queue.unshift(data);
        if (!this.trim(1, 0.1)) {
          this.dropped += this.queue.length;
          this.queue = [];
          this.waitKeyframe = true;
        }
      }
    }

    /** Removes video older than `keepS` before the playhead, once at least `stepS` would go;
     *  true when a remove() was started. */
    trim(keepS, stepS) {
      const sourceBuffer = this.sourceBuffer;
      const buffered = sourceBuffer.buffered;
      if (!buffered.length) return false;
      const start = buffered.start(0);
      const upTo = this.video.currentTime - keepS;
      if (upTo - start < stepS) return false;
      try {
        sourceBuffer.remove(start, upTo);
        return true;
      } catch {
        return false;
      }
    }

    /** Holds the playhead near the newest frame: latency must not grow over minutes. */
    keepLive() {
      const video = this.video;
      const buffered = video.buffered;
      if (!buffered.length) return;
      const start = buffered.start(buffered.length - 1);
      const end = buffered.end(buffered.length - 1);
      const behind = end - video.currentTime;
      // A jump takes a moment; judged again once it has landed, and not more than once a
      // second for lag alone (a burst of fragments would otherwise seek on every append).
      if (video.seeking) return;
      const outside = video.currentTime < start || behind < -LIVE_MAX_BEHIND_S;
      const lagging = behind > LIVE_MAX_BEHIND_S && performance.now() - this.jumpedAt > 1000;
      if (outside || lagging) {
        this.jumpedAt = performance.now();
        // Also the first fragment (the stream's times do not start at 0) and a gap left
        // by frames the service dropped for this viewer.
        video.currentTime = Math.max(start, end - LIVE_TARGET_BEHIND_S);
        this.jumps += 1;
        if (video.playbackRate !== 1) video.playbackRate = 1;
      } else if (behind > LIVE_CATCHUP_FROM_S && video.playbackRate === 1) {
        video.playbackRate = LIVE_CATCHUP_RATE;
      } else if (behind < LIVE_CATCHUP_UNTIL_S && video.playbackRate !== 1) {
        video.playbackRate = 1;
      }
      this.behindS = Math.max(0, end - video.currentTime);
      if (video.paused && !this.playing) this.play();
    }

    play() {
      this.playing = true;
      const started = this.video.play();
      if (started && typeof started.then === 'function') {
        started.then(() => {
          this.playing = false;
          if (this.blocked) { this.blocked = false; this.events.playing(); }
        }, (err) => {
          this.playing = false;
          if (!this.closed && err && err.name === 'NotAllowedError') { this.blocked = true; this.events.blocked(); }
        });
      } else {
        this.playing = false;
      }
    }

    onShown(now, meta) {
      this.shownTimes.push(now);
      while (this.shownTimes.length > 0 && now - this.shownTimes[0] > 2000) this.shownTimes.shift();
      const arrived = this.arrivals.get(Math.round(meta.mediaTime * this.timescale));
      if (arrived !== undefined) {
        this.displayDelays.push((meta.expectedDisplayTime || now) - arrived);
        if (this.displayDelays.length > 60) this.displayDelays.shift();
      }
      this.checkPicture(false);
    }

    /** A decoded picture: a frame callback came, or the video has data and decoded frames. */
    checkPicture(deadline) {
      if (this.closed || this.pictureSeen) return;
      const quality = typeof this.video.getVideoPlaybackQuality === 'function' ? this.video.getVideoPlaybackQuality() : null;
      const decoded = this.shownTimes.length > 0
        || (this.video.readyState >= 2 && (!quality || quality.totalVideoFrames > 0));
      if (decoded) {
        this.pictureSeen = true;
        clearTimeout(this.pictureTimer);
        this.events.picture();
      } else if (deadline) {
        this.fail(`no picture ${MSE_FIRST_PICTURE_MS / 1000} s after the first frame`);
      }
    }

    /** Pictures shown per second over the last 2 s; null without requestVideoFrameCallback. */
    shownFps() {
      if (this.frameCallback === null) return null;
      const now = performance.now();
      const times = this.shownTimes.filter((t) => now - t <= 2000);
      return times.length >= 2 ? (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000) : 0;
    }

    /** Median ms from a fragment's arrival to its picture on screen; null when unknown. */
    displayDelayMs() {
      if (this.displayDelays.length === 0) return null;
      const sorted = [...this.displayDelays].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)];
    }

    fail(reason) {
      if (this.closed || this.failed) return;
      this.failed = true;
      this.events.fail(reason);
    }

    /** Detaches the MediaSource from the <video> and lets go of its memory. */
    close() {
      if (this.closed) return;
      this.closed = true;
      clearTimeout(this.pictureTimer);
      const video = this.video;
      if (this.frameCallback !== null && typeof video.cancelVideoFrameCallback === 'function') {
        video.cancelVideoFrameCallback(this.frameCallback);
      }
      video.removeEventListener('error', this.onVideoError);
      video.removeEventListener('loadeddata', this.onLoadedData);
      this.queue = [];
      this.arrivals.clear();
      video.removeAttribute('src');
      if ('srcObject' in video && video.srcObject) video.srcObject = null;
      video.load();
      if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }
  }

  // ---------------------------------------------------------------------------
  // Live view: WebSocket (DESIGN §5) carrying H.264 (played by H264Player) or JPEG frames,
  // with an MJPEG <img> fallback
  // ---------------------------------------------------------------------------

  const NO_FRAME_TEXT = {
    not_capturing: ['Camera is not capturing', 'The camera is not delivering frames. Check that it is plugged in; the Status tab shows its state.'],
    streaming_disabled: ['Live streaming is disabled', 'Streaming is switched off in the service settings. Recording is not affected.'],
    camera_error: ['Camera error', 'The camera reported an error. The service keeps retrying; check the cable and Status tab.'],
  };
  const PING_MS = 10000;
  /** No message at all for this long on an open socket (status comes ~1/s) → assume it is dead. */
  const SILENCE_MS = 20000;
  const CONNECT_TIMEOUT_MS = 8000;
  /** In MJPEG fallback the WebSocket is tried again this often. */
  const WS_RETRY_FROM_MJPEG_MS = 60000;
  /** How often the MJPEG fallback checks that the service still answers. */
  const MJPEG_CHECK_MS = 4000;
  const BLANK_GIF = 'data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==';

  /** What the picture is, as the mode chip says it. */
  const MODE_TEXT = { h264: 'H.264', jpeg: 'JPEG', mjpeg: 'MJPEG', pending: '…' };

  const live = {
    mode: 'ws',            // 'ws' or 'mjpeg'
    codec: '',             // what the WebSocket carries: 'h264', 'jpeg', or '' until known
    /** The camera whose service answered h264_unavailable (JPEG frames for it), and why;
     *  tried again for another camera or after Reconnect. */
    h264Unavailable: null,
    h264UnavailableWhy: '',
    /** Why H.264 via MSE failed on this page load (JPEG frames from then on); '' when not. */
    mseFailed: '',
    player: null,          // H264Player of the current init segment
    connection: 'connecting', // connecting | live | reconnecting | mjpeg | offline | paused
    streaming: 'stopped',  // streaming | no_frame | stopped
    ws: null,
    generation: 0,         // bumps on every new socket; events of older sockets are ignored
    probing: false,        // a WebSocket attempt made while MJPEG is showing
    gotMessage: false,     // the current socket has received anything
    failures: 0,           // WebSocket attempts in a row that failed while the service answered HTTP
    attempt: 0,            // reconnect attempts since the last good connection (backoff)
    timers: { retry: null, ping: null, silence: null, probe: null, mjpegWatch: null },
    mjpegStartedAt: 0,
    mjpegLost: false,      // the service was unreachable while MJPEG was showing
    pendingMeta: null,     // the `frame` message whose JPEG is the next binary message
    frameCount: 0,
    lastFrameAt: null,
    frameTimes: [],        // arrival times (ms) of recent frames, for the fps chip
    serverQuality: null,
    shownUrl: null,        // Blob URL on the <img> now
    loadingUrl: null,      // Blob URL the <img> is decoding
    loadingSince: 0,
    queuedBlob: null,      // newest frame that arrived while one was decoding
    chipsScheduled: false,

    active() { return app.tab === 'live' && pageVisible() && !!app.camera; },

    /** (Re)starts viewing the selected camera from scratch. */
    restart() {
      this.stopAll();
      this.releaseBlobs();
      $('#live-img').removeAttribute('src');
      $('#viewer').classList.remove('stale');
      this.setOverlay('Connecting…');
      this.mode = 'ws';
      this.codec = '';
      this.h264Unavailable = null;
      this.failures = 0;
      this.attempt = 0;
      this.frameCount = 0;
      this.frameTimes = [];
      this.lastFrameAt = null;
      this.serverQuality = null;
      this.setStreaming('stopped');
      this.hideBanner();
      $('#live-status').textContent = '';
      this.resume();
    },

    /** Starts whatever mode we are in, if the Live tab is visible. */
    resume() {
      if (!app.camera) { this.setConnection('connecting'); return; }
      if (!this.active()) { this.pause(); return; }
      if (this.ws || this.timers.retry) return;
      if (this.mode === 'mjpeg') {
        if (!this.mjpegRunning()) this.startMjpeg();
      } else {
        this.connect();
      }
    },

    /** Stops network use while nobody looks (other tab, hidden page); keeps the mode. */
    pause() {
      this.stopAll();
      this.setConnection('paused');
      this.setStreaming('stopped');
    },

    stopAll() {
      for (const key of Object.keys(this.timers)) {
        clearTimeout(this.timers[key]);
        clearInterval(this.timers[key]);
        this.timers[key] = null;
      }
      this.closeSocket();
      this.probing = false;
      this.stopPlayer();
      if (this.mjpegRunning()) this.stopMjpegImage();
    },

    /** H.264 is asked for when this browser's MSE plays it, it has not failed on this page
     *  and the service has not said the camera has none. */
    wantH264() {
      return mseSupports(H264_PROBE_CODEC) && !this.mseFailed && this.h264Unavailable !== app.camera;
    },

    /** 'h264', 'jpeg', 'mjpeg', or 'pending' before the first answer. */
    viewMode() {
      return this.mode === 'mjpeg' ? 'mjpeg' : (this.codec || 'pending');
    },

    setCodec(codec) {
      if (this.codec === codec) return;
      this.codec = codec;
      this.scheduleChips();
    },

    /** Closes the H.264 player and shows the <img> again. A reconnect keeps the player (its
     *  last picture stays, greyed) until the new init segment or a switch to JPEG. */
    stopPlayer() {
      if (this.player) {
        this.player.close();
        this.player = null;
      }
      $('#live-video').hidden = true;
      $('#live-img').hidden = false;
    },

    hasPicture() {
      return !!this.shownUrl || !!(this.player && this.player.pictureSeen) || (this.mode === 'mjpeg' && this.streaming === 'streaming');
    },

    closeSocket() {
      this.generation += 1;
      if (this.ws) {
        const ws = this.ws;
        this.ws = null;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(1000, 'client closed'); } catch { /* already closed */ }
      }
      clearInterval(this.timers.ping);
      clearTimeout(this.timers.silence);
      this.timers.ping = this.timers.silence = null;
      this.pendingMeta = null;
    },

    connect({ probe = false } = {}) {
      clearTimeout(this.timers.retry);
      this.timers.retry = null;
      this.closeSocket();
      if (!app.camera) return;
      if (typeof window.WebSocket !== 'function') {
        // Nothing to try again later either: MJPEG for good.
        if (!probe) {
          toast('This browser has no WebSocket: using MJPEG');
          this.startMjpeg();
        }
        return;
      }
      const generation = this.generation;
      this.probing = probe;
      this.gotMessage = false;
      if (!probe) this.setConnection(this.attempt === 0 && this.frameCount === 0 ? 'connecting' : 'reconnecting');
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      let ws;
      try {
        ws = new WebSocket(`${scheme}//${location.host}/api/v1/cameras/${seg(app.camera)}/ws`);
      } catch (err) {
        this.onClose(generation, { code: 1006, reason: String(err) });
        return;
      }
      // MSE takes ArrayBuffers; JPEGs go to the <img> as Blobs either way.
      ws.binaryType = this.wantH264() ? 'arraybuffer' : 'blob';
      this.ws = ws;
      this.watchSilence(generation, CONNECT_TIMEOUT_MS);
      ws.onopen = () => {
        if (generation !== this.generation) return;
        this.send({ type: 'set_quality', quality: app.quality });
        this.subscribe();
        this.timers.ping = setInterval(() => this.send({ type: 'ping' }), PING_MS);
      };
      ws.onmessage = (event) => {
        if (generation !== this.generation) return;
        this.onMessage(event);
      };
      ws.onclose = (event) => {
        if (generation !== this.generation) return;
        this.onClose(generation, event);
      };
      ws.onerror = () => { /* a close event always follows */ };
    },

    send(message) {
      if (this.ws && this.ws.readyState === 1 /* OPEN */) this.ws.send(JSON.stringify(message));
    },

    /** Asks for H.264 when this page can play it, else for JPEG frames. */
    subscribe() {
      if (this.wantH264()) {
        this.ws.binaryType = 'arraybuffer';
        this.send({ type: 'subscribe', codec: 'h264' });
      } else {
        this.ws.binaryType = 'blob';
        this.send({ type: 'subscribe' });
        this.setCodec('jpeg');
      }
    },

    /** Closes the socket when nothing arrives for `ms`; re-armed by every message. */
    watchSilence(generation, ms) {
      clearTimeout(this.timers.silence);
      this.timers.silence = setTimeout(() => {
        if (generation !== this.generation || !this.ws) return;
        const ws = this.ws;
        this.ws = null;
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try { ws.close(4000, 'silent'); } catch { /* ignore */ }
        this.onClose(generation, { code: 4000, reason: 'no data' });
      }, ms);
    },

    onMessage(event) {
      const generation = this.generation;
      this.watchSilence(generation, SILENCE_MS);
      if (!this.gotMessage) {
        this.gotMessage = true;
        this.failures = 0;
        this.attempt = 0;
        if (this.probing) {
          // The WebSocket works again: leave the MJPEG fallback.
          this.probing = false;
          clearTimeout(this.timers.probe);
          clearInterval(this.timers.mjpegWatch);
          this.timers.probe = this.timers.mjpegWatch = null;
          this.stopMjpegImage();
          this.mode = 'ws';
        }
        this.setConnection('live');
      }
      if (typeof event.data !== 'string') {
        const meta = this.pendingMeta;
        this.pendingMeta = null;
        if (!meta) return;
        if (meta.type === 'init') this.onInit(meta, event.data);
        else if (meta.codec === 'h264') this.onH264Frame(meta, event.data);
        else this.onFrame(meta, event.data);
        return;
      }
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      switch (msg.type) {
        case 'frame':
        case 'init':
          this.pendingMeta = msg; // its bytes are the next binary message
          break;
        case 'no_frame':
          this.pendingMeta = null;
          this.onNoFrame(msg.reason);
          break;
        case 'status':
          this.onStatus(msg);
          break;
        case 'error':
          if (msg.code === 'h264_unavailable') {
            // Expected for an MJPEG-recording camera: JPEG frames on the same socket.
            this.h264Unavailable = app.camera;
            this.h264UnavailableWhy = String(msg.message || 'the camera has no H.264 stream').replace(/\.$/, '');
            this.subscribe();
          } else {
            toast(`Live view: ${msg.message || msg.code || 'error'}`, 'error');
          }
          break;
        default:
          break; // pong and anything newer
      }
    },

    /** Counts a frame that arrived (either codec) for the chips. */
    noteFrame(now) {
      this.frameCount += 1;
      this.lastFrameAt = new Date();
      this.frameTimes.push(now);
      while (this.frameTimes.length > 0 && now - this.frameTimes[0] > 2000) this.frameTimes.shift();
      if (this.streaming !== 'streaming') {
        this.setStreaming('streaming');
        this.hideBanner();
      }
    },

    /** An init segment: a new player (a new encoder or picture size means a fresh start). */
    onInit(meta, data) {
      this.stopPlayer();
      const codec = typeof meta.codec === 'string' && meta.codec ? meta.codec : H264_PROBE_CODEC;
      if (!mseSupports(codec)) {
        this.onH264Failed(`this browser does not play ${codec}`);
        return;
      }
      let player = null;
      const events = {
        fail: (why) => this.onH264Failed(why, player),
        picture: () => {
          if (player !== this.player) return;
          $('#viewer').classList.remove('stale');
          if (!player.blocked) this.setOverlay('');
          this.scheduleChips();
        },
        blocked: () => { if (player === this.player) this.setOverlay('Tap the picture to play'); },
        playing: () => { if (player === this.player) this.setOverlay(''); },
      };
      try {
        player = new H264Player($('#live-video'), { ...meta, codec }, events);
      } catch (err) {
        this.onH264Failed(`MediaSource: ${err && err.name ? err.name : err}`);
        return;
      }
      this.player = player;
      player.appendInit(data);
      this.releaseBlobs();
      $('#live-img').removeAttribute('src');
      $('#live-img').hidden = true;
      $('#live-video').hidden = false;
      if (!this.hasPicture()) this.setOverlay('Starting video…');
      this.setCodec('h264');
    },

    onH264Frame(meta, data) {
      if (!this.player) return; // a fragment without its init segment cannot be decoded
      const now = performance.now();
      this.noteFrame(now);
      this.player.appendFragment(data, meta.keyframe === true, now);
      if (this.player && this.player.pictureSeen) $('#viewer').classList.remove('stale');
      this.scheduleChips();
    },

    /** MSE failed: JPEG frames for the rest of this page load, and the page says so. */
    onH264Failed(why, player) {
      if (player && player !== this.player) return;
      this.mseFailed = why;
      console.warn(`benchcam live view: H.264 via MSE failed (${why}); using JPEG frames`);
      toast(`H.264 video failed (${why}): showing JPEG frames`, 'error');
      this.stopPlayer();
      this.setCodec('jpeg');
      // A fresh socket: the service may not take a second subscribe on this one.
      if (this.active()) this.connect();
    },

    onFrame(meta, data) {
      // A JPEG frame: the answer to a plain subscribe, or a service that does not know H.264.
      if (this.player) this.stopPlayer();
      this.setCodec('jpeg');
      this.noteFrame(performance.now());
      if (meta.quality) this.serverQuality = meta.quality;
      const blob = data instanceof Blob
        ? (data.type ? data : new Blob([data], { type: 'image/jpeg' }))
        : new Blob([data], { type: 'image/jpeg' });
      this.display(blob);
      this.scheduleChips();
    },

    /** Shows a JPEG; at most one decodes at a time and only the newest waiting one is kept. */
    display(blob) {
      if (this.loadingUrl && performance.now() - this.loadingSince < 2000) {
        this.queuedBlob = blob;
        return;
      }
      if (this.loadingUrl) URL.revokeObjectURL(this.loadingUrl);
      const url = URL.createObjectURL(blob);
      this.loadingUrl = url;
      this.loadingSince = performance.now();
      // Decode off-screen first, then swap: the visible image never shows a blank
      // while the next frame loads. A frame that fails to decode still goes to the
      // <img>, whose error handler drops it.
      const probe = new Image();
      probe.src = url;
      const show = () => { if (this.loadingUrl === url) $('#live-img').src = url; };
      probe.decode().then(show, show);
    },

    onImageLoad() {
      const img = $('#live-img');
      if (this.loadingUrl && img.src === this.loadingUrl) {
        if (this.shownUrl) URL.revokeObjectURL(this.shownUrl);
        this.shownUrl = this.loadingUrl;
        this.loadingUrl = null;
        $('#viewer').classList.remove('stale');
        this.setOverlay('');
        const next = this.queuedBlob;
        this.queuedBlob = null;
        if (next) this.display(next);
      } else if (this.mjpegRunning()) {
        // The first part of the multipart stream arrived (Firefox fires this per part).
        if (!this.lastFrameAt || this.streaming !== 'streaming') this.lastFrameAt = new Date();
        this.attempt = 0;
        this.setStreaming('streaming');
        this.setOverlay('');
        $('#viewer').classList.remove('stale');
        this.scheduleChips();
      }
    },

    onImageError() {
      const img = $('#live-img');
      if (this.loadingUrl && img.src === this.loadingUrl) {
        URL.revokeObjectURL(this.loadingUrl);
        this.loadingUrl = null;
        const next = this.queuedBlob;
        this.queuedBlob = null;
        if (next) this.display(next);
      } else if (this.mjpegRunning()) {
        // The stream ended or was refused (service restart, no frame): try again later.
        this.stopMjpegImage();
        this.setStreaming('stopped');
        this.setOverlay('Reconnecting…');
        $('#viewer').classList.add('stale');
        this.scheduleRetry(() => this.startMjpeg());
      }
    },

    onNoFrame(reason) {
      this.setStreaming('no_frame');
      const [title, detail] = NO_FRAME_TEXT[reason] || ['No live picture', `The service has no frame to send (${reason || 'unknown reason'}).`];
      this.showBanner(title, detail, reason === 'camera_error' ? 'error' : 'warn', reason || 'unknown');
      $('#viewer').classList.add('stale');
      if (!this.hasPicture()) this.setOverlay(title);
      this.scheduleChips();
    },

    onStatus(msg) {
      const parts = [];
      if (typeof msg.fps === 'number') parts.push(`camera ${msg.fps.toFixed(1)} fps`);
      if (typeof msg.recording === 'boolean') {
        parts.push(msg.recording ? '● recording' : 'not recording');
        setRecording(msg.camera || app.camera, msg.recording);
      }
      if (typeof msg.viewers === 'number') parts.push(`${msg.viewers} viewer${msg.viewers === 1 ? '' : 's'}`);
      if (msg.quality) this.serverQuality = msg.quality;
      $('#live-status').textContent = parts.length ? `Server: ${parts.join(' · ')}` : '';
      this.scheduleChips();
    },

    async onClose(generation, event) {
      clearInterval(this.timers.ping);
      clearTimeout(this.timers.silence);
      this.timers.ping = this.timers.silence = null;
      if (generation === this.generation) this.ws = null;
      const wasProbe = this.probing;
      const hadMessages = this.gotMessage;
      this.probing = false;
      this.pendingMeta = null;
      if (!this.active()) return;

      if (wasProbe) {
        // Still no WebSocket; MJPEG keeps running. Try again later.
        this.timers.probe = setTimeout(() => this.probe(), WS_RETRY_FROM_MJPEG_MS);
        return;
      }

      this.setStreaming('stopped');
      $('#viewer').classList.add('stale');
      if (event && event.code === 1013) {
        this.showBanner('Too many viewers', event.reason || 'The service is at its viewer limit. Retrying…', 'warn', 'capacity');
        this.attempt = Math.max(this.attempt, 4);
      }

      if (!hadMessages) {
        // Count it as a WebSocket failure only when plain HTTP works; when the whole
        // service is unreachable (restart, Wi-Fi), MJPEG would not help either.
        const reachable = await serviceReachable();
        if (generation !== this.generation) return; // stopped, or a newer socket took over
        if (!this.active()) return;
        if (reachable && event.code !== 1013) this.failures += 1;
        if (this.failures >= 2) {
          this.mode = 'mjpeg';
          toast('WebSocket unavailable: using MJPEG');
          this.startMjpeg();
          return;
        }
      }
      this.setOverlay(navigator.onLine === false ? 'Offline' : 'Reconnecting…');
      this.scheduleRetry(() => this.connect());
    },

    scheduleRetry(fn) {
      clearTimeout(this.timers.retry);
      const base = Math.min(10000, 500 * 2 ** Math.min(this.attempt, 5));
      const delay = base * (0.75 + Math.random() * 0.5);
      this.attempt += 1;
      this.setConnection(navigator.onLine === false ? 'offline' : (this.mode === 'mjpeg' ? 'mjpeg' : 'reconnecting'));
      this.timers.retry = setTimeout(() => {
        this.timers.retry = null;
        if (this.active()) fn();
      }, delay);
    },

    /** Reconnect now (online again, page shown again, Reconnect button). */
    kick() {
      if (!this.active()) return;
      if (this.connection === 'live' && this.ws) return;
      this.attempt = 0;
      clearTimeout(this.timers.retry);
      this.timers.retry = null;
      if (this.mode === 'mjpeg') {
        if (!this.mjpegRunning() || this.streaming !== 'streaming') this.startMjpeg();
      } else {
        this.connect();
      }
    },

    // --- MJPEG fallback ---

    mjpegUrl() {
      return `/api/v1/cameras/${seg(app.camera)}/stream.mjpg?quality=${seg(app.quality)}&t=${Date.now()}`;
    },

    mjpegRunning() {
      const src = $('#live-img').getAttribute('src') || '';
      return src.includes('/stream.mjpg');
    },

    startMjpeg() {
      this.closeSocket();
      clearTimeout(this.timers.retry);
      this.timers.retry = null;
      if (!app.camera) return;
      this.releaseBlobs();
      this.stopPlayer();
      this.mode = 'mjpeg';
      this.setConnection('mjpeg');
      this.setOverlay('Loading MJPEG…');
      this.mjpegStartedAt = performance.now();
      this.mjpegLost = false;
      $('#live-img').src = this.mjpegUrl();
      clearTimeout(this.timers.probe);
      this.timers.probe = setTimeout(() => this.probe(), WS_RETRY_FROM_MJPEG_MS);
      clearInterval(this.timers.mjpegWatch);
      this.timers.mjpegWatch = setInterval(() => this.checkMjpeg(), MJPEG_CHECK_MS);
    },

    /** An <img> fires no event when a multipart stream just ends (service restart, Wi-Fi),
     *  so check the service now and then and restart the stream once it answers again. */
    async checkMjpeg() {
      if (!this.active() || this.mode !== 'mjpeg') return;
      const reachable = await serviceReachable();
      if (!this.active() || this.mode !== 'mjpeg') return;
      if (!reachable) {
        this.mjpegLost = true;
        this.setStreaming('stopped');
        this.setConnection(navigator.onLine === false ? 'offline' : 'reconnecting');
        this.setOverlay('Reconnecting…');
        $('#viewer').classList.add('stale');
        return;
      }
      const broken = $('#live-img').naturalWidth === 0 && performance.now() - this.mjpegStartedAt > 8000;
      if (this.mjpegLost || broken) this.startMjpeg();
    },

    /** Tries the WebSocket again while MJPEG keeps showing; switches back on its first message. */
    probe() {
      this.timers.probe = null;
      if (!this.active() || this.mode !== 'mjpeg' || typeof window.WebSocket !== 'function') return;
      this.connect({ probe: true });
    },

    stopMjpegImage() {
      // Replacing the src ends the multipart request.
      const img = $('#live-img');
      if ((img.getAttribute('src') || '').includes('/stream.mjpg')) img.src = BLANK_GIF;
    },

    releaseBlobs() {
      for (const url of [this.shownUrl, this.loadingUrl]) if (url) URL.revokeObjectURL(url);
      this.shownUrl = this.loadingUrl = this.queuedBlob = null;
    },

    setQuality(quality) {
      if (!QUALITIES.includes(quality)) return;
      app.quality = quality;
      store.set('quality', quality);
      for (const button of $$('[data-quality]')) {
        button.setAttribute('aria-checked', String(button.dataset.quality === quality));
      }
      this.serverQuality = null;
      if (this.ws) this.send({ type: 'set_quality', quality });
      else if (this.mode === 'mjpeg' && this.mjpegRunning()) $('#live-img').src = this.mjpegUrl();
      this.scheduleChips();
    },

    // --- presentation ---

    setConnection(state) {
      this.connection = state;
      this.scheduleChips();
    },

    setStreaming(state) {
      this.streaming = state;
      this.scheduleChips();
    },

    setOverlay(text) {
      const overlay = $('#viewer-overlay');
      overlay.textContent = text;
      overlay.hidden = !text;
    },

    showBanner(title, detail, kind, reason) {
      const banner = $('#banner');
      $('#banner-title').textContent = title;
      $('#banner-detail').textContent = detail;
      banner.dataset.kind = kind;
      banner.dataset.reason = reason;
      banner.hidden = false;
    },

    hideBanner() {
      $('#banner').hidden = true;
    },

    scheduleChips() {
      if (this.chipsScheduled) return;
      this.chipsScheduled = true;
      requestAnimationFrame(() => {
        this.chipsScheduled = false;
        this.renderChips();
      });
    },

    /** Frames that arrived per second over the last 2 s. */
    arrivalFps() {
      const now = performance.now();
      const times = this.frameTimes.filter((t) => now - t <= 2000);
      return times.length >= 2 ? (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000) : 0;
    },

    /** What the quality buttons change in this mode, and why H.264 is not used if it is not. */
    qualityNote(mode) {
      if (mode === 'h264') {
        return 'H.264: the recording\'s stream, the same for every viewer; quality applies to the JPEG/MJPEG fallback only.';
      }
      let why = '';
      if (this.mseFailed) why = ` H.264 video failed on this page (${this.mseFailed}).`;
      else if (this.h264Unavailable === app.camera && this.h264Unavailable) why = ` No H.264 from this camera: ${this.h264UnavailableWhy}.`;
      else if (!mseSupports(H264_PROBE_CODEC)) why = ' This browser does not play H.264 video here (no Media Source Extensions).';
      if (mode === 'jpeg') return `JPEG frames: quality sets their size, frame rate and compression.${why}`;
      if (mode === 'mjpeg') return `MJPEG stream: quality sets its size, frame rate and compression.${why}`;
      return 'Quality sets the size, frame rate and compression of JPEG and MJPEG pictures; H.264 video is the recording\'s stream.';
    },

    renderChips() {
      const set = (id, text, attrs = {}) => {
        const chip = $(id);
        if (chip.textContent !== text) chip.textContent = text;
        for (const [k, v] of Object.entries(attrs)) chip.dataset[k] = v;
      };
      const streamingText = { streaming: 'streaming', no_frame: 'no frame', stopped: 'stopped' }[this.streaming];
      set('#chip-streaming', streamingText, { state: this.streaming });
      const connectionText = {
        connecting: 'connecting', live: 'live', reconnecting: 'reconnecting',
        mjpeg: 'mjpeg fallback', offline: 'offline', paused: 'paused',
      }[this.connection];
      set('#chip-connection', connectionText, { state: this.connection });
      const mode = this.viewMode();
      set('#chip-mode', MODE_TEXT[mode], { mode });
      const viewer = $('#viewer');
      if (viewer.dataset.mode !== mode) viewer.dataset.mode = mode;
      const note = this.qualityNote(mode);
      if ($('#quality-note').textContent !== note) $('#quality-note').textContent = note;
      const player = mode === 'h264' ? this.player : null;
      const behind = $('#chip-behind');
      behind.hidden = !player;
      if (player) {
        // The H.264 stream is the recording's: the quality buttons do not change it.
        set('#chip-quality', player.width && player.height ? `video ${player.width}×${player.height}` : 'video');
        const delay = player.displayDelayMs();
        set('#chip-behind', player.behindS === null ? 'live edge –' : `${player.behindS.toFixed(2)} s behind live`, {
          value: player.behindS === null ? '' : player.behindS.toFixed(3),
          displayDelayMs: delay === null ? '' : String(Math.round(delay)),
          dropped: String(player.dropped),
          jumps: String(player.jumps),
        });
      } else {
        const shownQuality = this.serverQuality && this.serverQuality !== app.quality
          ? `${this.serverQuality} (asked ${app.quality})`
          : app.quality;
        set('#chip-quality', `quality ${shownQuality}`);
      }
      if (player) {
        // Frames are those that arrived; fps counts pictures shown where the browser says.
        set('#chip-frames', `${this.frameCount} frames`, { value: String(this.frameCount) });
        set('#chip-last', this.lastFrameAt ? `last ${clockTime(this.lastFrameAt)}` : 'no frame yet');
        const shown = player.shownFps();
        const fps = shown ?? this.arrivalFps();
        set('#chip-fps', `${fps.toFixed(1)} fps`, { value: fps.toFixed(1) });
      } else if (this.mode === 'mjpeg' && this.mjpegRunning()) {
        // An <img> showing MJPEG tells nothing per frame (Chrome fires `load` once).
        set('#chip-frames', 'frames n/a', { value: '' });
        set('#chip-last', this.lastFrameAt ? `stream since ${clockTime(this.lastFrameAt)}` : 'no frame yet');
        set('#chip-fps', 'fps n/a', { value: '' });
      } else {
        set('#chip-frames', `${this.frameCount} frames`, { value: String(this.frameCount) });
        set('#chip-last', this.lastFrameAt ? `last ${clockTime(this.lastFrameAt)}` : 'no frame yet');
        const fps = this.arrivalFps();
        set('#chip-fps', `${fps.toFixed(1)} fps`, { value: fps.toFixed(1) });
      }
      const rec = $('#live-rec-toggle');
      const recording = app.recording[app.camera] === true;
      rec.dataset.active = String(recording);
      rec.textContent = recording ? '■ Stop rec' : '● Record';
    },
  };

  /** Full-screen live view: automatic on a phone held sideways, or by the viewer's button
   *  (which also asks the browser for real full screen where it offers it). */
  const liveFull = {
    landscape: window.matchMedia('(orientation: landscape) and (max-height: 560px)'),
    /** What the button chose in this orientation; null: follow the orientation. */
    choice: null,

    on() { return app.tab === 'live' && (this.choice ?? this.landscape.matches); },

    update() {
      const on = this.on();
      document.body.classList.toggle('live-full', on);
      const button = $('#live-full');
      button.setAttribute('aria-pressed', String(on));
      // An icon on the small picture; words once it fills the screen.
      const text = $('#live-full-text');
      text.textContent = on ? 'Exit full screen' : 'Full screen';
      text.classList.toggle('visually-hidden', !on);
      if (!on && document.fullscreenElement) document.exitFullscreen().catch(() => {});
    },

    toggle() {
      this.choice = !this.on();
      this.update();
      if (this.choice && !document.fullscreenElement && document.documentElement.requestFullscreen) {
        document.documentElement.requestFullscreen().catch(() => { /* the CSS full view stays */ });
      }
    },

    init() {
      $('#live-full').addEventListener('click', () => this.toggle());
      this.landscape.addEventListener('change', () => { this.choice = null; this.update(); });
      document.addEventListener('fullscreenchange', () => {
        if (!document.fullscreenElement && this.choice) { this.choice = this.landscape.matches ? null : false; this.update(); }
      });
      document.addEventListener('keydown', (event) => {
        if (event.key === 'Escape' && this.on() && $('#login').hidden) { this.choice = false; this.update(); }
      });
    },
  };

  async function serviceReachable() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 4000);
    try {
      const res = await fetch('/api/v1/health', { cache: 'no-store', signal: abort.signal, credentials: 'same-origin' });
      if (res.status === 401) requireLogin().then(() => live.kick(), () => {});
      return res.status < 500 || res.status === 503;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  function initLive() {
    const img = $('#live-img');
    img.addEventListener('load', () => live.onImageLoad());
    img.addEventListener('error', () => live.onImageError());
    // Where autoplay is refused (the overlay says so), a tap on the picture starts it.
    $('#viewer').addEventListener('click', () => { if (live.player && live.player.blocked) live.player.play(); });
    for (const button of $$('[data-quality]')) {
      button.addEventListener('click', () => live.setQuality(button.dataset.quality));
    }
    live.setQuality(app.quality);
    liveFull.init();
    $('#live-reconnect').addEventListener('click', () => {
      live.restart();
    });
    $('#live-rec-toggle').addEventListener('click', () => {
      if (app.recording[app.camera] === true) stopRecording();
      else startRecording();
    });
    // Keeps "last frame" and fps honest when frames stop coming.
    setInterval(() => { if (app.tab === 'live' && pageVisible()) live.renderChips(); }, 1000);
    tabEnter.live = () => live.resume();
    tabLeave.live = () => { live.pause(); liveFull.choice = null; };
    document.addEventListener('visibilitychange', () => {
      if (pageVisible()) { live.attempt = 0; live.resume(); } else live.pause();
    });
    window.addEventListener('online', () => { live.kick(); refreshHealth(); });
    window.addEventListener('offline', () => live.setConnection('offline'));
    window.addEventListener('pageshow', (event) => { if (event.persisted) live.kick(); });
  }

  // ---------------------------------------------------------------------------
  // Experiments: the one now (start / running with mark and stop / archiving), recent
  // ones as cards with one-file downloads, and one in detail with its frame timing
  // ---------------------------------------------------------------------------

  const EXPERIMENT_ID = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;
  /** The service takes marker labels up to 64 characters. */
  const MARK_LABEL_MAX = 64;
  const STATE_TEXT = { armed: 'armed', running: 'running', stopped: 'archiving…', archived: 'archived' };

  /** An event's moment, from either shape: the manifest's (`wall_us`, `monotonic_us`) or
   *  the running experiment's (`at: {wall_us, monotonic_us}`). */
  function eventAt(event) {
    const at = event.at || {};
    return {
      wallUs: event.wall_us ?? at.wall_us ?? (event.wall ? Date.parse(event.wall) * 1000 : null),
      monoUs: event.monotonic_us ?? at.monotonic_us ?? null,
    };
  }

  function eventName(event) {
    const kind = String(event.kind || 'event').replace(/_/g, ' ');
    return event.label ? `${kind} “${event.label}”` : kind;
  }

  const experiments = {
    available: true,
    list: [],
    lastJson: null,
    openId: null,
    /** The list item of the armed, running or archiving experiment; null when none. */
    current: null,
    /** The id whose stop request this page waits for (post-roll + archive). */
    stopping: null,
    /** performance.now() when the list answered: elapsed time ticks on from its duration_s. */
    fetchedAt: 0,
    /** The running experiment's events, from its live state. */
    events: [],
    eventsKey: '',
    ticker: null,
    confirmTimer: null,
    idTouched: false,
    refresh: null,
    /** The open experiment's parsed frames.csv and manifest, for redrawing on resize. */
    timing: null,

    validate() {
      const input = $('#exp-id');
      const error = $('#exp-id-error');
      const id = input.value.trim();
      let message = '';
      if (!id) message = 'Enter an experiment id.';
      else if (id.length > 64) message = 'At most 64 characters.';
      else if (id.startsWith('.')) message = 'It must not start with a dot.';
      else if (!EXPERIMENT_ID.test(id)) message = 'Use only letters, digits, dot, dash and underscore.';
      else if (this.list.some((e) => this.idOf(e) === id)) message = `There is already an experiment ${id}.`;
      const method = $('#exp-method').value;
      if (!message && method.length > 128) message = 'The method is at most 128 characters.';
      error.textContent = message;
      error.hidden = !message;
      input.setAttribute('aria-invalid', String(!!message));
      return message ? null : { experiment_id: id, method: method.trim() };
    },

    setAvailable(available) {
      this.available = available;
      $('#exp-unavailable').hidden = available;
      $('#exp-body').hidden = !available;
    },

    idOf(exp) { return String(exp.experiment_id ?? exp.id ?? ''); },
    stateOf(exp) { return String(exp.state ?? exp.phase ?? exp.status ?? ''); },

    async load() {
      let list;
      try {
        list = asList(await api('GET', '/api/v1/experiments'), 'experiments');
      } catch (err) {
        if ([404, 405, 501].includes(err.status)) { this.setAvailable(false); return; }
        reportBackground(err, 'Experiments');
        return;
      }
      this.setAvailable(true);
      this.fetchedAt = performance.now();
      this.list = list;
      this.current = list.find((e) => ['armed', 'running', 'stopped'].includes(this.stateOf(e))) || null;
      // A running experiment's duration_s grows with every answer; the cards show
      // "running" for it, so that alone does not redraw them (no jumping under a finger).
      const json = JSON.stringify(list.map((e) => (this.stateOf(e) === 'running' ? { ...e, duration_s: null } : e)));
      if (json !== this.lastJson) {
        this.lastJson = json;
        this.renderCards(list);
      }
      this.renderNow();
      const cur = this.current;
      if (cur && this.stateOf(cur) === 'running') {
        const key = `${this.idOf(cur)}/${cur.events}`;
        if (key !== this.eventsKey) await this.loadEvents(this.idOf(cur), key);
      }
    },

    /** How long the running experiment has run, by the service's clock. */
    elapsed(exp) {
      if (typeof exp.duration_s === 'number') return exp.duration_s + (performance.now() - this.fetchedAt) / 1000;
      const started = Date.parse(exp.started_at);
      return isNaN(started) ? 0 : (serverNow() - started) / 1000;
    },

    // --- the experiment now ---

    renderNow() {
      const cur = this.current;
      const state = this.stopping ? 'stopped' : cur ? this.stateOf(cur) : '';
      const id = this.stopping || (cur && this.idOf(cur));
      const show = { form: !state, armed: state === 'armed', running: state === 'running', stopping: state === 'stopped' };
      const wasRunning = !$('#exp-running').hidden;
      $('#exp-form').hidden = !show.form;
      $('#exp-armed').hidden = !show.armed;
      $('#exp-running').hidden = !show.running;
      $('#exp-stopping').hidden = !show.stopping;
      $('#exp-tab-dot').hidden = !(show.running || show.stopping);
      if (show.form) this.suggestId();
      if (show.armed) {
        $('#exp-armed-id').textContent = id;
        $('#exp-armed-since').textContent = cur.method ? `Method: ${cur.method}` : '';
      }
      if (show.stopping) $('#exp-stopping-id').textContent = id;
      if (show.running) {
        $('#exp-run-id').textContent = id;
        $('#exp-run-method').textContent = cur.method ? `Method: ${cur.method}` : 'No method given';
        $('#exp-run-cameras').textContent = (cur.cameras || []).join(', ') || '–';
        $('#exp-run-started').textContent = formatTime(cur.started_at);
        $('#exp-stop-name').textContent = id;
        if (!wasRunning) this.hideConfirm();
      }
      this.renderStrip();
      if (show.running) {
        if (!this.ticker) this.ticker = setInterval(() => this.tick(), 1000);
        this.tick();
      } else if (this.ticker) {
        clearInterval(this.ticker);
        this.ticker = null;
      }
    },

    tick() {
      const cur = this.current;
      if (!cur || this.stateOf(cur) !== 'running') return;
      const seconds = this.elapsed(cur);
      const text = formatElapsed(seconds);
      const elapsed = $('#exp-elapsed');
      if (elapsed.textContent !== text) {
        elapsed.textContent = text;
        elapsed.dataset.seconds = String(Math.floor(seconds));
        $('#exp-strip-elapsed').textContent = text;
      }
    },

    /** The running experiment's strip under the top bar, on the other tabs. */
    renderStrip() {
      const cur = this.current;
      const running = !!cur && this.stateOf(cur) === 'running' && !this.stopping;
      $('#exp-strip').hidden = !running || app.tab === 'experiments';
      if (running) {
        $('#exp-strip-id').textContent = this.idOf(cur);
        $('#exp-strip-mark').setAttribute('aria-label', `Mark experiment ${this.idOf(cur)} now`);
      }
    },

    /** A new id from the newest one: run-042 → run-043. Only into an untouched, empty field. */
    suggestId() {
      const input = $('#exp-id');
      if (this.idTouched || input.value || document.activeElement === input) return;
      const ids = new Set(this.list.map((e) => this.idOf(e)));
      let suggestion = '';
      const newest = this.list.length ? this.idOf(this.list[0]) : '';
      const m = /^(.*?)(\d+)$/.exec(newest);
      if (m) {
        let n = Number(m[2]);
        do { n += 1; suggestion = `${m[1]}${String(n).padStart(m[2].length, '0')}`; } while (ids.has(suggestion));
      } else if (!newest) {
        suggestion = 'run-001';
      }
      if (suggestion && EXPERIMENT_ID.test(suggestion)) input.value = suggestion;
      const method = store.get('method', '');
      if (method && !$('#exp-method').value) $('#exp-method').value = method;
    },

    async loadEvents(id, key) {
      let state;
      try {
        state = await api('GET', `/api/v1/experiments/${seg(id)}`);
      } catch (err) {
        reportBackground(err, `Experiment ${id}`);
        return;
      }
      const exp = (state && (state.experiment || state)) || {};
      this.events = Array.isArray(exp.events) ? exp.events : [];
      this.eventsKey = key || `${id}/${this.events.length}`;
      this.renderEvents();
    },

    renderEvents() {
      const start = this.events.find((e) => e.kind === 'start');
      const startMono = start ? eventAt(start).monoUs : null;
      const items = this.events.slice(-6).reverse().map((event) => {
        const at = eventAt(event);
        const since = startMono !== null && at.monoUs !== null ? formatElapsed((at.monoUs - startMono) / 1e6) : formatTime(new Date(at.wallUs / 1000));
        return h('li', { 'data-kind': event.kind },
          h('span', { class: 'ev-time' }, `+${since}`),
          h('span', { class: `ev-kind-${event.kind}` }, eventName(event)),
          event.source && event.source !== 'api' ? h('span', { class: 'muted' }, `(${event.source})`) : null);
      });
      $('#exp-run-events').replaceChildren(...items);
    },

    async create(arm) {
      const body = this.validate();
      if (!body) { $('#exp-id').focus(); return; }
      if (arm) body.arm = true;
      const buttons = [$('#exp-start'), $('#exp-arm')];
      buttons.forEach((b) => { b.disabled = true; });
      try {
        await api('POST', '/api/v1/experiments', body);
        toast(arm ? `Armed ${body.experiment_id}: waiting for the trigger` : `Experiment ${body.experiment_id} started`);
        store.set('method', body.method);
        $('#exp-id').value = '';
        this.idTouched = false;
        this.lastJson = null;
        this.eventsKey = '';
        await this.load();
        const card = arm ? $('#exp-armed') : $('#exp-running');
        if (!card.hidden) { card.tabIndex = -1; card.focus({ preventScroll: true }); }
      } catch (err) {
        if (err.status === 404 && err.code === 'http_404') this.setAvailable(false);
        else reportError(err, arm ? 'Arm' : 'Start');
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    },

    async mark(withLabel) {
      const cur = this.current;
      if (!cur || this.stateOf(cur) !== 'running') return;
      const id = this.idOf(cur);
      const input = $('#mark-label');
      const label = withLabel ? input.value.trim().slice(0, MARK_LABEL_MAX) : '';
      const when = formatElapsed(this.elapsed(cur));
      const buttons = [$('#exp-mark'), $('#exp-strip-mark')];
      buttons.forEach((b) => { b.disabled = true; });
      try {
        await api('POST', `/api/v1/experiments/${seg(id)}/marker`, label ? { label } : undefined);
        toast(label ? `Marked “${label}” at +${when}` : `Marked at +${when}`);
        if (withLabel) input.value = '';
        await this.loadEvents(id);
      } catch (err) {
        reportError(err, 'Mark');
      } finally {
        // Re-enabled after a moment: one press of a gloved thumb is one marker.
        setTimeout(() => buttons.forEach((b) => { b.disabled = false; }), 400);
      }
    },

    askStop() {
      $('#exp-stop').hidden = true;
      $('#exp-stop-confirm').hidden = false;
      $('#exp-stop-yes').focus();
      clearTimeout(this.confirmTimer);
      this.confirmTimer = setTimeout(() => this.hideConfirm(), 15000);
    },

    hideConfirm({ focus = false } = {}) {
      clearTimeout(this.confirmTimer);
      $('#exp-stop-confirm').hidden = true;
      $('#exp-stop').hidden = false;
      if (focus) $('#exp-stop').focus();
    },

    async stop(id) {
      this.hideConfirm();
      this.stopping = id;
      this.renderNow();
      $('#exp-stopping').focus({ preventScroll: true });
      try {
        // Waits for the post-roll and the archive: give it time.
        const manifest = await api('POST', `/api/v1/experiments/${seg(id)}/stop`, undefined, { timeoutMs: 180000 });
        toast(`Experiment ${id} stopped and archived`);
        this.stopping = null;
        this.lastJson = null;
        await this.load();
        if (manifest && typeof manifest === 'object') this.showManifest(id, manifest);
      } catch (err) {
        this.stopping = null;
        reportError(err, `Stop ${id}`);
        this.lastJson = null;
        await this.load();
      }
    },

    async disarm() {
      const cur = this.current;
      if (!cur) return;
      const id = this.idOf(cur);
      try {
        await api('POST', `/api/v1/experiments/${seg(id)}/stop`);
        toast(`Experiment ${id} stopped`);
      } catch (err) {
        // Stopping an armed experiment disarms it and says so with a 409.
        if (err.status === 409 && /disarm/i.test(err.message)) toast(`Disarmed ${id}`);
        else reportError(err, `Disarm ${id}`);
      }
      this.lastJson = null;
      await this.load();
    },

    // --- cards ---

    renderCards(list) {
      // Keep the keyboard focus on the same control of the same card across a redraw.
      const focused = document.activeElement;
      const li = focused && focused.closest && focused.closest('#exp-list > li');
      const keep = li ? { id: li.dataset.id, testid: focused.dataset.testid, camera: focused.dataset.camera } : null;
      const items = list.map((exp) => this.card(exp));
      $('#exp-list').replaceChildren(...items);
      if (keep) {
        const card = $(`#exp-list > li[data-id="${CSS.escape(keep.id)}"]`);
        const again = card && $$('[data-testid]', card).find((el) => el.dataset.testid === keep.testid && el.dataset.camera === keep.camera);
        if (again) again.focus({ preventScroll: true });
      }
      $('#exp-empty').hidden = items.length > 0;
      $('#exp-count').textContent = list.length ? `${list.length}` : '';
    },

    card(exp) {
      const id = this.idOf(exp);
      const state = this.stateOf(exp);
      const started = exp.started_at ? Date.parse(exp.started_at) : NaN;
      const stopped = exp.stopped_at ? Date.parse(exp.stopped_at) : NaN;
      const duration = typeof exp.duration_s === 'number' ? exp.duration_s
        : !isNaN(started) && !isNaN(stopped) ? (stopped - started) / 1000 : null;
      const fact = (name, value, key) => h('div', { 'data-fact': key }, h('dt', {}, name), h('dd', {}, value));
      const archived = state === 'archived' || exp.complete === true;
      const actions = [
        h('button', {
          type: 'button', class: 'btn btn-small exp-view', 'data-testid': 'exp-view',
          'aria-label': `Details of ${id}`, onclick: () => this.open(id),
        }, 'Details'),
      ];
      if (archived) {
        actions.push(h('a', {
          class: 'btn btn-small btn-primary exp-zip', 'data-testid': 'exp-zip',
          href: `/api/v1/experiments/${seg(id)}/download.zip`, download: '',
          'aria-label': `Download all of ${id} as one ZIP${typeof exp.size_bytes === 'number' ? ` (${formatBytes(exp.size_bytes)})` : ''}`,
        }, 'Download all'));
      }
      if (!isNaN(started) && !isNaN(stopped)) {
        for (const camera of exp.cameras || []) {
          actions.push(h('a', {
            class: 'btn btn-small exp-video', 'data-testid': 'exp-video', 'data-camera': camera,
            href: spanUrl(camera, started, stopped), download: '',
            'aria-label': `Video of ${id} from ${camera}, start to stop, as one MP4`,
          }, (exp.cameras || []).length > 1 ? `Video ${camera}` : 'Video'));
        }
      }
      const badgeClass = state === 'running' ? 'badge-live' : state === 'armed' || state === 'stopped' ? 'badge-warn' : archived ? 'badge-ok' : '';
      return h('li', { class: 'card exp-card', 'data-id': id, 'data-state': state, 'data-open': String(id === this.openId) },
        h('div', { class: 'exp-card-head' },
          h('h3', {}, id),
          h('span', { class: `badge ${badgeClass}` }, STATE_TEXT[state] || state || '?')),
        exp.method ? h('div', { class: 'item-sub' }, exp.method) : null,
        h('dl', { class: 'facts' },
          fact('Start', formatTime(exp.started_at ?? exp.armed_at), 'start'),
          fact('Duration', state === 'running' ? 'running' : formatDuration(duration), 'duration'),
          fact('Clips', exp.clips === null || exp.clips === undefined ? '–' : formatCount(exp.clips), 'clips'),
          fact('Size', exp.size_bytes === null || exp.size_bytes === undefined ? '–' : formatBytes(exp.size_bytes), 'size'),
          typeof exp.frames === 'number' ? fact('Frames', formatCount(exp.frames), 'frames') : null),
        this.replication(exp.replication),
        h('div', { class: 'card-actions' }, actions));
    },

    // Upload to the lab's object storage: a bar while it goes, a word when done or failed.
    replication(r) {
      if (!r || typeof r !== 'object') return null;
      const total = Number(r.bytes_total) || 0;
      const done = Math.min(Number(r.bytes_done) || 0, total);
      const words = {
        pending: 'Upload waiting',
        uploading: `Uploading ${formatBytes(done)} of ${formatBytes(total)}`,
        verified: 'Uploaded and verified',
        failed: `Upload failed: ${r.error || 'unknown error'} (retrying)`,
      };
      const text = words[r.state] || `Upload ${r.state}`;
      return h('div', { class: `exp-upload exp-upload-${r.state}`, 'data-testid': 'exp-upload', 'data-state': r.state, title: r.destination || '' },
        h('progress', { max: String(total || 1), value: String(r.state === 'verified' ? total || 1 : done), 'aria-label': text }),
        h('span', { class: 'item-sub' }, text));
    },

    // --- one experiment in detail ---

    async open(id) {
      try {
        this.showManifest(id, await api('GET', `/api/v1/experiments/${seg(id)}`));
      } catch (err) {
        reportError(err, `Experiment ${id}`);
      }
    },

    close() {
      $('#exp-manifest').hidden = true;
      const id = this.openId;
      this.openId = null;
      this.timing = null;
      for (const li of $$('#exp-list > li')) li.dataset.open = 'false';
      const button = id && $(`#exp-list > li[data-id="${CSS.escape(id)}"] .exp-view`);
      if (button) button.focus();
    },

    /** Files named anywhere a manifest lists them. */
    filesOf(manifest) {
      const found = new Map();
      for (const entry of Array.isArray(manifest.files) ? manifest.files : []) {
        const name = entry && (entry.name ?? entry.file);
        if (typeof name === 'string' && name) found.set(name, { ...entry, name });
      }
      return Array.from(found.values());
    },

    summaryOf(id, manifest) {
      const exp = manifest.experiment;
      if (exp) {
        // Not archived yet: the live state.
        const clock = exp.clock_at_start;
        return [
          ['State', STATE_TEXT[exp.phase] || exp.phase],
          ['Method', exp.method || '–'],
          ['Cameras', (exp.cameras || []).join(', ')],
          ['Armed', exp.armed ? formatTime(new Date(exp.armed.wall_us / 1000)) : undefined],
          ['Started', exp.started ? formatTime(new Date(exp.started.wall_us / 1000), { ms: true }) : '–'],
          ['Stopped', exp.stopped ? formatTime(new Date(exp.stopped.wall_us / 1000), { ms: true }) : undefined],
          ['Pre-roll', formatDuration(exp.pre_roll_us / 1e6)],
          ['Post-roll', formatDuration(exp.post_roll_us / 1e6)],
          ['Events', formatCount((exp.events || []).length)],
          ['Clock', clock ? this.clockText(clock) : undefined],
        ];
      }
      const clips = Array.isArray(manifest.clips) ? manifest.clips : [];
      const files = this.filesOf(manifest);
      const start = manifest.start || {};
      const stop = manifest.stop || {};
      const window = manifest.window || {};
      const duration = typeof start.monotonic_us === 'number' && typeof stop.monotonic_us === 'number' && window.start_boot_id === window.stop_boot_id
        ? (stop.monotonic_us - start.monotonic_us) / 1e6
        : (stop.wall_us - start.wall_us) / 1e6;
      const clock = manifest.clock || {};
      const steps = Array.isArray(clock.steps) ? clock.steps.length : 0;
      return [
        ['Method', manifest.method || '–'],
        ['Cameras', (manifest.cameras || []).join(', ')],
        ['Started', formatTime(start.wall, { ms: true })],
        ['Stopped', formatTime(stop.wall, { ms: true })],
        ['Duration', formatDuration(duration)],
        ['Archived', `from ${formatDuration(window.pre_roll_s)} before the start to ${formatDuration(window.post_roll_s)} after the stop`],
        ['Clips', formatCount(clips.length)],
        ['Frames', formatCount(clips.reduce((n, c) => n + (c.frame_count || 0), 0))],
        ['Size', formatBytes(files.reduce((n, f) => n + (f.size || 0), 0))],
        ['Clock', clock.at_start ? `${this.clockText(clock.at_start)}${steps ? `; ${steps} step${steps === 1 ? '' : 's'} during it` : ''}` : undefined],
        ['Archived at', formatTime(manifest.archived_at)],
      ];
    },

    clockText(state) {
      if (!state) return '–';
      if (state.synchronized) return 'synchronised';
      return typeof state.max_error_us === 'number' ? `not synchronised (up to ${formatDuration(state.max_error_us / 1e6)} off)` : 'not synchronised';
    },

    showManifest(id, manifest) {
      this.openId = id;
      this.timing = null;
      for (const li of $$('#exp-list > li')) li.dataset.open = String(li.dataset.id === id);
      const card = $('#exp-manifest');
      card.hidden = false;
      card.dataset.id = id;
      $('#exp-manifest-title').textContent = `Experiment ${id}`;
      $('#exp-summary').replaceChildren(...this.summaryOf(id, manifest)
        .filter(([, v]) => v !== undefined)
        .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

      const exp = manifest.experiment;
      const events = Array.isArray(manifest.events) ? manifest.events : exp && Array.isArray(exp.events) ? exp.events : [];
      this.renderEventTable(manifest, events);

      const files = this.filesOf(manifest);
      $('#exp-files').replaceChildren(...files.map((file) => h('li', { 'data-file': file.name },
        h('div', { class: 'item-main' },
          h('div', { class: 'item-title' }, file.name),
          h('div', { class: 'item-sub' }, [
            typeof file.size === 'number' ? formatBytes(file.size) : null,
            file.sha256 ? `SHA-256 ${String(file.sha256).slice(0, 12)}…` : null,
          ].filter(Boolean).join(' · '))),
        h('a', {
          class: 'btn btn-small', download: file.name, 'aria-label': `Download ${file.name}`,
          href: `/api/v1/experiments/${seg(id)}/files/${seg(file.name)}`,
        }, 'Download'))));
      $('#exp-files-empty').hidden = files.length > 0;
      $('#exp-raw').textContent = JSON.stringify(manifest, null, 2);

      $('#exp-timing').hidden = true;
      $('#exp-plots').replaceChildren();
      const note = $('#exp-timing-note');
      if (manifest.frames_file) {
        note.hidden = false;
        note.textContent = 'Loading the frame times…';
        this.loadTiming(id, manifest);
      } else {
        note.hidden = false;
        note.textContent = exp ? 'The frame timing plot appears once the experiment is archived.' : 'This archive has no frames.csv.';
      }
      card.scrollIntoView({ behavior: 'smooth', block: 'start' });
      card.focus({ preventScroll: true });
    },

    renderEventTable(manifest, events) {
      const start = manifest.start || events.find((e) => e.kind === 'start');
      const startAt = start ? eventAt(start) : { wallUs: null, monoUs: null };
      const cameras = manifest.cameras || [];
      const head = ['Time', 'Since start', 'Event', 'Source', ...cameras.map((c) => `Nearest ${c} frame`)];
      const rows = events.map((event) => {
        const at = eventAt(event);
        const since = startAt.monoUs !== null && at.monoUs !== null ? (at.monoUs - startAt.monoUs) / 1e6 : (at.wallUs - startAt.wallUs) / 1e6;
        const nearest = event.nearest_frame || {};
        return h('tr', { 'data-kind': event.kind },
          h('td', {}, at.wallUs !== null ? formatTime(new Date(at.wallUs / 1000), { ms: true }) : '–'),
          h('td', {}, isFinite(since) ? `${since < 0 ? '−' : '+'}${formatDuration(Math.abs(since))}` : '–'),
          h('td', {}, eventName(event) + (event.step_us ? ` (${formatDuration(event.step_us / 1e6)})` : '')),
          h('td', {}, event.source || '–'),
          cameras.map((c) => {
            const n = nearest[c];
            return h('td', {}, n ? `#${n.frame_number} (${n.offset_us >= 0 ? '+' : '−'}${formatDuration(Math.abs(n.offset_us) / 1e6)})` : '–');
          }));
      });
      const table = $('#exp-events');
      $('thead', table).replaceChildren(h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c))));
      $('tbody', table).replaceChildren(...rows);
      table.closest('.table-wrap').hidden = events.length === 0;
      $('#exp-events-empty').hidden = events.length > 0;
    },

    async loadTiming(id, manifest) {
      let text;
      try {
        ({ text } = await request('GET', `/api/v1/experiments/${seg(id)}/files/${seg(manifest.frames_file)}`, { accept: 'text/csv', timeoutMs: 60000 }));
      } catch (err) {
        if (this.openId !== id) return;
        $('#exp-timing-note').textContent = `No frame timing: ${err.message}`;
        return;
      }
      if (this.openId !== id) return;
      const frames = parseFramesCsv(text);
      this.timing = { id, manifest, frames };
      $('#exp-timing-note').hidden = frames.size > 0;
      $('#exp-timing-note').textContent = frames.size ? '' : 'frames.csv lists no frames.';
      this.drawTiming();
    },

    drawTiming() {
      const t = this.timing;
      if (!t || $('#exp-manifest').hidden) return;
      $('#exp-timing').hidden = t.frames.size === 0;
      // Beside the numbers on wide screens (style.css: .plot-block at 640 px), above them on phones.
      const total = $('#exp-plots').clientWidth || $('#exp-manifest').clientWidth - 24;
      const width = Math.max(240, Math.floor(total - (matchMedia('(min-width: 640px)').matches ? 206 : 0)));
      const blocks = [];
      for (const [camera, rows] of t.frames) blocks.push(timingBlock(camera, rows, t.manifest, width));
      $('#exp-plots').replaceChildren(...blocks);
    },
  };

  function initExperiments() {
    $('#exp-form').addEventListener('submit', (event) => { event.preventDefault(); experiments.create(false); });
    $('#exp-arm').addEventListener('click', () => experiments.create(true));
    $('#exp-id').addEventListener('input', () => {
      experiments.idTouched = true;
      if ($('#exp-id').getAttribute('aria-invalid') === 'true') experiments.validate();
    });
    $('#mark-form').addEventListener('submit', (event) => { event.preventDefault(); experiments.mark(true); });
    $('#exp-strip-mark').addEventListener('click', () => experiments.mark(false));
    $('#exp-stop').addEventListener('click', () => experiments.askStop());
    $('#exp-stop-no').addEventListener('click', () => experiments.hideConfirm({ focus: true }));
    $('#exp-stop-yes').addEventListener('click', () => {
      const cur = experiments.current;
      if (cur) experiments.stop(experiments.idOf(cur));
    });
    $('#exp-disarm').addEventListener('click', () => experiments.disarm());
    $('#exp-manifest-close').addEventListener('click', () => experiments.close());
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => experiments.drawTiming(), 200);
    });
    // Often on the Experiments tab; now and then elsewhere, for the running strip.
    experiments.refresh = poller(() => experiments.load(), () => (app.tab === 'experiments' ? 4000 : 10000), () => experiments.available);
    tabEnter.experiments = () => { experiments.available = true; experiments.renderStrip(); experiments.refresh(); };
    tabLeave.experiments = () => { setTimeout(() => experiments.renderStrip(), 0); };
  }

  // ---------------------------------------------------------------------------
  // Frame timing: frames.csv → per camera intervals, gaps and driver drops → SVG
  // ---------------------------------------------------------------------------

  /** frames.csv (columns by their header names) → Map camera → column arrays. */
  function parseFramesCsv(text) {
    const lines = text.split('\n');
    const header = (lines[0] || '').trim().split(',');
    const col = (name) => header.indexOf(name);
    const ci = { camera: col('camera'), frame: col('frame_number'), mono: col('capture_monotonic_us'), wall: col('capture_wall'), win: col('in_window'), driver: col('driver_dropped_before') };
    const byCamera = new Map();
    for (let i = 1; i < lines.length; i += 1) {
      const line = lines[i];
      if (!line) continue;
      const f = line.split(',');
      const camera = f[ci.camera];
      let rows = byCamera.get(camera);
      if (!rows) { rows = { frame: [], mono: [], wall: [], inWindow: [], driver: [] }; byCamera.set(camera, rows); }
      rows.frame.push(Number(f[ci.frame]));
      rows.mono.push(Number(f[ci.mono]));
      rows.wall.push(ci.wall >= 0 ? Date.parse(f[ci.wall]) : NaN);
      rows.inWindow.push(ci.win >= 0 ? f[ci.win] === '1' : true);
      rows.driver.push(ci.driver >= 0 ? Number(f[ci.driver]) || 0 : 0);
    }
    return byCamera;
  }

  /** Counts and intervals of one camera's rows: what the plot and its text show. */
  function frameStats(rows) {
    const n = rows.frame.length;
    let gaps = 0;
    let driver = 0;
    let inWindow = 0;
    const drops = []; // {i, count}: frames missing right before row i
    const intervals = [];
    for (let i = 0; i < n; i += 1) {
      if (rows.inWindow[i]) inWindow += 1;
      let missing = rows.driver[i];
      driver += rows.driver[i];
      if (i > 0) {
        const gap = rows.frame[i] - rows.frame[i - 1] - 1;
        if (gap > 0) { gaps += gap; missing += gap; }
        const dt = rows.mono[i] - rows.mono[i - 1];
        if (dt >= 0) intervals.push(dt / 1000);
      }
      if (missing > 0) drops.push({ i, count: missing });
    }
    const sorted = intervals.slice().sort((a, b) => a - b);
    const q = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
    return { n, gaps, driver, dropped: gaps + driver, inWindow, drops, median: q(0.5), p99: q(0.99), max: sorted.length ? sorted[sorted.length - 1] : 0 };
  }

  function niceStep(range, target) {
    const raw = range / Math.max(1, target);
    const mag = 10 ** Math.floor(Math.log10(raw || 1));
    const norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  }

  /** Time labels on an x axis in seconds from the start: "−10 s", "0:30", "1:00:00". */
  function axisTime(seconds, step) {
    if (step < 1) return `${seconds.toFixed(1)} s`;
    if (Math.abs(seconds) < 60 && step < 60) return `${Math.round(seconds)} s`;
    return `${seconds < 0 ? '−' : ''}${formatElapsed(Math.abs(seconds))}`;
  }

  /** One camera's frame intervals over time, with every drop and every event. */
  function timingBlock(camera, rows, manifest, width) {
    const stats = frameStats(rows);
    const start = manifest.start || {};
    const stop = manifest.stop || {};
    const window = manifest.window || {};
    // One boot: the monotonic clock frames and events share. Across a reboot: wall time.
    const mono = window.start_boot_id === window.stop_boot_id && typeof start.monotonic_us === 'number';
    const xOfRow = mono ? (i) => (rows.mono[i] - start.monotonic_us) / 1e6 : (i) => (rows.wall[i] - start.wall_us / 1000) / 1000;
    const xOfEvent = (e) => {
      const at = eventAt(e);
      return mono && at.monoUs !== null ? (at.monoUs - start.monotonic_us) / 1e6 : (at.wallUs - start.wall_us) / 1e6;
    };
    const stopX = mono && typeof stop.monotonic_us === 'number' ? (stop.monotonic_us - start.monotonic_us) / 1e6 : (stop.wall_us - start.wall_us) / 1e6;
    const events = (Array.isArray(manifest.events) ? manifest.events : []).filter((e) => isFinite(xOfEvent(e)));

    // Rows from the top: event labels (y 0-12), drop ticks (15-27), then the intervals.
    const H = 190;
    const m = { l: 46, r: 10, t: 32, b: 24 };
    const pw = Math.max(50, width - m.l - m.r);
    const ph = H - m.t - m.b;
    let x0 = Math.min(0, stats.n ? xOfRow(0) : 0);
    let x1 = Math.max(isFinite(stopX) ? stopX : 0, stats.n ? xOfRow(stats.n - 1) : 1);
    if (x1 <= x0) x1 = x0 + 1;
    const X = (x) => m.l + ((x - x0) / (x1 - x0)) * pw;
    // The y range shows ordinary jitter; longer intervals (drops, stalls) are clipped at
    // the top and drawn there in red, so one long gap does not flatten the rest.
    const yMax = Math.max(1, Math.min(stats.max, Math.max(stats.median * 3, stats.p99 * 1.2))) * 1.05;
    const Y = (ms) => m.t + ph - (Math.min(ms, yMax) / yMax) * ph;

    const svg = s('svg', { viewBox: `0 0 ${width} ${H}`, width, height: H, role: 'img', 'aria-labelledby': `plot-title-${camera}` });
    svg.append(s('title', { id: `plot-title-${camera}` },
      `${camera}: interval between frames over time; ${stats.n} frames, ${stats.dropped} dropped; median interval ${stats.median.toFixed(1)} ms`));

    // The experiment itself (start to stop) shaded; before and after it, the archived rolls.
    if (isFinite(stopX)) svg.append(s('rect', { class: 'window', x: X(0), y: m.t, width: Math.max(1, X(stopX) - X(0)), height: ph }));

    // Axes and grid.
    const yStep = niceStep(yMax, 3);
    for (let v = 0; v <= yMax + 1e-9; v += yStep) {
      svg.append(s('line', { class: v === 0 ? 'axis' : 'grid', x1: m.l, x2: m.l + pw, y1: Y(v), y2: Y(v) }));
      svg.append(s('text', { x: m.l - 4, y: Y(v) + 4, 'text-anchor': 'end' }, `${v % 1 ? v.toFixed(1) : v} ms`));
    }
    const xStep = niceStep(x1 - x0, Math.max(2, Math.floor(pw / 70)));
    for (let v = Math.ceil(x0 / xStep) * xStep; v <= x1 + 1e-9; v += xStep) {
      svg.append(s('line', { class: 'grid', x1: X(v), x2: X(v), y1: m.t, y2: m.t + ph }));
      svg.append(s('text', { x: X(v), y: H - 6, 'text-anchor': 'middle' }, axisTime(v, xStep)));
    }

    // Intervals: per pixel column the shortest and longest, so every spike shows.
    const cols = new Map();
    for (let i = 1; i < stats.n; i += 1) {
      const dt = (rows.mono[i] - rows.mono[i - 1]) / 1000;
      if (!(dt >= 0)) continue;
      const px = Math.round(X(xOfRow(i)));
      const c = cols.get(px);
      if (c) { if (dt < c[0]) c[0] = dt; if (dt > c[1]) c[1] = dt; } else cols.set(px, [dt, dt]);
    }
    let d = '';
    let clipped = '';
    for (const [px, [lo, hi]] of cols) {
      const ylo = Y(lo);
      const yhi = Y(hi);
      d += `M${px} ${ylo.toFixed(1)}V${Math.min(yhi, ylo - 1).toFixed(1)}`;
      if (hi > yMax) clipped += `M${px - 3} ${m.t}h6l-3 5z`;
    }
    svg.append(s('path', { class: 'band line', d: d || 'M0 0' }));
    if (clipped) svg.append(s('path', { class: 'clipped', d: clipped }));

    svg.append(s('text', { x: m.l - 4, y: 25, 'text-anchor': 'end' }, 'drops'));
    // Every dropped frame: a red tick above the plot at the frame after the gap. Many
    // drops close together share a pixel column; data-count keeps each one counted.
    const dropsG = s('g', { class: 'drops' });
    const byPx = new Map();
    for (const drop of stats.drops) {
      const px = Math.round(X(xOfRow(drop.i)));
      const entry = byPx.get(px) || { count: 0, first: drop.i };
      entry.count += drop.count;
      byPx.set(px, entry);
    }
    for (const [px, entry] of byPx) {
      dropsG.append(s('line', { class: 'drop', x1: px, x2: px, y1: 15, y2: 27, 'data-count': String(entry.count) },
        s('title', {}, `${entry.count} dropped before frame ${rows.frame[entry.first]} (${axisTime(xOfRow(entry.first), 0.1)})`)));
    }
    svg.append(dropsG);

    // Events on the same time axis.
    let lastLabelX = -Infinity;
    for (const event of events) {
      const x = X(xOfEvent(event));
      const kind = ['start', 'stop', 'marker'].includes(event.kind) ? event.kind : 'other';
      svg.append(s('line', { class: `ev ev-${kind}`, x1: x, x2: x, y1: 12, y2: m.t + ph, 'data-kind': event.kind },
        s('title', {}, `${eventName(event)} at ${axisTime(xOfEvent(event), 0.1)}`)));
      if (x - lastLabelX > 44) {
        const text = event.kind === 'marker' ? (event.label || 'mark') : event.kind.replace(/_/g, ' ');
        svg.append(s('text', { class: 'ev-label', x: Math.min(x + 2, width - 2), y: 10, 'text-anchor': x > width - 60 ? 'end' : 'start' }, text.length > 14 ? `${text.slice(0, 13)}…` : text));
        lastLabelX = x;
      }
    }

    const any = stats.dropped > 0;
    const text = h('div', {
      class: 'plot-stats', 'data-testid': 'plot-stats', 'data-camera': camera,
      'data-frames': String(stats.n), 'data-dropped': String(stats.dropped),
      'data-gaps': String(stats.gaps), 'data-driver': String(stats.driver),
    },
    h('div', {}, h('strong', {}, camera)),
    h('div', { class: 'frames' }, h('strong', { class: 'frames-count' }, formatCount(stats.n)), ' frames',
      stats.inWindow !== stats.n ? ` (${formatCount(stats.inWindow)} in the experiment's window)` : ''),
    h('div', { class: 'dropped', 'data-any': String(any) }, h('strong', { class: 'dropped-count' }, formatCount(stats.dropped)), ' dropped',
      any ? `: ${formatCount(stats.gaps)} missing frame numbers, ${formatCount(stats.driver)} by the camera driver` : ''),
    h('div', { class: 'muted small' }, `Interval: median ${stats.median.toFixed(1)} ms, longest ${formatDuration(stats.max / 1000)}`));
    return h('figure', { class: 'plot-block', 'data-camera': camera }, h('div', { class: 'plot' }, svg), text);
  }

  // ---------------------------------------------------------------------------
  // Recording: start/stop, state
  // ---------------------------------------------------------------------------

  function setRecording(camera, recording) {
    if (!camera) return;
    app.recording[camera] = recording;
    renderRecordingState();
  }

  function renderRecordingState() {
    const recording = app.recording[app.camera];
    const state = recording === true ? 'recording' : recording === false ? 'idle' : 'unknown';
    const label = $('#rec-state');
    label.dataset.state = state;
    label.textContent = { recording: '● Recording', idle: 'Not recording', unknown: 'Unknown' }[state];
    $('#rec-start').disabled = !app.camera || state === 'recording';
    $('#rec-stop').disabled = !app.camera || state === 'idle';
    $('#rec-indicator').hidden = !Object.values(app.recording).some((r) => r === true);
    live.scheduleChips();
  }

  async function startRecording() {
    const camera = app.camera;
    if (!camera) return;
    $('#rec-start').disabled = true;
    try {
      await api('POST', `/api/v1/cameras/${seg(camera)}/recording/start`);
      setRecording(camera, true);
      toast(`Recording ${camera}`);
    } catch (err) {
      if (err.status === 409) setRecording(camera, true);
      reportError(err, 'Start recording');
    } finally {
      renderRecordingState();
      clips.refresh();
    }
  }

  async function stopRecording() {
    const camera = app.camera;
    if (!camera) return;
    $('#rec-stop').disabled = true;
    try {
      await api('POST', `/api/v1/cameras/${seg(camera)}/recording/stop`);
      setRecording(camera, false);
      toast(`Stopped recording ${camera}`);
    } catch (err) {
      if (err.status === 409) setRecording(camera, false);
      reportError(err, 'Stop recording');
    } finally {
      renderRecordingState();
      clips.refresh();
    }
  }

  // ---------------------------------------------------------------------------
  // Clips: list (newest first), play in page, download
  // ---------------------------------------------------------------------------

  const clips = {
    lastJson: null,
    playing: null, // "cam/file" of the clip in the player
    refresh: null, // set in initRecording (a poller)

    reset() { this.lastJson = null; $('#clip-list').replaceChildren(); $('#clip-empty').hidden = true; },

    url(clip) { return `/api/v1/clips/${seg(clip.camera_id)}/${seg(clip.filename)}`; },

    async load() {
      if (!app.camera) return;
      const camera = app.camera;
      let list;
      try {
        list = asList(await api('GET', `/api/v1/clips?camera=${seg(camera)}`), 'clips');
      } catch (err) {
        reportBackground(err, 'Clips');
        return;
      }
      if (camera !== app.camera) return;
      list = list.slice().sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)));
      $('#clip-updated').textContent = `updated ${clockTime(new Date())}`;
      const json = JSON.stringify(list);
      if (json === this.lastJson) return; // unchanged: leave the DOM alone (no jumping under a finger)
      this.lastJson = json;
      this.render(list);
    },

    render(list) {
      const items = list.map((clip) => {
        const key = `${clip.camera_id}/${clip.filename}`;
        const complete = clip.complete !== false;
        const details = [
          formatDuration(clip.duration_s),
          formatBytes(clip.file_size),
          typeof clip.frame_count === 'number' ? `${clip.frame_count} frames` : null,
        ].filter(Boolean).join(' · ');
        return h('li', {
          'data-filename': clip.filename,
          'data-camera': clip.camera_id,
          'data-complete': String(complete),
          class: key === this.playing ? 'playing' : '',
        },
        h('div', { class: 'item-main' },
          h('div', { class: 'item-title' }, formatTime(clip.started_at),
            h('span', { class: 'badge' }, clip.recording_type || 'clip'),
            complete ? null : h('span', { class: 'badge badge-live' }, 'recording…')),
          h('div', { class: 'item-sub', title: clip.filename }, details)),
        h('div', { class: 'item-actions' },
          h('button', {
            type: 'button', class: 'btn btn-small clip-play', 'data-testid': 'clip-play',
            'aria-label': `Play the clip from ${formatTime(clip.started_at)}`,
            onclick: () => this.play(clip),
          }, 'Play'),
          h('a', {
            class: 'btn btn-small clip-download', 'data-testid': 'clip-download',
            'aria-label': `Download the clip from ${formatTime(clip.started_at)} (${formatBytes(clip.file_size)})`,
            href: this.url(clip), download: clip.filename,
          }, 'Download')));
      });
      $('#clip-list').replaceChildren(...items);
      $('#clip-empty').hidden = items.length > 0;
    },

    play(clip) {
      const video = $('#clip-video');
      this.playing = `${clip.camera_id}/${clip.filename}`;
      $('#clip-player-title').textContent = `${clip.camera_id} · ${formatTime(clip.started_at)} · ${formatDuration(clip.duration_s)}`;
      $('#clip-player').hidden = false;
      video.src = this.url(clip);
      video.play().catch(() => { /* the user can press play; errors show through `error` */ });
      for (const li of $$('#clip-list > li')) {
        li.classList.toggle('playing', `${li.dataset.camera}/${li.dataset.filename}` === this.playing);
      }
      $('#clip-player').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    },

    close() {
      const video = $('#clip-video');
      video.pause();
      video.removeAttribute('src');
      video.load();
      this.playing = null;
      $('#clip-player').hidden = true;
      for (const li of $$('#clip-list > li')) li.classList.remove('playing');
    },
  };

  function initRecording() {
    $('#rec-start').addEventListener('click', startRecording);
    $('#rec-stop').addEventListener('click', stopRecording);
    $('#clip-player-close').addEventListener('click', () => clips.close());
    $('#clip-video').addEventListener('error', () => {
      if (clips.playing) toast('This clip cannot be played here; try Download', 'error');
    });
    clips.refresh = poller(() => clips.load(), 4000, () => app.tab === 'recording');
    spans.init();
    tabEnter.recording = () => { clips.refresh(); spans.refresh(); refreshHealth(); };
    tabLeave.recording = () => { if (!$('#clip-video').paused) $('#clip-video').pause(); };
  }

  // ---------------------------------------------------------------------------

  // ---------------------------------------------------------------------------
  // A span of time as one MP4 (GET /api/v1/cameras/{cam}/recording.mp4?start=&end=):
  // plain links with `download`, so the browser shows its own progress (the service
  // sends an exact Content-Length); a HEAD first says what the file will hold.
  // ---------------------------------------------------------------------------

  const LAST_SPAN_S = 300;

  function spanUrl(camera, fromMs, toMs) {
    const iso = (ms) => new Date(ms).toISOString();
    return `/api/v1/cameras/${seg(camera)}/recording.mp4?start=${seg(iso(fromMs))}&end=${seg(iso(toMs))}`;
  }

  /** What a span's file holds, from a HEAD request: its x-benchcam-span-* headers. */
  async function describeSpan(url) {
    let res;
    try {
      ({ res } = await request('HEAD', url, { accept: 'video/mp4', timeoutMs: 20000 }));
    } catch (err) {
      if (err.status === 0 || err.status === 401) return { ok: false, message: err.message };
      // A HEAD answer has no body: ask again for the error's words (small, JSON).
      let message = err.status === 404 ? 'Nothing was recorded in this span' : err.message;
      try {
        const res2 = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
        if (res2.ok) res2.body.cancel().catch(() => {});
        else {
          const error = (await res2.json()).error;
          if (error && error.message) message = error.message;
        }
      } catch { /* keep the status's words */ }
      return { ok: false, message };
    }
    const header = (name) => res.headers.get(name);
    return {
      ok: true,
      size: Number(header('content-length')),
      frames: Number(header('x-benchcam-span-frames')),
      duration: Number(header('x-benchcam-span-duration')),
      start: header('x-benchcam-span-start'),
      end: header('x-benchcam-span-end'),
      cutShort: header('x-benchcam-span-cut-short'),
    };
  }

  function spanText(d) {
    if (!d.ok) return d.message;
    const parts = [
      formatDuration(d.duration),
      `${formatCount(d.frames)} frames`,
      formatBytes(d.size),
      `${formatTime(d.start, { ms: true })} to ${formatTime(d.end, { ms: true })}`,
    ];
    return parts.join(' · ') + (d.cutShort ? ` (cut short: ${d.cutShort})` : '');
  }

  /** Local wall time (what a datetime-local input shows) ↔ epoch ms. */
  function toLocalInput(ms) {
    const d = new Date(ms);
    return `${dayOf(d)}T${clockTime(d)}`;
  }
  function fromLocalInput(value) {
    if (!value) return NaN;
    const ms = new Date(value).getTime();
    return isNaN(ms) ? NaN : ms;
  }

  const spans = {
    refresh: null,
    previewTimer: null,
    previewSeq: 0,
    custom: null, // {url, fromMs, toMs} of the custom span's link, or null when invalid

    reset() {
      $('#span-last5-info').textContent = '';
      $('#span-info').textContent = '';
      this.updateCustom();
    },

    /** "Last 5 minutes": the link's times are taken when it is followed. */
    last5Url() {
      const now = serverNow();
      return spanUrl(app.camera, now - LAST_SPAN_S * 1000, now);
    },

    async previewLast5() {
      if (!app.camera) return;
      const d = await describeSpan(this.last5Url());
      const info = $('#span-last5-info');
      info.textContent = d.ok ? `Now: ${spanText(d)}` : d.message;
      info.dataset.ok = String(d.ok);
    },

    updateCustom() {
      const fromMs = fromLocalInput($('#span-from').value);
      const toMs = fromLocalInput($('#span-to').value);
      const link = $('#span-download');
      const info = $('#span-info');
      let problem = '';
      if (!app.camera) problem = 'Pick a camera first.';
      else if (isNaN(fromMs) || isNaN(toMs)) problem = 'Enter both times.';
      else if (toMs <= fromMs) problem = '"To" must be after "From".';
      if (problem) {
        this.custom = null;
        link.href = '#';
        link.setAttribute('aria-disabled', 'true');
        info.textContent = problem;
        return;
      }
      const url = spanUrl(app.camera, fromMs, toMs);
      this.custom = { url, fromMs, toMs };
      link.href = url;
      link.removeAttribute('aria-disabled');
      info.textContent = `${formatDuration((toMs - fromMs) / 1000)} asked; checking what was recorded…`;
      clearTimeout(this.previewTimer);
      const seq = ++this.previewSeq;
      this.previewTimer = setTimeout(async () => {
        const d = await describeSpan(url);
        if (seq !== this.previewSeq) return;
        info.textContent = spanText(d);
        info.dataset.ok = String(d.ok);
        if (!d.ok) link.setAttribute('aria-disabled', 'true');
      }, 350);
    },

    init() {
      const now = serverNow();
      $('#span-from').value = toLocalInput(now - 10 * 60 * 1000);
      $('#span-to').value = toLocalInput(now);
      for (const id of ['#span-from', '#span-to']) $(id).addEventListener('input', () => this.updateCustom());
      $('#span-last5').addEventListener('click', (event) => {
        if (!app.camera) { event.preventDefault(); return; }
        // Set here, just before the browser follows it: "the last 5 minutes" of now.
        event.currentTarget.href = this.last5Url();
        toast('Downloading the last 5 minutes…');
      });
      $('#span-download').addEventListener('click', (event) => {
        const link = event.currentTarget;
        if (!this.custom || link.getAttribute('aria-disabled') === 'true') {
          event.preventDefault();
          toast($('#span-info').textContent || 'Enter a span first', 'error');
          return;
        }
        toast('Downloading the span…');
      });
      this.refresh = poller(() => this.previewLast5(), 30000, () => app.tab === 'recording');
    },
  };
  // ---------------------------------------------------------------------------
  // Streaming sessions
  // ---------------------------------------------------------------------------

  async function loadSessions() {
    let list;
    try {
      list = asList(await api('GET', '/api/v1/streaming/sessions'), 'sessions');
    } catch (err) {
      reportBackground(err, 'Sessions');
      return;
    }
    const now = Date.now();
    $('#sessions-body').replaceChildren(...list.map((s) => {
      const started = s.started_at ? new Date(s.started_at) : null;
      const since = started && !isNaN(started) ? `${clockTime(started)} (${formatDuration((now - started) / 1000)})` : '–';
      return h('tr', { 'data-id': String(s.id) },
        h('td', {}, formatScalar(s.id)), h('td', {}, formatScalar(s.kind)), h('td', {}, formatScalar(s.client)),
        h('td', {}, formatScalar(s.quality)),
        h('td', {}, typeof s.fps === 'number' ? s.fps.toFixed(1) : formatScalar(s.fps)),
        h('td', {}, formatBytes(s.bytes_sent)), h('td', {}, since));
    }));
    $('#sessions-empty').hidden = list.length > 0;
    $('#sessions-table').hidden = list.length === 0;
    $('#sessions-count').textContent = `${list.length} session${list.length === 1 ? '' : 's'}`;
  }

  function initStreaming() {
    const refresh = poller(loadSessions, 3000, () => app.tab === 'streaming');
    tabEnter.streaming = refresh;
  }

  // ---------------------------------------------------------------------------
  // Health and GPIO
  // ---------------------------------------------------------------------------

  let healthFailures = 0;

  async function refreshHealth() {
    let health;
    try {
      const asked = Date.now();
      health = await api('GET', '/api/v1/health', undefined, { timeoutMs: 6000 });
      healthFailures = 0;
      const serverMs = health && Date.parse(health.timestamp);
      // The box's clock vs this phone's, to the request's round trip; spans and elapsed
      // times are on the box's clock.
      if (serverMs) serverOffsetMs = serverMs - (asked + Date.now()) / 2;
    } catch (err) {
      healthFailures += 1;
      if (healthFailures >= 2 || err.status !== 0) {
        setHealthDot(err.status === 0 ? 'offline' : 'error', err.message);
        if (app.tab === 'status') {
          const badge = $('#health-status');
          badge.textContent = err.status === 0 ? 'offline' : 'error';
          badge.dataset.status = err.status === 0 ? 'offline' : 'error';
        }
      }
      return;
    }
    renderHealth(health || {});
  }

  function setHealthDot(status, title) {
    const dot = $('#health-dot');
    dot.dataset.status = status;
    dot.title = `Service health: ${title || status}`;
    dot.setAttribute('aria-label', dot.title);
  }

  function renderHealth(health) {
    const status = String(health.status || 'unknown');
    const problems = Array.isArray(health.problems) ? health.problems : [];
    setHealthDot(status, problems.length ? `${status}: ${problems.join('; ')}` : status);
    $('#status-badge-dot').hidden = problems.length === 0 && status === 'ok';

    const cameras = Array.isArray(health.cameras) ? health.cameras : [];
    for (const cam of cameras) {
      if (cam && typeof cam.recording === 'boolean') app.recording[cam.id] = cam.recording;
    }
    renderRecordingState();

    if (app.tab !== 'status') return;
    const badge = $('#health-status');
    badge.textContent = status;
    badge.dataset.status = status;
    $('#health-version').textContent = health.version ? `benchcam ${health.version}` : '';

    $('#health-problems').hidden = problems.length === 0;
    $('#health-problem-list').replaceChildren(...problems.map((p) => h('li', {}, formatScalar(p))));

    const kv = (pairs) => pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]);
    const streaming = health.streaming || {};
    $('#health-summary').replaceChildren(...kv([
      ['Uptime', formatDuration(health.uptime_s)],
      ['Checked', health.timestamp ? formatTime(health.timestamp) : undefined],
      ['Threads', health.active_threads !== undefined ? formatScalar(health.active_threads) : undefined],
      ['CPU', typeof streaming.cpu_percent === 'number' ? `${streaming.cpu_percent.toFixed(0)} %` : undefined],
      ['Streaming', streaming.enabled === undefined ? undefined
        : `${streaming.enabled ? 'on' : 'off'} · ${formatScalar(streaming.sessions ?? 0)} viewer${streaming.sessions === 1 ? '' : 's'}`],
    ]));

    const storage = health.storage || {};
    const free = storage.free_disk_space_gb;
    const total = storage.total_gb;
    const bar = $('#storage-bar');
    if (typeof free === 'number' && typeof total === 'number' && total > 0) {
      const used = Math.min(100, Math.max(0, 100 * (1 - free / total)));
      bar.style.width = `${used.toFixed(1)}%`;
      bar.dataset.level = free / total < 0.1 ? 'low' : 'ok';
      $('#storage-meter').setAttribute('aria-label', `Disk ${used.toFixed(0)} % used`);
    }
    $('#health-storage').replaceChildren(...kv([
      ['Path', storage.path !== undefined ? String(storage.path) : undefined],
      ['Free', `${formatGb(free)} of ${formatGb(total)}`],
      ['State', storage.state && storage.state !== 'ok' ? String(storage.state).replace(/_/g, ' ') : undefined],
      ['Writable', storage.writable === undefined ? undefined : (storage.writable ? 'yes' : 'NO')],
      ['Full', storage.full ? 'YES: recording paused until space returns' : undefined],
      ['Rolling clips', storage.rolling_bytes === undefined ? undefined : formatBytes(storage.rolling_bytes)],
    ]));

    $('tbody', $('#health-cameras')).replaceChildren(...cameras.map((cam) => h('tr', { 'data-id': cam.id },
      h('td', {}, formatScalar(cam.id)), h('td', {}, formatScalar(cam.state)),
      h('td', {}, typeof cam.fps === 'number' ? cam.fps.toFixed(1) : formatScalar(cam.fps)),
      h('td', {}, formatScalar(cam.frames_captured)),
      h('td', {}, cam.recorder_frames_dropped
        ? `${formatScalar(cam.frames_dropped)} (recorder ${formatScalar(cam.recorder_frames_dropped)})`
        : formatScalar(cam.frames_dropped)),
      h('td', {}, cam.recording_paused ? 'paused' : cam.recording ? '●' : '–'))));
  }

  /** GPIO answers vary by backend: accept maps (name → value) and lists ({name, ...}). */
  function ioEntries(value) {
    if (!value) return [];
    if (Array.isArray(value)) {
      return value.map((item, i) => (item && typeof item === 'object'
        ? [item.name ?? item.id ?? String(i), item]
        : [String(i), item]));
    }
    if (typeof value === 'object') return Object.entries(value);
    return [];
  }

  function ioState(value) {
    if (typeof value === 'boolean') return { on: String(value), text: value ? 'on' : 'off' };
    if (typeof value === 'number') return { on: String(value !== 0), text: String(value) };
    if (typeof value === 'string') {
      const on = /blink|heartbeat|flash/i.test(value) ? 'blink' : String(/^(on|high|active|true|1)$/i.test(value));
      return { on, text: value };
    }
    if (value && typeof value === 'object') {
      const inner = value.state ?? value.level ?? value.on ?? value.active ?? value.value;
      const base = inner === undefined ? { on: 'false', text: '' } : ioState(inner);
      const extra = [value.pin !== undefined ? `pin ${value.pin}` : null, value.mode].filter(Boolean).join(', ');
      return { on: base.on, text: extra ? `${base.text} (${extra})` : base.text };
    }
    return { on: 'false', text: formatScalar(value) };
  }

  async function loadGpio() {
    let gpio;
    try {
      gpio = await api('GET', '/api/v1/gpio');
    } catch (err) {
      $('#gpio-section').hidden = true;
      if (err.status !== 404) reportBackground(err, 'GPIO');
      return;
    }
    gpio = gpio || {};
    const render = (list) => list.map(([name, value]) => {
      const s = ioState(value);
      return h('li', { 'data-name': name }, h('span', { class: 'lamp', 'data-on': s.on }), h('strong', {}, name), s.text);
    });
    $('#gpio-leds').replaceChildren(...render(ioEntries(gpio.leds ?? gpio.outputs)));
    $('#gpio-inputs').replaceChildren(...render(ioEntries(gpio.inputs ?? gpio.triggers)));
    $('#gpio-section').hidden = false;
  }

  // ---------------------------------------------------------------------------
  // Benches: this box and the others found on the LAN over mDNS (GET /api/v1/fleet); each
  // links to its own page
  // ---------------------------------------------------------------------------

  /** A link the page may follow: this page ("/...") or a peer's plain http:// page. */
  function benchHref(url) {
    return typeof url === 'string' && (/^\/(?!\/)/.test(url) || /^http:\/\/[^/\s]+\/\S*$/.test(url)) ? url : null;
  }

  function benchItem(bench, self) {
    const state = ['ok', 'degraded', 'error'].includes(bench.state) ? bench.state : 'unknown';
    const facts = [];
    const cams = typeof bench.cameras === 'number' ? bench.cameras : 0;
    const rec = typeof bench.cameras_recording === 'number' ? bench.cameras_recording : 0;
    facts.push(`${cams} camera${cams === 1 ? '' : 's'}, ${rec} recording`);
    const exp = bench.last_experiment;
    if (exp && typeof exp.id === 'string') facts.push(`last experiment ${exp.id}${exp.state ? ` (${exp.state})` : ''}`);
    if (typeof bench.free_bytes === 'number') facts.push(`${formatBytes(bench.free_bytes)} free`);
    if (!self && typeof bench.last_seen_s === 'number') facts.push(`heard ${formatDuration(bench.last_seen_s)} ago`);
    const name = String(bench.name || bench.instance || '?');
    const href = self ? null : benchHref(bench.url);
    const title = href ? h('a', { href, 'data-testid': 'bench-link' }, name) : h('strong', {}, name);
    return h('li', { 'data-name': name, 'data-self': String(self) },
      h('span', { class: 'status-badge', 'data-status': state }, state),
      h('div', { class: 'bench-main' },
        h('span', {}, title, self ? h('span', { class: 'muted small' }, ' (this bench)') : null),
        h('span', { class: 'bench-facts muted small' }, facts.join(' · '))));
  }

  async function loadBenches() {
    let fleet;
    try {
      fleet = await api('GET', '/api/v1/fleet');
    } catch (err) {
      $('#benches-note').textContent = err.status === 404 ? 'This service does not look for other benches.' : `Benches unknown: ${err.message}`;
      $('#benches-note').hidden = false;
      return;
    }
    fleet = fleet || {};
    const peers = Array.isArray(fleet.peers) ? fleet.peers : [];
    const items = [];
    if (fleet.this) items.push(benchItem(fleet.this, true));
    for (const peer of peers) items.push(benchItem(peer, false));
    $('#bench-list').replaceChildren(...items);
    $('#benches-count').textContent = `${peers.length} other bench${peers.length === 1 ? '' : 'es'}`;
    const note = $('#benches-note');
    note.textContent = fleet.browsing === false ? 'Not looking for other benches (fleet.enabled, fleet.browse in the config).'
      : peers.length === 0 ? 'No other bench found on this network yet.' : '';
    note.hidden = !note.textContent;
  }

  // ---------------------------------------------------------------------------
  // Storage over the last 24 hours and the hours of recording left
  // (GET /api/v1/storage/history: samples every interval_s, the recording rate, hours_left)
  // ---------------------------------------------------------------------------

  const storageHistory = {
    loadedAt: 0,
    data: null,

    async load() {
      if (performance.now() - this.loadedAt < 60000 && this.data) return;
      let data;
      try {
        data = await api('GET', '/api/v1/storage/history');
      } catch (err) {
        this.note(err.status === 404 ? 'This service keeps no storage history.' : `No storage history: ${err.message}`);
        $('#storage-left').textContent = '–';
        $('#storage-rate').textContent = '';
        return;
      }
      this.loadedAt = performance.now();
      this.data = data || {};
      this.render();
    },

    note(text) {
      const note = $('#storage-plot-note');
      note.textContent = text;
      note.hidden = !text;
    },

    render() {
      const data = this.data;
      if (!data) return;
      const samples = (Array.isArray(data.samples) ? data.samples : [])
        .map((x) => ({ t: typeof x.t_us === 'number' ? x.t_us / 1000 : Date.parse(x.t), used: x.used_bytes, total: x.total_bytes, free: x.free_bytes }))
        .filter((x) => isFinite(x.t) && typeof x.used === 'number')
        .sort((a, b) => a.t - b.t);
      const rate = data.recording_bytes_per_hour;
      const left = data.hours_left;
      const last = samples[samples.length - 1];
      const leftEl = $('#storage-left');
      leftEl.dataset.hoursLeft = typeof left === 'number' ? String(left) : '';
      leftEl.dataset.known = String(typeof left === 'number');
      // hours_left: the free space above min_free_space at the last hour's recording rate,
      // i.e. until retention starts deleting the oldest clips to keep that reserve.
      leftEl.textContent = typeof left === 'number'
        ? `${formatHours(left)} of recording left at this rate`
        : typeof rate === 'number' && rate <= 0 ? 'Nothing is being written: no hours-left estimate'
          : 'Hours of recording left: not known yet (the service needs a minute of history first)';
      $('#storage-rate').textContent = [
        typeof rate === 'number' ? `Recording writes ${formatBytes(rate)} per hour` : null,
        last ? `${formatBytes(last.used)} used of ${formatBytes(last.total)} now` : null,
        typeof left === 'number' ? 'then the oldest clips make room' : null,
      ].filter(Boolean).join(' · ');
      const plot = $('#storage-plot');
      if (samples.length < 2) {
        plot.replaceChildren();
        this.note(samples.length ? 'One sample so far: the plot starts with the second.' : 'No samples yet.');
        return;
      }
      this.note('');
      plot.replaceChildren(storagePlot(samples, Math.max(240, plot.clientWidth || 300), data.interval_s));
    },
  };

  /** Used bytes over the last 24 hours (or what there is of them), in GB. */
  function storagePlot(samples, width, intervalS) {
    const H = 150;
    const m = { l: 52, r: 10, t: 10, b: 24 };
    const pw = width - m.l - m.r;
    const ph = H - m.t - m.b;
    const now = Math.max(serverNow(), samples[samples.length - 1].t);
    const x0 = Math.min(now - 24 * 3600e3, samples[0].t);
    const X = (t) => m.l + ((t - x0) / (now - x0)) * pw;
    let lo = Math.min(...samples.map((x) => x.used));
    let hi = Math.max(...samples.map((x) => x.used));
    // A flat line in the middle rather than a range of a few bytes.
    const pad = Math.max((hi - lo) * 0.15, hi * 0.005, 1e6);
    lo = Math.max(0, lo - pad);
    hi += pad;
    const Y = (b) => m.t + ph - ((b - lo) / (hi - lo)) * ph;
    const svg = s('svg', { viewBox: `0 0 ${width} ${H}`, width, height: H, role: 'img', 'aria-labelledby': 'storage-plot-title' });
    const first = samples[0];
    const last = samples[samples.length - 1];
    svg.append(s('title', { id: 'storage-plot-title' },
      `Storage used over the last 24 hours: ${formatBytes(first.used)} at ${formatTime(new Date(first.t))}, ${formatBytes(last.used)} now; ${samples.length} samples`));
    const yStep = niceStep(hi - lo, 3);
    for (let v = Math.ceil(lo / yStep) * yStep; v <= hi; v += yStep) {
      svg.append(s('line', { class: 'grid', x1: m.l, x2: m.l + pw, y1: Y(v), y2: Y(v) }));
      svg.append(s('text', { x: m.l - 4, y: Y(v) + 4, 'text-anchor': 'end' }, formatBytes(v)));
    }
    for (let hAgo = 24; hAgo >= 0; hAgo -= 6) {
      const t = now - hAgo * 3600e3;
      if (t < x0) continue;
      svg.append(s('line', { class: 'grid', x1: X(t), x2: X(t), y1: m.t, y2: m.t + ph }));
      svg.append(s('text', { x: X(t), y: H - 6, 'text-anchor': hAgo === 0 ? 'end' : hAgo === 24 ? 'start' : 'middle' }, hAgo === 0 ? 'now' : `−${hAgo} h`));
    }
    svg.append(s('line', { class: 'axis', x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph }));
    // A gap longer than two intervals (service off) is a break in the line, not a slope.
    const gapMs = Math.max(2, 2 * (intervalS || 300)) * 1000;
    let d = '';
    let area = '';
    let runStart = null;
    let prev = null;
    const closeRun = () => { if (runStart !== null) area += `V${(m.t + ph).toFixed(1)}H${runStart.toFixed(1)}Z`; };
    for (const x of samples) {
      const px = X(x.t).toFixed(1);
      const py = Y(x.used).toFixed(1);
      if (!prev || x.t - prev.t > gapMs) {
        closeRun();
        d += `M${px} ${py}`;
        area += `M${px} ${(m.t + ph).toFixed(1)}V${py}`;
        runStart = Number(px);
      } else {
        d += `L${px} ${py}`;
        area += `L${px} ${py}`;
      }
      prev = x;
    }
    area += `H${X(prev.t).toFixed(1)}`;
    closeRun();
    svg.append(s('path', { class: 'area', d: area }));
    svg.append(s('path', { class: 'line', d, 'data-points': String(samples.length) }));
    return svg;
  }

  function initStatus() {
    const refresh = poller(async () => {
      await Promise.all([refreshHealth(), loadGpio(), storageHistory.load(), loadBenches()]);
    }, 3000, () => app.tab === 'status');
    tabEnter.status = refresh;
    window.addEventListener('resize', () => { if (app.tab === 'status') storageHistory.render(); });
    // Background health (header dot, recording states) for the other tabs.
    poller(refreshHealth, 10000, () => true)();
  }

  // ---------------------------------------------------------------------------
  // Settings: generic editor for GET/PATCH /api/v1/settings
  // ---------------------------------------------------------------------------

  /** Words for the settings the service has today; any other key shows as it is named. */
  const SETTING_TEXT = {
    recording: ['Recording'],
    streaming: ['Live streaming'],
    'recording.clip_length': ['Clip length', 'How long each rolling clip is: 30s, 5m, 1h.'],
    'recording.rolling_clips_count': ['Rolling clips kept', 'Per camera; beyond this the oldest are deleted.'],
    'recording.max_rolling_size': ['Most space for rolling clips', 'Per camera: 500MB, 8GB.'],
    'recording.min_free_space': ['Always keep free on the disk', 'Below this the oldest clips go: 512MB, 2GB.'],
    'streaming.enabled': ['Live view on'],
    'streaming.default_quality': ['Live quality for new viewers', '', QUALITIES],
  };

  const settings = {
    original: null,

    async load() {
      $('#settings-error').hidden = true;
      let data;
      try {
        data = await api('GET', '/api/v1/settings');
      } catch (err) {
        if (err.status === 404) {
          $('#settings-unavailable').hidden = false;
          $('#settings-form').hidden = true;
          return;
        }
        reportBackground(err, 'Settings');
        return;
      }
      $('#settings-unavailable').hidden = true;
      $('#settings-form').hidden = false;
      this.render(data && typeof data === 'object' ? data : {});
    },

    render(data) {
      this.original = data;
      $('#settings-fields').replaceChildren(...this.fields(data, []));
      this.updateDirty();
    },

    fields(object, path) {
      return Object.entries(object).map(([key, value]) => {
        const keyPath = [...path, key];
        const id = `setting-${keyPath.join('-').replace(/[^A-Za-z0-9_-]/g, '_')}`;
        const [label, hint, choices] = SETTING_TEXT[keyPath.join('.')] || [key.replace(/_/g, ' ')];
        if (value && typeof value === 'object' && !Array.isArray(value)) {
          return h('fieldset', {}, h('legend', {}, label), this.fields(value, keyPath));
        }
        let input;
        let kind;
        if (choices && typeof value === 'string') {
          kind = 'string';
          input = h('select', { id }, choices.map((c) => h('option', { value: c, selected: c === value }, c)));
        } else if (typeof value === 'boolean') {
          kind = 'bool';
          input = h('input', { type: 'checkbox', id, checked: value });
        } else if (typeof value === 'number') {
          kind = Number.isInteger(value) ? 'int' : 'float';
          input = h('input', { type: 'number', id, value: String(value), step: kind === 'int' ? '1' : 'any', inputmode: kind === 'int' ? 'numeric' : 'decimal' });
        } else if (Array.isArray(value) || value === null) {
          kind = 'json';
          input = h('input', { type: 'text', id, value: JSON.stringify(value), spellcheck: 'false', autocapitalize: 'off' });
        } else {
          kind = 'string';
          input = h('input', { type: 'text', id, value: String(value), spellcheck: 'false', autocapitalize: 'off' });
        }
        input.dataset.path = JSON.stringify(keyPath);
        input.dataset.kind = kind;
        input.dataset.testid = `setting-${keyPath.join('.')}`;
        input.addEventListener('input', () => this.updateDirty());
        input.addEventListener('change', () => this.updateDirty());
        if (hint) input.setAttribute('aria-describedby', `${id}-hint`);
        return h('div', { class: `setting ${kind === 'bool' ? 'bool' : ''}` },
          h('label', { for: id }, label), input,
          hint ? h('span', { class: 'hint-text', id: `${id}-hint` }, hint) : null);
      });
    },

    valueOf(input) {
      switch (input.dataset.kind) {
        case 'bool': return input.checked;
        case 'int': return input.value === '' ? NaN : Number.parseInt(input.value, 10);
        case 'float': return input.value === '' ? NaN : Number.parseFloat(input.value);
        case 'json': try { return JSON.parse(input.value); } catch { return input.value === '' ? null : input.value; }
        default: return input.value;
      }
    },

    originalAt(path) {
      return path.reduce((obj, key) => (obj == null ? undefined : obj[key]), this.original);
    },

    /** Changed keys as a nested partial object, or null when nothing changed. */
    changes() {
      let patch = null;
      for (const input of $$('#settings-fields [data-path]')) {
        const path = JSON.parse(input.dataset.path);
        const value = this.valueOf(input);
        const changed = JSON.stringify(value) !== JSON.stringify(this.originalAt(path));
        input.closest('.setting').classList.toggle('changed', changed);
        if (!changed) continue;
        patch = patch || {};
        let target = patch;
        for (const key of path.slice(0, -1)) target = (target[key] = target[key] || {});
        target[path[path.length - 1]] = value;
      }
      return patch;
    },

    updateDirty() {
      $('#settings-save').disabled = this.changes() === null;
    },

    async save() {
      const patch = this.changes();
      if (!patch) return;
      for (const input of $$('#settings-fields [data-path]')) {
        if (['int', 'float'].includes(input.dataset.kind) && Number.isNaN(this.valueOf(input))) {
          this.showError(`${JSON.parse(input.dataset.path).join('.')}: enter a number`);
          input.focus();
          return;
        }
      }
      $('#settings-save').disabled = true;
      try {
        const result = await api('PATCH', '/api/v1/settings', patch);
        $('#settings-error').hidden = true;
        toast('Settings saved');
        if (result && typeof result === 'object' && !Array.isArray(result) && Object.keys(result).length) this.render(result);
        else await this.load();
      } catch (err) {
        if (err.status === 400 || err.status === 422) {
          this.showError(err.message);
          $('#settings-error').scrollIntoView({ behavior: 'smooth', block: 'center' });
        } else {
          reportError(err, 'Settings');
        }
        this.updateDirty();
      }
    },

    showError(message) {
      const error = $('#settings-error');
      error.textContent = message;
      error.hidden = false;
    },
  };

  function initSettings() {
    $('#settings-form').addEventListener('submit', (event) => { event.preventDefault(); settings.save(); });
    $('#settings-reset').addEventListener('click', () => { $('#settings-error').hidden = true; settings.render(settings.original || {}); });
    tabEnter.settings = () => {
      // Do not throw away edits in progress when coming back to the tab.
      if (!settings.original || settings.changes() === null) settings.load();
    };
  }

  // ---------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------

  function start() {
    initLogin();
    initHint();
    initTabs();
    initCameraSelect();
    initLive();
    initRecording();
    initExperiments();
    initStreaming();
    initStatus();
    initSettings();
    showTab(location.hash.slice(1) || 'live', { updateHash: false });
    loadCameras();
    experiments.refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
