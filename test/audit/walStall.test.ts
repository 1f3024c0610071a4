import { strict as assert } from 'node:assert';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { chainEvent, genesisHash, type StreamContext } from '../../broker/audit/events';
import { WriteAheadLog } from '../../broker/audit/wal';
import { FreezableDisk, frozenDiskUnavailable } from '../support/frozenDisk';
import { waitFor } from '../support/wait';

describe('the WAL on a disk that stops answering (a real ext4 on a loop device, frozen)', { skip: frozenDiskUnavailable }, () => {
  it('holds the event loop commitWaitMs at most, refuses records past stallMs, keeps the commit in flight, and takes records again once the disk answers', async () => {
    const disk = new FreezableDisk(mkdtempSync(join(tmpdir(), 'loupe-walstall-')));
    try {
      const walDir = join(disk.path, 'wal');
      const options = { maxBatch: 64, segmentBytes: 1 << 20, preallocateBytes: 64 << 10, stallMs: 600 };
      const { wal } = await WriteAheadLog.open(walDir, options);
      const context: StreamContext = { stream: 's-1', kind: 'session', startedAt: new Date().toISOString(), retentionDays: 1 };
      await wal.append({ t: 'open', context });
      const heads = [genesisHash(context.stream)];
      const event = (seq: number, note = '') => chainEvent(context, seq, heads[seq]!, new Date().toISOString(), 'cdp.evaluate', { id: seq, note });
      const first = event(0);
      heads[1] = first.hash;
      await wal.append({ t: 'event', event: first });

      disk.freeze();
      let lag = 0;
      let last = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        lag = Math.max(lag, now - last - 10);
        last = now;
      }, 10);
      const second = event(1);
      heads[2] = second.hash;
      const inFlight = wal.append({ t: 'event', event: second });
      let landed = false;
      void inFlight.then(() => (landed = true));
      // What waits on the commit in flight (a shutdown, a session's end) is let go once the WAL fails.
      const waited = wal.untilFailed(inFlight.then(() => 'landed'));
      await sleep(100);
      const queued = wal.append({ t: 'event', event: event(2, 'refused') });
      const queuedAt = performance.now();
      await assert.rejects(queued, (err: Error) =>
        /audit write-ahead log cannot be written: the disk has not completed a commit in 0\.6 s \(stalled: the writer thread is in its (write|sync)\)/.test(err.message),
      );
      assert.equal(await waited, undefined);
      assert.equal(landed, false);
      const refusedAfter = performance.now() - queuedAt;
      assert.ok(refusedAfter > 300 && refusedAfter < 3000, `refused at the stall bound (after ${refusedAfter.toFixed(0)} ms)`);
      // From then on, refused at once; no new segment while the commit is in flight.
      await assert.rejects(wal.append({ t: 'event', event: event(2, 'refused too') }), /stalled/);
      assert.equal(await wal.retry(), false);
      clearInterval(ticker);
      assert.ok(lag < 400, `the event loop went on throughout (longest lag ${lag.toFixed(0)} ms)`);
      assert.equal(landed, false, 'the commit in flight waits for the disk');

      disk.thaw();
      await inFlight; // durable after all: what was forwarded on it stays true
      // By itself, the moment the stalled commit lands: not at the trail's next retry.
      await waitFor(() => (wal.failed === undefined ? true : undefined), { what: 'the WAL to take records again by itself once the stalled commit landed', timeoutMs: 2000, intervalMs: 10 });
      assert.equal(wal.failed, undefined);
      await wal.append({ t: 'event', event: event(2, 'after') });
      await wal.close();

      const reopened = await WriteAheadLog.open(walDir, options);
      await reopened.wal.close();
      assert.deepEqual(reopened.wal.repairs, []);
      const events = reopened.recovered.get(context.stream)?.events ?? [];
      assert.deepEqual(
        events.map((e) => [e.seq, e.data.note]),
        [
          [0, ''],
          [1, ''],
          [2, 'after'],
        ],
      );
    } finally {
      disk.remove();
    }
  });
});

describe('the WAL on an event loop held up past the stall bound', () => {
  it('does not take a commit that landed meanwhile for a stalled disk', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loupe-walheld-'));
    // commitWaitMs 0: every commit lands through the writer thread's message, the way a slow disk's does.
    const { wal } = await WriteAheadLog.open(dir, { maxBatch: 64, segmentBytes: 1 << 20, stallMs: 200, commitWaitMs: 0 });
    const context: StreamContext = { stream: 's-held', kind: 'session', startedAt: new Date().toISOString(), retentionDays: 1 };
    await wal.append({ t: 'open', context });
    let head = genesisHash(context.stream);
    for (let seq = 0; seq < 5; seq++) {
      const event = chainEvent(context, seq, head, new Date().toISOString(), 'cdp.evaluate', { id: seq });
      head = event.hash;
      const appended = wal.append({ t: 'event', event });
      // The loop is held (CPU starvation, a long GC) well past stallMs right after the commit starts.
      await new Promise((r) => setImmediate(r));
      const until = performance.now() + 500;
      while (performance.now() < until);
      await appended;
    }
    assert.equal(wal.failed, undefined);
    await wal.close();
  });
});

describe('waiting on records until the WAL fails', () => {
  it('keeps nothing once the work settles, however often it is asked', async () => {
    const { wal } = await WriteAheadLog.open(mkdtempSync(join(tmpdir(), 'loupe-walwait-')), { maxBatch: 64, segmentBytes: 1 << 20 });
    try {
      const context: StreamContext = { stream: 's-1', kind: 'session', startedAt: new Date().toISOString(), retentionDays: 1 };
      const outcomes = await Promise.all(Array.from({ length: 2000 }, (_, i) => wal.untilFailed(i % 2 ? Promise.resolve(i) : wal.append({ t: 'open', context }).then(() => i))));
      assert.deepEqual(
        outcomes,
        Array.from({ length: 2000 }, (_, i) => i),
      );
      await assert.rejects(wal.untilFailed(Promise.reject(new Error('refused'))), /refused/);
      assert.equal((wal as unknown as { failedListeners: Set<unknown> }).failedListeners.size, 0);
    } finally {
      await wal.close();
    }
  });
});
