// The check of client-bound messages for the target's process facts (broker/gate/processFacts.ts), by itself: what
// it withholds, in which spellings, and what it leaves alone (protocol ids, positions, source text, short numbers).
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { processFactsFrom, WithheldFacts } from '../../broker/gate/processFacts';

const marker = (what: string) => `[withheld by Loupe: the target's ${what}, which a debugger could act on outside Loupe]`;
const pidMarker = marker('process id');
const answer = (result: unknown) => JSON.stringify({ id: 3, result: { result } });
const valueOf = (text: string) => JSON.parse(text).result.result;
/** The message as the client gets it (never dropped here: these are all checkable). */
function check(facts: WithheldFacts, text: string): string {
  const out = facts.scrub(text);
  assert.notEqual(out, null);
  return out!;
}

describe('withheld process facts in client-bound messages', () => {
  const facts = new WithheldFacts({ pid: 48213, ppid: 48190, debugPort: 9229 });

  it('withholds a number that is a fact, as a string marker saying what and why', () => {
    assert.deepEqual(valueOf(check(facts, answer({ type: 'number', value: 48213, description: '48213' }))), { type: 'string', value: pidMarker, description: pidMarker });
    assert.deepEqual(valueOf(check(facts, answer({ type: 'bigint', unserializableValue: '48213n', description: '48213n' }))), { type: 'string', value: pidMarker, description: pidMarker });
    assert.equal(valueOf(check(facts, answer({ type: 'number', value: 9229.5, description: '9229.5' }))).value, marker('inspector port'));
  });

  it('withholds facts inside strings, keys, names, previews and values returned by value', () => {
    const text = check(
      facts,
      JSON.stringify({
        id: 4,
        result: {
          result: [
            { name: '48213', value: { type: 'number', value: 1, description: '1' } },
            { name: 'who', value: { type: 'object', objectId: '1.2.3', preview: { properties: [{ name: 'pid', type: 'number', value: '48190' }] } } },
            { name: 'line', value: { type: 'string', value: 'worker 48213 of 48190 on 127.0.0.1:9229' } },
            { name: 'byValue', value: { type: 'object', value: { 48213: [48190, '0xBC55'], n: 9229 } } },
          ],
        },
      }),
    );
    for (const digits of ['48213', '48190', '9229', 'bc55', 'BC55']) assert.ok(!text.includes(digits), `${digits} in ${text}`);
    const list = JSON.parse(text).result.result;
    assert.equal(list[0].name, pidMarker);
    assert.deepEqual(list[1].value.preview.properties[0], { name: 'pid', type: 'string', value: marker('parent process id') });
    assert.equal(list[2].value.value, `worker ${pidMarker} of ${marker('parent process id')} on 127.0.0.1:${marker('inspector port')}`);
    assert.equal(facts.withheld > 0, true);
  });

  it('leaves ids, positions, source text and messages without a fact as they are (the same text)', () => {
    const paused = JSON.stringify({
      method: 'Debugger.paused',
      params: {
        callFrames: [
          {
            callFrameId: '48213.1.9229',
            functionName: 'work',
            location: { scriptId: '48213', lineNumber: 48213, columnNumber: 9229 },
            url: 'file:///srv/48213/app.js',
            this: { type: 'object', objectId: '-48213.1.1' },
          },
        ],
        hitBreakpoints: ['1:48213:0:file:///srv/48213/app.js'],
      },
    });
    assert.equal(check(facts, paused), paused);
    const source = JSON.stringify({ id: 5, result: { scriptSource: 'server.listen(48213);' } });
    assert.equal(check(facts, source), source);
    const plain = answer({ type: 'string', value: 'order 4821 of 3 shipped at 1.8213, port 922' });
    assert.equal(check(facts, plain), plain);
  });

  it("a pid under 100 (a container's 1 or 7) is not looked for: it would be withheld from every count and line", () => {
    const small = new WithheldFacts({ pid: 7, ppid: 1 });
    const text = answer({ type: 'number', value: 7, description: '7' });
    assert.equal(check(small, text), text);
  });

  it('a pid of 3 digits (pids wrapped) is withheld as a whole number, never inside a longer one', () => {
    const wrapped = new WithheldFacts({ pid: 693, ppid: 256 });
    assert.equal(valueOf(check(wrapped, answer({ type: 'number', value: 693, description: '693' }))).value, pidMarker);
    assert.equal(valueOf(check(wrapped, answer({ type: 'string', value: '/usr/bin/node[693]' }))).value, `/usr/bin/node[${pidMarker}]`);
    assert.equal(valueOf(check(wrapped, answer({ type: 'string', value: 'worker 693 of 256' }))).value.includes('693'), false);
    assert.equal(valueOf(check(wrapped, answer({ type: 'string', value: '6.93e+2' }))).value.startsWith(pidMarker), true);
    for (const plain of ['tick-1693', 'order 6930', 'line 2560 of 0x1000', 'ticket 100 of 2b5']) {
      const text = answer({ type: 'string', value: plain });
      assert.equal(check(wrapped, text), text, plain);
    }
    assert.equal(valueOf(check(wrapped, answer({ type: 'string', value: 'at 0x100' }))).value.includes('0x100'), false);
  });

  it('a hex spelling of letters alone is withheld only after 0x or zeros (it is also a word)', () => {
    const lettered = new WithheldFacts({ pid: 0xadd });
    assert.equal(valueOf(check(lettered, answer({ type: 'string', value: 'add one' }))).value, 'add one');
    assert.equal(valueOf(check(lettered, answer({ type: 'string', value: 'at 0xADD' }))).value, `at ${pidMarker}`);
    assert.equal(valueOf(check(lettered, answer({ type: 'string', value: '00000add' }))).value, pidMarker);
  });

  it("another script's digits, also as V8 escapes them", () => {
    const arabic = (48213).toLocaleString('ar-EG');
    assert.equal(valueOf(check(facts, answer({ type: 'string', value: arabic }))).value, pidMarker);
    const escaped = answer({ type: 'string', value: 'x' }).replace(
      '"x"',
      JSON.stringify(arabic).replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
    );
    assert.equal(valueOf(check(facts, escaped)).value, pidMarker);
  });

  it('property: every spelling of every fact, in any text, returned as a string, number or by value', () => {
    const locales = ['en-US', 'de-DE', 'fr-FR', 'de-CH', 'en-IN', 'ar-EG', 'hi-IN-u-nu-deva', 'th-u-nu-thai', 'en-u-nu-fullwide', 'en-u-nu-mathbold', 'bn-u-nu-beng'];
    const spelled = fc.oneof(
      fc.constant((n: number) => String(n)),
      fc.constant((n: number) => n.toString(16)),
      fc.constant((n: number) => `0x${n.toString(16).toUpperCase()}`),
      fc.constant((n: number) => n.toString(16).padStart(10, '0')),
      fc.constant((n: number) => String(-n)),
      fc.constant((n: number) => n.toExponential()),
      fc.constant((n: number) => (n / 1000).toFixed(3)),
      fc.constant((n: number) => `${n}.5`),
      fc.constantFrom(...locales).map((locale) => (n: number) => n.toLocaleString(locale)),
    );
    const around = fc.string({ maxLength: 8 }).map((s) => s.replace(/[0-9a-zA-Z]/g, ' '));
    fc.assert(
      fc.property(fc.integer({ min: 1000, max: 4_194_304 }), spelled, around, around, fc.constantFrom('string', 'byValue', 'key'), (pid, spell, before, after, shape) => {
        // Hex of letters alone, bare, is also a word and is left (the case above).
        fc.pre(!/^[a-f]+$/i.test(spell(pid)));
        const one = new WithheldFacts({ pid });
        const text = `${before}${spell(pid)}${after}`;
        const message =
          shape === 'string'
            ? answer({ type: 'string', value: text })
            : shape === 'byValue'
              ? answer({ type: 'object', value: { list: [text, 1] } })
              : answer({ type: 'object', value: { [text]: 1 } });
        const out = check(one, message);
        assert.ok(out.includes(pidMarker), `${message} → ${out}`);
        const digits = JSON.parse(out).result.result;
        assert.ok(
          !JSON.stringify(digits)
            .replace(/[^0-9a-f]/gi, '')
            .includes(String(pid)),
          out,
        );
      }),
      { numRuns: 500 },
    );
  });

  it('a message that cannot be checked is not sent; a request is answered with an error that says why', () => {
    // Deeper than any message the broker lets through (targetFrame.ts bounds nesting), so deeper than a walk can go.
    const deep = `${'['.repeat(200_000)}48213${']'.repeat(200_000)}`;
    const text = `{"id":9,"result":{"result":{"type":"object","value":${deep}}}}`;
    assert.deepEqual(JSON.parse(facts.scrub(text)!), { id: 9, error: { code: -32000, message: "not answered: Loupe could not check the answer for the target's process facts" } });
    assert.equal(facts.scrub(`{"method":"Runtime.consoleAPICalled","params":{"args":[{"type":"object","value":${deep}}]}}`), null);
  });

  it('keeps only plausible facts from the read (a hostile target cannot plant a string or a huge value)', () => {
    assert.deepEqual(processFactsFrom({ result: { type: 'object', value: { pid: 4321, ppid: '77', debugPort: 2 ** 40 } } }), { pid: 4321 });
    assert.deepEqual(processFactsFrom({ result: { type: 'object', subtype: 'error' } }), {});
    assert.deepEqual(processFactsFrom(undefined), {});
  });
});
