// What the browser scripts (page.test.mjs, latency.mjs) share about driving Chromium: its
// command-line switches, and, for BENCHCAM_ASSETS_DIR, the page served from a directory.

import fs from 'node:fs';
import path from 'node:path';

/** Development only: serve index.html, app.js and style.css from this directory instead of
 *  the binary's embedded copies, to try page changes without a rebuild. */
export const ASSETS = process.env.BENCHCAM_ASSETS_DIR || '';

/** Chromium's switches: headless, nothing fetched from outside. */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // A page Playwright serves counts as public, and public pages may not open sockets
  // to 127.0.0.1; only with BENCHCAM_ASSETS_DIR.
  ...(ASSETS ? ['--disable-features=LocalNetworkAccessChecks'] : []),
];

/** With BENCHCAM_ASSETS_DIR, `context` gets the page's files from there for `base`. */
export async function routeAssets(context, base) {
  if (!ASSETS) return;
  const files = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js', '/style.css': 'style.css' };
  const types = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };
  await context.route((url) => url.origin === new URL(base).origin && url.pathname in files, (route) => {
    const file = files[new URL(route.request().url()).pathname];
    route.fulfill({ body: fs.readFileSync(path.join(ASSETS, file)), contentType: types[file.split('.').pop()] });
  });
  console.log(`note: page assets from ${ASSETS}, not the binary`);
}
