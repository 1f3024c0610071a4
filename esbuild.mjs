// Bundles the shipped entry points; tsc only type-checks.
import { build } from 'esbuild';

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  // sockopt loads a native prebuild relative to its own folder.
  external: ['sockopt', 'vscode'],
};

await Promise.all([
  build({ ...common, entryPoints: { cli: 'broker/cli.ts' }, outdir: 'dist', banner: { js: '#!/usr/bin/env node' } }),
  build({ ...common, entryPoints: { broker: 'broker/index.ts' }, outdir: 'dist' }),
]);
