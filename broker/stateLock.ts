import { readFileSync, readlinkSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LoupeError } from './errors';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The lock is a symbolic link whose target is the holder's token: made atomically, and it needs no data
 * block, so a broker can start (and report not ready) on a full disk.
 *
 * One broker per state directory: two would share the audit write-ahead log and each take the other's
 * open chains for a crash. A lock left by a dead process is taken over.
 */
export function lockStateDir(stateDir: string): () => void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, 'broker.lock');
  const token = `${process.pid}:${Date.now()}:${Math.random()}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      symlinkSync(token, file);
      return () => {
        try {
          if (readlinkSync(file) === token) rmSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let held = '';
      try {
        held = readlinkSync(file);
      } catch {
        held = readFileSync(file, 'utf8'); // a lock file of an older version
      }
      const holder = Number(held.split(':')[0]);
      if (Number.isInteger(holder) && alive(holder)) {
        throw new LoupeError(
          'config_invalid',
          `another broker (pid ${holder}${holder === process.pid ? ', this process' : ''}) is using the state directory ${stateDir}; stop it or give this one another stateDir`,
        );
      }
      rmSync(file, { force: true });
    }
  }
  throw new LoupeError('config_invalid', `cannot lock the state directory ${stateDir}`);
}
