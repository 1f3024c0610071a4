import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8' });

/** Why a disk cannot be frozen here (undefined when it can): a test skips with this reason. */
export const frozenDiskUnavailable: string | undefined =
  process.getuid?.() !== 0
    ? 'freezing a filesystem needs root'
    : ['fsfreeze', 'losetup', 'mkfs.ext4'].find((cmd) => run('sh', ['-c', `command -v ${cmd}`]).status !== 0)
      ? 'fsfreeze, losetup or mkfs.ext4 is missing'
      : undefined;

/**
 * A real ext4 filesystem on a loop device, mounted at `<dir>/mnt`, that a test can freeze (fsfreeze): every write to
 * it then waits until it is thawed, as on a disk that stopped answering. Reads go on.
 */
export class FreezableDisk {
  readonly path: string;
  private frozen = false;

  constructor(private readonly dir: string) {
    this.path = join(dir, 'mnt');
    mkdirSync(this.path, { recursive: true });
    const image = join(dir, 'disk.img');
    assert.equal(run('truncate', ['-s', '64M', image]).status, 0);
    const made = run('mkfs.ext4', ['-q', '-F', image]);
    assert.equal(made.status, 0, made.stderr);
    const mounted = run('mount', ['-o', 'loop', image, this.path]);
    assert.equal(mounted.status, 0, mounted.stderr);
  }

  freeze(): void {
    const result = run('fsfreeze', ['--freeze', this.path]);
    assert.equal(result.status, 0, result.stderr);
    this.frozen = true;
  }

  thaw(): void {
    if (!this.frozen) return;
    const result = run('fsfreeze', ['--unfreeze', this.path]);
    assert.equal(result.status, 0, result.stderr);
    this.frozen = false;
  }

  /** Thaws, unmounts (lazily: a handle left open by a failed test must not keep it mounted) and removes it all. */
  remove(): void {
    if (this.frozen) run('fsfreeze', ['--unfreeze', this.path]);
    this.frozen = false;
    run('umount', ['-l', this.path]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
