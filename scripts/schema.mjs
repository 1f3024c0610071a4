#!/usr/bin/env node
// `npm run schema`: writes loupe.schema.json (the policy file's JSON Schema, for editors) from broker/config/schema.ts.
// `npm run schema -- --check` exits 1 when the committed file is not what the schema generates now.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { tsImport } from 'tsx/esm/api';

const root = join(import.meta.dirname, '..');
const file = join(root, 'loupe.schema.json');
const { configJsonSchemaText } = await tsImport('../broker/config/schema.ts', import.meta.url);
// Formatted as the repository formats JSON, so a formatter pass leaves the file as generated.
const text = await format(configJsonSchemaText(), { ...(await resolveConfig(file)), parser: 'json' });

if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(file, 'utf8');
  } catch {}
  if (committed !== text) {
    process.stderr.write('loupe.schema.json is out of date: run `npm run schema`\n');
    process.exit(1);
  }
  process.stdout.write('loupe.schema.json is current\n');
} else {
  writeFileSync(file, text);
  process.stdout.write(`wrote ${file}\n`);
}
