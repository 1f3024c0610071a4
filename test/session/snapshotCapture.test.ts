import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { SnapshotLimits } from '../../broker/config/types';
import { captureFrames, entriesFromPreview, type PausedFrameInput } from '../../broker/session/snapshot';
import { CdpClient } from '../support/cdpClient';
import { fixtures, markerLine, startTarget, type TargetProcess } from '../support/target';

// A capture stands in V8's preview of a small plain object or array of primitives for a read of its own. The
// preview must never change what is captured: the same paused frame is captured with previews and with every
// object read, against a real target, and the two must be equal, under generous and under tight limits.

const file = join(fixtures, 'capture-values.js');
const line = markerLine(file, 'handle');
const generous: SnapshotLimits = {
  frames: 20,
  expandFrames: 5,
  expandInternalFrames: false,
  closures: true,
  depth: 3,
  collectionItems: 100,
  fieldsPerObject: 20,
  stringLength: 255,
  timeBudgetMs: 5000,
  maxBytes: 1 << 20,
  minIntervalMs: 0,
  maxCapturesPerBreakpoint: 100,
  maxCapturesPerMinute: 100,
};

/**
 * The capture as reads without previews give it: an object beyond the read depth is only its description, cut at
 * the depth (with previews, its fields come from V8's preview: fromPreview).
 */
function beyondDepthCut<T>(value: T): T {
  if (Array.isArray(value)) return value.map(beyondDepthCut) as T;
  if (typeof value !== 'object' || value === null) return value;
  const node = value as Record<string, unknown>;
  if (node.fromPreview === true) {
    const { properties: _properties, fromPreview: _fromPreview, truncated: _truncated, ...head } = node;
    return { ...head, truncated: 'depth' } as T;
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, beyondDepthCut(v)])) as T;
}

