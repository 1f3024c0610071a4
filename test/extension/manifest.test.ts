// The extension's manifest: the `loupe` attach schema in package.json matches the TypeScript interface the adapter
// reads (LoupeAttachConfiguration), and every contributed command is registered by the extension.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

const root = join(__dirname, '..', '..');
/** extension.ts and the feature files it wires (extension/ui/): where commands and views are registered. */
const activationSource = () =>
  [
    join(root, 'extension', 'extension.ts'),
    ...readdirSync(join(root, 'extension', 'ui'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => join(root, 'extension', 'ui', f)),
  ]
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** The interface's members as {name → {optional, schemaType}} read with the TypeScript compiler. */
function interfaceMembers(file: string, name: string) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const members = new Map<string, { optional: boolean; type: string; enum?: string[] }>();
  source.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node) || node.name.text !== name) return;
    for (const m of node.members) {
      if (!ts.isPropertySignature(m) || !m.type) continue;
      const t = m.type;
      let type = t.getText(source);
      let literals: string[] | undefined;
      if (ts.isUnionTypeNode(t) && t.types.every((u) => ts.isLiteralTypeNode(u) && ts.isStringLiteral(u.literal))) {
        literals = t.types.map((u) => ((u as ts.LiteralTypeNode).literal as ts.StringLiteral).text);
        type = 'string';
      } else if (ts.isArrayTypeNode(t)) type = `array<${t.elementType.getText(source)}>`;
      members.set(m.name.getText(source), { optional: !!m.questionToken, type, ...(literals ? { enum: literals } : {}) });
    }
  });
  return members;
}

