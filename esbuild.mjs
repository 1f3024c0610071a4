// Bundles the shipped entry points; tsc only type-checks.
import { writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  // sockopt loads a native prebuild, re2-wasm its re2.wasm, relative to their own folders.
  external: ['sockopt', 're2-wasm', 'vscode'],
};

const [, , , extension, adapter] = await Promise.all([
  build({ ...common, entryPoints: { cli: 'broker/cli.ts' }, outdir: 'dist', banner: { js: '#!/usr/bin/env node' } }),
  build({ ...common, entryPoints: { broker: 'broker/index.ts' }, outdir: 'dist' }),
  // Script sources are redacted on a thread of their own (see broker/policy/sourceRedactThread.ts).
  build({ ...common, entryPoints: { sourceRedactWorker: 'broker/policy/sourceRedactWorker.ts' }, outdir: 'dist' }),
  // The VS Code extension (runs the debug adapter inline) and the adapter's standalone entry. Their metafiles
  // let test/extension/bundle.test.ts check that no broker code and no @aws-sdk went in.
  build({ ...common, entryPoints: { extension: 'extension/extension.ts' }, outdir: 'dist', metafile: true }),
  build({ ...common, entryPoints: { debugAdapter: 'extension/adapter/debugAdapter.ts' }, outdir: 'dist', metafile: true }),
]);
writeFileSync('dist/extension.meta.json', JSON.stringify(extension.metafile));
writeFileSync('dist/debugAdapter.meta.json', JSON.stringify(adapter.metafile));
