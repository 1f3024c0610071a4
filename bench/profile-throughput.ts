// What a rate-limited snapshot breakpoint on the hot path can cost the service at best, whatever the broker does
// (bench section 3 (c)): the demo service under bench/load.mjs, a bare CDP client (no broker) holding a breakpoint on
// the `const charged =` line in one of these ways, the service's CPU per answered request against (none):
//   none       no debugger
//   enabled    Debugger.enable only
//   cycle      what the broker does: on a hit, remove the breakpoint and resume; set it again `gap` ms later (V8
//              deoptimizes the code that inlined the function when it is set, and recompiles it after the removal)
//   cycleReads the same, with the top frames' scope reads of a capture before the resume
//   inactive   the breakpoint kept; on a hit, Debugger.setBreakpointsActive(false) and resume, true again `gap` ms
//              later (V8 then passes the break slot on every request, in unoptimized code)
//   condFalse  the breakpoint kept with the broker-made condition `false` (V8 evaluates it on every request)
// Variants alternate in rounds; each figure is the median over rounds of the ratio to the same round's (none).
// Usage: node --import tsx bench/profile-throughput.ts [rounds=4] [runMs=2500] [gapMs=1000] [variants=all]
// (V8's own account of the cycle: run the service with --trace-opt --trace-deopt, as in the report of this tool.)
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnNode } from './lib/procs';
import { RttClient } from './lib/rttClient';
import { cpuSeconds, demoService, hotLineText } from './throughput';

const [rounds, runMs, gapMs] = [Number(process.argv[2] ?? 4), Number(process.argv[3] ?? 2500), Number(process.argv[4] ?? 1000)];
const all = ['none', 'enabled', 'cycle', 'cycleReads', 'inactive', 'condFalse'] as const;
type Variant = (typeof all)[number];
const variants = (process.argv[5]?.split(',') ?? all) as Variant[];

function runLoad(url: string): Promise<{ rps: number; answered: number }> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [join(__dirname, 'load.mjs'), url, '32', String(runMs), '500'], { encoding: 'utf8' }, (err, out) =>
      err ? reject(err) : resolve(JSON.parse(out.trim().split('\n').pop()!) as { rps: number; answered: number }),
    ),
  );
}

interface Paused {
  params: { callFrames: { scopeChain: { type: string; object: { objectId: string } }[] }[] };
}

async function main(): Promise<void> {
  const child = await spawnNode(['--inspect=127.0.0.1:0', demoService], /SERVICE_URL=(\S+)/, { cwd: join(__dirname, '..'), env: { ...process.env, PORT: '0' }, label: 'demo service' });
  let inspector = '';
  for (let i = 0; i < 100 && !inspector; i++) {
    inspector = /Debugger listening on (ws:\/\/\S+)/.exec(child.output())?.[1] ?? '';
    await new Promise((r) => setTimeout(r, 20));
  }
  const lineNumber = readFileSync(demoService, 'utf8')
    .split('\n')
    .findIndex((l) => l.includes(hotLineText));
  const url = `${child.ready}/checkout?user=alice&items=book,lamp`;
  await runLoad(url);
  const perRequest = new Map<Variant, number[]>(variants.map((v) => [v, []]));
  for (let round = 0; round < rounds; round++) {
    for (const variant of variants) {
      let client: RttClient | undefined;
      let timer: NodeJS.Timeout | undefined;
      if (variant !== 'none') {
        const c = (client = await RttClient.connect(inspector, { quickAck: true }));
        (c.socket as unknown as { _socket: { setNoDelay(on: boolean): void } })._socket.setNoDelay(true);
        await c.call('Debugger.enable');
        let breakpointId = '';
        const set = () =>
          c.call('Debugger.setBreakpointByUrl', { lineNumber, urlRegex: 'service\\.js$', ...(variant === 'condFalse' ? { condition: 'false' } : {}) }).then((r: { breakpointId: string }) => {
            breakpointId = r.breakpointId;
          });
        let id = 5_000_000;
        const send = (method: string, params: Record<string, unknown> = {}) => c.socket.send(JSON.stringify({ id: id++, method, params }));
        const after = () => {
          if (variant === 'cycle' || variant === 'cycleReads') {
            send('Debugger.removeBreakpoint', { breakpointId });
            timer = setTimeout(() => set().catch(() => undefined), gapMs);
          } else if (variant === 'inactive') {
            send('Debugger.setBreakpointsActive', { active: false });
            timer = setTimeout(() => send('Debugger.setBreakpointsActive', { active: true }), gapMs);
          }
          send('Debugger.resume');
        };
        c.onEvent = (text) => {
          if (!text.startsWith('{"method":"Debugger.paused"')) return;
          if (variant !== 'cycleReads') return after();
          const frames = (JSON.parse(text) as Paused).params.callFrames.slice(0, 2);
          const scopes = frames.flatMap((f, i) => f.scopeChain.filter((s) => s.type === 'local' || (i === 0 && s.type === 'closure')));
          void Promise.all(scopes.map((s) => c.call('Runtime.getProperties', { objectId: s.object.objectId, ownProperties: true, generatePreview: true }))).finally(after);
        };
        if (variant !== 'enabled') await set();
      }
      const cpu0 = cpuSeconds(child.proc.pid!);
      const load = await runLoad(url);
      const cpu = cpuSeconds(child.proc.pid!) - cpu0;
      clearTimeout(timer);
      await client?.close();
      await new Promise((r) => setTimeout(r, 200));
      perRequest.get(variant)!.push((cpu / load.answered) * 1e6);
      process.stdout.write(`round ${round + 1}/${rounds} ${variant}: ${load.rps.toFixed(0)} req/s, ${((cpu / load.answered) * 1e6).toFixed(1)} µs of service CPU per request\n`);
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  const none = perRequest.get('none');
  for (const [variant, us] of perRequest) {
    const paired = none ? ` (${(100 * (median(us.map((x, i) => x / none[i]!)) - 1)).toFixed(1)} % over none, paired by round)` : '';
    process.stdout.write(`${variant.padEnd(10)} ${median(us).toFixed(1)} µs/request${paired}\n`);
  }
  await child.stop();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`profile failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
