import { constants } from 'node:fs';
import { access, chmod, link, mkdir, open, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AuditStoreError, tooLarge, type AuditStore, type Retention } from './auditStore';

const metaDir = '.retention';

function safeKey(key: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._\-/]*$/.test(key) || key.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw new AuditStoreError('misconfigured', `invalid audit object key "${key}"`);
  }
  return key;
}

/**
 * The embedded default: a directory of write-once files (read-only after writing). It cannot enforce
 * retention the way S3 Object Lock does; it records the intended date and says so (mode NONE).
 */
export class LocalDirectoryStore implements AuditStore {
  readonly description: string;
  /** A put is eight file operations in libuv's thread pool (four threads), one an fsync: two at a time leave room for the WAL's. */
  readonly uploadConcurrency = 2;

  constructor(private readonly dir: string) {
    this.description = `dir:${dir}`;
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
      await access(this.dir, constants.W_OK);
    } catch (err) {
      throw new AuditStoreError('misconfigured', `audit directory ${this.dir} is not writable: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Directories known to exist: a busy session puts a chunk a second into the same one. */
  private readonly madeDirs = new Set<string>();

  private async ensureDir(dir: string): Promise<void> {
    if (this.madeDirs.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.madeDirs.add(dir);
  }

  async put(key: string, body: Buffer, retainUntil: Date): Promise<void> {
    try {
      await this.write(key, body, retainUntil);
    } catch (err) {
      // A directory removed meanwhile is made again by the retry.
      this.madeDirs.clear();
      throw err;
    }
  }

  private async write(key: string, body: Buffer, retainUntil: Date): Promise<void> {
    const path = join(this.dir, safeKey(key));
    await this.ensureDir(dirname(path));
    const tmp = join(dirname(path), `.tmp-${randomBytes(6).toString('hex')}`);
    const handle = await open(tmp, 'wx', 0o444);
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(tmp, path); // fails on an existing key: objects are never replaced
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new AuditStoreError('unavailable', `cannot write ${key}: ${(err as Error).message}`, { cause: err });
      // Compared only at the same size: an object of another size (however large) is never read.
      const existing = await this.get(key, body.length).catch((read: unknown) => {
        if (read instanceof AuditStoreError && read.code === 'too_large') return undefined;
        throw read;
      });
      if (!existing?.equals(body)) throw new AuditStoreError('conflict', `audit object ${key} already exists with other content; objects are write-once`);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    const meta = join(this.dir, metaDir, `${key}.json`);
    await this.ensureDir(dirname(meta));
    await writeFile(meta, JSON.stringify({ retainUntil: retainUntil.toISOString() }), { flag: 'w' });
    await chmod(path, 0o444);
  }

  async get(key: string, maxBytes = Infinity): Promise<Buffer> {
    try {
      const handle = await open(join(this.dir, safeKey(key)), 'r');
      try {
        const { size } = await handle.stat();
        if (size > maxBytes) throw tooLarge(key, size, maxBytes);
        return await handle.readFile();
      } finally {
        await handle.close();
      }
    } catch (err) {
      if (err instanceof AuditStoreError) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new AuditStoreError('not_found', `no audit object ${key}`);
      throw new AuditStoreError('unavailable', `cannot read ${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      for (const entry of entries) {
        if (entry.name === metaDir || entry.name.startsWith('.tmp-')) continue;
        const path = join(dir, entry.name);
        if (entry.isDirectory()) await walk(path);
        else out.push(relative(this.dir, path).split(sep).join('/'));
      }
    };
    await walk(this.dir);
    return out.filter((key) => key.startsWith(prefix)).sort();
  }

  async retention(key: string): Promise<Retention> {
    try {
      const meta = JSON.parse(await readFile(join(this.dir, metaDir, `${safeKey(key)}.json`), 'utf8')) as { retainUntil: string };
      return { mode: 'NONE', retainUntil: new Date(meta.retainUntil) };
    } catch {
      await this.get(key); // not_found when the object is absent
      return { mode: 'NONE' };
    }
  }
}
