// What the shipped extension bundles contain: no broker code, no @aws-sdk (read from esbuild's metafiles), and no
// `vscode` import in the adapter, which runs standalone.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const root = join(__dirname, '..', '..');
const inputs = (name: string) => Object.keys(JSON.parse(readFileSync(join(root, 'dist', `${name}.meta.json`), 'utf8')).inputs as Record<string, unknown>);

describe('extension bundles', () => {
  for (const name of ['extension', 'debugAdapter']) {
    it(`dist/${name}.js has no broker code and no @aws-sdk`, () => {
      const files = inputs(name);
      assert.ok(
        files.some((f) => f.startsWith('extension/adapter/')),
        'the adapter is in it',
      );
      assert.deepEqual(
        files.filter((f) => f.startsWith('broker/') || f.includes('/broker/')),
        [],
      );
      assert.deepEqual(
        files.filter((f) => f.includes('@aws-sdk') || f.includes('@smithy')),
        [],
      );
      assert.deepEqual(
        files.filter((f) => /node_modules\/(jose|yaml|acorn|sockopt)\//.test(f)),
        [],
        'no broker dependency',
      );
    });
  }

  it('the adapter imports no `vscode`', () => {
    const dir = join(root, 'extension', 'adapter');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      assert.doesNotMatch(readFileSync(join(dir, file), 'utf8'), /from ['"]vscode['"]|require\(['"]vscode['"]\)/, file);
    }
    assert.ok(!inputs('debugAdapter').includes('vscode'));
  });
});
