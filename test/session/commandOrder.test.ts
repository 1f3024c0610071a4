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
import { Breakpoints } from '../../broker/session/breakpoints';
import type { SessionContext } from '../../broker/session/context';
import { TargetChannel, type ClientPending } from '../../broker/session/targetChannel';
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
  const pauses: CdpMessage[] = [];
  /** What a client's answer does as it is read, as the client relay has it (the session's breakpoints). */
  let onClientAnswer: (pending: ClientPending, message: CdpMessage) => void = () => undefined;

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
      if (message.method === 'Debugger.paused') pauses.push(message);
      if (typeof message.id !== 'number') return;
      channel.heard(message.id);
      const pending = channel.take(message.id);
      if (pending?.origin === 'broker') channel.settle(message.id, pending, message, data.length, () => undefined);
      else {
        if (pending) onClientAnswer(pending, message);
        clientAnswers.set(message.id, message);
      }
    });
    await channel.command('Debugger.enable');
  });

  /** A session's breakpoints over the real channel: the parts of a session they use, nothing more. */
  function sessionBreakpoints(): Breakpoints {
    const context = {
      channel,
      now: Date.now,
      isEnding: () => false,
      auditAccepting: () => true,
      record: (type: string, data: Record<string, unknown>) => stream.record(type as never, data),
      notify: () => undefined,
      pauses: { clientAbsent: false, forgetBudget: () => undefined },
    } as unknown as SessionContext;
    return new Breakpoints(context);
  }

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

  it("a client's breakpoint set where the broker is removing its own stays the session's: its hits are the client's", async () => {
    const place = { lineNumber: markerLine(join(fixtures, 'app.js'), 'work'), urlRegex: 'app\\.js$' };
    const breakpoints = sessionBreakpoints();
    onClientAnswer = (pending, message) => breakpoints.answered(pending, message);
    let clientId = 1;
    // A client's request as the relay sends it: recorded, then sent in the reaction to its record.
    const clientSets = async (extra: Partial<ClientPending>, busyMs = 0) => {
      const targetId = channel.nextId();
      const pending: ClientPending = {
        origin: 'client',
        clientId: clientId++,
        method: 'Debugger.setBreakpointByUrl',
        sentAt: Date.now(),
        setAs: { method: 'Debugger.setBreakpointByUrl', params: place },
        ...extra,
      };
      channel.expect(targetId, pending);
      await stream.record('cdp.request', { method: pending.method, params: place, targetId });
      channel.send(targetId, pending.method, place);
      // A broker busy with other sessions reads the socket late: V8's answers to both arrive in one read.
      if (busyMs > 0) for (const until = performance.now() + busyMs; performance.now() < until;);
      return waitFor(() => clientAnswers.get(targetId), { what: `the answer to target request ${targetId}`, timeoutMs: 2000, intervalMs: 5 });
    };
    try {
      for (let round = 0; round < 10; round++) {
        const first = await clientSets({ condition: 'secret.length > 3' });
        const id = (first.result as { breakpointId: string }).breakpointId;
        // Disabled (its condition read a redacted field): the broker removes it; the client, told at once, sets a
        // logpoint at the same place, recorded in the same commit, answered in the same read as the removal.
        breakpoints.retire(id, 'disabled');
        // The removal's record is appended a hop after the retirement; the client's comes after it, in the same commit.
        await Promise.resolve();
        const second = await clientSets({}, 100);
        assert.equal(second.error, undefined, `round ${round}: V8 refused the client's breakpoint: ${JSON.stringify(second.error)}`);
        await waitFor(() => channel.waiting === 0, { what: 'every answer', timeoutMs: 2000, intervalMs: 5 });
        await new Promise((resolve) => setTimeout(resolve, 5));
        assert.deepEqual(breakpoints.sortHits([id]), { live: [id], quiet: [] }, `round ${round}: a hit of the client's new breakpoint is not the session's`);
        assert.ok(breakpoints.v8Ids().includes(id), `round ${round}: the broker forgot V8 has it`);
        breakpoints.retire(id, 'round over');
        await waitFor(() => !breakpoints.v8Ids().includes(id), { what: 'the removal', timeoutMs: 2000, intervalMs: 5 });
      }
    } finally {
      onClientAnswer = () => undefined;
    }
  });

  it("a breakpoint of the session's in V8 that the broker has no record of: its hit is quiet, and it leaves V8", async () => {
    const place = { lineNumber: markerLine(join(fixtures, 'app.js'), 'work'), urlRegex: 'app\\.js$' };
    const breakpoints = sessionBreakpoints();
    // The tests before may have left the target paused at their breakpoints.
    await channel.command('Debugger.resume').catch(() => undefined);
    pauses.length = 0;
    // Set past the session's bookkeeping, as a lost record would leave it.
    const { breakpointId } = (await channel.command('Debugger.setBreakpointByUrl', place)) as { breakpointId: string };
    const paused = await waitFor(() => pauses[0], { what: 'a hit of the unrecorded breakpoint', timeoutMs: 5000, intervalMs: 5 });
    assert.deepEqual(paused.params?.hitBreakpoints, [breakpointId]);
    assert.deepEqual(breakpoints.sortHits(paused.params?.hitBreakpoints), { live: [], quiet: [breakpointId] });
    // Sorted again (the pause is sorted more than once): one removal only.
    const next = channel.nextId();
    breakpoints.sortHits(paused.params?.hitBreakpoints);
    assert.equal(channel.nextId(), next + 1, 'a second removal of the same breakpoint');
    await channel.command('Debugger.resume', {}, { critical: true });
    await waitFor(() => !breakpoints.v8Ids().includes(breakpointId), { what: 'the removal of the unrecorded breakpoint', timeoutMs: 2000, intervalMs: 5 });
    // Gone from V8: set again, it is not refused as one that exists.
    const again = (await channel.command('Debugger.setBreakpointByUrl', place)) as { breakpointId: string };
    assert.equal(again.breakpointId, breakpointId);
    await channel.command('Debugger.removeBreakpoint', { breakpointId });
    // A target that lists many ids in one pause gets at most 16 removals for it; the pause is still the session's.
    const forged = Array.from({ length: 100 }, (_, i) => `9:${i}:0:forged`);
    const first = channel.nextId();
    const sorted = breakpoints.sortHits(forged);
    assert.equal(channel.nextId() - first - 1, 16);
    assert.equal(sorted.quiet.length, 100);
    await waitFor(() => breakpoints.v8Ids().length === 0, { what: "the forged ids' removals answered", timeoutMs: 2000, intervalMs: 5 });
  });
});
