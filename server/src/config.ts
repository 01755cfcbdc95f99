/**
 * Configuration: config/default.json, then an optional file named by SHAREDLENS_CONFIG merged into it key by
 * key (mergeConfig: a file that sets only compute.model keeps every other default), then environment
 * overrides (HOST, PORT, DEMO, DATA_DIR, STIMULUS_DIR, RIG_TOKENS, AUTH_TOKEN, ALLOWED_HOSTS, LOG_LEVEL, FSYNC,
 * FEATURES, COMPUTE_BACKEND, REDIS_URL, NODE_ID, ADVERTISE_URL). Validated at start;
 * every problem is reported with the key that holds it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { fieldErrors } from '@sharedlens/shared';

export const configSchema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(0).max(65_535),
  dataDir: z.string().min(1),
  stimulusDir: z.string().min(1),
  /** Rig token -> rig name. The old array form still loads (rigs named rig1..n; loadConfig warns). */
  rigTokens: z.preprocess(
    (v) => (Array.isArray(v) ? Object.fromEntries(v.map((t, i) => [t, `rig${i + 1}`])) : v),
    z.record(z.string(), z.string().min(1).max(64)).superRefine((r, ctx) => {
      const tokens = Object.keys(r);
      if (!tokens.length) ctx.addIssue({ code: 'custom', message: 'at least one rig token is needed' });
      // the message names the token's position, never the token (config errors are printed)
      tokens.forEach((t, i) => t.length < 8 && ctx.addIssue({ code: 'custom', message: `rig token #${i + 1} (rig "${r[t]}") must be at least 8 characters` }));
    }),
  ),
  /** Host names the HTTP server answers besides localhost, 127.0.0.1, [::1] and the bound host (DNS rebinding). */
  allowedHosts: z.array(z.string().min(1)),
  /** Sign-in for people (docs/security.md). */
  auth: z.object({
    /** The sign-in token of the printed URL; empty: a random one at every start, as Jupyter does. */
    token: z.string(),
    /** Role of whoever signs in with the token. */
    tokenRole: z.enum(['viewer', 'operator']),
    /** Named accounts: name -> { hash (scrypt, from `npm run user -- add`), role }. */
    users: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'user names are 1-64 of A-Z a-z 0-9 . _ -'), z.object({ hash: z.string().min(1), role: z.enum(['viewer', 'operator']) })),
    /** File written by `npm run user -- add`; empty: <dataDir>/users.json. */
    usersFile: z.string(),
    sessionHours: z.number().positive().max(24 * 90),
    /** Failed sign-ins or rig tokens per address and window before that address is refused. */
    maxFailedAttempts: z.number().int().min(1),
    failedWindowS: z.number().int().min(1),
  }),
  /** Serve https directly (PEM files); without it, put a TLS reverse proxy in front (docs/security.md). */
  tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  demo: z.boolean(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  recording: z.object({
    fsync: z.enum(['always', 'interval', 'never']),
    fsyncIntervalMs: z.number().int().min(10).max(60_000),
    /** Free-space reserve of the data folder: events are refused (code storage) before less is left. */
    minFreeBytes: z.number().int().min(0),
  }),
  limits: z.object({
    maxPayloadBytes: z.number().int().min(1024).max(64 * 1024 * 1024),
    eventsPerSec: z.number().positive(),
    burstEvents: z.number().int().positive(),
    /** A seq more than this beyond the last one is refused (bad-sequence), not recorded as a gap. */
    maxSeqJump: z.number().int().min(1),
    /** Memory budget of one session's statistics: channels x stimuli x PSTH bins x 8 bytes x 3 arrays. */
    sessionMemoryBytes: z.number().int().min(1024 * 1024),
    maxSessions: z.number().int().min(1),
    maxSessionsPerRig: z.number().int().min(1),
    /** A disconnected session idle this long closes its log and leaves memory (resumable from disk). */
    idleSessionCloseS: z.number().min(1),
    /** Replays running at once; finished replays beyond this are freed, oldest first. */
    maxReplays: z.number().int().min(1).max(64),
    /** Events held in memory while a resumed session's statistics are rebuilt from its log; beyond, events are refused (resend later). */
    maxRebuildQueue: z.number().int().min(1),
  }),
  pipeline: z.object({ psthBinMs: z.number().positive().max(1000) }),
  dashboard: z.object({ deltaThrottleMs: z.number().int().min(50), snapshotThrottleMs: z.number().int().min(100) }),
  compute: z.object({
    /** Compute CNN features and encoding models (off: statistics only). */
    features: z.boolean(),
    backend: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']),
    /** Feature cache folder; empty: <dataDir>/features. */
    cacheDir: z.string(),
    /** Another tfjs graph model instead of the default MobileNetV2 (docs/compute.md). */
    model: z
      .object({ id: z.string().min(1).max(128), dir: z.string().min(1), layer: z.string().min(1), inputSize: z.number().int().min(16).max(1024) })
      .optional(),
    workers: z.number().int().min(1).max(16),
    /**
     * While a rig records, the analysis jobs that can wait (a pair's maps, model reports) take turns on this
     * many threads (workers/analysis-gate.ts; 1: one core stays free for the event loop and the rig); a pair's
     * two maps then use at most this many threads.
     */
    liveAnalysisThreads: z.number().int().min(1).max(16).default(1),
    /** Nice value added to each analysis thread (features and maps at most 4, models, refits; the report thread stays at the normal priority) so the rig's event loop is scheduled first; Linux only (per thread), 0: off. */
    workerNice: z.number().int().min(0).max(19),
    alphas: z.array(z.number().positive()).min(1).max(32),
    refitEveryTrials: z.number().int().min(1),
    minStimuli: z.number().int().min(3),
    /** Exact refits of at least this many stimuli run in a worker thread (smaller ones inline: milliseconds). */
    refitInWorkerFromStimuli: z.number().int().min(1),
    /** Below this noise ceiling (reliability of the mean responses) normalisedR and fev are null (docs/compute.md). */
    minReliability: z.number().min(0).max(1),
    /** Which out-of-category stimuli are drivers (docs/compute.md, "Drivers"). */
    drivers: z.object({
      /** Trials a candidate needs before it is tested (the Welch test needs at least 2). */
      minRepeats: z.number().int().min(2),
      /** Category-selectivity gate over stimulus means: Welch t-test or label permutation. */
      selectivityTest: z.enum(['welch', 'permutation']),
      selectivityAlpha: z.number().gt(0).max(1),
      /** Benjamini-Hochberg false discovery rate over a channel's candidates. */
      q: z.number().gt(0).max(1),
      permutations: z.number().int().min(99).max(100_000),
    }),
    /** Follow-ups, strategy confirm: drivers with fewer presentations than this get repeats suggested. */
    confirmRepeats: z.number().int().min(2),
    maps: z.object({
      enabled: z.boolean(),
      intervalMs: z.number().int().min(100),
      positiveOnly: z.boolean(),
      integratedSteps: z.number().int().min(0).max(256),
      smoothSigmaPx: z.number().min(0).max(32),
      minWeightCosine: z.number().min(0).max(1),
      maxQueue: z.number().int().min(1),
      /** Maps are computed for this many of each channel's strongest drivers. */
      driversPerChannel: z.number().int().min(1).max(100),
      /** How a map is computed from the shared vector (docs/compute.md, maps; bench/maps-quality.ts chose the default). */
      method: z.enum(['gradient', 'signed', 'gradientInput', 'integrated', 'smoothgrad', 'layer', 'layerOcclusion']),
      /** Features in the shared vector: raw, centred on the stimulus set's mean, or standardised; or the readout's prediction (alone, or times the other image's centred prediction). */
      features: z.enum(['raw', 'centred', 'standardised', 'prediction', 'predictionShared']),
      /** Graph node of the layer for method 'layer' (a 4-D layer of the feature model). */
      layer: z.string().min(1),
      /** Noisy copies for method 'smoothgrad'. */
      smoothSamples: z.number().int().min(1).max(256),
      /** Method 'layerOcclusion': side of the squares of layer cells set to the blank screen's activation, and their step. */
      occlusionCells: z.number().int().min(1).max(16).default(3),
      occlusionStride: z.number().int().min(1).max(16).default(3),
      /** Method 'layerOcclusion': each cell the mean of the squares covering it, or the squares' falls interpolated between their centres. */
      occlusionRender: z.enum(['cells', 'centres']).default('cells'),
    }),
  }),
  /** Several server processes ("nodes") sharing one Redis (docs/deploy.md); redisUrl null: one process, no Redis. */
  cluster: z
    .object({
      /** redis://host:port; null turns clustering off (the default). */
      redisUrl: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').nullable(),
      /** This node's name (unique in the cluster); empty: host name and pid. */
      nodeId: z.string().regex(/^[A-Za-z0-9._-]{0,64}$/, 'node ids are 0-64 of A-Z a-z 0-9 . _ -'),
      /** URL the other nodes reach this one at (HTTP proxying); empty: http://<host>:<port> as bound. */
      advertiseUrl: z.string(),
      /** Heartbeat period; node and session-ownership keys expire after ttlS without one. */
      heartbeatMs: z.number().int().min(100).max(60_000),
      ttlS: z.number().min(1).max(600),
      /** Shared-feature maps as BullMQ jobs for `npm run worker` processes (false: each node computes its own). */
      mapsOnWorkers: z.boolean(),
      /** Map jobs a node has queued at once (the workers share them). */
      mapJobsInFlight: z.number().int().min(1).max(256),
      /** A map job not finished within this fails with a log line naming why; the pair is tried again later. */
      mapJobTimeoutS: z.number().min(1).max(3600),
      /** Stimulus features as BullMQ jobs for the workers when one is connected (false, or none: the node computes them). */
      featuresOnWorkers: z.boolean().default(true),
      /** Images per feature job (a set's parts are shared by the workers). */
      featureJobImages: z.number().int().min(1).max(10_000).default(64),
      /** A feature job not finished within this is computed by the node itself (a log line says why). */
      featureJobTimeoutS: z.number().min(1).max(3600).default(300),
      /** Images a worker keeps in its cache folder, in MB; past it the least recently used are deleted (fetched again when named). */
      workerCacheMB: z.number().positive().max(1_000_000).default(1024),
      /** Exact refits' basis eigendecomposition as BullMQ jobs when a worker is connected (false, or none: the node refits alone). */
      refitsOnWorkers: z.boolean().default(true),
      /** Refits of fewer observed stimuli stay on the node (the job's transfers would cost more than they save). */
      refitJobFromStimuli: z.number().int().min(1).default(300),
      /** A refit job not finished within this: the node refits itself (the models stay as they are meanwhile). */
      refitJobTimeoutS: z.number().min(1).max(3600).default(120),
    })
    // a node records a session only while its hold is fresh (0.9 ttlS after the last renewal, docs/deploy.md):
    // with beats slower than half of that, one late beat would stop every recording in normal operation
    .refine((c) => c.heartbeatMs <= (c.ttlS * 1000) / 2, { path: ['heartbeatMs'], message: 'must be at most half of cluster.ttlS (in ms): a node stops recording a session when its hold was not renewed for 0.9 ttlS' })
    .default({ redisUrl: null, nodeId: '', advertiseUrl: '', heartbeatMs: 1000, ttlS: 5, mapsOnWorkers: true, mapJobsInFlight: 8, mapJobTimeoutS: 120, featuresOnWorkers: true, featureJobImages: 64, featureJobTimeoutS: 300, workerCacheMB: 1024, refitsOnWorkers: true, refitJobFromStimuli: 300, refitJobTimeoutS: 120 }),
  /** NWB exports: the lab, institution and experimenters written into every file (docs/nwb.md). */
  nwb: z.object({ lab: z.string(), institution: z.string(), experimenter: z.array(z.string()) }).default({ lab: '', institution: '', experimenter: [] }),
  sim: z.object({
    channels: z.number().int().min(1).max(8192),
    onMs: z.number().positive(),
    offMs: z.number().min(0),
    abortRate: z.number().min(0).max(1),
    seed: z.number().int(),
    reconnectAfterTrials: z.number().int().min(0),
  }),
});
export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {}

