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
/**
 * Renews a hold this node has: 1, or 0 when it expired (nobody holds the session), or the id of the node that
 * took it. A lapsed hold is never taken again by a heartbeat: only a resume, which reads the log, takes it.
 */
const RENEW = `local v = redis.call('get', KEYS[1])
if v == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if not v then return 0 end
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
  /**
   * Session id -> until when (performance.now()) this node may still write its log: the hold's expiry as
   * counted from before the claim that last renewed it was sent, less a tenth of the hold (`ttlS`). Redis
   * lets another node claim the session only once the hold expired, so a node that writes only before this
   * time never writes a log another node has taken over (the fence; see `holdLapsed`).
   */
  private writableUntil = new Map<string, number>();
  private readonly duplicates: Redis[] = [];
  private timer: NodeJS.Timeout | null = null;
  private localSessions: () => { summaries: SessionSummary[]; owned: string[] } = () => ({ summaries: [], owned: [] });
  private readonly startedAt = new Date().toISOString();
  /** Fires when another node's sessions changed (the dashboards' session list goes out again). */
  readonly othersChanged$ = new Subject<void>();
  /** A session whose hold this node lost (found by a heartbeat), with why: it must be closed here. */
  readonly lost$ = new Subject<{ sessionId: string; why: string }>();
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
    // a session held so far is renewed, never claimed again: if its hold expired, another node may have
    // resumed it from the log meanwhile (and even ended it), so this node's copy of it is out of date
    for (const id of owned) multi.eval(this.writableUntil.has(id) ? RENEW : CLAIM, 1, this.k('owner', id), this.nodeId, String(ttlMs));
    for (const id of this.held) if (!owned.includes(id)) multi.eval(RELEASE, 1, this.k('owner', id), this.nodeId);
    multi.sadd(this.set('nodes'), this.nodeId);
    if (owned.length) multi.sadd(this.set('owned'), ...owned);
    const sentAt = performance.now();
    const results = (await multi.exec()) ?? [];
    owned.forEach((id, i) => {
      const r = results[i + 1]?.[1];
      if (r === 1) return this.renewed(id, sentAt);
      // an error in this slot says nothing about the hold: not renewed (the fence lapses), tried again next beat
      if (r !== 0 && typeof r !== 'string') return;
      // the hold lapsed (this node was cut off from Redis, or stalled, for longer than ttlS): say so loudly
      this.writableUntil.delete(id);
      const why = r === 0 ? `this node's hold on session ${id} expired in the cluster's Redis (no heartbeat reached it for ${this.opts.ttlS} s), so another node may have resumed it` : `node "${r}" holds session ${id} now`;
      this.opts.log('error', 'this node lost its hold on a session it still runs; it is closed here and its rig resumes it from the log', { sessionId: id, owner: r === 0 ? null : r });
      this.lost$.next({ sessionId: id, why });
    });
    for (const id of this.writableUntil.keys()) if (!owned.includes(id)) this.writableUntil.delete(id);
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
    const sentAt = performance.now();
    const res = await this.redis.multi().eval(CLAIM, 1, this.k('owner', sessionId), this.nodeId, String(Math.round(this.opts.ttlS * 1000))).sadd(this.set('owned'), sessionId).exec();
    const r = res?.[0]?.[1];
    if (r === 1) {
      this.held.add(sessionId);
      this.owners.set(sessionId, this.nodeId);
      this.renewed(sessionId, sentAt);
      return null;
    }
    const other = this.others.get(String(r));
    return `session ${sessionId} is live on node "${r}"${other?.url ? ` (${other.url})` : ''}; connect the rig there, or resume here once that node is gone (its hold expires ${this.opts.ttlS} s after its last heartbeat)`;
  }

  private renewed(sessionId: string, sentAt: number): void {
    const ttlMs = this.opts.ttlS * 1000;
    // a tenth of the hold spare: a record is written right after the check, and clocks run at slightly different rates
    this.writableUntil.set(sessionId, Math.max(this.writableUntil.get(sessionId) ?? 0, sentAt + 0.9 * ttlMs));
  }

  /**
   * Why this node must not write a session's log now, or null when it may: its hold is current (renewed by a
   * heartbeat or a claim whose request left less than nine tenths of `ttlS` ago). A node cut off from Redis, or
   * stalled, for longer than that stops writing before another node can take the session over.
   */
  holdLapsed(sessionId: string): string | null {
    const until = this.writableUntil.get(sessionId);
    if (until !== undefined && performance.now() < until) return null;
    const owner = this.owners.get(sessionId);
    if (owner && owner !== this.nodeId) return `node "${owner}" holds session ${sessionId} now; resume it there`;
    const ago = this.lastHeartbeatAt ? `${((Date.now() - this.lastHeartbeatAt) / 1000).toFixed(1)} s ago` : 'never';
    return `this node's hold on session ${sessionId} in the cluster's Redis is not current (its last heartbeat reached Redis ${ago}; holds last ${this.opts.ttlS} s), so another node may take the session over; resend once Redis answers again, or resume on another node`;
  }

  /** Gives up this node's hold on a session now (handed over to another node), rather than at the next heartbeat. */
  async release(sessionId: string): Promise<void> {
    this.writableUntil.delete(sessionId);
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
    this.lost$.complete();
    for (const d of this.duplicates) d.disconnect();
    this.redis.disconnect();
  }
}
