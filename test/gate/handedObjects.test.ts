// A request may name only objects the broker has sent to its client. V8 numbers one connection's objects in
// sequence and the broker's own reads share the session's connection: made-up ids would read what the broker read
// (a redacted container's contents, listed under names that say nothing). Real broker, real target.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { HandedObjects, maxHandedObjects, objectIdsOf, unknownObject } from '../../broker/gate/handedObjects';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';
import { basePolicy, startTestBroker, type TestBroker } from '../support/testBroker';

const app = join(fixtures, 'registry-app.js');
const secret = /REGSECRET/;

/** A broker with the default policy over a target running `fixture`, for the suite it is called in. */
function brokerOver(fixture: string): { broker: TestBroker } {
  const suite = {} as { broker: TestBroker };
  let target: TargetProcess;
  before(async () => {
    target = await startTarget(fixture);
    suite.broker = await startTestBroker(basePolicy(target.inspector));
  });
  after(async () => {
    await suite.broker.close();
    await target.stop();
  });
  return suite;
}

/** A pause-mode session paused in the registry app's `work`, with every frame it was sent. */
async function pausedInWork(broker: TestBroker) {
  const { client } = await broker.attach({ mode: 'pause' });
  const frames: string[] = [];
  client.socket.on('message', (data) => frames.push(data.toString()));
  await client.call('Debugger.enable');
  await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(app, 'work'), urlRegex: 'registry-app\\.js$' });
  const paused = await client.waitEvent('Debugger.paused');
  return { client, frames, top: paused.params.callFrames[0] };
}

describe('object ids a client was never given', () => {
  const suite = brokerOver(app);

  it('are refused, saying why, so the objects the broker read at a pause stay unread; the ids it sent still read', async () => {
    const { broker } = suite;
    const { client, frames, top } = await pausedInWork(broker);
    // The broker's learning at the pause and an evaluation read the registry on the session's connection.
    const answer = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression: 'services.billing.stripe.live.current.region' });
    assert.equal(answer.result.value, 'eu-west-1');
    const given = new Set(
      frames
        .join('\n')
        .match(/"objectId":"[^"]+"/g)!
        .map((m) => m.slice(12, -1)),
    );
    const prefix = String(top.scopeChain[0].object.objectId).replace(/\.\d+$/, '');
    let refused = 0;
    for (let n = 1; n <= 300; n++) {
      const objectId = `${prefix}.${n}`;
      if (given.has(objectId)) continue;
      const reply = await client.send('Runtime.getProperties', { objectId, ownProperties: true });
      assert.ok(reply.error, `${objectId} was read: ${JSON.stringify(reply).slice(0, 300)}`);
      assert.match(reply.error.message, /^Runtime\.getProperties refused: objectId ".+" is not an object this session was given/);
      refused++;
    }
    assert.ok(refused > 250, `${refused} made-up ids tried`);
    for (const [method, params] of [
      ['Runtime.releaseObject', { objectId: `${prefix}.7` }],
      ['Runtime.getExceptionDetails', { errorObjectId: `${prefix}.8` }],
      ['Runtime.getProperties', { objectId: `${prefix}.9\\u0000`, ownProperties: true }],
    ] as const) {
      if (given.has(params.objectId ?? params.errorObjectId ?? '')) continue;
      const reply = await client.send(method, params);
      assert.match(reply.error?.message ?? '', /is not an object this session was given/, `${method}: ${JSON.stringify(reply)}`);
    }
    // Walked from what it was sent, the registry shows its secrets as markers.
    let objectId = top.scopeChain.find((s: any) => s.type !== 'local').object.objectId;
    for (const name of ['services', 'billing', 'stripe', 'live', 'current']) {
      const { result } = await client.call('Runtime.getProperties', { objectId, ownProperties: true });
      objectId = result.find((p: any) => p.name === name)?.value?.objectId;
      assert.ok(objectId, `${name} is listed with an id`);
    }
    const { result: current } = await client.call('Runtime.getProperties', { objectId, ownProperties: true });
    for (const name of ['apiTokens', 'sessionSecrets', 'credentials']) assert.match(current.find((p: any) => p.name === name).value.value, /^\[redacted: /, name);
    await client.call('Debugger.resume');
    await client.close();
    assert.ok(!frames.some((f) => secret.test(f)), 'the client received a secret');
    const refusal = await broker.waitForRecord('cdp.refused', (e) => e.data.rule === 'objectId.unknown');
    assert.match(refusal.data.message, /not an object this session was given/);
    assert.ok(!secret.test(JSON.stringify(broker.records)), 'the audit records hold a secret');
  });

  it('are not given by a value the client shaped: ids written into an answer sent by value stay refused', async () => {
    const { broker } = suite;
    const { client, frames, top } = await pausedInWork(broker);
    await client.call('Debugger.evaluateOnCallFrame', { callFrameId: top.callFrameId, expression: 'services.billing.stripe.live.current.region' });
    const prefix = String(top.scopeChain[0].object.objectId).replace(/\.\d+$/, '');
    const given = new Set(
      frames
        .join('\n')
        .match(/"objectId":"[^"]+"/g)!
        .map((m) => m.slice(12, -1)),
    );
    // A Loupe expression's object literal comes back by value: `"value":[{"objectId":"<prefix>.1"},…]`.
    const minted = await client.call('Runtime.evaluate', {
      expression: `Array.from({ length: 300 }, (_, i) => ({ objectId: '${prefix}.' + (1 + i), type: 'object', value: { objectId: '${prefix}.' + (1 + i) } }))`,
    });
    assert.equal(minted.result.value.length, 300, JSON.stringify(minted).slice(0, 300));
    let refused = 0;
    for (let n = 1; n <= 300; n++) {
      const objectId = `${prefix}.${n}`;
      if (given.has(objectId)) continue;
      const reply = await client.send('Runtime.getProperties', { objectId, ownProperties: true });
      assert.match(reply.error?.message ?? '', /is not an object this session was given/, `${objectId} was read: ${JSON.stringify(reply).slice(0, 300)}`);
      refused++;
    }
    assert.ok(refused > 250, `${refused} minted ids tried`);
    await client.call('Debugger.resume');
    await client.close();
    assert.ok(!frames.some((f) => secret.test(f)), 'the client received a secret');
    assert.ok(!secret.test(JSON.stringify(broker.records)), 'the audit records hold a secret');
  });
});

