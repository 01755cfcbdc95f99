/** Cluster tests and bench: a real redis-server on a free port in a temporary folder, server nodes and workers as processes. */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { root, spawnedServerUrl, tmpDir, until, TOKEN, SIGN_IN_TOKEN } from './helpers.ts';

/** A free TCP port on loopback (taken and released; the caller binds it right away). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

/** Debian's redis-server without persistence, on a free loopback port, in a temporary folder. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = tmpDir('sharedlens-redis-');
  const child = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await until(() => /Ready to accept connections/.test(out) || child.exitCode !== null, 'redis-server start');
  if (child.exitCode !== null) throw new Error(`redis-server did not start: ${out}`);
  return { url: `redis://127.0.0.1:${port}`, stop: () => stopChild(child).then(() => fs.rmSync(dir, { recursive: true, force: true })) };
}

export interface NodeProcess {
  url: string;
  child: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/**
 * The cluster settings of test nodes: fast heartbeats and a short hold, so a killed node's sessions free up in
 * about 3 s. Not shorter: a node starved of CPU for longer than its hold (a loaded 2-core CI machine) loses its
 * sessions to the other node by design, and the handover test then saw B take a session A still ran.
 */
export function clusterConfigFile(over: Record<string, unknown> = {}): string {
  const file = path.join(tmpDir('sharedlens-cluster-config-'), 'config.json');
  fs.writeFileSync(file, JSON.stringify({ cluster: { heartbeatMs: 200, ttlS: 3 }, ...over }));
  return file;
}

/** `npm start`'s entry (server/src/main.ts) as a cluster node on a free port. */
export async function startNode(opts: { redisUrl: string; nodeId: string; dataDir: string; configFile: string; features?: boolean; env?: Record<string, string> }): Promise<NodeProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/main.ts')], {
    cwd: root,
    env: { ...process.env, PORT: '0', DEMO: '0', DATA_DIR: opts.dataDir, RIG_TOKENS: TOKEN, AUTH_TOKEN: SIGN_IN_TOKEN, LOG_LEVEL: 'warn', LOG_FORMAT: 'json', FSYNC: 'never', FEATURES: opts.features ? '1' : '0', REDIS_URL: opts.redisUrl, NODE_ID: opts.nodeId, SHAREDLENS_CONFIG: opts.configFile, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const url = await spawnedServerUrl(child, () => out, `node ${opts.nodeId}`);
  return { url, child, output: () => out, stop: () => stopChild(child) };
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

export interface WorkerProcess {
  child: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/** `npm run worker` (server/src/cluster/worker-cli.ts) as a process, ready once it says so. */
export async function startWorker(opts: { redisUrl: string; name: string; configFile: string; lockMs?: number; concurrency?: number }): Promise<WorkerProcess> {
  const args = ['--redis', opts.redisUrl, '--name', opts.name, '--lock-ms', String(opts.lockMs ?? 2000), '--concurrency', String(opts.concurrency ?? 1)];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/src/cluster/worker-cli.ts'), ...args], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'info', LOG_FORMAT: 'json', SHAREDLENS_CONFIG: opts.configFile, DATA_DIR: tmpDir() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const ready = await until(() => (/taking map and feature jobs from/.test(out) ? 'ready' : child.exitCode !== null ? 'exited' : null), `worker ${opts.name} start`, 1200);
  if (ready === 'exited') throw new Error(`worker ${opts.name} exited: ${out}`);
  return { child, output: () => out, stop: () => stopChild(child) };
}
