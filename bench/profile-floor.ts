// The floor under section 2's snapshot rows: what the same reads cost when a bare CDP client makes them, with no
// broker in between. One target (bench/fixtures/pause-target.js), one direct client (TCP_QUICKACK and NODELAY, as
// the broker's target link), the snapshot breakpoint's line; per hit, inside the target as in section 2:
//   bare        Debugger.resume at once (section 2 (a))
//   level1      the top frame's scope reads (local, closure; generatePreview), then the resume once they are answered
//   level1+pipe the same reads and the resume sent together (V8 answers the reads, then resumes): V8's own work
//   level2      level1, then a read of every object among them whose preview does not hold it whole, then the resume:
//               the reads a top-frame capture makes (4 reads in 2 levels here), at the speed of a bare client
//   frames5+pipe  the scope reads of a 5-frame capture at depth 0 (local and block scopes of 5 frames, the top
//               frame's closure; generatePreview) and the resume in one write: V8's own work under section 2 (c)
//   frames5+bare  the same without generatePreview: what the previews cost V8
// Variants alternate in rounds of `per` hits. Usage: node --import tsx bench/profile-floor.ts [rounds=5] [per=100]
import { join } from 'node:path';
import { markerLine, startTarget } from '../test/support/target';
import { RttClient } from './lib/rttClient';
import { summarize } from './lib/stats';

const file = join(__dirname, 'fixtures', 'pause-target.js');
const [rounds, per] = [Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 100)];
const modes = ['bare', 'level1', 'level1+pipe', 'level2', 'frames5+pipe', 'frames5+bare'] as const;
type Mode = (typeof modes)[number];

interface Scope {
  type: string;
  object: { objectId: string };
}
interface Property {
  value?: { type: string; objectId?: string; preview?: { overflow: boolean; properties: { type: string }[] } };
}

async function main(): Promise<void> {
  const target = await startTarget(file);
  const control = await RttClient.connect(target.wsUrl);
  const client = await RttClient.connect(target.wsUrl, { quickAck: true });
  (client.socket as unknown as { _socket: { setNoDelay(on: boolean): void } })._socket.setNoDelay(true);
  let mode: Mode = 'bare';
  let id = 1e6;
  const send = (method: string, params: Record<string, unknown>) => client.socket.send(JSON.stringify({ id: id++, method, params }));
  const read = (objectId: string) => client.call('Runtime.getProperties', { objectId, ownProperties: true, generatePreview: true }) as Promise<{ result: Property[] }>;
  client.onEvent = (text) => {
    if (!text.startsWith('{"method":"Debugger.paused"')) return;
    if (mode === 'bare') return send('Debugger.resume', {});
    const callFrames = (JSON.parse(text) as { params: { callFrames: { scopeChain: Scope[] }[] } }).params.callFrames;
    if (mode === 'frames5+pipe' || mode === 'frames5+bare') {
      const preview = mode === 'frames5+pipe' ? { generatePreview: true } : {};
      const raw = (client.socket as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
      raw.cork();
      for (const [i, frame] of callFrames.slice(0, 5).entries())
        for (const scope of frame.scopeChain.filter((s) => s.type === 'local' || s.type === 'block' || (s.type === 'closure' && i === 0)))
          send('Runtime.getProperties', { objectId: scope.object.objectId, ownProperties: true, ...preview });
      send('Debugger.resume', {});
      return raw.uncork();
    }
    const top = callFrames[0]!;
    const scopes = top.scopeChain.filter((s) => s.type === 'local' || s.type === 'block' || s.type === 'closure').map((s) => s.object.objectId);
    if (mode === 'level1+pipe') {
      for (const objectId of scopes) send('Runtime.getProperties', { objectId, ownProperties: true, generatePreview: true });
      return send('Debugger.resume', {});
    }
    void (async () => {
      const replies = await Promise.all(scopes.map(read));
      if (mode === 'level2') {
        const whole = (p: Property) => p.value?.preview?.overflow === false && p.value.preview.properties.every((x) => x.type !== 'object' && x.type !== 'function');
        const next = replies.flatMap((r) => r.result.filter((p) => p.value?.type === 'object' && p.value.objectId && !whole(p)).map((p) => p.value!.objectId!));
        await Promise.all(next.map(read));
      }
      send('Debugger.resume', {});
    })();
  };
  await client.call('Debugger.enable');
  await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(file, 'hot'), urlRegex: 'pause-target\\.js$' });
  const burst = async (n: number) => (await control.call('Runtime.evaluate', { expression: `burst(${n}, 10)`, awaitPromise: true, returnByValue: true }, 120_000)).result.value as number[];
  const samples = new Map<Mode, number[]>(modes.map((m) => [m, []]));
  for (const m of modes) ((mode = m), await burst(20));
  for (let r = 0; r < rounds; r++) for (const m of modes) ((mode = m), samples.get(m)!.push(...(await burst(per))));
  const bare = summarize(samples.get('bare')!);
  for (const m of modes) {
    const s = summarize(samples.get(m)!);
    process.stdout.write(`${m.padEnd(12)} median ${s.median.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms; vs bare ${(s.median / bare.median).toFixed(2)}× / ${(s.p99 / bare.p99).toFixed(2)}×\n`);
  }
  await client.close();
  await control.close();
  await target.stop();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`floor failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
