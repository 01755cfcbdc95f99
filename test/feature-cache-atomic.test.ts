/**
 * Both compute workers start cold and write the same cache entries (the backbone's weights, a stimulus's
 * features) at once: each write must survive the other's (a shared temporary name once made one rename fail
 * with ENOENT and the feature extraction with it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { tmpDir } from './helpers.ts';

function writer(file: string, fill: number): Promise<string | null> {
  const w = new Worker(new URL('../server/src/workers/worker-entry.mjs', import.meta.url), { workerData: { module: '../../../test/atomic-writer-worker.ts', file, times: 200, fill } });
  return new Promise((resolve, reject) => {
    w.once('message', (m: { failed: string | null }) => resolve(m.failed));
    w.once('error', reject);
  }).finally(() => w.terminate()) as Promise<string | null>;
}

test('two threads writing the same cache file at once both succeed, leave a whole file and no temporary files', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'weights.bin');
  const results = await Promise.all([writer(file, 1), writer(file, 2)]);
  assert.deepEqual(results, [null, null]);
  const bytes = fs.readFileSync(file);
  assert.equal(bytes.length, 1024 * 1024);
  assert.ok(bytes.every((b) => b === bytes[0]) && (bytes[0] === 1 || bytes[0] === 2), 'the file is one writer\'s whole content');
  assert.deepEqual(fs.readdirSync(dir), ['weights.bin']);
});
