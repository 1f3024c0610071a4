// Launches headless Chromium (Debian's, made sure of by scripts/chromium/ensure-chromium.mjs; CHROMIUM_PATH) through
// the project's playwright-core, with a throw-away profile and no network of its own. Adapted from shared/vscode-e2e.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export async function launch({ width = 1280, height = 800 } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'loupe-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    viewport: { width, height },
    env: { ...process.env, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const close = async () => {
    await ctx.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { ctx, page, close };
}

/** Logs any request that is not to loopback (there should be none). */
export function watchRequests(page, log) {
  page.on('request', (r) => {
    const u = r.url();
    if (!/^(https?|wss?):\/\/(127\.0\.0\.1|localhost|\[::1\])[:/]/.test(u) && !/^(data|blob|vscode-[\w-]+):/.test(u)) log('NON-LOOPBACK request:', u);
  });
}
