#!/usr/bin/env node
// Summarizes a V8 .cpuprofile (node --cpu-prof): self time by category and the top functions.
// Usage: node bench/lib/summarizeProfile.mjs [--top=25] <file.cpuprofile>...
// (a run under tsx also writes a profile of tsx's loader thread: the main thread's is the largest file)
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const top = Number(argv.find((a) => a.startsWith('--top='))?.slice(6) ?? 25);
// --window=startUs,endUs (process.hrtime µs, as bench/profile.ts prints): only samples taken in it
const windowArg = argv
  .find((a) => a.startsWith('--window='))
  ?.slice(9)
  .split(',')
  .map(Number);
const files = argv.filter((a) => !a.startsWith('--'));
if (files.length === 0) {
  process.stderr.write('usage: node bench/lib/summarizeProfile.mjs [--top=N] <file.cpuprofile>...\n');
  process.exit(2);
}
for (const file of files) summarizeFile(file);

function summarizeFile(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map();
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    at += profile.timeDeltas[i] ?? 0;
    if (windowArg && (at < windowArg[0] || at > windowArg[1])) continue;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((s, x) => s + x, 0);

  function category(frame) {
    const { url, functionName } = frame;
    if (!url) return functionName.startsWith('(') ? functionName : `native ${functionName || '(anonymous)'}`;
    const path = url.replace(/^file:\/\//, '');
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
    if (pkg) return `npm ${pkg[1]}`;
    if (path.startsWith('node:')) return path.replace(/^node:internal\/(streams\/|fs\/)?/, 'node:');
    const own = /\/(broker|bench|test)\/(.*)$/.exec(path);
    return own ? `${own[1]}/${own[2]}` : path;
  }

  const cats = new Map();
  const funcs = new Map();
  for (const [id, us] of selfUs) {
    const { callFrame } = byId.get(id);
    const cat = category(callFrame);
    cats.set(cat, (cats.get(cat) ?? 0) + us);
    const key = `${callFrame.functionName || '(anonymous)'}  ${cat}:${callFrame.lineNumber + 1}`;
    funcs.set(key, (funcs.get(key) ?? 0) + us);
  }
  const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms`;
  process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms sampled${windowArg ? ' in the measured window' : ''}\n\nself time by file/package:\n`);
  for (const [cat, us] of [...cats].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${cat}\n`);
  process.stdout.write(`\ntop functions (self time):\n`);
  for (const [fn, us] of [...funcs].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${pct(us)}  ${fn}\n`);
  process.stdout.write('\n');
}
