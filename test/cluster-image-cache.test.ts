/**
 * The worker's image cache (cluster/image-cache.ts) is bounded by bytes: past the bound the least recently
 * used image is deleted and fetched again from the node when a job names it; a running job's images are
 * never deleted under it; a restarted worker finds its folder's images in their order of last use. The
 * images come over HTTP from a loopback server standing in for the node's image route, which counts fetches.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { ImageCache } from '../server/src/cluster/image-cache.ts';
import { fetchImageBytes, type ImageFetch } from '../server/src/cluster/job-worker.ts';
import { CLUSTER_KEY_HEADER } from '../server/src/cluster/cluster-node.ts';
import { tmpDir } from './helpers.ts';

test('worker image cache: over its byte bound the least recently used image goes and is fetched again on demand; images in use stay; a restart keeps the order of use', async () => {
  const images = new Map<string, Buffer>();
  const fetches = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const hash = /^\/api\/cluster\/images\/([0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
    const bytes = hash ? images.get(hash) : undefined;
    if (req.headers[CLUSTER_KEY_HEADER] !== 'k3y') return void res.writeHead(403).end('no key');
    if (!hash || !bytes) return void res.writeHead(404).end('unknown');
    fetches.set(hash, (fetches.get(hash) ?? 0) + 1);
    res.writeHead(200, { 'content-type': 'image/png' }).end(hash === bad ? Buffer.from('not these bytes') : bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const from = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const put = (n: number) => {
    const b = randomBytes(n);
    const h = createHash('sha256').update(b).digest('hex');
    images.set(h, b);
    return h;
  };
  const [a, b, c] = [put(1000), put(1000), put(1000)];
  const bad = put(10);
  const src: ImageFetch = { redis: { getBuffer: () => Promise.reject(new Error('not asked: images come from the node')) } as unknown as ImageFetch['redis'], prefix: 't:', key: () => Promise.resolve('k3y') };
  const dir = tmpDir('sharedlens-image-cache-');
  const logs: Record<string, unknown>[] = [];
  const cache = new ImageCache(dir, 2500, (h, f) => fetchImageBytes(src, h, f), (_m, fields) => logs.push(fields));
  const read = (h: string) => cache.use([h], from, async ([f]) => fs.readFileSync(f!));
  const onDisk = () => fs.readdirSync(dir).sort();
  try {
    assert.deepEqual(await read(a), images.get(a));
    assert.deepEqual(await read(b), images.get(b));
    assert.equal(cache.bytes, 2000);
    // a again: from the folder, and now the most recently used
    assert.deepEqual(await read(a), images.get(a));
    assert.equal(fetches.get(a), 1);
    // c takes the folder over 2500 bytes: b, the least recently used, goes; a stays
    assert.deepEqual(await read(c), images.get(c));
    assert.deepEqual(onDisk(), [a, c].sort());
    assert.equal(cache.bytes, 2000);
    assert.equal(cache.counts.evicted, 1);
    assert.equal(logs.at(-1)?.evicted, 1, 'the eviction is a counted log line');
    // b named again: fetched again (a is now the least recently used and goes)
    assert.deepEqual(await read(b), images.get(b));
    assert.equal(fetches.get(b), 2);
    assert.deepEqual(onDisk(), [b, c].sort());
    // a job needing all three at once: none deleted while it runs (3000 bytes), trimmed to the bound after
    const sizes = await cache.use([a, b, c], from, async (files) => {
      assert.deepEqual(onDisk(), [a, b, c].sort());
      return files.map((f) => fs.readFileSync(f).length);
    });
    assert.deepEqual(sizes, [1000, 1000, 1000]);
    assert.ok(cache.bytes <= 2500);
    assert.equal(onDisk().length, 2);
    // two jobs naming one missing image fetch it once
    const missing = onDisk().includes(a) ? b : a;
    const before2 = fetches.get(missing) ?? 0;
    await Promise.all([read(missing), read(missing)]);
    assert.equal(fetches.get(missing), before2 + 1);
    // bytes that do not have their hash: refused, nothing kept
    await assert.rejects(read(bad), /does not match its hash/);
    assert.ok(!onDisk().some((f) => f.startsWith(bad)));
    // a restarted worker: the folder's images by last use (mtime); a smaller bound keeps the most recent
    const kept = onDisk();
    const older = kept.find((h) => h !== missing)!;
    fs.utimesSync(path.join(dir, older), new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const again = new ImageCache(dir, 1500, (h, f) => fetchImageBytes(src, h, f));
    assert.deepEqual(onDisk(), [missing]);
    assert.equal(again.bytes, 1000);
    assert.ok(again.has(missing) && !again.has(older));
    assert.throws(() => new ImageCache(dir, 0, (h, f) => fetchImageBytes(src, h, f)), /must be positive/);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
