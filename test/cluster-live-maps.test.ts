/**
 * Shared-feature maps of a live session through the cluster: a rig with planted neurons on node A (features
 * and models on A), the maps computed by an `npm run worker` process through BullMQ, announced on a
 * dashboard on node B (Redis adapter) and served as PNG by B (proxied to A); health names the worker.
 * Before the worker starts, A's map jobs time out, and B's dashboard is told so (explain:failed). The worker
 * fetches the images from A over HTTP by content hash (none go through Redis).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lastValueFrom } from 'rxjs';
import { io } from 'socket.io-client';
import sharp from 'sharp';
import { Redis } from 'ioredis';
import { dashboardEvents, type ExplainFailure, type Explanation, type SessionSummary } from '@sharedlens/shared';
import { runSimRig } from '../server/src/sim/sim-rig.ts';
import { ComputeClient } from '../server/src/workers/compute-client.ts';
import { demoStimuli, root, signIn, tmpDir, TOKEN, until, SIGN_IN_TOKEN } from './helpers.ts';
import { clusterConfigFile, startNode, startRedis, startWorker, type NodeProcess, type WorkerProcess } from './cluster-support.ts';

test('a live session on node A: no worker yet, its map jobs time out on B\'s dashboard; then computed by a worker process, announced on node B, served by B as PNG', async () => {
  const redis = await startRedis();
  const cacheDir = path.join(os.tmpdir(), 'sharedlens-test-features');
  // map jobs time out after 3 s (cluster.mapJobTimeoutS); timed-out pairs are asked again and join their queued job
  const configFile = clusterConfigFile({ compute: { cacheDir, maps: { intervalMs: 300 } }, cluster: { heartbeatMs: 200, ttlS: 3, mapJobTimeoutS: 3 } });
  const dataDir = tmpDir();
  const procs: (NodeProcess | WorkerProcess)[] = [];
  const sockets: { close(): void }[] = [];
  try {
    const [a, b] = await Promise.all([startNode({ redisUrl: redis.url, nodeId: 'maps-a', dataDir, configFile, features: true }), startNode({ redisUrl: redis.url, nodeId: 'maps-b', dataDir, configFile })]);
    procs.push(a, b);
    const cookie = await signIn(b.url, { token: SIGN_IN_TOKEN });
    const dash = io(`${b.url}/dashboard`, { transports: ['websocket'], forceNew: true, extraHeaders: { cookie } });
    sockets.push(dash);
    const explained: Explanation[] = [];
    dash.on(dashboardEvents.explainReady, (e: Explanation) => explained.push(e));
    const failed: ExplainFailure[] = [];
    dash.on(dashboardEvents.explainFailed, (e: ExplainFailure) => failed.push(e));
    let watching = '';
    dash.on(dashboardEvents.sessionsUpdated, (list: SessionSummary[]) => {
      const s = list.find((x) => (x as { node?: string }).node === 'maps-a');
      if (s && s.sessionId !== watching) dash.emit(dashboardEvents.sessionWatch, { sessionId: s.sessionId }, (r: { data?: unknown }) => r.data && (watching = s.sessionId));
    });
    const client = new ComputeClient({ cacheDir, dataDir: tmpDir(), backend: 'auto', workers: 1 });
    const f = await lastValueFrom(client.features$(demoStimuli.map((s) => path.join(root, 'stimuli/demo', s.file))));
    await client.close();
    if (f.type !== 'features') throw new Error('no features');
    const sim = await runSimRig({ url: a.url, token: TOKEN, stimuli: demoStimuli, stimulusSetId: 'demo', channels: 12, trials: 720, onMs: 200, offMs: 200, abortRate: 0, seed: 11, reconnectAfterTrials: 0, fast: true, keepOpen: true, features: { features: f.features, dim: f.dim } });
    sockets.push(sim.client);
    assert.equal(watching, sim.sessionId, "B's dashboard watches A's session");
    // no worker: A's first map jobs time out, and B's dashboard gets the error with why and what to do
    const timedOut = await until(() => failed.find((x) => x.sessionId === sim.sessionId), 'a timed-out map job on B', 1200);
    assert.equal(timedOut.reason, 'timeout');
    assert.match(timedOut.message, /^map job [0-9a-f]{12} did not finish within 3 s \(\d+ jobs waiting; is a worker running\? npm run worker; only workers with feature model nsfwjs-\S+ \(compute\.model\) take these jobs\)$/);
    assert.ok(timedOut.channelId && timedOut.driverId && timedOut.referenceId, JSON.stringify(timedOut));
    assert.equal(explained.filter((x) => x.sessionId === sim.sessionId).length, 0, 'no maps without a worker');
    const worker = await startWorker({ redisUrl: redis.url, name: 'w-live', configFile, lockMs: 5000 });
    procs.push(worker);
    const e = await until(() => explained.find((x) => x.sessionId === sim.sessionId && !x.stale), 'a pair announced on B', 2400).catch((err: Error) => {
      throw new Error(`${err.message}; the worker said: ${worker.output().slice(-800)}`);
    });
    assert.equal(e.size, 224);
    assert.ok(e.similarity > 0 && e.modelVersion > 0 && e.backend === 'wasm');
    assert.match(worker.output(), /map job done/);
    // B serves the pair's maps (proxied to A, which holds them)
    const api = async (p: string) => fetch(`${b.url}${p}`, { headers: { cookie } });
    const listed = (await (await api(`/api/sessions/${sim.sessionId}/explanations`)).json()) as { explanations?: { maps: string; channelId: string; driverId: string }[] };
    const item = listed.explanations?.find((x) => explained.some((y) => y.channelId === x.channelId && y.driverId === x.driverId));
    assert.ok(item, JSON.stringify(listed).slice(0, 300));
    const png = await api(item.maps);
    assert.equal(png.headers.get('x-sharedlens-node'), 'maps-a');
    const meta = await sharp(Buffer.from(await png.arrayBuffer())).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 2 * 224, 224]);
    // the images came from A over HTTP by hash (none in Redis); A serves a named image only with the cluster's key
    const r = new Redis(redis.url);
    try {
      assert.deepEqual(await r.keys('sharedlens:blob:*'), []);
      const key = (await r.get('sharedlens:cluster-key'))!;
      const bytes = fs.readFileSync(path.join(root, 'stimuli/demo', demoStimuli.find((s) => s.id === e.driverId)!.file));
      const hash = createHash('sha256').update(bytes).digest('hex');
      const image = await fetch(`${a.url}/api/cluster/images/${hash}`, { headers: { 'x-sharedlens-cluster-key': key } });
      assert.equal(image.status, 200);
      assert.ok(Buffer.from(await image.arrayBuffer()).equals(bytes));
      assert.equal((await fetch(`${a.url}/api/cluster/images/${hash}`, { headers: { 'x-sharedlens-cluster-key': 'x'.repeat(key.length) } })).status, 403);
      assert.equal((await fetch(`${a.url}/api/cluster/images/${hash}`, { headers: { cookie } })).status, 403, 'a signed-in person is not a worker');
      assert.equal((await fetch(`${a.url}/api/cluster/images/${'0'.repeat(64)}`, { headers: { 'x-sharedlens-cluster-key': key } })).status, 404);
    } finally {
      r.disconnect();
    }
    // A's health: the queue, its worker, and the jobs A submitted and saw completed
    const health = (await (await fetch(`${a.url}/api/health`)).json()) as { cluster: { mapJobs: { workers: { name: string }[]; thisNode: { completed: number; submitted: number; timedOut: number } } } };
    assert.deepEqual(health.cluster.mapJobs.workers.map((w) => w.name), ['w-live']);
    const mine = health.cluster.mapJobs.thisNode;
    assert.ok(mine.completed >= 1 && mine.submitted >= 1 && mine.timedOut >= 1, JSON.stringify(mine));
  } finally {
    for (const s of sockets) s.close();
    for (const p of procs) await p.stop();
    await redis.stop();
  }
});
