/**
 * createApp wires sources, pipeline and sinks into an Express + socket.io server. It reads no
 * configuration and listens nowhere: the entry file (main.ts) and the tests do that.
 */
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import express, { type Request, type Response, type NextFunction } from 'express';
import helmet from 'helmet';
import { Server } from 'socket.io';
import type { SchedulerLike } from 'rxjs';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { attachDashboardCommands, controlReplay, type CommandDeps } from './dashboard-commands.ts';
import { broadcastToDashboards } from './sinks/dashboard-broadcast.ts';
import { Recorder } from './sinks/recorder.ts';
import { logRejections } from './sinks/rejection-log.ts';
import { SessionStore } from './sinks/session-store.ts';
import { attachRigGateway } from './sources/rig-gateway.ts';
import { rigAuth, rigBearer, RigTokens } from './sources/rig-auth.ts';
import { guardDashboard, hostGuard, refusals, signedIn, steeringNeedsOperatorJson } from './auth/guards.ts';
import { allowedHostNames, hostOrOriginProblem } from './auth/hosts.ts';
import { SignIn } from './auth/sign-in.ts';
import { authRouter, loginPageRouter, pageSignIn } from './http/auth.ts';
import { loadStimulusSets, stimulusFile } from './stimulus-sets.ts';
import { apiError } from './http/api-error.ts';
import { healthRouter, statusRouter } from './http/health.ts';
import { modelsRouter } from './http/models.ts';
import { driverPairsRouter } from './http/driver-pairs.ts';
import { recordScoreHistory, scoreHistoryRouter } from './http/score-history.ts';
import { sessionsRouter } from './http/sessions.ts';
import { stimuliRouter } from './http/stimuli.ts';
import { exportsRouter } from './http/exports.ts';
import { stimulusFeatures } from './sources/stimulus-features.ts';
import { computeClientFor } from './workers/compute-client.ts';
import { AnalysisGate } from './workers/analysis-gate.ts';
import { RidgeWorker } from './workers/ridge-client.ts';
import { configureThreadNice } from './workers/thread-nice.ts';
import { ModelReports } from './workers/report-client.ts';
import { ModelRefresher } from './workers/refresh-client.ts';
import { gpuPackageStatus } from './compute/gpu-package.ts';
import { suggestFollowups, type FollowupAsk } from './followup-service.ts';
import { scheduleExplanations } from './sinks/explain-jobs.ts';
import { watchRoom } from './sinks/dashboard-broadcast.ts';
import { dashboardEvents, type Explanation } from '@sharedlens/shared';
import type { ClusterNode } from './cluster/cluster-node.ts';
import { claimOrHandOver, clusterHealth, handOverAndRelease, forwardToRunningNode, remoteSessions, trustForwarded, useRedisAdapter } from './cluster/attach-cluster.ts';
import { MapQueue } from './cluster/map-jobs.ts';
import { FeatureQueue, featureModelIdOf } from './cluster/feature-jobs.ts';
import { RefitQueue } from './cluster/refit-jobs.ts';
import { cacheFolder } from './compute/feature-cache.ts';
import { ensureDefaultModel } from './compute/feature-model.ts';
import { ImageIndex } from './cluster/job-queue.ts';
import { clusterImagesRouter } from './http/cluster-images.ts';

export interface AppDeps {
  config: Config;
  logger: Logger;
  /** Folder of the built dashboard (client/dist), or of the placeholder page. */
  clientDir?: string;
  scheduler?: SchedulerLike;
  now?: () => number;
  /** Clustered (config cluster.redisUrl): this node, already connected to Redis (docs/deploy.md); closed with the app. */
  cluster?: ClusterNode;
}

export interface App {
  httpServer: http.Server;
  io: Server;
  store: SessionStore;
  recorder: Recorder;
  rejectedCounts: { total: number; byCode: Record<string, number> };
  /** Refused HTTP requests and dashboard connections or commands (Host, Origin, sign-in, role), by code. */
  refusedCounts: { total: number; byCode: Record<string, number> };
  /** Sign-in state: `signIn.token` is the start token of the printed URL. */
  signIn: SignIn;
  /** Computed shared-feature maps per session (what the drivers gallery lists). */
  driverPairs: Map<string, Map<string, Explanation>>;
  /** Pairs whose maps this process made so far (recomputations included). */
  mapsComputed(): number;
  listen(port: number, host: string): Promise<number>;
  close(): Promise<void>;
}

