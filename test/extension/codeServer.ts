// Test support for the VS Code tests: code-server (installed by scripts/vscode/install.sh) started on a free loopback
// port with fresh state, headless Chromium on its workbench, and a few workbench actions that a person would do.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { waitFor } from '../support/wait';

export const root = join(__dirname, '..', '..');
export const scripts = join(root, 'scripts', 'vscode');
export const artifacts = join(root, 'test-artifacts', 'vscode');

/** Why the VS Code tests cannot run here, or undefined. An explicit LOUPE_SKIP_VSCODE=1 is the only skip. */
export function vscodeSkipReason(): string | undefined {
  if (process.env.LOUPE_SKIP_VSCODE === '1') return 'LOUPE_SKIP_VSCODE=1 asks for a fast run without the VS Code (code-server) tests';
  return undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export interface CodeServer {
  readonly url: string;
  readonly runDir: string;
  stop(): void;
}

/** Starts code-server with the given .vsix files installed and extra user settings. */
export async function startCodeServer(options: { vsix?: string[]; settings?: Record<string, unknown>; extensionTests?: boolean } = {}): Promise<CodeServer> {
  // Short: unix socket paths under it must stay below 108 bytes.
  const runDir = mkdtempSync(join(tmpdir(), 'lcs-'));
  const port = await freePort();
  const r = spawnSync('bash', [join(scripts, 'start-code-server.sh'), runDir, String(port), '', ...(options.vsix ?? [])], {
    encoding: 'utf8',
    env: { ...process.env, ...(options.settings ? { LOUPE_VSCODE_SETTINGS: JSON.stringify(options.settings) } : {}), ...(options.extensionTests ? { EXTENSION_TESTS: '1' } : {}) },
  });
  if (r.status !== 0) throw new Error(`start-code-server.sh failed: ${r.stdout}${r.stderr}`);
  return {
    url: `http://127.0.0.1:${port}`,
    runDir,
    stop() {
      spawnSync('bash', [join(scripts, 'stop-code-server.sh'), runDir], { encoding: 'utf8' });
      // LOUPE_KEEP_CODE_SERVER=1 keeps the run folder (logs under user-data/logs) for a post-mortem.
      if (process.env.LOUPE_KEEP_CODE_SERVER === '1') process.stdout.write(`# code-server run folder kept: ${runDir}\n`);
      else rmSync(runDir, { recursive: true, force: true });
    },
  };
}

export async function openBrowser(): Promise<{ ctx: BrowserContext; page: Page; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'loupe-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 900 },
    env: { ...process.env, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  return {
    ctx,
    page,
    async close() {
      await ctx.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A workbench driven as a person would: command palette, quick inputs, keys. */
export class Workbench {
  constructor(
    readonly page: Page,
    readonly log: (...a: unknown[]) => void = () => undefined,
  ) {}

  async shot(name: string): Promise<string> {
    mkdirSync(artifacts, { recursive: true });
    const path = join(artifacts, `${name}.png`);
    await this.page.screenshot({ path });
    this.log(`screenshot ${path}`);
    return path;
  }

  private get input() {
    return this.page.locator('.quick-input-widget input');
  }

  /**
   * Runs a command by its palette title. Extension commands show only once the extension host is up, and an open
   * palette does not refresh: retry with a new picker (the recipe's pitfall 7).
   */
  async run(title: string, totalMs = 90_000): Promise<void> {
    const deadline = Date.now() + totalMs;
    for (;;) {
      await this.page.keyboard.press('Escape');
      await this.page.keyboard.press('F1');
      try {
        await this.input.waitFor({ state: 'visible', timeout: 10_000 });
        // A notification or view taking focus can close the palette as it opens (the input turns inert): open it again.
        await this.input.fill('>' + title, { timeout: 5000 });
      } catch (err) {
        if (Date.now() > deadline) throw err;
        continue;
      }
      const row = this.page
        .locator('.quick-input-list .monaco-list-row')
        .filter({ has: this.page.locator('.label-name', { hasText: new RegExp('^\\s*' + esc(title) + '\\s*$') }) })
        .first();
      try {
        await row.waitFor({ state: 'visible', timeout: 5000 });
        await row.click();
        this.log(`ran "${title}"`);
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`no command "${title}" in the palette`);
        await this.page.waitForTimeout(1000);
      }
    }
  }

  /** Answers the open quick input: picks the row labelled `label`, or types text and presses Enter. */
  async pick(label: string): Promise<void> {
    await this.input.waitFor({ state: 'visible', timeout: 20_000 });
    const row = this.page
      .locator('.quick-input-list .monaco-list-row')
      .filter({ has: this.page.locator('.label-name', { hasText: new RegExp('^\\s*' + esc(label) + '\\s*$') }) })
      .first();
    await row.waitFor({ state: 'visible', timeout: 20_000 });
    await row.click();
    this.log(`picked "${label}"`);
  }

  async type(text: string, { title }: { title?: string } = {}): Promise<void> {
    await this.input.waitFor({ state: 'visible', timeout: 20_000 });
    if (title) await this.page.locator('.quick-input-widget .quick-input-title', { hasText: title }).waitFor({ state: 'visible', timeout: 20_000 });
    await this.input.fill(text);
    await this.page.keyboard.press('Enter');
    this.log(`entered ${title ? `"${title}": ` : ''}${text.length > 40 ? `${text.slice(0, 12)}… (${text.length} chars)` : text}`);
  }

  /** Opens a workspace file through quick open and moves the cursor to a line. */
  async openFile(name: string, line: number): Promise<void> {
    await this.page.keyboard.press('Escape');
    await this.page.keyboard.press('F1');
    await this.input.waitFor({ state: 'visible', timeout: 10_000 });
    await this.input.fill(name);
    const row = this.page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await row.click();
    await this.page.locator(`.tab.active`, { hasText: name }).waitFor({ state: 'visible', timeout: 20_000 });
    // Go to the line, and make sure the cursor is there (the status bar says "Ln N,"): on a loaded machine the
    // quick input can take its text before it is open, leaving the cursor at line 1.
    const cursorAt = this.page.locator('.statusbar-item', { hasText: new RegExp(`Ln ${line},`) }).first();
    for (let attempt = 1; ; attempt++) {
      await this.page.keyboard.press('Escape');
      await this.page.keyboard.press('F1');
      await this.input.waitFor({ state: 'visible', timeout: 10_000 });
      await this.input.fill(`:${line}`);
      await this.page.keyboard.press('Enter');
      const there = await cursorAt.waitFor({ state: 'visible', timeout: 10_000 }).then(
        () => true,
        () => false,
      );
      if (there) break;
      if (attempt === 3) throw new Error(`the cursor did not reach line ${line} of ${name} after 3 attempts`);
    }
    this.log(`opened ${name} at line ${line}`);
  }

  /** Waits for a visible list row (Variables, Call Stack, Debug Console…) whose text matches. */
  async expectRow(text: RegExp, timeoutMs = 30_000): Promise<void> {
    const row = this.page.locator('.monaco-list-row', { hasText: text }).first();
    try {
      await row.waitFor({ state: 'visible', timeout: timeoutMs });
    } catch (err) {
      const rows = await this.page.locator('.monaco-list-row').allInnerTexts();
      throw new Error(
        `no row matching ${String(text)} within ${timeoutMs} ms; rows: ${JSON.stringify(
          rows
            .map((r) => r.replace(/\s+/g, ' ').trim())
            .filter(Boolean)
            .slice(0, 40),
        )}`,
        { cause: err },
      );
    }
    this.log(`row ${String(text)}: ${(await row.innerText()).replace(/\s+/g, ' ').trim()}`);
  }

  /** Waits for text on screen (not just in the off-screen aria-live region: pitfall 6). */
  async expectText(text: string | RegExp, timeoutMs = 30_000): Promise<void> {
    const vp = this.page.viewportSize()!;
    const onScreen = async () => {
      for (const el of await this.page.getByText(text).all()) {
        const box = await el.boundingBox().catch(() => null);
        const inAria = await el.evaluate((e) => !!e.closest('.monaco-aria-container')).catch(() => true);
        if (box && !inAria && box.width > 0 && box.height > 0 && box.x < vp.width && box.y < vp.height) return true;
      }
      return false;
    };
    await waitFor(onScreen, { what: `text ${String(text)} on screen`, timeoutMs, intervalMs: 250 });
  }
}
