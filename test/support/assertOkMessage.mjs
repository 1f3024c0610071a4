// Loaded into each test file's process by scripts/test.mjs. Node 20's assert.ok without a message builds one from the
// caller's source: it reads the file at the position V8 reports, which under tsx is the transformed code's (line 2,
// column 18,000 or so), so it parses the TypeScript at a wrong place and keeps retrying. CI run 55 spent 8.7 minutes
// there on one failed assertion, its event loop blocked (no timeout, no hang report could act meanwhile). A bare
// assert.ok that fails says so here, with the value it got, at once.
import assert from 'node:assert';
import { inspect } from 'node:util';

for (const holder of new Set([assert, assert.strict])) {
  const ok = holder.ok;
  holder.ok = function okWithMessage(value, ...rest) {
    if (value || rest.length > 0) return ok.call(this, value, ...rest);
    throw new assert.AssertionError({
      message: `The expression evaluated to a falsy value: ${inspect(value)} (assert.ok without a message: see the line in the stack)`,
      actual: value,
      expected: true,
      operator: '==',
      stackStartFn: okWithMessage,
    });
  };
}
