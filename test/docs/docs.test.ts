// The docs and the code cannot disagree: the generated tables are what `npm run docs` writes from the code today,
// every relative link and #anchor leads somewhere, and the README stays a front door.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { docFiles, generators, regenerate, regionsOf, root } from '../../scripts/docs';

const read = (file: string) => readFileSync(join(root, file), 'utf8');

/** Markdown without fenced code blocks and inline code spans, where link syntax is only text. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutCode = text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const [, heading] of withoutCode.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = heading!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

describe('docs', () => {
  it('every doc file exists, and every generated table is what `npm run docs` writes from the code', () => {
    const regions: string[] = [];
    for (const file of docFiles) {
      assert.ok(existsSync(join(root, file)), `${file} is missing`);
      const text = read(file);
      regions.push(...regionsOf(text));
      assert.equal(text, regenerate(text, file), `${file} differs from the code's data: run \`npm run docs\` and commit the result`);
    }
    for (const name of Object.keys(generators)) assert.ok(regions.includes(name), `no doc has the generated region "${name}"`);
  });

  it('a table region refuses a name the script does not know', () => {
    assert.throws(() => regenerate('<!-- generated:nonsense -->\n<!-- /generated:nonsense -->'), /region "nonsense"/);
  });

  it('every relative link and #anchor resolves to a file and a heading', () => {
    const problems: string[] = [];
    for (const file of docFiles) {
      for (const [, target] of prose(read(file)).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target!)) continue; // https:, mailto:
        const [path, anchor] = target!.split('#', 2) as [string, string | undefined];
        const resolved = path === '' ? join(root, file) : normalize(join(root, dirname(file), decodeURIComponent(path)));
        if (!resolved.startsWith(root) || !existsSync(resolved)) {
          problems.push(`${file}: ${target} → ${relative(root, resolved)} does not exist`);
          continue;
        }
        if (anchor === undefined) continue;
        if (statSync(resolved).isDirectory() || !resolved.endsWith('.md')) {
          problems.push(`${file}: ${target} has an anchor on something that is not a Markdown file`);
          continue;
        }
        if (!anchorsOf(readFileSync(resolved, 'utf8')).has(anchor)) problems.push(`${file}: ${target}: no heading "#${anchor}" in ${relative(root, resolved)}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('topics are headings, not bold paragraphs', () => {
    const problems: string[] = [];
    for (const file of docFiles) {
      for (const [line] of prose(read(file)).matchAll(/^\*\*[^*\n]+\.\*\*.*$/gm)) problems.push(`${file}: ${line!.slice(0, 80)}`);
    }
    assert.deepEqual(problems, []);
  });

  it('the README is the front door: under 10 KB, with the two set-up commands', () => {
    const readme = read('README.md');
    const bytes = Buffer.byteLength(readme);
    assert.ok(bytes < 10 * 1024, `README.md is ${bytes} bytes; move detail into docs/`);
    assert.match(readme, /^npm install && npm run demo {3}# the main job: broker \+ demo service \+ a real audited session$/m);
    assert.match(readme, /^npm test {22}# builds, type-checks and runs every test$/m);
  });

  it('the anchors follow GitHub: punctuation dropped, spaces to hyphens, repeats numbered', () => {
    assert.deepEqual(
      [...anchorsOf("# Approvals (the two-person rule)\n## launch.json\n### What the broker's rules look like in VS Code\n## Tests\n## Tests\n```\n# not a heading\n```\n")],
      ['approvals-the-two-person-rule', 'launchjson', 'what-the-brokers-rules-look-like-in-vs-code', 'tests', 'tests-1'],
    );
  });
});