describe('extension manifest', () => {
  const debuggerContribution = pkg.contributes.debuggers.find((d: any) => d.type === 'loupe');
  const schema = debuggerContribution.configurationAttributes.attach;

  it('the attach schema in package.json matches the LoupeAttachConfiguration interface', () => {
    const members = interfaceMembers(join(root, 'extension', 'adapter', 'config.ts'), 'LoupeAttachConfiguration');
    assert.ok(members.size >= 10, `found ${members.size} members`);
    assert.deepEqual(Object.keys(schema.properties).sort(), [...members.keys()].sort(), 'same property names');
    for (const [name, m] of members) {
      const prop = schema.properties[name];
      const schemaType = prop.type === 'array' ? `array<${prop.items.type}>` : prop.type;
      assert.equal(schemaType, m.type, `${name}: schema type ${schemaType}, interface type ${m.type}`);
      if (m.enum) assert.deepEqual(prop.enum, m.enum, `${name}: enum`);
      assert.equal(schema.required.includes(name), !m.optional, `${name}: required in the schema iff not optional in the interface`);
      assert.ok(prop.description, `${name} has a description`);
    }
  });

  it('a launch.json attach may ask for V8 evaluation, which is privileged and says so; Loupe expressions are the default', () => {
    const evaluation = schema.properties.evaluation;
    assert.deepEqual(evaluation.enum, ['loupe', 'v8']);
    assert.equal(evaluation.default, 'loupe');
    assert.match(evaluation.description, /privileged/);
    assert.match(evaluation.description, /app functions and getters/);
    assert.match(evaluation.description, /best-effort/);
  });

  it('initial configuration and snippets use only schema properties', () => {
    const known = new Set([...Object.keys(schema.properties), 'type', 'request', 'name']);
    for (const config of [...debuggerContribution.initialConfigurations, ...debuggerContribution.configurationSnippets.map((s: any) => s.body)]) {
      for (const key of Object.keys(config)) assert.ok(known.has(key), `unknown key ${key}`);
      assert.equal(config.type, 'loupe');
      assert.equal(config.request, 'attach');
    }
  });

  it('every contributed command is registered by the extension, and the bundle is the entry point', () => {
    const source = activationSource();
    const titles = pkg.contributes.commands.map((c: any) => `${c.category}: ${c.title}`);
    for (const title of ['Loupe: Attach to Production…', 'Loupe: Sign In…', 'Loupe: End Session', 'Loupe: Download Transcript…', 'Loupe: Review Access Requests…'])
      assert.ok(titles.includes(title), title);
    for (const c of pkg.contributes.commands) assert.ok(source.includes(`registerCommand('${c.command}'`), `${c.command} is registered`);
    assert.equal(pkg.main, './dist/extension.js');
    assert.ok(pkg.activationEvents.includes('onDebugResolve:loupe'));
    assert.equal(pkg.contributes.configuration.properties['loupe.brokerUrl'].type, 'string');
  });

  it('the Snapshots view is contributed to Run and Debug for Loupe sessions, and its command is registered', () => {
    const view = pkg.contributes.views.debug.find((v: any) => v.id === 'loupe.snapshots');
    assert.ok(view, 'a loupe.snapshots view in the debug container');
    assert.equal(view.name, 'Snapshots');
    assert.equal(view.when, "debugType == 'loupe'");
    const command = pkg.contributes.commands.find((c: any) => c.command === 'loupe.showSnapshot');
    assert.equal(`${command?.category}: ${command?.title}`, 'Loupe: Show Snapshot…');
    const extension = activationSource();
    assert.ok(extension.includes("registerCommand('loupe.showSnapshot'"), 'loupe.showSnapshot is registered');
    assert.ok(extension.includes('new SnapshotsView('), 'the view is created on activation');
    // The view's id, the event it listens to and the request it makes are the ones the adapter speaks.
    const viewSource = readFileSync(join(root, 'extension', 'snapshotsView.ts'), 'utf8');
    const adapterSource = readFileSync(join(root, 'extension', 'adapter', 'loupeDebugSession.ts'), 'utf8');
    assert.ok(viewSource.includes(`SNAPSHOTS_VIEW = '${view.id}'`));
    for (const name of ['loupe.snapshot', 'loupe.snapshotShown', 'loupe.showSnapshot']) {
      assert.ok(viewSource.includes(`'${name}'`), `the view uses ${name}`);
      assert.ok(adapterSource.includes(`'${name}'`), `the adapter speaks ${name}`);
    }
  });

  it('the Loupe Alerts view is contributed to Run and Debug with its refresh command and settings', () => {
    const view = pkg.contributes.views.debug.find((v: any) => v.id === 'loupe.alerts');
    assert.ok(view, 'a loupe.alerts view in the debug container');
    assert.equal(view.name, 'Loupe Alerts');
    assert.equal(view.when, undefined, 'shown outside debug sessions too: alerts come from other people’s sessions');
    const command = pkg.contributes.commands.find((c: any) => c.command === 'loupe.refreshAlerts');
    assert.equal(`${command?.category}: ${command?.title}`, 'Loupe: Refresh Alerts');
    assert.ok(
      pkg.contributes.menus['view/title'].some((m: any) => m.command === 'loupe.refreshAlerts' && m.when === 'view == loupe.alerts'),
      'refresh in the view title',
    );
    const settings = pkg.contributes.configuration.properties;
    assert.equal(settings['loupe.alerts.refreshSeconds'].type, 'number');
    assert.equal(settings['loupe.alerts.notify'].type, 'boolean');
    // Owners are notified without opening the view first.
    assert.ok(pkg.activationEvents.includes('onStartupFinished'));
    const extension = activationSource();
    assert.ok(extension.includes('new AlertsView('), 'the view is created on activation');
    const viewSource = readFileSync(join(root, 'extension', 'alertsView.ts'), 'utf8');
    assert.ok(viewSource.includes(`ALERTS_VIEW = '${view.id}'`));
    for (const key of ['refreshSeconds', 'notify']) assert.ok(viewSource.includes(`get<${key === 'notify' ? 'boolean' : 'number'}>('${key}')`), `the view reads loupe.alerts.${key}`);
  });
});
