import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { NdjsonLog } from '../broker/ndjsonLog';

type Entry = { type: 'set'; key: string; value: number } | { type: 'delete'; key: string };

const dirs: string[] = [];
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const stateDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'loupe-ndjson-'));
  dirs.push(dir);
  return dir;
};

function rebuild(log: NdjsonLog<Entry>): Map<string, number> {
  const state = new Map<string, number>();
  log.replay((entry) => (entry.type === 'set' ? state.set(entry.key, entry.value) : state.delete(entry.key)));
  return state;
}

describe('NdjsonLog: state files kept as appended JSON lines (grants, access requests)', () => {
  it('creates its folder, and replays nothing before the first append', async () => {
    const file = join(stateDir(), 'nested', 'state.ndjson');
    const log = new NdjsonLog<Entry>(file);
    assert.equal(rebuild(log).size, 0);
    await log.append({ type: 'set', key: 'a', value: 1 });
    assert.equal(readFileSync(file, 'utf8'), '{"type":"set","key":"a","value":1}\n');
  });

  it('a new instance on the same file replays every change in order', async () => {
    const file = join(stateDir(), 'state.ndjson');
    const first = new NdjsonLog<Entry>(file);
    await first.append({ type: 'set', key: 'a', value: 1 });
    await first.append({ type: 'set', key: 'b', value: 2 });
    await first.append({ type: 'delete', key: 'a' });
    await first.append({ type: 'set', key: 'b', value: 3 });
    assert.deepEqual([...rebuild(new NdjsonLog<Entry>(file))], [['b', 3]]);
  });

  it('skips blank lines and a line torn by a crash, and keeps what follows', async () => {
    const file = join(stateDir(), 'state.ndjson');
    const log = new NdjsonLog<Entry>(file);
    await log.append({ type: 'set', key: 'a', value: 1 });
    appendFileSync(file, '\n{"type":"set","key":"b","val');
    appendFileSync(file, '\n');
    await log.append({ type: 'set', key: 'c', value: 3 });
    assert.deepEqual(
      [...rebuild(new NdjsonLog<Entry>(file))],
      [
        ['a', 1],
        ['c', 3],
      ],
    );
  });

  it('appends made in one turn land whole and in the order made', async () => {
    const file = join(stateDir(), 'state.ndjson');
    const log = new NdjsonLog<Entry>(file);
    await Promise.all(Array.from({ length: 300 }, (_, i) => log.append({ type: 'set', key: `k${i % 7}`, value: i })));
    const values = readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .map((line) => (JSON.parse(line) as { value: number }).value);
    assert.deepEqual(
      values,
      Array.from({ length: 300 }, (_, i) => i),
    );
    await log.close();
  });

  it('refuses a change the file cannot take, and opens the file again for the next one', async () => {
    const dir = stateDir();
    const file = join(dir, 'state.ndjson');
    mkdirSync(file); // a directory where the file should be: open fails
    const log = new NdjsonLog<Entry>(file);
    await assert.rejects(log.append({ type: 'set', key: 'a', value: 1 }), { code: 'EISDIR' });
    rmSync(file, { recursive: true });
    await log.append({ type: 'set', key: 'b', value: 2 });
    assert.deepEqual([...rebuild(new NdjsonLog<Entry>(file))], [['b', 2]]);
    await log.close();
  });

  it(
    'a change a full disk took only part of is refused, and the next change after space returns is read back whole (a real 1 MB tmpfs)',
    { skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root' : undefined },
    async () => {
      const dir = stateDir();
      const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
      assert.equal(mounted.status, 0, mounted.stderr);
      try {
        const file = join(dir, 'state.ndjson');
        const log = new NdjsonLog<Entry>(file);
        await log.append({ type: 'set', key: 'a', value: 1 });
        // Every page but the one the file ends in is taken: a long change fills that page and is cut there.
        spawnSync('sh', ['-c', `cat /dev/zero > ${join(dir, 'filler')}`]);
        await assert.rejects(log.append({ type: 'set', key: 'b'.repeat(6000), value: 2 }), { code: 'ENOSPC' });
        assert.ok(readFileSync(file, 'utf8').length > 1000, 'the disk took part of it');
        rmSync(join(dir, 'filler'));
        await log.append({ type: 'set', key: 'c', value: 3 });
        await log.close();
        assert.deepEqual(
          [...rebuild(new NdjsonLog<Entry>(file))],
          [
            ['a', 1],
            ['c', 3],
          ],
        );
      } finally {
        spawnSync('umount', ['-l', dir]);
      }
    },
  );
});