const intEnv = (v: string, name: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new ConfigError(`environment ${name}="${v}" is not an integer`);
  return n;
};
const boolEnv = (v: string, name: string): boolean => {
  if (/^(1|true|yes)$/i.test(v)) return true;
  if (/^(0|false|no)$/i.test(v)) return false;
  throw new ConfigError(`environment ${name}="${v}" is not a boolean (use 1 or 0)`);
};

/** Settings that are lists of who may connect: a config file replaces them whole, never adds to the defaults. */
const REPLACED_WHOLE = new Set(['rigTokens', 'auth.users']);

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Deep merge of a config file into the defaults: objects merge key by key, arrays and scalars replace, and
 * the maps in REPLACED_WHOLE (rig tokens, user accounts) replace as a whole, so the demo rig token never
 * stays valid beside a lab's own. Example: mergeConfig({ a: { b: 1, c: 2 } }, { a: { c: 3 } }) is
 * { a: { b: 1, c: 3 } }. Returns a new object.
 */
export function mergeConfig(base: Record<string, unknown>, over: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const key = prefix ? `${prefix}.${k}` : k;
    out[k] = isPlainObject(v) && isPlainObject(base[k]) && !REPLACED_WHOLE.has(key) ? mergeConfig(base[k], v, key) : v;
  }
  return out;
}