describe('object groups the broker reads', () => {
  const aliasApp = join(fixtures, 'alias-app.js');
  const suite = brokerOver(aliasApp);

  it("are not released by a client: a release racing the pause would empty the broker's learning, and an alias show its secret", async () => {
    const { broker } = suite;
    const { client } = await broker.attach({ mode: 'pause' });
    const frames: string[] = [];
    client.socket.on('message', (data) => frames.push(data.toString()));
    await client.call('Debugger.enable');
    // Releases of the pause's own group, sent from before the breakpoint until the pause arrives: one lands between
    // V8's pause and the learning.
    const releases: Promise<any>[] = [];
    const release = () => releases.push(client.send('Runtime.releaseObjectGroup', { objectGroup: 'backtrace' }));
    release();
    const flood = setInterval(release, 1);
    const pausing = client.waitEvent('Debugger.paused');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: markerLine(aliasApp, 'tick'), urlRegex: 'alias-app\\.js$' });
    const first = await pausing.finally(() => clearInterval(flood));
    const answers = await Promise.all(releases);
    assert.ok(answers.length > 0);
    for (const answer of answers) assert.match(answer.error?.message ?? JSON.stringify(answer), /^Runtime\.releaseObjectGroup refused: the object group "backtrace" holds objects the broker reads/);
    const own = await client.send('Runtime.releaseObjectGroup', { objectGroup: 'loupe-eval' });
    assert.match(own.error?.message ?? '', /refused: the object group "loupe-eval"/);
    assert.deepEqual((await client.send('Runtime.releaseObjectGroup', { objectGroup: 'console' })).result, {});
    const check = async (paused: any) => {
      const frame = paused.params.callFrames[0];
      const scope = frame.scopeChain.find((s: any) => s.type !== 'local');
      const { result } = await client.call('Runtime.getProperties', { objectId: scope.object.objectId, ownProperties: true });
      const alias = result.find((p: any) => p.name === 'alias');
      const { result: held } = await client.call('Runtime.getProperties', { objectId: alias.value.objectId, ownProperties: true });
      assert.match(held.find((p: any) => p.name === 'primary').value.value, /^\[redacted: /);
      const evaluated = await client.call('Debugger.evaluateOnCallFrame', { callFrameId: frame.callFrameId, expression: 'alias.primary' });
      assert.match(String(evaluated.result.value), /^\[redacted: /);
    };
    await check(first);
    await client.call('Debugger.resume');
    await check(await client.waitEvent('Debugger.paused'));
    await client.call('Debugger.resume');
    await client.close();
    assert.ok(!frames.some((f) => /ALIASSECRET/.test(f)), 'the client received the secret');
    const refusal = await broker.waitForRecord('cdp.refused', (e) => e.data.rule === 'objectGroup.reserved');
    assert.match(refusal.data.message, /V8 releases a pause's own group when it resumes/);
    assert.ok(!/ALIASSECRET/.test(JSON.stringify(broker.records)), 'the audit records hold the secret');
  });
});

describe('HandedObjects', () => {
  it('never notes an id inside a value sent by value, however it is shaped', () => {
    const id = fc.stringMatching(/^-?\d{1,19}\.\d{1,3}\.\d{1,6}$/);
    fc.assert(
      fc.property(id, fc.jsonValue({ maxDepth: 3 }), fc.boolean(), (forged, data, asArray) => {
        const handed = new HandedObjects();
        const shaped = { objectId: forged, type: 'object', value: { objectId: forged }, data };
        handed.note(JSON.stringify({ id: 1, result: { result: { type: 'object', value: asArray ? [shaped, data] : { shaped, data } } } }));
        assert.ok(!handed.has(forged));
      }),
      { numRuns: 300 },
    );
  });

  it('notes exactly the object ids of a message, however they sit in it', () => {
    const id = fc.stringMatching(/^-?\d{1,19}\.\d{1,3}\.\d{1,6}$/);
    const remote = fc.record({ type: fc.constant('object'), objectId: id, description: fc.string() });
    fc.assert(
      fc.property(fc.array(fc.oneof(remote, fc.record({ name: fc.string(), value: remote }), fc.record({ text: fc.string() })), { maxLength: 20 }), (items) => {
        const handed = new HandedObjects();
        handed.note(JSON.stringify({ id: 3, result: { result: items } }));
        const ids = items.map((i: any) => i.objectId ?? i.value?.objectId).filter(Boolean);
        for (const one of ids) assert.ok(handed.has(one));
        // A string that only looks like an id is not one.
        for (const i of items as any[]) if (i.text !== undefined && !ids.includes(i.text)) assert.ok(!handed.has(i.text));
        assert.equal(unknownObject({ objectId: 'made-up' }, handed)?.param, 'objectId');
      }),
      { numRuns: 300 },
    );
  });

  it('takes the same ids from the value a message was serialized from as from its text', () => {
    const id = fc.stringMatching(/^-?\d{1,19}\.\d{1,3}\.\d{1,6}$/);
    // Remote objects with previews and by-value payloads that carry ids of their own, nested in any JSON.
    const remote = fc.record(
      {
        type: fc.constantFrom('object', 'function', 'string'),
        objectId: id,
        value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ objectId: id })),
        preview: fc.record({ type: fc.constant('object'), properties: fc.array(fc.record({ name: fc.string(), objectId: id }), { maxLength: 3 }) }),
      },
      { requiredKeys: ['type'] },
    );
    const message = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, remote, fc.jsonValue({ maxDepth: 1 }), fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 6 }), tie('node'), { maxKeys: 4 })),
    })).node;
    fc.assert(
      fc.property(message, (value) => {
        const text = JSON.stringify({ id: 1, result: value });
        const fromValue = objectIdsOf({ id: 1, result: value });
        assert.deepEqual(fromValue, objectIdsOf(JSON.parse(text)));
        const byText = new HandedObjects();
        byText.note(text);
        const byValue = new HandedObjects();
        byValue.noteIds(fromValue);
        for (const one of fromValue) assert.ok(byText.has(one) && byValue.has(one));
        // Nothing in a preview or a by-value payload is given, by either path.
        for (const forged of text.match(/-?\d{1,19}\.\d{1,3}\.\d{1,6}/g) ?? []) assert.equal(byText.has(forged), byValue.has(forged), forged);
      }),
      { numRuns: 500 },
    );
  });

  it('never notes an id in a preview', () => {
    const handed = new HandedObjects();
    handed.note(JSON.stringify({ result: { result: { type: 'object', objectId: '1.1.1', preview: { type: 'object', properties: [{ name: 'a', type: 'object', objectId: '1.1.2' }] } } } }));
    assert.ok(handed.has('1.1.1'));
    assert.ok(!handed.has('1.1.2'));
  });

  it('keeps at least the last half of its bound, whatever came before', () => {
    const handed = new HandedObjects();
    const total = 2 * maxHandedObjects + 123;
    for (let i = 0; i < total; i++) handed.noteIds([`1.1.${i}`]);
    for (let i = total - maxHandedObjects / 2; i < total; i++) assert.ok(handed.has(`1.1.${i}`), `1.1.${i} forgotten`);
    let known = 0;
    for (let i = 0; i < total; i++) if (handed.has(`1.1.${i}`)) known++;
    assert.ok(known <= maxHandedObjects, `${known} ids remembered`);
  });

  it('forgets the oldest past its bound', () => {
    const handed = new HandedObjects();
    for (let i = 0; i <= maxHandedObjects; i++) handed.note(`{"objectId":"1.1.${i}"}`);
    assert.ok(!handed.has('1.1.0'));
    assert.ok(handed.has(`1.1.${maxHandedObjects}`));
  });

  it('keeps an object its client keeps naming, however many ids its reads hand out', () => {
    // A client expanding one object again and again: each answer hands out new ids for what the object holds.
    const handed = new HandedObjects();
    handed.note('{"result":{"result":{"type":"object","objectId":"1.1.root"}}}');
    for (let read = 0; read < 3 * maxHandedObjects; read += 100) {
      assert.equal(unknownObject({ objectId: '1.1.root', ownProperties: true }, handed), undefined, `refused after ${read} ids`);
      handed.note(JSON.stringify({ result: { result: Array.from({ length: 100 }, (_, i) => ({ name: `f${i}`, value: { type: 'object', objectId: `1.1.${read + i}` } })) } }));
    }
    // One the client was given and never named again is forgotten in its turn.
    assert.ok(!handed.has('1.1.0'));
  });
});
