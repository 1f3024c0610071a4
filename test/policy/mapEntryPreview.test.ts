import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'deep-map-app.js');
const secret = 'MAPSECRET-entry-value-99';

describe("a Map's entries expanded with previews, as VS Code expands a Map", () => {
  let target: TargetProcess;
  let broker: TestBroker;
  before(async () => {
    target = await startTarget(app);
    broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await broker.close();
    await target.stop();
  });

  it("show an entry's value under a sensitive key as the marker, though nothing learned the value before", async () => {
    const { client, grant } = await broker.attach();
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'work'), urlRegex: 'deep-map-app\\.js$' });
    const paused = await client.waitEvent('Debugger.paused');
    const props = async (objectId: string, preview = false) => client.call('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) });
    const local = paused.params.callFrames[0].scopeChain.find((s: any) => s.type === 'local');
    let object = (await props(local.object.objectId)).result.find((p: any) => p.name === 'r').value;
    for (const name of ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'settings']) object = (await props(object.objectId)).result.find((p: any) => p.name === name).value;
    const entriesList = (await props(object.objectId)).internalProperties.find((p: any) => p.name === '[[Entries]]').value;
    const entries = (await props(entriesList.objectId, true)).result.filter((p: any) => /^\d+$/.test(p.name));
    const fields = (i: number) => Object.fromEntries(entries[i].value.preview.properties.map((f: any) => [f.name, f.value]));
    assert.deepEqual(fields(0), { key: 'theme', value: 'dark' }, 'other entries are shown');
    assert.deepEqual(fields(1), { key: 'apiKey', value: '[redacted: apiKey]' });
    assert.deepEqual(fields(2), { key: 'pageSize', value: '25' });
    await client.call('Debugger.resume');
    await client.close();
    await broker.waitForRecord('session.ended', (e) => e.grant === grant.grantId);
    assert.ok(!frames.some((f) => f.includes(secret)), 'the value reached the client');
    assert.ok(!JSON.stringify(await broker.sessionEvents()).includes(secret), 'the value reached the audit trail');
  });
});
