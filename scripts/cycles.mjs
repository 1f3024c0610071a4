#!/usr/bin/env node
// `npm run cycles`: lists the import cycles among the files of broker/, extension/ and common/.
// Reads every relative import, export-from, require() and import() with the TypeScript parser; a cycle is
// marked "types" when at least one of its edges is a type-only import (it costs nothing at run time, but
// still ties the two modules together). `--fail` exits 1 when there is any cycle.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const root = join(import.meta.dirname, '..');
const roots = ['broker', 'extension', 'common'];

function sourceFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(path);
    return /\.(ts|mts|cts|tsx)$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

function resolveImport(from, specifier) {
  if (!specifier.startsWith('.')) return undefined;
  const base = resolve(dirname(from), specifier);
  for (const candidate of [base, `${base}.ts`, `${base}.tsx`, join(base, 'index.ts'), base.replace(/\.js$/, '.ts')]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

/** The file's relative imports: specifier and whether only types come through it. */
function importsOf(file) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found = [];
  const visit = (node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (!clause.name &&
            clause.namedBindings !== undefined &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      found.push({ specifier: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    } else if (
      ts.isCallExpression(node) &&
      node.arguments.length === 1 &&
      ts.isStringLiteral(node.arguments[0]) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))
    ) {
      found.push({ specifier: node.arguments[0].text, typeOnly: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const files = roots.flatMap((dir) => (existsSync(join(root, dir)) ? sourceFiles(join(root, dir)) : [])).sort();
const names = files.map((f) => relative(root, f).split('\\').join('/'));
const index = new Map(files.map((f, i) => [f, i]));
/** edges[i]: target index → type-only (true only when every import of it from i is type-only). */
const edges = files.map((file) => {
  const out = new Map();
  for (const { specifier, typeOnly } of importsOf(file)) {
    const target = resolveImport(file, specifier);
    const j = target === undefined ? undefined : index.get(target);
    if (j === undefined) continue;
    out.set(j, (out.get(j) ?? true) && typeOnly);
  }
  return out;
});

// Elementary cycles, each found once from its smallest file (the graph is small: plain DFS is enough).
const cycles = [];
const limit = 1000;
for (let start = 0; start < files.length && cycles.length < limit; start++) {
  const path = [start];
  const onPath = new Set(path);
  const walk = (node) => {
    for (const next of edges[node].keys()) {
      if (cycles.length >= limit) return;
      if (next === start) cycles.push([...path]);
      else if (next > start && !onPath.has(next)) {
        path.push(next);
        onPath.add(next);
        walk(next);
        path.pop();
        onPath.delete(next);
      }
    }
  };
  walk(start);
}

const describe = (cycle) => {
  const typeOnly = cycle.some((from, i) => edges[from].get(cycle[(i + 1) % cycle.length]));
  return `${[...cycle, cycle[0]].map((i) => names[i]).join(' -> ')}${typeOnly ? '   (types)' : ''}`;
};
const lines = cycles.map(describe).sort((a, b) => a.length - b.length || a.localeCompare(b));
process.stdout.write(`import cycles among ${roots.map((r) => `${r}/`).join(', ')} (${files.length} files): ${cycles.length}${cycles.length >= limit ? '+' : ''}\n`);
for (const line of lines) process.stdout.write(`  ${line}\n`);
if (process.argv.includes('--fail') && cycles.length > 0) process.exit(1);
