// A process that writes to a real write-ahead log from many streams at once, as a busy broker does, and notes each
// record it "forwards" (acts on) the moment its append resolves. Killed with SIGKILL by test/audit/groupCommit.test.ts.
// Usage: node --import tsx walCrashWriter.ts <walDir> <forwardedFile> <streams> [commitWaitMs]
import { openSync, writeSync } from 'node:fs';
import { chainEvent, genesisHash, type StreamContext } from '../../broker/audit/events';
import { WriteAheadLog } from '../../broker/audit/wal';

const [walDir, forwardedFile, streamsArg, waitArg] = process.argv.slice(2);
const streams = Number(streamsArg);
const forwarded = openSync(forwardedFile!, 'a');

async function main(): Promise<void> {
  const { wal } = await WriteAheadLog.open(walDir!, { maxBatch: 512, segmentBytes: 256 << 10, preallocateBytes: 64 << 10, lazyMs: 2, ...(waitArg ? { commitWaitMs: Number(waitArg) } : {}) });
  await Promise.all(
    Array.from({ length: streams }, async (_, n) => {
      const context: StreamContext = { stream: `s-${n}`, kind: 'session', startedAt: new Date().toISOString(), retentionDays: 1 };
      await wal.append({ t: 'open', context });
      let head = genesisHash(context.stream);
      for (let seq = 0; ; seq++) {
        const request = chainEvent(context, seq, head, new Date().toISOString(), 'cdp.evaluate', { id: seq, method: 'Runtime.evaluate', params: { expression: `x${seq}` } });
        head = request.hash;
        await wal.append({ t: 'event', event: request });
        // Durable: only now is the request acted on.
        writeSync(forwarded, `${context.stream} ${seq}\n`);
        // Its answer's record, which nothing waits on: it rides with the next commit.
        seq++;
        const answer = chainEvent(context, seq, head, new Date().toISOString(), 'cdp.response', { id: seq - 1, result: { preview: 'x' } });
        head = answer.hash;
        void wal.append({ t: 'event', event: answer }, true);
      }
    }),
  );
}

void main();
process.stdout.write('writing\n');
