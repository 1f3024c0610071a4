// How the adapter shows a capture's values taken from V8's previews (beyond the broker's read depth): a whole one as
// any captured object, a cut one with its reason in words, and a path into what the preview did not hold says why.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatCaptured, lookupCaptured, truncationText, type CapturedFrame } from '../../../extension/adapter/snapshots';

const frame: CapturedFrame = {
  functionName: 'handle',
  url: 'file:///app.js',
  lineNumber: 1,
  columnNumber: 0,
  scopes: [
    {
      type: 'local',
      properties: [
        { name: 'user', value: { type: 'object', className: 'Object', description: 'Object', fromPreview: true, properties: [{ name: 'id', value: { type: 'string', value: 'alice' } }] } },
        {
          name: 'req',
          value: {
            type: 'object',
            className: 'Object',
            description: 'Object',
            fromPreview: true,
            truncated: 'preview',
            properties: [
              { name: 'method', value: { type: 'string', value: 'GET' } },
              { name: 'headers', value: { type: 'object', description: 'Object', truncated: 'depth' } },
            ],
          },
        },
      ],
    },
  ],
};

describe('adapter: captured values from previews', () => {
  it('shows them as captured objects, and says why a cut one is incomplete', () => {
    const local = frame.scopes![0]!.properties!;
    assert.equal(formatCaptured(local[0]!.value), "{id: 'alice'}");
    assert.equal(formatCaptured(local[1]!.value), "{method: 'GET', headers: {…}, …}");
    assert.equal(truncationText('preview'), "beyond the capture depth: V8's preview of it only (5 fields or 100 items, nested objects not read)");
    assert.deepEqual(lookupCaptured(frame, 'user.id'), { value: { type: 'string', value: 'alice' } });
    assert.deepEqual(lookupCaptured(frame, 'req.body'), {
      notCaptured: "not captured in this snapshot: req.body (req was cut: beyond the capture depth: V8's preview of it only (5 fields or 100 items, nested objects not read))",
    });
    assert.deepEqual(lookupCaptured(frame, 'req.headers.host'), { notCaptured: 'not captured in this snapshot: req.headers.host (req.headers was cut: beyond the capture depth)' });
  });
});
