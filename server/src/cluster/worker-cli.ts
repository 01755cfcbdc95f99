/**
 * `npm run worker`: takes shared-feature map jobs, stimulus-feature jobs and exact refits' eigendecompositions
 * from the cluster's Redis (BullMQ) on any machine, e.g. a lab's GPU workstation, and computes them with @tensorflow/tfjs-node-gpu where it installs (wasm otherwise).
 * Stops cleanly on Ctrl-C or SIGTERM (the running job finishes); a killed worker's job goes to another.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../config.ts';
import { gpuPackageStatus } from '../compute/gpu-package.ts';
import { parseCli } from '../terminal/cli-help.ts';
import { logDestination } from '../terminal/pretty-log.ts';
import { computeClientFor } from '../workers/compute-client.ts';
import { CLUSTER_PREFIX, redactUrl } from './cluster-node.ts';
import { featureModelIdOf } from './feature-jobs.ts';
import { startJobWorker } from './job-worker.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
let config;
try {
  config = loadConfig(root);
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  console.error(`worker: ${e.message}`);
  process.exit(2);
}
const usage = `
npm run worker -- [--redis URL] [--name NAME] [--concurrency N] [--lock-ms MS]

Takes shared-feature map jobs, stimulus-feature jobs and exact refits' eigendecompositions from the
cluster's Redis and computes them (docs/deploy.md). The images come
by content hash from the node that queued the job (or Redis), once, and are kept in
${path.join(config.compute.cacheDir, 'cluster-images')}, up to ${config.cluster.workerCacheMB} MB (cluster.workerCacheMB; the least recently used go first).
Compute backend: ${config.compute.backend} (COMPUTE_BACKEND; @tensorflow/tfjs-node-gpu ${gpuPackageStatus()}).

Options:
  --redis URL        the cluster's Redis (default cluster.redisUrl or REDIS_URL: ${config.cluster.redisUrl ? redactUrl(config.cluster.redisUrl) : 'none set'})
  --name NAME        this worker's name in /api/health (default ${os.hostname()}-${process.pid})
  --concurrency N    map jobs at once (default 1; each uses ${config.compute.workers} compute threads, compute.workers);
                     feature and refit jobs run one at a time
  --lock-ms MS       a worker silent this long loses its job to another (default 30000)
  -h, --help         this text
`;
const { values } = parseCli('worker', usage, { redis: { type: 'string' }, name: { type: 'string' }, concurrency: { type: 'string', default: '1' }, 'lock-ms': { type: 'string', default: '30000' } });
const redisUrl = values.redis ?? config.cluster.redisUrl;
if (!redisUrl || !/^rediss?:\/\//.test(redisUrl)) {
  console.error('worker: no Redis to take jobs from: pass --redis redis://HOST:PORT or set cluster.redisUrl (REDIS_URL)');
  process.exit(2);
}
const concurrency = Number(values.concurrency);
const lockMs = Number(values['lock-ms']);
if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
  console.error(`worker: --concurrency must be an integer 1..64, not "${values.concurrency}"`);
  process.exit(2);
}
if (!Number.isInteger(lockMs) || lockMs < 1000) {
  console.error(`worker: --lock-ms must be an integer of at least 1000, not "${values['lock-ms']}"`);
  process.exit(2);
}
const logFormat = process.env.LOG_FORMAT === 'json' || process.env.LOG_FORMAT === 'pretty' ? process.env.LOG_FORMAT : 'auto';
const logTo = logDestination(logFormat);
const logger = logTo ? pino({ level: config.logLevel }, logTo) : pino({ level: config.logLevel });
// Redis reached once before BullMQ starts (its connections retry without end): an unreachable one is an exit with why
const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
probe.on('error', () => {});
try {
  await probe.connect();
  await probe.ping();
} catch (e) {
  console.error(`worker: cannot reach Redis at ${redactUrl(redisUrl)}: ${(e as Error).message}`);
  process.exit(4);
} finally {
  probe.disconnect();
}
const name = values.name ?? `${os.hostname()}-${process.pid}`;
const client = computeClientFor(config.compute, config.dataDir);
const modelId = featureModelIdOf(config.compute.model);
const w = startJobWorker({ redisUrl, prefix: CLUSTER_PREFIX, cacheDir: config.compute.cacheDir, cacheBytes: config.cluster.workerCacheMB * 2 ** 20, client, modelId, name, concurrency, lockMs, log: (level, msg, fields) => logger[level]({ worker: name, ...fields }, msg) });
await Promise.all(w.workers.map((x) => x.waitUntilReady()));
logger.info({ worker: name, redis: redactUrl(redisUrl), concurrency, lockMs, featureModel: modelId }, 'worker ready: taking shared-feature map, stimulus-feature and refit jobs');
console.log(`  sharedlens worker ${name}: taking map and feature jobs from ${redactUrl(redisUrl)}; Ctrl-C stops it`);

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) process.exit(130);
  stopping = true;
  logger.info({ signal, jobsDone: w.done() }, 'worker stopping after its running jobs');
  await w.close();
  await client.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
