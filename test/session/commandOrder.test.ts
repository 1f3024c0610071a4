import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { AuditTrail } from '../../broker/audit/auditTrail';
import type { AuditStream } from '../../broker/audit/auditStream';
import { WriteAheadLog } from '../../broker/audit/wal';
import { LocalDirectoryStore } from '../../broker/audit/stores/localStore';
import type { BrokerLimits } from '../../broker/config/types';
import { loadOrCreateSigningKey } from '../../broker/identity/keys';
import type { CdpMessage } from '../../broker/gate/targetFrame';
import { TargetChannel } from '../../broker/session/targetChannel';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { waitFor } from '../support/wait';

/**
 * What the broker sends the target keeps the order of its records: a removal of its own (a breakpoint whose
 * condition read a redacted field, disabled) recorded in the same WAL commit as, and before, a client's setting
 * of a breakpoint at the same place reaches V8 first, or V8 refuses the client's as one that already exists.
 */
describe("the broker's own commands and a client's requests recorded in one commit (real WAL, real target)", () => {
  let target: TargetProcess;
  let dir: string;
  let trail: AuditTrail;
  let stream: AuditStream;
  let socket: WebSocket;
  let channel: TargetChannel;
  const clientAnswers = new Map<number, CdpMessage>();

  before(async () => {
    target = await startTarget();
    dir = mkdtempSync(join(tmpdir(), 'loupe-command-order-'));
    const { wal } = await WriteAheadLog.open(join(dir, 'wal'), { maxBatch: 512, segmentBytes: 8 << 20, preallocateBytes: 1 << 20 });
    const key = await loadOrCreateSigningKey(join(dir, 'keys'), 'audit-key');
    trail = new AuditTrail(wal, new LocalDirectoryStore(join(dir, 'store')), key, { chunkMaxEvents: 100, uploadIntervalMs: 60_000, failClosedAfterMs: 60_000, clock: Date.now });
    const opened = trail.openStream({ stream: 'session-order', kind: 'session', startedAt: new Date().toISOString(), retentionDays: 1 });
    await opened.opened;
    stream = opened.stream;
    socket = new WebSocket(target.wsUrl);
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    channel = new TargetChannel({
      socket,
      limits: { targetResponseSeconds: 10 } as BrokerLimits,
      now: Date.now,
      isEnding: () => false,
      record: (type, data, lazy) => stream.record(type, data, lazy),
      onUnresponsive: () => undefined,
    });
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(String(data)) as CdpMessage;
      if (typeof message.id !== 'number') return;
      channel.heard(message.id);
      const pending = channel.take(message.id);
      if (pending?.origin === 'broker') channel.settle(message.id, pending, message, data.length, () => undefined);
      else clientAnswers.set(message.id, message);
    });
    await channel.command('Debugger.enable');
  });

  after(async () => {
    channel?.stopWatching();
    socket?.close();
    await trail?.stop();
    await target?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a critical removal recorded first reaches V8 before the client setting the same place again', async () => {
    const place = { lineNumber: markerLine(join(fixtures, 'app.js'), 'work'), urlRegex: 'app\\.js$' };
    for (let round = 0; round < 5; round++) {
      const { breakpointId } = (await channel.command('Debugger.setBreakpointByUrl', place)) as { breakpointId: string };
      // Appended in one turn: one WAL commit, the broker's removal first, as when a disabled breakpoint's notice
      // reached the client and its next request arrived while the removal's record waited for the disk.
      const removed = channel.command('Debugger.removeBreakpoint', { breakpointId }, { critical: true, why: 'disabled' });
      const targetId = channel.nextId();
      // The client's request goes out in the reaction to its record, as the client relay sends it.
      void stream.record('cdp.request', { method: 'Debugger.setBreakpointByUrl', params: place, targetId }).then(() => channel.send(targetId, 'Debugger.setBreakpointByUrl', place));
      await removed;
      const answer = await waitFor(() => clientAnswers.get(targetId), { what: `the answer to target request ${targetId}`, timeoutMs: 2000, intervalMs: 10 });
      assert.equal(answer.error, undefined, `round ${round}: V8 refused the client's breakpoint: ${JSON.stringify(answer.error)}`);
      assert.equal((answer.result as { breakpointId?: string }).breakpointId, breakpointId);
      await channel.command('Debugger.removeBreakpoint', { breakpointId });
    }
  });
});
