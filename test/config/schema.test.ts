// The policy file's schema (broker/config/schema.ts) and what is generated from it: loupe.schema.json for editors,
// and the field list the config reference is generated from.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { parseConfigText } from '../../broker/config/load';
import { configJsonSchema, listConfigFields } from '../../broker/config/schema';

const root = join(__dirname, '..', '..');
const schemaFile = join(root, 'loupe.schema.json');

/** The examples' policy files; a demo's state directory (`.loupe`, which holds a lock symlink) is not one of them. */
function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.name.startsWith('.')) return [];
    const path = join(dir, entry.name);
    return entry.isDirectory() ? yamlFiles(path) : entry.isFile() && /\.ya?ml$/.test(entry.name) ? [path] : [];
  });
}

const examples = yamlFiles(join(root, 'examples'));
const validator = () => new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(readFileSync(schemaFile, 'utf8')));

describe('loupe.schema.json', () => {
  it('is what the schema generates now (run `npm run schema` after changing broker/config/schema*)', () => {
    const check = spawnSync(process.execPath, [join(root, 'scripts', 'schema.mjs'), '--check'], { cwd: root, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stderr || check.stdout);
    assert.deepEqual(JSON.parse(readFileSync(schemaFile, 'utf8')), configJsonSchema());
  });

  it('every example policy names it on its first line, and validates against it and with the loader', () => {
    assert.ok(examples.length > 0, 'no example policy files found');
    const validate = validator();
    for (const file of examples) {
      const text = readFileSync(file, 'utf8');
      const header = /^# yaml-language-server: \$schema=(\S+)\n/.exec(text);
      assert.ok(header, `${relative(root, file)}: the first line is not a yaml-language-server $schema line`);
      assert.equal(resolve(dirname(file), header[1]!), schemaFile, `${relative(root, file)}: the $schema line does not lead to loupe.schema.json`);
      // As an editor sees the file: ${VAR} references not yet replaced.
      assert.ok(validate(parse(text)), `${relative(root, file)}: ${JSON.stringify(validate.errors, null, 2)}`);
      const config = parseConfigText(text, dirname(file), file, {});
      assert.ok(Object.keys(config.targets).length > 0);
    }
  });

  it('refuses what the loader refuses: unknown keys, a bad mode, a bad duration', () => {
    const validate = validator();
    const good = { roles: { dev: { groups: ['g'] } }, targets: { app: { inspector: '127.0.0.1:9229', access: [{ role: 'dev', modes: ['pause'], maxDuration: '30m' }] } } };
    assert.ok(validate(good), JSON.stringify(validate.errors));
    assert.equal(validate({ ...good, tragets: {} }), false);
    assert.equal(validate({ ...good, targets: { app: { ...good.targets.app, inspectr: 'x' } } }), false);
    assert.equal(validate({ ...good, targets: { app: { ...good.targets.app, access: [{ role: 'dev', modes: ['god'] }] } } }), false);
    assert.equal(validate({ ...good, targets: { app: { ...good.targets.app, access: [{ role: 'dev', maxDuration: 1800 }] } } }), false);
    assert.equal(validate({ ...good, server: { port: 70000 } }), false);
    // A ${VAR} reference stands for any value, as the loader replaces it before validating.
    assert.ok(validate({ ...good, server: { port: '${PORT:-7070}' } }), JSON.stringify(validate.errors));
  });
});

describe('listConfigFields (the config reference)', () => {
  it('lists every field with its type, default and description', () => {
    const fields = listConfigFields();
    const byPath = new Map(fields.map((f) => [f.path, f]));
    assert.deepEqual(byPath.get('server.port'), { path: 'server.port', type: 'integer 0..65535', default: 7070, required: false, description: 'The port the broker listens on (0: any free port).' });
    assert.deepEqual(byPath.get('targets.<name>.access[].maxDuration')?.default, '30m');
    assert.equal(byPath.get('targets.<name>.inspector')?.required, true);
    assert.equal(byPath.get('targets.<name>.access[].modes')?.type, 'list of one of: pause, snapshot');
    assert.ok(byPath.has('alerting.rules.failedAttaches.count'));
    assert.ok(!byPath.has('targets.<name>.alerts.failedAttaches'), 'a broker-wide rule is not listed under a target');
    for (const field of fields) {
      if (!field.path.endsWith('<name>') && !field.path.endsWith('[]')) assert.ok(field.description, `${field.path} has no description`);
    }
  });
});
