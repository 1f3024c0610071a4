// Which external services a test file needs, from the `// needs: s3, chromium` line at its top (before the first
// import). scripts/test.mjs provisions only those of the selected files; test/needs.test.ts checks that every file
// reaching a service's support module declares that service.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** The services `npm test` can provision, and the support modules whose use means a file needs them. */
export const services = {
  s3: { what: 'S3 server with Object Lock, Ceph RGW', modules: ['test/support/s3.ts'] },
  chromium: { what: 'headless Chromium', modules: ['test/support/browser.ts', 'test/extension/codeServer.ts'] },
  'code-server': { what: 'VS Code server', modules: ['test/extension/codeServer.ts'] },
  postgres: { what: 'PostgreSQL 15', modules: ['test/support/postgres.ts'] },
};

const needsLine = /^\/\/ needs: (.+)$/m;

/** The services a file declares, in the order written; throws on a name no service has. */
export function declaredNeeds(root, file) {
  const text = readFileSync(join(root, file), 'utf8');
  const head = text.slice(0, text.search(/^import /m) >= 0 ? text.search(/^import /m) : text.length);
  const match = needsLine.exec(head);
  if (!match) return [];
  const names = match[1]
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !Object.hasOwn(services, n));
  if (unknown.length > 0) throw new Error(`${file}: "// needs:" names ${unknown.join(', ')}, which no service is (known: ${Object.keys(services).join(', ')})`);
  return names;
}

/** The files under test/ that `file` imports, directly or through other files under test/ (relative imports only). */
export function testImports(root, file, seen = new Set()) {
  const text = readFileSync(join(root, file), 'utf8');
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) {
    const base = resolve(root, dirname(file), m[1] ?? m[2]);
    const target = [base, `${base}.ts`, `${base}.mjs`, join(base, 'index.ts')].find((p) => statSync(p, { throwIfNoEntry: false })?.isFile());
    if (!target) continue;
    const rel = relative(root, target);
    if (!rel.startsWith('test/') || seen.has(rel)) continue;
    seen.add(rel);
    testImports(root, rel, seen);
  }
  return seen;
}

/** The services a file needs by what it imports. */
export function requiredNeeds(root, file) {
  const reached = testImports(root, file);
  return Object.entries(services)
    .filter(([, s]) => s.modules.some((m) => reached.has(m)))
    .map(([name]) => name);
}
