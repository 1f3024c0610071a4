import { strict as assert } from 'node:assert';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
// @ts-expect-error: a plain ES module of the test runner, without types
import { declaredNeeds, requiredNeeds, services } from '../scripts/test-needs.mjs';

// `npm test -- <filter>` provisions only the services the selected files declare (`// needs: s3, chromium`), so a
// file that reaches a service's support module without declaring it would fail only when run on its own.

const root = join(__dirname, '..');
function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'fixtures' || name === 'support' ? [] : testFiles(path);
    return name.endsWith('.test.ts') ? [relative(root, path)] : [];
  });
}

describe('test files declare the services they need', () => {
  const files = testFiles(join(root, 'test'));

  it('every file that reaches a service support module declares that service, with known names only', () => {
    const problems: string[] = [];
    for (const file of files) {
      let declared: string[];
      try {
        declared = declaredNeeds(root, file);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      const missing = (requiredNeeds(root, file) as string[]).filter((s) => !declared.includes(s));
      if (missing.length > 0)
        problems.push(
          `${file} reaches ${missing.map((s) => (services as Record<string, { modules: string[] }>)[s]!.modules.join(' or ')).join(', ')} but its "// needs:" line lacks ${missing.join(', ')}`,
        );
    }
    assert.deepEqual(problems, []);
  });

  it('sees the declarations (the S3, PostgreSQL, browser and VS Code tests)', () => {
    assert.deepEqual(declaredNeeds(root, 'test/audit/s3Store.test.ts'), ['s3']);
    assert.deepEqual(declaredNeeds(root, 'test/postgres/startPostgres.test.ts'), ['postgres']);
    assert.deepEqual(declaredNeeds(root, 'test/audit/reportBrowser.test.ts'), ['chromium']);
    assert.deepEqual(declaredNeeds(root, 'test/extension/vscodeUi.test.ts'), ['code-server', 'chromium']);
    assert.deepEqual(declaredNeeds(root, 'test/session/safety.test.ts'), []);
  });
});
