// benchcam page: live view (WebSocket, MJPEG fallback), recording and clips, experiments,
// streaming sessions, health and GPIO, settings. Plain browser JavaScript, no build step,
// no libraries: this file is embedded in the benchcam binary as it is.
//
// Protocol and endpoints: DESIGN.md §4 (HTTP API) and §5 (WebSocket live view).
// Element ids used here are also what tests/browser/page.test.mjs relies on.
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

  const store = {
    get(key, fallback) {
      try { return localStorage.getItem('benchcam.' + key) ?? fallback; } catch { return fallback; }
    },
    set(key, value) {
      try { localStorage.setItem('benchcam.' + key, value); } catch { /* private mode: not kept */ }
    },
  };

  function formatBytes(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes)) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
  }

  function formatGb(gb) {
    return typeof gb === 'number' ? `${gb.toFixed(gb >= 100 ? 0 : 1)} GB` : '–';
  }

  function formatDuration(seconds) {
    if (typeof seconds !== 'number' || !isFinite(seconds)) return '–';
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    const hh = Math.floor((s % 86400) / 3600);
    const mm = Math.floor((s % 3600) / 60);
    const ss = s % 60;
    if (d > 0) return `${d}d ${hh}h ${mm}m`;
    if (hh > 0) return `${hh}h ${mm}m`;
    return `${mm}m ${String(ss).padStart(2, '0')}s`;
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  function clockTime(date) {
    return `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
  }

  /** RFC 3339 time → local "HH:MM:SS", with the date when it is not today. */
  function formatTime(value) {
    if (!value) return '–';
    const date = new Date(value);
    if (isNaN(date)) return String(value);
    const now = new Date();
    const sameDay = date.toDateString() === now.toDateString();
    const day = `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())}`;
    return sameDay ? clockTime(date) : `${day} ${clockTime(date)}`;
  }

  const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;

  function formatScalar(value) {
    if (value === null || value === undefined) return '–';
    if (typeof value === 'string' && ISO_TIME.test(value)) {
      // Event and clip times: local clock with milliseconds, for lining up with instruments.
      const date = new Date(value);
      if (!isNaN(date)) return `${formatTime(value)}.${String(date.getMilliseconds()).padStart(3, '0')}`;
    }
    if (typeof value === 'boolean') return value ? 'yes' : 'no';
    if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(2);
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

  // ---------------------------------------------------------------------------
  // Toasts
  // ---------------------------------------------------------------------------

  function toast(message, kind = 'info', ms = 4000) {
    const area = $('#toast-area');
    // Identical messages (e.g. the same error from a poll) are shown once.
    for (const existing of $$('.toast', area)) {
      if (existing.textContent === message) return;
    }
    const node = h('div', { class: 'toast', 'data-kind': kind, role: kind === 'error' ? 'alert' : 'status' }, message);
    node.addEventListener('click', () => node.remove());
    area.append(node);
    while (area.children.length > 3) area.firstElementChild.remove();
    setTimeout(() => node.remove(), kind === 'error' ? ms + 2000 : ms);
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

  async function api(method, path, body, { retryAfterLogin = true, timeoutMs = 15000 } = {}) {
    const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' };
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
      text = await res.text();
    } catch (err) {
      throw new ApiError(0, 'network', 'Cannot reach benchcam (network or service down)');
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (res.status === 401 && retryAfterLogin) {
      await requireLogin();
      return api(method, path, body, { retryAfterLogin: false, timeoutMs });
    }
    if (!res.ok) {
      const error = data && data.error;
      throw new ApiError(
        res.status,
        (error && error.code) || `http_${res.status}`,
        (error && error.message) || `${res.status} ${res.statusText || 'error'} (${method} ${path})`,
      );
    }
    return data;
  }

  function reportError(err, prefix) {
    const message = err && err.message ? err.message : String(err);
    toast(prefix ? `${prefix}: ${message}` : message, 'error');
  }

  const backgroundShown = new Map();

  /** For errors of periodic refreshes: an unreachable service is already shown by the health
   *  dot and the connection chip, and the same message is not repeated within 30 s. */
  function reportBackground(err, prefix) {
    if (err && err.status === 0) return;
    const key = `${prefix}: ${err && err.message}`;
    const now = Date.now();
    if (now - (backgroundShown.get(key) || 0) < 30000) return;
    backgroundShown.set(key, now);
    reportError(err, prefix);
  }

  // ---------------------------------------------------------------------------
  // Login (access code): one prompt shared by every request that got 401
  // ---------------------------------------------------------------------------

  let loginWaiters = null;

  function requireLogin() {
    return new Promise((resolve, reject) => {
      if (loginWaiters) { loginWaiters.push({ resolve, reject }); return; }
      loginWaiters = [{ resolve, reject }];
      $('#login-error').hidden = true;
      $('#login-token').value = '';
      $('#login').hidden = false;
      $('#login-token').focus();
    });
  }

  function finishLogin(ok) {
    const waiters = loginWaiters || [];
    loginWaiters = null;
    $('#login').hidden = true;
    for (const w of waiters) {
      if (ok) w.resolve();
      else w.reject(new ApiError(401, 'unauthorized', 'The access code is needed for this'));
    }
  }

  function initLogin() {
    $('#login-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const token = $('#login-token').value;
      if (!token) return;
      const button = $('#login-submit');
      button.disabled = true;
      try {
        await api('POST', '/api/v1/login', { token }, { retryAfterLogin: false });
        finishLogin(true);
        toast('Unlocked');
      } catch (err) {
        const error = $('#login-error');
        error.textContent = err.status === 401 ? 'Wrong access code' : err.message;
        error.hidden = false;
        $('#login-token').select();
      } finally {
        button.disabled = false;
      }
    });
    $('#login-cancel').addEventListener('click', () => finishLogin(false));
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

  // ---------------------------------------------------------------------------
  // Tabs (the hash keeps the tab across reloads: #live, #recording, ...)
  // ---------------------------------------------------------------------------

  const TABS = ['live', 'recording', 'experiments', 'streaming', 'status', 'settings'];
  const tabEnter = {};
  const tabLeave = {};

  function showTab(name, { updateHash = true } = {}) {
    if (!TABS.includes(name)) name = 'live';
    const previous = app.tab;
    if (previous !== name && tabLeave[previous]) tabLeave[previous]();
    app.tab = name;
    for (const tab of TABS) {
      $(`#panel-${tab}`).hidden = tab !== name;
      $(`#tab-${tab}`).setAttribute('aria-selected', String(tab === name));
    }
    if (updateHash && location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
    if (tabEnter[name]) tabEnter[name]();
  }

  function initTabs() {
    for (const button of $$('.tabbar [data-tab]')) {
      button.addEventListener('click', () => showTab(button.dataset.tab));
    }
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
      if (pageVisible() && active()) timer = setTimeout(tick, ms);
    }
    document.addEventListener('visibilitychange', () => { if (pageVisible()) tick(); });
    return tick;
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
        select.replaceChildren(h('option', { value: '' }, 'No connection'));
        reportBackground(err, 'Cameras');
        setTimeout(loadCameras, 5000);
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
    $('#snapshot-link').href = id ? `/api/v1/cameras/${seg(id)}/snapshot.jpg` : '#';
    renderRecordingState();
    if (changed || force) {
      live.restart();
      clips.reset();
      if (app.tab === 'recording') clips.refresh();
    }
  }

  function initCameraSelect() {
    $('#camera-select').addEventListener('change', (event) => selectCamera(event.target.value));
  }

  // ---------------------------------------------------------------------------
  // Live view: WebSocket (DESIGN §5) with an MJPEG <img> fallback
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

  const live = {
    mode: 'ws',            // 'ws' or 'mjpeg'
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
      if (this.mjpegRunning()) this.stopMjpegImage();
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
      ws.binaryType = 'blob';
      this.ws = ws;
      this.watchSilence(generation, CONNECT_TIMEOUT_MS);
      ws.onopen = () => {
        if (generation !== this.generation) return;
        this.send({ type: 'set_quality', quality: app.quality });
        this.send({ type: 'subscribe' });
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
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
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
        if (meta) this.onFrame(meta, event.data);
        return;
      }
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      switch (msg.type) {
        case 'frame':
          this.pendingMeta = msg;
          break;
        case 'no_frame':
          this.pendingMeta = null;
          this.onNoFrame(msg.reason);
          break;
        case 'status':
          this.onStatus(msg);
          break;
        case 'error':
          toast(`Live view: ${msg.message || msg.code || 'error'}`, 'error');
          break;
        default:
          break; // pong and anything newer
      }
    },

    onFrame(meta, data) {
      const now = performance.now();
      this.frameCount += 1;
      this.lastFrameAt = new Date();
      this.frameTimes.push(now);
      while (this.frameTimes.length > 0 && now - this.frameTimes[0] > 2000) this.frameTimes.shift();
      if (meta.quality) this.serverQuality = meta.quality;
      if (this.streaming !== 'streaming') {
        this.setStreaming('streaming');
        this.hideBanner();
      }
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
      if (!this.shownUrl) this.setOverlay(title);
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
      if (!this.active() || this.mode !== 'mjpeg') return;
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
      const shownQuality = this.serverQuality && this.serverQuality !== app.quality
        ? `${this.serverQuality} (asked ${app.quality})`
        : app.quality;
      set('#chip-quality', `quality ${shownQuality}`);
      if (this.mode === 'mjpeg' && this.mjpegRunning()) {
        // An <img> showing MJPEG tells nothing per frame (Chrome fires `load` once).
        set('#chip-frames', 'frames n/a', { value: '' });
        set('#chip-last', this.lastFrameAt ? `stream since ${clockTime(this.lastFrameAt)}` : 'no frame yet');
        set('#chip-fps', 'fps n/a', { value: '' });
      } else {
        set('#chip-frames', `${this.frameCount} frames`, { value: String(this.frameCount) });
        set('#chip-last', this.lastFrameAt ? `last ${clockTime(this.lastFrameAt)}` : 'no frame yet');
        const now = performance.now();
        const times = this.frameTimes.filter((t) => now - t <= 2000);
        let fps = 0;
        if (times.length >= 2) fps = (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000);
        set('#chip-fps', `${fps.toFixed(1)} fps`, { value: fps.toFixed(1) });
      }
      const rec = $('#live-rec-toggle');
      const recording = app.recording[app.camera] === true;
      rec.dataset.active = String(recording);
      rec.textContent = recording ? '■ Stop rec' : '● Record';
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
    for (const button of $$('[data-quality]')) {
      button.addEventListener('click', () => live.setQuality(button.dataset.quality));
    }
    live.setQuality(app.quality);
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
    tabLeave.live = () => live.pause();
    document.addEventListener('visibilitychange', () => {
      if (pageVisible()) { live.attempt = 0; live.resume(); } else live.pause();
    });
    window.addEventListener('online', () => { live.kick(); refreshHealth(); });
    window.addEventListener('offline', () => live.setConnection('offline'));
    window.addEventListener('pageshow', (event) => { if (event.persisted) live.kick(); });
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
            onclick: () => this.play(clip),
          }, 'Play'),
          h('a', {
            class: 'btn btn-small clip-download', 'data-testid': 'clip-download',
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
    tabEnter.recording = () => { clips.refresh(); refreshHealth(); };
    tabLeave.recording = () => { if (!$('#clip-video').paused) $('#clip-video').pause(); };
  }

  // ---------------------------------------------------------------------------
  // Experiments
  // ---------------------------------------------------------------------------

  const EXPERIMENT_ID = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;

  const experiments = {
    available: true,
    lastJson: null,
    openId: null,
    refresh: null,

    validate() {
      const input = $('#exp-id');
      const error = $('#exp-id-error');
      const id = input.value.trim();
      let message = '';
      if (!id) message = 'Enter an experiment id.';
      else if (id.length > 64) message = 'At most 64 characters.';
      else if (id.startsWith('.')) message = 'It must not start with a dot.';
      else if (!EXPERIMENT_ID.test(id)) message = 'Use only letters, digits, dot, dash and underscore.';
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
      const json = JSON.stringify(list);
      if (json === this.lastJson) return;
      this.lastJson = json;
      this.render(list);
    },

    idOf(exp) { return exp.experiment_id ?? exp.id ?? exp.experiment ?? ''; },

    render(list) {
      const items = list.map((exp) => {
        const id = String(this.idOf(exp));
        const state = exp.state ?? exp.status ?? (exp.stopped_at || exp.stop_time ? 'stopped' : '');
        const started = exp.started_at ?? exp.start_time ?? exp.wall_start;
        const stopped = exp.stopped_at ?? exp.stop_time ?? exp.wall_stop;
        const stoppable = !state || /run|arm|active|record/i.test(String(state));
        return h('li', { 'data-id': id, 'data-state': String(state || '') },
          h('div', { class: 'item-main' },
            h('div', { class: 'item-title' }, id,
              state ? h('span', { class: `badge ${/run|active/i.test(state) ? 'badge-live' : /arm/i.test(state) ? 'badge-warn' : ''}` }, String(state)) : null),
            h('div', { class: 'item-sub' },
              [exp.method, started ? `from ${formatTime(started)}` : null, stopped ? `to ${formatTime(stopped)}` : null]
                .filter(Boolean).join(' · '))),
          h('div', { class: 'item-actions' },
            h('button', { type: 'button', class: 'btn btn-small exp-view', 'data-testid': 'exp-view', onclick: () => this.open(id) }, 'View'),
            stoppable ? h('button', { type: 'button', class: 'btn btn-small btn-rec exp-stop', 'data-testid': 'exp-stop', onclick: () => this.stop(id) }, 'Stop') : null));
      });
      $('#exp-list').replaceChildren(...items);
      $('#exp-empty').hidden = items.length > 0;
    },

    async create(arm) {
      const body = this.validate();
      if (!body) { $('#exp-id').focus(); return; }
      if (arm) body.arm = true;
      const buttons = [$('#exp-start'), $('#exp-arm')];
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const result = await api('POST', '/api/v1/experiments', body);
        toast(arm ? `Armed ${body.experiment_id}: waiting for the trigger` : `Experiment ${body.experiment_id} started`);
        this.lastJson = null;
        await this.load();
        if (result && typeof result === 'object') this.showManifest(body.experiment_id, result);
      } catch (err) {
        if (err.status === 404 && err.code === 'http_404') this.setAvailable(false);
        else reportError(err, arm ? 'Arm' : 'Start');
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    },

    async stop(id) {
      try {
        const manifest = await api('POST', `/api/v1/experiments/${seg(id)}/stop`);
        toast(`Experiment ${id} stopped`);
        this.lastJson = null;
        await this.load();
        if (manifest && typeof manifest === 'object') this.showManifest(id, manifest);
      } catch (err) {
        reportError(err, `Stop ${id}`);
      }
    },

    async open(id) {
      try {
        this.showManifest(id, await api('GET', `/api/v1/experiments/${seg(id)}`));
      } catch (err) {
        reportError(err, `Experiment ${id}`);
      }
    },

    /** Files named anywhere a manifest is likely to list them. */
    filesOf(manifest) {
      const found = new Map();
      const add = (entry) => {
        if (!entry) return;
        if (typeof entry === 'string') { found.set(entry, { name: entry }); return; }
        if (typeof entry !== 'object') return;
        const name = entry.file ?? entry.filename ?? entry.name ?? entry.path;
        if (typeof name === 'string' && name) found.set(name, { ...entry, name });
      };
      for (const key of ['files', 'clips', 'archived_files', 'archive']) {
        const value = manifest[key];
        if (Array.isArray(value)) value.forEach(add);
      }
      for (const [key, value] of Object.entries(manifest)) {
        if (typeof value === 'string' && /\.(csv|mp4|json|txt)$/i.test(value) && /file|csv|timestamps|manifest/i.test(key)) add(value);
      }
      return Array.from(found.values());
    },

    showManifest(id, manifest) {
      this.openId = id;
      $('#exp-manifest').hidden = false;
      $('#exp-manifest-title').textContent = `Experiment ${id}`;

      const summary = Object.entries(manifest).filter(([, v]) => v === null || typeof v !== 'object');
      $('#exp-summary').replaceChildren(...summary.flatMap(([k, v]) => [
        h('dt', {}, k.replace(/_/g, ' ')),
        h('dd', {}, /(_at|time|start|stop)$/i.test(k) && typeof v === 'string' ? formatTime(v) : formatScalar(v)),
      ]));

      const events = Array.isArray(manifest.events) ? manifest.events : [];
      const columns = [];
      for (const event of events) {
        if (event && typeof event === 'object') {
          for (const key of Object.keys(event)) if (!columns.includes(key)) columns.push(key);
        }
      }
      const table = $('#exp-events');
      $('thead', table).replaceChildren(h('tr', {}, columns.map((c) => h('th', {}, c.replace(/_/g, ' ')))));
      $('tbody', table).replaceChildren(...events.map((event) => h('tr', {},
        columns.map((c) => h('td', {}, typeof event === 'object' ? formatScalar(event[c]) : formatScalar(event))))));
      table.hidden = events.length === 0;
      $('#exp-events-empty').hidden = events.length > 0;

      const files = this.filesOf(manifest);
      $('#exp-files').replaceChildren(...files.map((file) => h('li', { 'data-file': file.name },
        h('div', { class: 'item-main' },
          h('div', { class: 'item-title' }, file.name),
          h('div', { class: 'item-sub' }, [
            typeof file.size === 'number' ? formatBytes(file.size) : typeof file.file_size === 'number' ? formatBytes(file.file_size) : null,
            file.sha256 ? `sha256 ${String(file.sha256).slice(0, 12)}…` : null,
          ].filter(Boolean).join(' · '))),
        h('a', {
          class: 'btn btn-small', download: file.name.split('/').pop(),
          href: `/api/v1/experiments/${seg(id)}/files/${file.name.split('/').map(seg).join('/')}`,
        }, 'Download'))));
      $('#exp-files-empty').hidden = files.length > 0;
      $('#exp-raw').textContent = JSON.stringify(manifest, null, 2);
      $('#exp-manifest').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    },
  };

  function initExperiments() {
    $('#exp-form').addEventListener('submit', (event) => { event.preventDefault(); experiments.create(false); });
    $('#exp-arm').addEventListener('click', () => experiments.create(true));
    $('#exp-id').addEventListener('input', () => {
      if ($('#exp-id').getAttribute('aria-invalid') === 'true') experiments.validate();
    });
    $('#exp-manifest-close').addEventListener('click', () => { $('#exp-manifest').hidden = true; experiments.openId = null; });
    experiments.refresh = poller(() => experiments.load(), 5000, () => app.tab === 'experiments' && experiments.available);
    tabEnter.experiments = () => { experiments.available = true; experiments.refresh(); };
  }

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
      health = await api('GET', '/api/v1/health', undefined, { timeoutMs: 6000 });
      healthFailures = 0;
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
      ['Streaming', streaming.enabled === undefined ? undefined
        : `${streaming.enabled ? 'on' : 'off'} · ${formatScalar(streaming.sessions ?? 0)} sessions`],
    ]));

    const storage = health.storage || {};
    const free = storage.free_disk_space_gb;
    const total = storage.total_gb;
    const bar = $('#storage-bar');
    if (typeof free === 'number' && typeof total === 'number' && total > 0) {
      const used = Math.min(100, Math.max(0, 100 * (1 - free / total)));
      bar.style.width = `${used.toFixed(1)}%`;
      bar.dataset.level = free / total < 0.1 ? 'low' : 'ok';
    }
    $('#health-storage').replaceChildren(...kv([
      ['Path', storage.path !== undefined ? String(storage.path) : undefined],
      ['Free', `${formatGb(free)} of ${formatGb(total)}`],
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

  function initStatus() {
    const refresh = poller(async () => { await Promise.all([refreshHealth(), loadGpio()]); }, 3000, () => app.tab === 'status');
    tabEnter.status = refresh;
    // Background health (header dot, recording states) for the other tabs.
    poller(refreshHealth, 10000, () => true)();
  }

  // ---------------------------------------------------------------------------
  // Settings: generic editor for GET/PATCH /api/v1/settings
  // ---------------------------------------------------------------------------

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
        const label = key.replace(/_/g, ' ');
        if (value && typeof value === 'object' && !Array.isArray(value)) {
          return h('fieldset', {}, h('legend', {}, label), this.fields(value, keyPath));
        }
        let input;
        let kind;
        if (typeof value === 'boolean') {
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
        const row = h('div', { class: `setting ${kind === 'bool' ? 'bool' : ''}` }, h('label', { for: id }, label), input);
        return row;
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
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