describe('capture: previews stand in for reads without changing the capture', () => {
  let target: TargetProcess;
  let client: CdpClient;
  let frames: PausedFrameInput[];
  before(async () => {
    target = await startTarget(file);
    client = await CdpClient.connect(target.wsUrl);
    await client.call('Debugger.enable');
    await client.call('Debugger.setBreakpointByUrl', { lineNumber: line, urlRegex: 'capture-values\\.js$' });
    frames = (await client.waitEvent('Debugger.paused')).params.callFrames;
  });
  after(async () => {
    await client.call('Debugger.resume');
    await client.close();
    await target.stop();
  });

  async function both(limits: SnapshotLimits) {
    const previews: unknown[] = [];
    const withPreviews = await captureFrames(
      frames,
      new Map(),
      async (objectId, preview) => {
        const result = await client.call('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) });
        previews.push(preview);
        return result;
      },
      limits,
    );
    const readingAll = await captureFrames(frames, new Map(), (objectId) => client.call('Runtime.getProperties', { objectId, ownProperties: true }), limits);
    return { withPreviews, readingAll, previews };
  }

  it('captures the same values with fewer reads', async () => {
    const { withPreviews, readingAll } = await both(generous);
    assert.equal(readingAll.truncated, undefined);
    assert.deepEqual(beyondDepthCut(withPreviews.frames), readingAll.frames);
    // Beyond the depth the reads without previews have nothing to show: the preview's fields are the difference.
    assert.ok(withPreviews.bytes >= readingAll.bytes, `${withPreviews.bytes} bytes with previews, ${readingAll.bytes} without`);
    assert.ok(withPreviews.reads < readingAll.reads, `${withPreviews.reads} reads with previews, ${readingAll.reads} without`);
    // What the preview path must hand back exactly: a few of the values, as a read gives them.
    const local = withPreviews.frames[0]!.scopes!.find((s) => s.type === 'local')!.properties!;
    const value = (name: string) => local.find((p) => p.name === name)!.value;
    const field = (name: string, key: string) => value(name).properties!.find((p) => p.name === key)?.value;
    assert.deepEqual(field('numbers', 'negZero'), { type: 'number', description: '-0' });
    assert.deepEqual(field('numbers', 'big'), { type: 'number', value: 1e21 });
    assert.deepEqual(field('odd', 'Symbol(key)'), { type: 'string', value: 'by symbol' });
    assert.deepEqual(field('hidden', 'notEnumerable'), { type: 'number', value: 7 });
    assert.equal(field('strings', 's300')!.truncated, 'string of 300 characters');
    assert.deepEqual(field('sparse', 'length'), { type: 'number', value: 1000 });
    assert.equal(field('withGetter', 'g')!.type, 'accessor');
    assert.equal(field('account', '#pin'), undefined, 'private fields are not captured');
  });

  it('beyond the read depth takes objects from their previews, marked whole or cut; the scope reads are all it makes', async () => {
    const read = (objectId: string, preview: boolean) => client.call('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) });
    const capture = await captureFrames(frames, new Map(), read, { ...generous, depth: 0, expandFrames: 1 });
    const scopes = capture.frames[0]!.scopes!;
    assert.equal(capture.reads, scopes.length, 'one read per scope');
    const value = (name: string) => scopes.find((s) => s.type === 'local')!.properties!.find((p) => p.name === name)!.value;
    const fromRead = (await captureFrames(frames, new Map(), read, { ...generous, depth: 1, expandFrames: 1 })).frames[0]!.scopes!.find((s) => s.type === 'local')!.properties!;
    const readValue = (name: string) => fromRead.find((p) => p.name === name)!.value;
    // Whole: what a read gives, marked.
    for (const name of ['primitives', 'numbers', 'list', 'hidden']) assert.deepEqual(value(name), { ...readValue(name), fromPreview: true }, name);
    // Cut: more fields than a preview lists, nested objects (by their description), shortened strings (left out), getters.
    assert.equal(value('six').truncated, 'preview');
    assert.equal(value('six').properties!.length, 5);
    const nested = value('nested');
    assert.equal(nested.truncated, 'preview');
    assert.deepEqual(nested.properties!.find((p) => p.name === 'inner')!.value, { type: 'object', description: 'Object', truncated: 'depth' });
    const strings = value('strings');
    assert.equal(strings.truncated, 'preview');
    assert.deepEqual(strings.properties!.find((p) => p.name === 's98')!.value, { type: 'string', value: 'a'.repeat(98) });
    assert.deepEqual(strings.properties!.find((p) => p.name === 's300')!.value, { type: 'string', value: '', truncated: 'string shortened in the preview, not read' });
    assert.equal(value('withGetter').truncated, 'preview');
    // A Map from its preview: entries with their keys and values (a value's own fields one level down).
    const map = value('map');
    assert.equal(map.fromPreview, true);
    assert.equal(map.truncated, undefined);
    const entry = map.properties!.find((p) => p.name === '[[Entries]]')!.value.properties![0]!.value;
    assert.equal(entry.description, '{"k" => Object}');
    assert.deepEqual(entry.properties, [
      { name: 'key', value: { type: 'string', value: 'k' } },
      { name: 'value', value: { type: 'object', description: 'Object', fromPreview: true, properties: [{ name: 'v', value: { type: 'number', value: 1 } }] } },
    ]);
    // Beyond an explicit depth (3: the Map, its entries, an entry, its value), from its preview: whole, as it holds it exactly.
    const deep = await captureFrames(frames, new Map(), read, { ...generous, fieldsPerObject: 100, expandFrames: 1 });
    const deepMap = deep.frames[0]!.scopes!.find((s) => s.type === 'local')!.properties!.find((p) => p.name === 'deepMap')!.value;
    const deepEntry = deepMap.properties!.find((p) => p.name === '[[Entries]]')!.value.properties!.find((p) => p.name === '0')!.value;
    const inner = deepEntry.properties!.find((p) => p.name === 'value')!.value.properties!.find((p) => p.name === 'inner')!.value;
    assert.deepEqual(inner, { type: 'object', className: 'Object', description: 'Object', fromPreview: true, properties: [{ name: 'x', value: { type: 'number', value: 1 } }] });
  });

  it('sends the resume right behind the last reads, and no read after it', async () => {
    for (const depth of [0, 1, 2]) {
      const events: string[] = [];
      let answered = 0;
      const read = async (objectId: string, preview: boolean) => {
        events.push(`read after ${answered} answers`);
        const reply = await client.call('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) });
        answered++;
        return reply;
      };
      const capture = await captureFrames(frames, new Map(), read, { ...generous, depth, expandFrames: 1 }, { resume: () => events.push(`resume after ${answered} answers`) });
      const resumeAt = events.findIndex((e) => e.startsWith('resume'));
      assert.equal(events.filter((e) => e.startsWith('resume')).length, 1, `depth ${depth}: one resume (${events.join(', ')})`);
      assert.equal(resumeAt, events.length - 1, `depth ${depth}: every read before the resume (${events.join(', ')})`);
      assert.equal(events.length - 1, capture.reads);
      // At depth 0 it goes with the scope reads, before any answer. Deeper, it goes with the last reads sent, unless
      // the last answer to fill was one that could have led to more (a Map read at the last level: its entries).
      if (depth === 0) assert.equal(events[resumeAt], 'resume after 0 answers', 'at depth 0 the resume goes with the scope reads');
    }
  });

  it('stands in for the reads of a Map or Set only when its preview holds every entry exactly', async () => {
    const local = frames[0]!.scopeChain.find((s) => s.type === 'local')!;
    const { result } = await client.call('Runtime.getProperties', { objectId: local.object.objectId, ownProperties: true, generatePreview: true });
    const standsIn = (name: string) => entriesFromPreview((result as { name: string; value: never }[]).find((p) => p.name === name)!.value) !== undefined;
    for (const name of ['map', 'mixed', 'numberSet', 'set', 'objectKey']) assert.ok(standsIn(name), `${name}: its preview holds it`);
    // A nested object, a long string, more entries than a preview lists, an own property.
    for (const name of ['deepMap', 'longMap', 'bigSet', 'withOwn']) assert.ok(!standsIn(name), `${name}: read, not taken from its preview`);
  });

  it("lists frames of Node's own code without expanding them, unless the policy asks", async () => {
    const read = (objectId: string, preview: boolean) => client.call('Runtime.getProperties', { objectId, ownProperties: true, ...(preview ? { generatePreview: true } : {}) });
    // Node's paused frames carry no url: it comes from the scripts the session was told about.
    const scriptUrls = new Map<string, string>(client.events.filter((e) => e.method === 'Debugger.scriptParsed').map((e) => [e.params.scriptId, e.params.url]));
    const internal = frames.map((f, i) => [i, scriptUrls.get(f.location.scriptId) ?? ''] as const).filter(([, url]) => url.startsWith('node:'));
    assert.ok(internal.length > 0 && internal[0]![0] < generous.expandFrames, `a node: frame among the first ${generous.expandFrames}: ${[...scriptUrls.values()].length} scripts`);
    const listed = await captureFrames(frames, scriptUrls, read, generous);
    for (const [i, url] of internal) {
      assert.equal(listed.frames[i]!.url, url);
      assert.equal(listed.frames[i]!.scopes, undefined, `${url} is listed, not expanded`);
    }
    assert.ok(listed.frames[0]!.scopes!.length > 0, 'the app frame is expanded');
    const asked = await captureFrames(frames, scriptUrls, read, { ...generous, expandInternalFrames: true });
    const [first] = internal[0]!;
    assert.ok(asked.frames[first]!.scopes !== undefined, 'expandInternalFrames: true expands it');
    assert.ok(listed.reads < asked.reads, `${listed.reads} reads without internal frames, ${asked.reads} with`);
  });

  it('and the same cuts under tight limits', async () => {
    for (const limits of [
      { ...generous, fieldsPerObject: 3, collectionItems: 2, stringLength: 10 },
      { ...generous, depth: 1 },
      { ...generous, maxBytes: 600 },
    ]) {
      const { withPreviews, readingAll } = await both(limits);
      assert.deepEqual(beyondDepthCut(withPreviews.frames), readingAll.frames, JSON.stringify(limits));
      assert.equal(withPreviews.truncated, readingAll.truncated);
    }
  });
});