/** Loads and validates the configuration; throws ConfigError with every problem listed. */
export function loadConfig(root: string, env: NodeJS.ProcessEnv = process.env, warn: (message: string) => void = () => {}): Config {
  const read = (file: string): Record<string, unknown> => {
    try {
      return JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`);
    }
  };
  let raw: Record<string, unknown> = read(path.join(root, 'config', 'default.json'));
  if (env.SHAREDLENS_CONFIG) {
    const file = read(path.resolve(env.SHAREDLENS_CONFIG));
    if (!isPlainObject(file)) throw new ConfigError(`config ${env.SHAREDLENS_CONFIG}: must be a JSON object`);
    raw = mergeConfig(raw, file);
  }
  if (env.HOST) raw.host = env.HOST;
  if (env.PORT !== undefined && env.PORT !== '') raw.port = intEnv(env.PORT, 'PORT');
  if (env.DEMO !== undefined && env.DEMO !== '') raw.demo = boolEnv(env.DEMO, 'DEMO');
  if (env.DATA_DIR) raw.dataDir = env.DATA_DIR;
  if (env.STIMULUS_DIR) raw.stimulusDir = env.STIMULUS_DIR;
  if (env.RIG_TOKENS) {
    // TOKEN=NAME,... names each rig; plain tokens are the old form
    const entries = env.RIG_TOKENS.split(',').map((t) => t.trim()).filter(Boolean);
    raw.rigTokens = entries.every((e) => e.includes('=')) ? Object.fromEntries(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])) : entries;
  }
  if (env.AUTH_TOKEN) raw.auth = { ...(raw.auth as object), token: env.AUTH_TOKEN };
  if (env.ALLOWED_HOSTS) raw.allowedHosts = env.ALLOWED_HOSTS.split(',').map((h) => h.trim()).filter(Boolean);
  if (Array.isArray(raw.rigTokens)) warn('rigTokens is a list (the old form): its rigs are named rig1..n; write it as { "TOKEN": "RIG NAME" } to name them');
  if (env.LOG_LEVEL) raw.logLevel = env.LOG_LEVEL;
  if (env.FEATURES !== undefined && env.FEATURES !== '') raw.compute = { ...(raw.compute as object), features: boolEnv(env.FEATURES, 'FEATURES') };
  if (env.COMPUTE_BACKEND) raw.compute = { ...(raw.compute as object), backend: env.COMPUTE_BACKEND };
  if (env.FSYNC) raw.recording = { ...(raw.recording as object), fsync: env.FSYNC };
  if (env.REDIS_URL !== undefined) raw.cluster = { ...(raw.cluster as object), redisUrl: env.REDIS_URL || null };
  if (env.NODE_ID) raw.cluster = { ...(raw.cluster as object), nodeId: env.NODE_ID };
  if (env.ADVERTISE_URL) raw.cluster = { ...(raw.cluster as object), advertiseUrl: env.ADVERTISE_URL };
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration:\n  ${fieldErrors(parsed.error).join('\n  ')}`);
  const cfg = parsed.data;
  cfg.dataDir = path.resolve(root, cfg.dataDir);
  cfg.stimulusDir = path.resolve(root, cfg.stimulusDir);
  cfg.auth.usersFile = cfg.auth.usersFile ? path.resolve(root, cfg.auth.usersFile) : path.join(cfg.dataDir, 'users.json');
  if (cfg.tls) cfg.tls = { cert: path.resolve(root, cfg.tls.cert), key: path.resolve(root, cfg.tls.key) };
  cfg.compute.cacheDir = cfg.compute.cacheDir ? path.resolve(root, cfg.compute.cacheDir) : path.join(cfg.dataDir, 'features');
  if (cfg.compute.model) {
    cfg.compute.model.dir = path.resolve(root, cfg.compute.model.dir);
    if (!fs.existsSync(path.join(cfg.compute.model.dir, 'model.json'))) throw new ConfigError(`compute.model.dir: no model.json in ${cfg.compute.model.dir}`);
  }
  return cfg;
}
