// What the test-pattern camera burns into each frame, read back off the page's picture: the
// browser test compares it with what it expects (the frame number rises; the capture time
// against the clock gives capture → picture latency). It runs inside the page (its source
// is sent with page.evaluate), so it uses nothing but the DOM.

/** In the page: the text the test pattern (src/capture/pattern.rs, `draw` and `draw_text`)
 *  burns into every frame's luma — the frame number (8 digits) and the capture time of day
 *  in UTC (HH:MM:SS.mmm) — read off a <video> or <img> through a canvas. `srcW`x`srcH` is
 *  the camera's mode, which sets the glyph scale; the element may show it scaled. */
export function patternReader(el, srcW, srcH) {
  // pattern.rs `glyph`: 5x7, one byte per row, low 5 bits.
  const GLYPHS = {
    0: [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], 1: [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    2: [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], 3: [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    4: [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], 5: [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    6: [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], 7: [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    8: [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], 9: [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
    ':': [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00], '.': [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
    ' ': [0, 0, 0, 0, 0, 0, 0],
  };
  const w = el.videoWidth || el.naturalWidth;
  const h = el.videoHeight || el.naturalHeight;
  if (!w || !h) return null;
  // pattern.rs: scale = min(w / 150, h / 60) (integer division), at least 1; the text box
  // starts `scale` from the top left; glyph cells are 6 units wide, glyphs 1 unit inside.
  const scale = Math.max(1, Math.min(Math.floor(srcW / 150), Math.floor(srcH / 60)));
  const f = w / srcW;
  const rows = Math.min(h, Math.ceil(10 * scale * f) + 2);
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = rows;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(el, 0, 0, w, rows, 0, 0, w, rows);
  const px = ctx.getImageData(0, 0, w, rows).data;
  const dark = (ux, uy) => {
    const x = Math.min(w - 1, Math.round((ux + 0.5) * scale * f));
    const y = Math.min(rows - 1, Math.round((uy + 0.5) * scale * f));
    const i = (y * w + x) * 4;
    return (px[i] * 0.299 + px[i + 1] * 0.587 + px[i + 2] * 0.114) < 125;
  };
  let text = '';
  for (let cell = 0; cell < 22; cell += 1) {
    let best = '?';
    let bestMiss = 36;
    for (const [ch, bits] of Object.entries(GLYPHS)) {
      let miss = 0;
      for (let gy = 0; gy < 7; gy += 1) {
        for (let gx = 0; gx < 5; gx += 1) {
          const on = (bits[gy] & (0x10 >> gx)) !== 0;
          if (on !== dark(2 + cell * 6 + gx, 2 + gy)) miss += 1;
        }
      }
      if (miss < bestMiss) { bestMiss = miss; best = ch; }
    }
    text += bestMiss <= 3 ? best : '?';
  }
  const frame = /^\d{8}$/.test(text.slice(0, 8)) ? Number(text.slice(0, 8)) : null;
  const clock = /^(\d\d):(\d\d):(\d\d)\.(\d{3})$/.exec(text.slice(10, 22));
  const msOfDay = clock ? ((Number(clock[1]) * 60 + Number(clock[2])) * 60 + Number(clock[3])) * 1000 + Number(clock[4]) : null;
  return { text, frame, msOfDay };
}
