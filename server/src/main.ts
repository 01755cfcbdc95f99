/** Entry: reads the configuration, builds the app, listens; in demo mode also starts the simulated rig. */
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.ts';
import { createApp } from './app.ts';
import { gpuPackageStatus } from './compute/gpu-package.ts';
import { exposureProblems } from './auth/exposure.ts';
import { lockDataDir } from './storage/data-dir-lock.ts';
import { logDestination } from './terminal/pretty-log.ts';
import { ClusterNode, defaultNodeId, redactUrl } from './cluster/cluster-node.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let config;
const configWarnings: string[] = [];
try {
  config = loadConfig(root, process.env, (w) => configWarnings.push(w));
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(`sharedlens: ${e.message}`);
    process.exit(2);
  }
  throw e;
}
// readable lines on a terminal, JSON lines when piped or with LOG_FORMAT=json
const logFormat = process.env.LOG_FORMAT === 'json' || process.env.LOG_FORMAT === 'pretty' ? process.env.LOG_FORMAT : 'auto';
const logTo = logDestination(logFormat);
const logger = logTo ? pino({ level: config.logLevel }, logTo) : pino({ level: config.logLevel });
for (const w of configWarnings) logger.warn(`config: ${w}`);
// reachable from the network: refuse the secrets that the documentation prints
const exposure = exposureProblems(config);
if (exposure.length) {
  console.error(`sharedlens: refusing to start on ${config.host}:\n  ${exposure.join('\n  ')}\n(docs/security.md: deploying on a lab network)`);
  process.exit(2);
}
import fs from 'node:fs';
const built = path.join(root, 'client', 'dist');
if (!fs.existsSync(path.join(built, 'index.html'))) console.error('sharedlens: the dashboard is not built (npm run build); serving the API only');
const clientDir = built;
// one server per data folder: taken before the app marks the previous process's sessions interrupted
let dataLock: ReturnType<typeof lockDataDir>;
try {
  // clustered nodes share the data folder, one lock per node id (Redis decides who writes which session)
  dataLock = lockDataDir(config.dataDir, process.pid, config.cluster.redisUrl ? `node-${config.cluster.nodeId || defaultNodeId()}.pid` : 'server.pid');
} catch (e) {
  console.error(`sharedlens: ${(e as Error).message}`);
  process.exit(3);
}
process.on('exit', () => dataLock.release());
// Last resort (issue 11: no fault makes the process exit): every handler answers its own errors, so an error
// reaching here is a bug; it is logged and counted, and the server keeps acknowledging what it has recorded.
let unexpectedErrors = 0;
const unexpected = (kind: string) => (e: unknown) => logger.error({ err: e, unexpectedErrors: ++unexpectedErrors }, `${kind}: the server keeps running; please report this with the log`);
process.on('uncaughtException', unexpected('unexpected error'));
process.on('unhandledRejection', unexpected('unhandled promise rejection'));
let cluster: ClusterNode | undefined;
if (config.cluster.redisUrl) {
  try {
    const { redisUrl, nodeId, heartbeatMs, ttlS } = config.cluster;
    cluster = await ClusterNode.connect({ redisUrl, nodeId: nodeId || defaultNodeId(), heartbeatMs, ttlS, log: (level, msg, fields) => logger[level](fields ?? {}, msg) });
  } catch (e) {
    console.error(`sharedlens: ${(e as Error).message}`);
    process.exit(4);
  }
  logger.info({ nodeId: cluster.nodeId, redisUrl: redactUrl(config.cluster.redisUrl) }, 'joined the cluster (docs/deploy.md)');
}
const app = createApp({ config, logger, clientDir, ...(cluster ? { cluster } : {}) });
const port = await app.listen(config.port, config.host).catch((e: Error) => {
  console.error(`sharedlens: cannot listen on ${config.host}:${config.port}: ${e.message}`);
  process.exit(1);
});
// a wildcard bind is reached locally (the demo rig, the printed URL) through loopback
const wildcard = ['0.0.0.0', '::', '[::]'].includes(config.host);
const shownHost = wildcard ? '127.0.0.1' : config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
const url = `${config.tls ? 'https' : 'http'}://${shownHost}:${port}`;
if (wildcard || !['127.0.0.1', 'localhost', '::1', '[::1]'].includes(config.host)) {
  if (!config.tls) logger.warn({ host: config.host }, 'served over plain http on the network: sign-in tokens and cookies cross it in clear; set tls.cert and tls.key, or put a TLS reverse proxy in front (docs/security.md)');
  if (wildcard) logger.info({ extraHostNames: config.allowedHosts }, 'other machines must use this machine\'s address or a name listed in allowedHosts');
}
logger.info({ url, dataDir: config.dataDir, fsync: config.recording.fsync }, 'sharedlens listening');
// as Jupyter does: the URL carries the sign-in token; whoever opens it is signed in (auth.tokenRole)
console.log(`\n  sharedlens dashboard: ${url}/?token=${app.signIn.token}\n    (open it to sign in: the URL holds the sign-in token, keep it to yourself)\n  status: ${url}/api/status (after sign-in), health: ${url}/api/health\n`);

// which compute backend will run and why (the compute workers confirm it in /api/health once features are computed)
if (config.compute.features) {
  const gpu = gpuPackageStatus();
  const backend = config.compute.backend === 'auto' ? (gpu === 'installed' ? 'tensorflow if @tensorflow/tfjs-node-gpu loads, else wasm' : 'wasm') : config.compute.backend;
  console.log(`  compute backend: ${backend} (COMPUTE_BACKEND=${config.compute.backend}; @tensorflow/tfjs-node-gpu ${gpu})\n`);
}

const children: ReturnType<typeof spawn>[] = [];
if (config.demo) {
  // an IPC channel, so the rig also stops when this process dies without a chance to send SIGTERM
  const sim = spawn(process.execPath, [...process.execArgv, path.join(root, 'server/src/sim/cli.ts'), '--url', url], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], env: process.env });
  children.push(sim);
  logger.info({ pid: sim.pid }, 'demo: simulated rig started (DEMO=0 starts the server alone)');
}
console.log(
  config.demo
    ? `  What next: open the dashboard above. Within a minute the channel grid fills in; model scores follow once the
  CNN features are computed (a progress bar below), and driver pairs with their maps after a few minutes.
  The simulated rig drops its connection once on purpose to show that a session resumes. Try the Drivers,
  Sessions & replay and Follow-up views; Ctrl-C stops the server and the rig. npm run sim -- --help for more rigs.
`
    : `  What next: connect a rig (docs/protocol.md) or stream a simulated one: npm run sim -- --channels 64
  Recorded sessions: npm run replay; Ctrl-C stops the server.
`,
);

const shutdown = async (signal: string) => {
  logger.info({ signal }, 'shutting down');
  for (const c of children) c.kill('SIGTERM');
  // the rig first, then the server; a second Ctrl-C exits at once
  process.once('SIGINT', () => process.exit(130));
  await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((resolve) => { c.once('exit', resolve); setTimeout(resolve, 3000).unref(); }))));
  await app.close();
  process.exit(0);
};
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
