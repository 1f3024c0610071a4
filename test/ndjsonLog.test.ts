import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
  it('creates its folder, and replays nothing before the first append', () => {
    const file = join(stateDir(), 'nested', 'state.ndjson');
    const log = new NdjsonLog<Entry>(file);
    assert.equal(rebuild(log).size, 0);
    log.append({ type: 'set', key: 'a', value: 1 });
    assert.equal(readFileSync(file, 'utf8'), '{"type":"set","key":"a","value":1}\n');
  });

  it('a new instance on the same file replays every change in order', () => {
    const file = join(stateDir(), 'state.ndjson');
    const first = new NdjsonLog<Entry>(file);
    first.append({ type: 'set', key: 'a', value: 1 });
    first.append({ type: 'set', key: 'b', value: 2 });
    first.append({ type: 'delete', key: 'a' });
    first.append({ type: 'set', key: 'b', value: 3 });
    assert.deepEqual([...rebuild(new NdjsonLog<Entry>(file))], [['b', 3]]);
  });

  it('skips blank lines and a line torn by a crash, and keeps what follows', () => {
    const file = join(stateDir(), 'state.ndjson');
    const log = new NdjsonLog<Entry>(file);
    log.append({ type: 'set', key: 'a', value: 1 });
    appendFileSync(file, '\n{"type":"set","key":"b","val');
    appendFileSync(file, '\n');
    log.append({ type: 'set', key: 'c', value: 3 });
    assert.deepEqual(
      [...rebuild(new NdjsonLog<Entry>(file))],
      [
        ['a', 1],
        ['c', 3],
      ],
    );
  });
});