export function createApp(deps: AppDeps): App {
  const { config, logger } = deps;
  const { sets: stimulusSets, problems } = loadStimulusSets(config.stimulusDir);
  for (const p of problems) logger.error(`stimulus set skipped: ${p}`);
  const recorder = new Recorder({ dataDir: config.dataDir, fsync: config.recording.fsync, fsyncIntervalMs: config.recording.fsyncIntervalMs, minFreeBytes: config.recording.minFreeBytes, log: (level, msg, fields) => logger[level](fields ?? {}, msg) });
  const cluster = deps.cluster;
  // clustered: sessions another live node holds are left alone
  const interrupted = recorder.markInterrupted(cluster ? (id) => cluster.ownerOf(id) !== undefined : undefined);
  if (interrupted.length) logger.warn({ sessions: interrupted }, 'sessions left open by an earlier server process are marked interrupted; a rig can resume them');
  // analysis threads at a lower priority than this event loop (compute.workerNice; one log line where not supported)
  configureThreadNice(config.compute.workerNice, (message) => logger.warn(message));
  // while a rig records, map pairs and model reports take turns on compute.liveAnalysisThreads threads
  // (a pair's two sides on at most that many), so that one core stays free for this event loop and the rig
  const recording = (): boolean => store.all().some((rt: { kind: string; state: string }) => rt.kind === 'live' && rt.state === 'live');
  const analysisThreads = (): number => (recording() ? config.compute.liveAnalysisThreads : Infinity);
  const gate = new AnalysisGate(analysisThreads);
  const compute = config.compute.features ? computeClientFor(config.compute, config.dataDir, config.compute.workers, analysisThreads) : null;
  // clustered: the images named in compute jobs, served to the workers by hash (GET /api/cluster/images/:hash)
  const jobImages = cluster ? { index: new ImageIndex(), url: () => cluster.url } : undefined;
  // clustered: stimulus features are BullMQ jobs for `npm run worker` processes while one is connected (cluster/feature-jobs.ts)
  const featureQueue = cluster && compute && config.cluster.featuresOnWorkers ? new FeatureQueue({ redisUrl: cluster.redisUrl, prefix: cluster.prefix, images: jobImages, timeoutMs: config.cluster.featureJobTimeoutS * 1000, chunk: config.cluster.featureJobImages, modelId: featureModelIdOf(config.compute.model), local: compute, cacheFolder: cacheFolder(config.compute.cacheDir, config.compute.model ?? ensureDefaultModel(config.dataDir)), log: (level, msg, fields) => logger[level](fields, msg) }) : null;
  // which backend runs and why: until the first features are computed, what the GPU package's presence predicts
  const computeStatus: { backend: string | null; backendReason: string; features: Record<string, string> } = {
    backend: null,
    backendReason: compute ? `pending (no features computed yet; @tensorflow/tfjs-node-gpu ${gpuPackageStatus()})` : 'off (compute.features is false)',
    features: {},
  };
  let io: Server;
  const featuresFor = compute
    ? stimulusFeatures({
        client: featureQueue ?? compute,
        sets: stimulusSets,
        onProgress: (setId, p) => {
          computeStatus.features[setId] = `${p.done}/${p.total}`;
          io?.of('/dashboard').volatile.emit(dashboardEvents.featuresProgress, { stimulusSetId: setId, ...p });
          // every 5% (a bar on a terminal, see terminal/pretty-log.ts): 32 s of silence for the demo set otherwise
          if (p.done === p.total || p.done % Math.max(1, Math.round(p.total / 20)) === 0) logger.info({ stimulusSetId: setId, ...p }, 'stimulus features');
        },
        onReady: (setId, f) => {
          computeStatus.backend = f.backend;
          if (f.backendReason) computeStatus.backendReason = f.backendReason;
          computeStatus.features[setId] = 'ready';
          logger.info({ stimulusSetId: setId, backend: f.backend, backendReason: f.backendReason, model: f.modelId, dim: f.dim }, 'stimulus features ready; compute backend in use');
        },
        onError: (setId, message) => {
          computeStatus.features[setId] = `failed: ${message}`;
          logger.error({ stimulusSetId: setId }, `stimulus features failed, encoding models are off for this set: ${message}`);
        },
      })
    : null;
  // the features cache warmed as soon as a set is registered (here every set found at start; on rescan the
  // new ones), so a session on the set finds them ready (a session:start naming a set asks for them too)
  const warmFeatures = (ids: string[]) => {
    if (featuresFor) for (const id of ids) featuresFor(id).subscribe();
  };
  warmFeatures([...stimulusSets.keys()]);
  const { alphas, refitEveryTrials, minStimuli, minReliability, refitInWorkerFromStimuli } = config.compute;
  const ridgeWorker = featuresFor ? new RidgeWorker((message) => logger.error(message)) : null;
  // clustered: the exact refits' eigendecomposition as BullMQ jobs while a worker is connected (cluster/refit-jobs.ts)
  const refitQueue =
    cluster && ridgeWorker && config.cluster.refitsOnWorkers
      ? new RefitQueue({
          redisUrl: cluster.redisUrl,
          prefix: cluster.prefix,
          timeoutMs: config.cluster.refitJobTimeoutS * 1000,
          fromStimuli: config.cluster.refitJobFromStimuli,
          local: ridgeWorker,
          log: (level, msg, fields) => logger[level](fields, msg),
          onFallback: (message) => io?.of('/dashboard').emit(dashboardEvents.refitJobFailed, { message, atMs: Date.now() }),
        })
      : null;
  // the models themselves in a thread of their own: per-trial refreshes and new stimuli never run on the event loop
  // snapshots once a second, as often as reports may start (at 250 ms three of four were read by no report,
  // and each moved tens of MB of models to the event loop's heap at 1,536 channels: its garbage collections)
  const refresher = featuresFor ? new ModelRefresher({ snapshotMs: 1000, onError: (message) => logger.error(message) }) : null;
  // model reports (readouts, scores, drivers' reference images) in a thread of their own, at most one per session per second
  const reports = featuresFor
    ? new ModelReports({
        minIntervalMs: 1000,
        minWeightCosine: config.compute.maps.minWeightCosine,
        gate,
        onError: (message) => logger.error(message),
        // every report to the session's dashboards (volatile: a slow one skips to the next)
        onReport: (sessionId, report) => {
          // encoded only for a watched session (clustered: another node's dashboards may watch it)
          const dashboards = io?.of('/dashboard');
          if (dashboards && (cluster || dashboards.adapter.rooms.get(watchRoom(sessionId))?.size)) dashboards.to(watchRoom(sessionId)).volatile.emit(dashboardEvents.modelsUpdated, report);
          const rt = store.get(sessionId);
          if (rt) store.modelsReady$.next(rt);
        },
      })
    : null;
  const store = new SessionStore({
    psthBinMs: config.pipeline.psthBinMs,
    onPipelineError: (rt, message) => logger.error({ sessionId: rt.id }, `the session's analysis pipeline failed and stopped (recording goes on; replay the session to recompute): ${message}`),
    ...(deps.scheduler ? { scheduler: deps.scheduler } : {}),
    ...(featuresFor ? { models: { featuresFor, encoding: { alphas, refitEveryTrials, minStimuli }, drivers: { ...config.compute.drivers, minReliability }, offload: { fit$: (job, latest) => (refitQueue ?? ridgeWorker!).fit$(job, latest), fromStimuli: refitInWorkerFromStimuli }, thread: refresher!, reports: reports! } } : {}),
  });

  const app = express();
  const httpServer = config.tls ? https.createServer({ cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) }, app) : http.createServer(app);
  const allowedHosts = allowedHostNames(config.host, config.allowedHosts);
  const refused = refusals((fields, msg) => logger.warn(fields, msg));
  const logSteering = (fields: Record<string, unknown>, msg: string) => logger.info(fields, msg);
  const signIn = new SignIn({ ...config.auth, secure: !!config.tls, log: (level, msg, fields) => logger[level](fields, msg), ...(deps.now ? { now: deps.now } : {}) });
  io = new Server(httpServer, {
    // Host and Origin for every socket.io request, rigs included (cross-origin pages, DNS rebinding)
    allowRequest: (req, callback) => {
      const problem = hostOrOriginProblem(req, allowedHosts);
      if (problem) refused.refuse(problem.slice(0, problem.indexOf(':')), `socket.io ${problem}`, { address: req.socket.remoteAddress });
      callback(problem, !problem);
    },
    // above maxPayloadBytes so oversized payloads get an acknowledged error, not a dropped connection
    maxHttpBufferSize: config.limits.maxPayloadBytes * 4 + 1024 * 1024,
    serveClient: false,
  });
  if (cluster) useRedisAdapter(io, cluster);
  // clustered: another node's sessions changed, so a meta.json this node cached may have changed on the shared folder
  if (cluster) cluster.othersChanged$.subscribe(() => recorder.forgetMeta());

  const followupDeps = { sets: stimulusSets, featuresFor, confirmRepeats: config.compute.confirmRepeats, alphas };
  const { rejections$, pushToRig, handOver, dropLost } = attachRigGateway(io.of('/rig'), {
    followups: (rt, ask) => suggestFollowups(followupDeps, rt, ask as unknown as FollowupAsk),
    store,
    recorder,
    stimulusSets,
    limits: config.limits,
    ...(deps.now ? { now: deps.now } : {}),
    ...(cluster ? { claim: (id: string, rig: string) => claimOrHandOver(cluster, () => commandDeps.cluster?.remote, id, rig, () => recorder.forgetMeta(id)), hold: (id: string) => cluster.claim(id), holdLapsed: (id: string) => cluster.holdLapsed(id) } : {}),
    log: (level, msg, fields) => logger[level](fields ?? {}, msg),
  });
  const rigTokens = new RigTokens({ tokens: config.rigTokens, maxFailedAttempts: config.auth.maxFailedAttempts, failedWindowS: config.auth.failedWindowS, ...(deps.now ? { now: deps.now } : {}) });
  io.of('/rig').use(
    rigAuth(rigTokens, (socket, message) =>
      rejections$.next({ atMs: (deps.now ?? Date.now)(), socketId: socket.id, event: 'connect', error: { code: message.startsWith('rate-limited') ? 'rate-limited' : 'invalid', message } }),
    ),
  );
  const rejected = logRejections(rejections$, store, logger);
  const commandDeps: CommandDeps = {
    store,
    recorder,
    log: (msg, fields) => logger.warn(fields, msg),
    maxReplays: config.limits.maxReplays,
    // asked from the dashboard: recorded in a live session's log (replays only show them) and pushed to its rig
    followups: (rt, body, by) => {
      // clustered: a node whose hold lapsed writes nothing more to the session's log (the fence, docs/deploy.md)
      const lapsed = rt.kind === 'live' ? cluster?.holdLapsed(rt.id) : null;
      if (lapsed) return { error: { code: 'storage' as const, message: `follow-up not recorded: ${lapsed}` } };
      const r = suggestFollowups(followupDeps, rt, body as unknown as FollowupAsk);
      if ('error' in r) return r;
      const frame = { type: 'followup:suggested' as const, sessionId: rt.id, origin: 'dashboard' as const, atMs: Date.now(), suggestions: r.suggestions, ...(by ? { by } : {}) };
      if (rt.kind === 'live' && recorder.isOpen(rt.id)) recorder.append({ atMs: frame.atMs, frame });
      if (rt.kind === 'live') store.feed(rt, frame);
      else {
        rt.followups = frame;
        store.followups$.next(rt);
      }
      const sentToRig = rt.kind === 'live' ? pushToRig(rt.id, dashboardEvents.followupSuggested, { sessionId: rt.id, suggestions: r.suggestions }) : 0;
      logger.info({ sessionId: rt.id, count: r.suggestions.length, sentToRig, by }, 'follow-up suggestions from the dashboard');
      return { data: { suggestions: r.suggestions, notes: r.notes, sentToRig } };
    },
  };
  const dashboard = io.of('/dashboard');
  // clustered: the list holds every node's sessions; a session another node runs is watched and steered through it
  const allSessions = () => [...store.all().map((rt) => store.summary(rt)), ...(cluster?.otherSessions() ?? [])];
  // a session whose hold this node lost is closed here; its rig resumes it from the log (the fence's second half)
  const lostSub = cluster?.lost$.subscribe(({ sessionId, why }) => dropLost(sessionId, why));
  if (cluster) commandDeps.cluster = { sessions: allSessions, remote: remoteSessions(dashboard, { store, followups: (id, body, by) => commandDeps.followups!(store.get(id)!, body, by), replayControl: (body) => controlReplay(commandDeps, body), handover: (id, rig) => handOverAndRelease(cluster, handOver, id, rig) }) };
  guardDashboard(dashboard, signIn, refused, logSteering);
  attachDashboardCommands(dashboard, commandDeps);
  const broadcast = broadcastToDashboards(dashboard, store, rejections$, {
    ...config.dashboard,
    ...(deps.scheduler ? { scheduler: deps.scheduler } : {}),
    ...(cluster ? { sessionList: { all: allSessions, changed$: cluster.othersChanged$ } } : {}),
  });

  const mapsCfg = config.compute.maps;
  // clustered: maps are BullMQ jobs for `npm run worker` processes (cluster/map-jobs.ts)
  const mapQueue = cluster && compute && mapsCfg.enabled && config.cluster.mapsOnWorkers ? new MapQueue({ redisUrl: cluster.redisUrl, prefix: cluster.prefix, images: jobImages, timeoutMs: config.cluster.mapJobTimeoutS * 1000, modelId: featureModelIdOf(config.compute.model), log: (level, msg, fields) => logger[level](fields, msg) }) : null;
  const explanations =
    compute && mapsCfg.enabled
      ? scheduleExplanations({
          store,
          client: compute,
          imageFile: (setId, stimulusId) => {
            const set = stimulusSets.get(setId);
            return set ? stimulusFile(set, stimulusId) : null;
          },
          // without the maps: the gallery fetches them as PNG for the cards on screen (issue 16)
          emit: ({ driverMap: _d, referenceMap: _r, ...meta }) => dashboard.to(watchRoom(meta.sessionId)).emit(dashboardEvents.explainReady, meta),
          fail: (f) => dashboard.to(watchRoom(f.sessionId)).emit(dashboardEvents.explainFailed, f),
          log: (level, msg, fields) => logger[level](fields, msg),
          options: { positiveOnly: mapsCfg.positiveOnly, integratedSteps: mapsCfg.integratedSteps, smoothSigmaPx: mapsCfg.smoothSigmaPx, method: mapsCfg.method, features: mapsCfg.features, layer: mapsCfg.layer, smoothSamples: mapsCfg.smoothSamples, occlusionCells: mapsCfg.occlusionCells, occlusionStride: mapsCfg.occlusionStride, occlusionRender: mapsCfg.occlusionRender },
          perChannel: mapsCfg.driversPerChannel,
          intervalMs: mapsCfg.intervalMs,
          minWeightCosine: mapsCfg.minWeightCosine,
          maxQueue: mapsCfg.maxQueue,
          ...(deps.scheduler ? { scheduler: deps.scheduler } : {}),
          runner: mapQueue ? { explain$: mapQueue.explain$, inFlight: config.cluster.mapJobsInFlight } : { explain$: (...a) => gate.wrap$(compute.explain$(...a)), inFlight: 1 },
        })
      : null;
  const driverPairs = explanations?.results ?? new Map<string, Map<string, Explanation>>();
  const scoreHistory = recordScoreHistory(store, 500, deps.scheduler);

  app.use(hostGuard(allowedHosts, refused));
  app.use(
    helmet({
      // the built dashboard loads only its own scripts and styles; maps and images are data: URLs or same-origin
      contentSecurityPolicy: { directives: { 'img-src': ["'self'", 'data:', 'blob:'], 'upgrade-insecure-requests': config.tls ? [] : null } },
      strictTransportSecurity: !!config.tls,
    }),
  );
  app.use(express.json({ limit: '64kb' }));
  const healthDeps = { store, rejectedCounts: rejected.counts, computeStatus, stimulusSets, ...(cluster ? { cluster: () => clusterHealth(cluster, mapQueue, featureQueue, refitQueue) } : {}) };
  app.use('/api', healthRouter(healthDeps));
  app.use('/api/auth', authRouter(signIn));
  // rigs read their stimulus sets with their own token
  app.use('/api/stimuli', rigBearer(rigTokens, refused));
  if (cluster) app.use('/api/cluster/images', clusterImagesRouter(cluster, jobImages!.index, refused));
  if (cluster) app.use('/api', trustForwarded(cluster));
  app.use('/api', signedIn(signIn, refused), steeringNeedsOperatorJson(refused, logSteering));
  if (cluster) app.use('/api/sessions/:id', forwardToRunningNode(cluster, store, (msg, fields) => logger.warn(fields, msg)));
  app.use('/api', statusRouter(healthDeps));
  app.use('/api/sessions', sessionsRouter({ store, recorder, pipeline: config.pipeline, commandDeps, ...(cluster ? { ownerOf: (id: string) => cluster.ownerOf(id) } : {}) }));
  app.use('/api/sessions', modelsRouter({ store, modelsOn: compute !== null, minStimuli, computeStatus, explanations }));
  app.use('/api/sessions', driverPairsRouter({ store, results: driverPairs, queued: () => explanations?.queued() ?? 0, log: (msg, fields) => logger.warn(fields, msg) }));
  app.use('/api/sessions', scoreHistoryRouter(scoreHistory.histories, store));
  app.use('/api/sessions', exportsRouter({ store, recorder, dataDir: config.dataDir, stimulusDir: config.stimulusDir, pipeline: config.pipeline, about: config.nwb, maps: explanations?.results ?? null, refused, log: logSteering }));
  app.use('/api/stimuli', stimuliRouter({ stimulusDir: config.stimulusDir, stimulusSets, logger, refused, onRegistered: warmFeatures }));
  app.use('/api', (req, res) => apiError(res, 404, 'not-found', `no API route ${req.method} ${req.path}`));
  app.use(loginPageRouter());
  const clientDir = deps.clientDir;
  if (clientDir && fs.existsSync(clientDir)) {
    app.use(pageSignIn(signIn, refused));
    app.use(express.static(clientDir, { index: 'index.html' }));
    app.get(/^\/(?!api\/|socket\.io\/).*/, (_req, res) => res.sendFile(path.join(clientDir, 'index.html')));
  }
  app.use((err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
    const status = err.status && err.status < 500 ? err.status : 500;
    if (status >= 500) logger.error({ err }, 'request failed');
    apiError(res, status, err.type ?? 'server-error', err.message);
  });

  return {
    httpServer,
    io,
    store,
    recorder,
    rejectedCounts: rejected.counts,
    refusedCounts: refused.counts,
    signIn,
    driverPairs,
    mapsComputed: () => explanations?.computed() ?? 0,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          for (const name of allowedHostNames(host, [])) allowedHosts.add(name);
          httpServer.off('error', reject);
          const bound = (httpServer.address() as { port: number }).port;
          if (cluster) {
            const shown = ['0.0.0.0', '::', '[::]'].includes(host) ? os.hostname() : host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
            const owned = () => store.all().filter((rt) => rt.kind === 'live' && rt.state !== 'ended').map((rt) => rt.id);
            cluster.start(config.cluster.advertiseUrl || `${config.tls ? 'https' : 'http'}://${shown}:${bound}`, () => ({ summaries: store.all().map((rt) => store.summary(rt)), owned: owned() }));
          }
          resolve(bound);
        });
      }),
    close: async () => {
      broadcast.unsubscribe();
      lostSub?.unsubscribe();
      explanations?.sub.unsubscribe();
      scoreHistory.sub.unsubscribe();
      rejected.sub.unsubscribe();
      await new Promise<void>((resolve) => io.close(() => resolve()));
      store.close();
      recorder.close();
      await compute?.close();
      await ridgeWorker?.close();
      await refresher?.close();
      await reports?.close();
      await mapQueue?.close();
      await featureQueue?.close();
      await refitQueue?.close();
      await cluster?.close();
    },
  };
}
