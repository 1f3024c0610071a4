import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import type { AuditEvent } from '../../broker/audit/events';
import { parseTranscriptText, verifyTranscript } from '../../broker/audit/verify';
import { waitFor } from './wait';

/**
 * The URL a `loupe broker` child process prints once it listens (`LOUPE_BROKER_URL=…` on stdout, read across
 * chunks); rejects, with its stderr, if it exits first or says nothing within `timeoutMs`.
 */
export function brokerUrl(proc: ChildProcess, stderr: () => string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out: string | undefined = '';
    const timer = setTimeout(() => reject(new Error(`no LOUPE_BROKER_URL within ${timeoutMs} ms: ${stderr()}`)), timeoutMs);
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      if (out === undefined) return;
      out += chunk;
      const match = /^LOUPE_BROKER_URL=(\S+)$/m.exec(out);
      if (!match) return;
      out = undefined;
      clearTimeout(timer);
      resolve(match[1]!);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited ${code} before listening: ${stderr()}`));
    });
  });
}

/**
 * Waits until the broker at `url` lists at least `count` sessions, every one ended, then verifies each transcript
 * offline with the broker's published keys: no problem found, and the last record is `session.ended`.
 */
export async function verifyEndedSessions(url: string, auditorToken: string, count: number): Promise<{ sessionId: string; events: AuditEvent[] }[]> {
  const headers = { authorization: `Bearer ${auditorToken}` };
  const sessions = await waitFor(
    async () => {
      const list = ((await (await fetch(`${url}/v1/sessions`, { headers })).json()) as { sessions: { sessionId: string; state: string }[] }).sessions;
      return list.length >= count && list.every((s) => s.state === 'ended') ? list : undefined;
    },
    { what: `${count} sessions ended`, timeoutMs: 30_000, intervalMs: 200 },
  );
  const keys = (await (await fetch(`${url}/v1/audit/keys`)).json()) as Parameters<typeof verifyTranscript>[1];
  const verified = [];
  for (const { sessionId } of sessions) {
    const text = await (await fetch(`${url}/v1/sessions/${sessionId}/transcript`, { headers })).text();
    const result = await verifyTranscript(parseTranscriptText(text), keys);
    assert.deepEqual(result.problems, [], sessionId);
    assert.equal(result.events.at(-1)!.type, 'session.ended', sessionId);
    verified.push({ sessionId, events: result.events });
  }
  return verified;
}
