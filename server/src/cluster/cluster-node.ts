/**
 * One server process ("node") of a cluster sharing one Redis (docs/deploy.md). It keeps, with expiry:
 * - `node:<id>`: the node's advertised URL and its sessions' summaries, rewritten every heartbeat;
 * - `owner:<sessionId>`: which node writes a live session's log, refreshed every heartbeat while the session
 *   is in that node's memory. A node that dies stops refreshing: after `ttlS` its sessions have no owner, show
 *   as interrupted, and a rig may resume them on any node that sees the same data folder.
 * Reads are served from the copy fetched at the last heartbeat, so synchronous code (the session list, the
 * HTTP proxy) can ask who owns what; the one decision that must not race, taking over a session, is a
 * Redis script (claim).
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Subject } from 'rxjs';
import type { SessionSummary } from '@sharedlens/shared';

/** What a node publishes about itself every heartbeat. */
export interface NodeInfo {
  nodeId: string;
  url: string;
  pid: number;
  startedAt: string;
  /** Summaries of the live sessions and replays in the node's memory. */
  sessions: SessionSummary[];
}

export interface ClusterOptions {
  redisUrl: string;
  nodeId: string;
  heartbeatMs: number;
  ttlS: number;
  /** Key prefix, so several clusters (or tests) can share one Redis. */
  prefix?: string;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** Takes a session for a node if nobody else holds it: returns 1, or the id of the node that holds it. */
const CLAIM = `local v = redis.call('get', KEYS[1])
if (not v) or v == ARGV[1] then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return v`;
/** Gives a session up, only if this node holds it. */
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`;

/** Header carrying the cluster's key on a request from one cluster process to a node (forwarded requests, workers' images). */
export const CLUSTER_KEY_HEADER = 'x-sharedlens-cluster-key';

/** Prefix of every key of the cluster in Redis. */
export const CLUSTER_PREFIX = 'sharedlens:';

/** A Redis URL without its password, for log lines and errors: redis://:secret@h:6379 is redis://***@h:6379. */
export const redactUrl = (url: string) => url.replace(/\/\/[^@/]*@/, '//***@');

/** A default node id: host name and pid (unique on one machine, readable in health). */
export const defaultNodeId = () => `${os.hostname().replace(/[^A-Za-z0-9._-]/g, '').slice(0, 40) || 'node'}-${process.pid}`;

export class ClusterNode {
  readonly nodeId: string;
  readonly prefix: string;
  /** The Redis URL the node joined through (BullMQ opens its own connections to it). */
  get redisUrl(): string {
    return this.opts.redisUrl;
  }
  /** Commands (and the socket.io adapter's publisher). */
  readonly redis: Redis;
  /** The secret one node shows another when it forwards a signed-in person's request (kept in Redis). */
  key = '';
  url = '';
  /** The other nodes as of the last heartbeat. */
  private others = new Map<string, NodeInfo & { ageMs: number }>();
  /** Session id -> owning node id (live sessions), as of the last heartbeat. */
  private owners = new Map<string, string>();
  private held = new Set<string>();
  private readonly duplicates: Redis[] = [];
  private timer: NodeJS.Timeout | null = null;
  private localSessions: () => { summaries: SessionSummary[]; owned: string[] } = () => ({ summaries: [], owned: [] });
  private readonly startedAt = new Date().toISOString();
  /** Fires when another node's sessions changed (the dashboards' session list goes out again). */
  readonly othersChanged$ = new Subject<void>();
  private lastOthers = '';
  heartbeats = 0;
  /** When the last heartbeat reached Redis (ms since the epoch), or 0 before the first. */
  lastHeartbeatAt = 0;

  private constructor(private readonly opts: ClusterOptions) {
    this.nodeId = opts.nodeId || defaultNodeId();
    this.prefix = opts.prefix ?? CLUSTER_PREFIX;
    this.redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
    this.redis.on('error', (e: Error) => opts.log('warn', `redis: ${e.message}`, { nodeId: this.nodeId }));
  }

  /** Connects, reads the cluster's shared key and who owns what; throws with a clear message when Redis is unreachable. */
  static async connect(opts: ClusterOptions): Promise<ClusterNode> {
    const node = new ClusterNode(opts);
    try {
      await node.redis.connect();
      await node.redis.set(`${node.prefix}cluster-key`, randomBytes(24).toString('hex'), 'NX');
      node.key = (await node.redis.get(`${node.prefix}cluster-key`)) ?? '';
      const clash = await node.redis.get(`${node.prefix}node:${node.nodeId}`);
      if (clash && (JSON.parse(clash) as NodeInfo).pid !== process.pid) throw new Error(`node id "${node.nodeId}" is in use by a live node (${clash.slice(0, 200)}); give each node its own cluster.nodeId`);
      await node.refresh();
    } catch (e) {
      node.redis.disconnect();
      throw new Error(`cluster: cannot join through ${redactUrl(opts.redisUrl)}: ${(e as Error).message}`);
    }
    return node;
  }

  private k(kind: 'node' | 'owner', id: string): string {
    return `${this.prefix}${kind}:${id}`;
  }

  /** A second connection (socket.io's adapter subscribes on its own one). */
  duplicate(): Redis {
    const sub = this.redis.duplicate();
    sub.on('error', (e: Error) => this.opts.log('warn', `redis (subscriber): ${e.message}`, { nodeId: this.nodeId }));
    this.duplicates.push(sub);
    return sub;
  }

  /** Starts the heartbeat: `sessions` lists what this node runs and which live sessions it owns. */
  start(url: string, sessions: () => { summaries: SessionSummary[]; owned: string[] }): void {
    this.url = url;
    this.localSessions = sessions;
    const beat = () => {
      this.heartbeat().catch((e: Error) => this.opts.log('warn', `cluster heartbeat failed (ownership expires after ${this.opts.ttlS} s without one): ${e.message}`, { nodeId: this.nodeId }));
    };
    beat();
    this.timer = setInterval(beat, this.opts.heartbeatMs);
    this.timer.unref();
  }

  /** One heartbeat: publish this node, keep its sessions, give up the ones it no longer runs, read the others. */
  async heartbeat(): Promise<void> {
    const ttlMs = Math.round(this.opts.ttlS * 1000);
    const { summaries, owned } = this.localSessions();
    const info: NodeInfo = { nodeId: this.nodeId, url: this.url, pid: process.pid, startedAt: this.startedAt, sessions: summaries };
    const multi = this.redis.multi().set(this.k('node', this.nodeId), JSON.stringify(info), 'PX', ttlMs);
    for (const id of owned) multi.eval(CLAIM, 1, this.k('owner', id), this.nodeId, String(ttlMs));
    for (const id of this.held) if (!owned.includes(id)) multi.eval(RELEASE, 1, this.k('owner', id), this.nodeId);
    multi.sadd(this.set('nodes'), this.nodeId);
    if (owned.length) multi.sadd(this.set('owned'), ...owned);
    const results = (await multi.exec()) ?? [];
    owned.forEach((id, i) => {
      const r = results[i + 1]?.[1];
      // another node took the session over (this one was cut off from Redis longer than ttlS): say so loudly
      if (r !== 1) this.opts.log('error', 'another node now owns a session this node still runs; its rig should resume there', { sessionId: id, owner: r });
    });
    this.held = new Set(owned);
    this.heartbeats++;
    this.lastHeartbeatAt = Date.now();
    await this.refresh();
  }

  /**
   * Reads every node and every owner key, found through two sets (`nodes`, `owned`) rather than a SCAN of
   * the key space, which the map queue's job keys and images fill. Members whose key expired are pruned.
   */
  private async refresh(): Promise<void> {
    const [nodeIds, ownedIds] = await Promise.all([this.redis.smembers(this.set('nodes')), this.redis.smembers(this.set('owned'))]);
    const others = new Map<string, NodeInfo & { ageMs: number }>();
    const gone: { set: 'nodes' | 'owned'; id: string }[] = [];
    if (nodeIds.length) {
      const keys = nodeIds.map((id) => this.k('node', id));
      const values = await this.redis.mget(...keys);
      const ttls = await Promise.all(keys.map((k) => this.redis.pttl(k)));
      values.forEach((v, i) => {
        if (!v) return void gone.push({ set: 'nodes', id: nodeIds[i]! });
        try {
          const n = JSON.parse(v) as NodeInfo;
          // age of the node's last heartbeat, from its key's remaining time to live
          if (n.nodeId !== this.nodeId) others.set(n.nodeId, { ...n, ageMs: Math.max(0, Math.round(this.opts.ttlS * 1000) - ttls[i]!) });
        } catch {
          this.opts.log('warn', 'a node key in Redis is not JSON; ignored', { key: keys[i] });
        }
      });
    }
    const owners = new Map<string, string>();
    if (ownedIds.length) {
      const values = await this.redis.mget(...ownedIds.map((id) => this.k('owner', id)));
      values.forEach((v, i) => (v ? owners.set(ownedIds[i]!, v) : gone.push({ set: 'owned', id: ownedIds[i]! })));
    }
    // a member whose key is back by now (a heartbeat in between) is re-added by its node's next heartbeat
    if (gone.length) await Promise.all(gone.map((g) => this.redis.srem(this.set(g.set), g.id)));
    this.others = others;
    this.owners = owners;
    const sig = JSON.stringify([...others.values()].map((n) => [n.nodeId, n.sessions]));
    if (sig !== this.lastOthers) {
      this.lastOthers = sig;
      this.othersChanged$.next();
    }
  }

  private set(name: 'nodes' | 'owned'): string {
    return `${this.prefix}${name}`;
  }

  /** Takes a live session for this node; null when taken, else the message why not (another live node owns it). */
  async claim(sessionId: string): Promise<string | null> {
    const res = await this.redis.multi().eval(CLAIM, 1, this.k('owner', sessionId), this.nodeId, String(Math.round(this.opts.ttlS * 1000))).sadd(this.set('owned'), sessionId).exec();
    const r = res?.[0]?.[1];
    if (r === 1) {
      this.held.add(sessionId);
      this.owners.set(sessionId, this.nodeId);
      return null;
    }
    const other = this.others.get(String(r));
    return `session ${sessionId} is live on node "${r}"${other?.url ? ` (${other.url})` : ''}; connect the rig there, or resume here once that node is gone (its hold expires ${this.opts.ttlS} s after its last heartbeat)`;
  }

  /** Gives up this node's hold on a session now (handed over to another node), rather than at the next heartbeat. */
  async release(sessionId: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.k('owner', sessionId), this.nodeId);
    this.held.delete(sessionId);
    this.owners.delete(sessionId);
  }

  /** Node id that owns a live session, as of the last heartbeat (undefined: nobody, e.g. its node died). */
  ownerOf(sessionId: string): string | undefined {
    return this.owners.get(sessionId);
  }

  /** The other node that runs a session or replay in memory, as of the last heartbeat. */
  nodeRunning(sessionId: string): (NodeInfo & { ageMs: number }) | undefined {
    for (const n of this.others.values()) if (n.sessions.some((s) => s.sessionId === sessionId)) return n;
    return undefined;
  }

  /** Summaries of the sessions the other nodes run. */
  otherSessions(): SessionSummary[] {
    return [...this.others.values()].flatMap((n) => n.sessions.map((s) => ({ ...s, node: n.nodeId })));
  }

  /** The nodes for health: this one and the others with the age of their last heartbeat. */
  nodes(): { nodeId: string; url: string; sessions: number; heartbeatAgeMs: number; self: boolean }[] {
    return [
      { nodeId: this.nodeId, url: this.url, sessions: this.localSessions().summaries.length, heartbeatAgeMs: 0, self: true },
      ...[...this.others.values()].map((n) => ({ nodeId: n.nodeId, url: n.url, sessions: n.sessions.length, heartbeatAgeMs: n.ageMs, self: false })),
    ];
  }

  /** Stops the heartbeat and gives up this node's key and sessions (a clean stop; a killed node's keys expire). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      const multi = this.redis.multi().del(this.k('node', this.nodeId));
      for (const id of this.held) multi.eval(RELEASE, 1, this.k('owner', id), this.nodeId);
      await multi.exec();
    } catch (e) {
      this.opts.log('warn', `cluster: could not remove this node's keys (they expire): ${(e as Error).message}`, { nodeId: this.nodeId });
    }
    this.othersChanged$.complete();
    for (const d of this.duplicates) d.disconnect();
    this.redis.disconnect();
  }
}
