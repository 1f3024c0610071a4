import { accessSync, constants } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium package; `npm test` installs it (scripts/chromium/ensure-chromium.mjs) and sets CHROMIUM_PATH. */
const debianChromium = '/usr/bin/chromium';

/**
 * Flags for a headless Chromium in a container as root: --no-sandbox (the sandbox refuses root), no GPU,
 * and none of Chromium's own background connections (updates, sync, QUIC probes), which this network blocks.
 */
export const chromiumArgs = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The Chromium executable the browser tests use: CHROMIUM_PATH, else /usr/bin/chromium; throws when neither is there. */
export function chromiumPath(): string {
  const path = process.env.CHROMIUM_PATH ?? debianChromium;
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(
      process.env.CHROMIUM_PATH
        ? `CHROMIUM_PATH=${path} is not an executable file`
        : `the browser tests need a headless Chromium, and CHROMIUM_PATH is not set and ${debianChromium} is missing: ` +
            'run them through `npm test`, which installs Chromium (Debian package chromium), or install it yourself: ' +
            'node scripts/chromium/ensure-chromium.mjs',
    );
  }
  return path;
}

/** Launches a real headless Chromium through playwright-core (which never downloads a browser of its own). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: chromiumArgs });
}
