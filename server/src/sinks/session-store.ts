/**
 * The session store: the sink that runs each session's pipeline (live or replay), keeps its latest
 * statistics for the status endpoint and the dashboard, and republishes every update on `updates$`.
 */
import { BehaviorSubject, Subject, concat, defer, filter, from, ignoreElements, map, of, startWith, switchMap, take, tap, type Observable, type OperatorFunction, type SchedulerLike, type Subscription, asyncScheduler } from 'rxjs';
import type { ChannelDetail, Frame, ModelSnapshot, SessionSnapshot, SessionStart, SessionState, SessionSummary } from '@sharedlens/shared';
import { categoryPsth, channelStats, type NeuronStatsState } from '../compute/neuron-stats.ts';
import { featuresComplete, type EncodingConfig, type EncodingState, type FeatureSet } from '../compute/encoding.ts';
import { modelReport, type ReportRule } from '../compute/model-report.ts';
import { neuronModel } from '../compute/ridge.ts';
import { reportJob, type ModelReports } from '../workers/report-client.ts';
import { encodingModels, type EncodingModelsOptions, type ModelUpdate } from '../pipeline/encoding-models.ts';
import { buildSnapshot } from '../compute/session-snapshot.ts';
import { sessionPipeline } from '../pipeline/session-pipeline.ts';
import type { StatsUpdate } from '../pipeline/neuron-statistics.ts';
import { replayRecords, replayedRange, type RecordSource, type ReplayControls } from '../sources/replay.ts';
import type { GuardState } from '../sources/ingest-guard.ts';

export interface ReplayState {
  controls: ReplayControls;
  seek$: Subject<number>;
  position: number;
  total: number;
  done: boolean;
}

export interface Runtime {
  id: string;
  kind: 'live' | 'replay';
  sourceSessionId?: string;
  state: SessionState;
  startedAt: string;
  /** When the session ended (the dashboard's session clock stops there, also after a page reload). */
  endedAt?: string;
  start: SessionStart;
  guard: GuardState | null;
  frames$: Subject<Frame> | null;
  latest: NeuronStatsState | null;
  encoding: EncodingState | null;
  /** The latest follow-up suggestions given (from the session's frames: live and replayed alike). */
  followups: Extract<Frame, { type: 'followup:suggested' }> | null;
  rejected: Record<string, number>;
  replay: ReplayState | null;
  /** Replays: sequence gaps the live session counted (from the log's gap records). */
  seqGaps?: number;
  /** Name of the rig that owns a live session (only it may write, resume or end it). */
  owner?: string;
  /** Frames fed while the recorded backlog of a resumed session is still streaming through the pipeline. */
  pending?: Frame[] | null;
  /** Why the session's pipeline stopped, when a fault ended it (its statistics are frozen from there). */
  pipelineError?: string;
  sub: Subscription | null;
}

export interface SessionStoreOptions {
  psthBinMs: number;
  scheduler?: SchedulerLike;
  /** Encoding models: the features of a stimulus set, and how models and drivers are fitted. */
  models?: { featuresFor: (stimulusSetId: string) => Observable<FeatureSet | null>; encoding: EncodingConfig; drivers: ReportRule; offload?: EncodingModelsOptions['offload']; thread?: EncodingModelsOptions['thread']; reports?: ModelReports };
  /**
   * A session's pipeline failed (a fault inside a stage, e.g. a disk error while a resumed log streams in).
   * The session's statistics stop there; recording goes on and the process keeps running (issue 11).
   */
  onPipelineError?: (rt: Runtime, message: string) => void;
}

let replayCounter = 0;

export class SessionStore {
  readonly updates$ = new Subject<{ runtime: Runtime; update: StatsUpdate }>();
  /** Fires when a session appears, changes state or goes away. */
  readonly changed$ = new Subject<Runtime>();
  /** Follow-up suggestions as they pass through a session's frames. */
  readonly followups$ = new Subject<Runtime>();
  /** A session's model report was computed (off the event loop, after its last update or later). */
  readonly modelsReady$ = new Subject<Runtime>();
  private readonly runtimes = new Map<string, Runtime>();

  constructor(private readonly opts: SessionStoreOptions) {}

  /** PSTH bin width of the statistics (ms): session budgets are computed with it. */
  get psthBinMs(): number {
    return this.opts.psthBinMs;
  }

  /**
   * Starts the pipeline of a live session; `backlog` are frames recorded before (resume after restart),
   * possibly streamed from the log in the background: frames fed meanwhile wait until it is through.
   */
  startLive(start: Extract<Frame, { type: 'session:start' }>, guard: GuardState, backlog: Frame[] | Observable<Frame> = [], owner?: string): Runtime {
    const frames$ = new Subject<Frame>();
    const rt: Runtime = {
      id: start.sessionId,
      kind: 'live',
      state: 'live',
      startedAt: start.startedAt,
      start: start.start,
      guard,
      frames$,
      latest: null,
      encoding: null,
      followups: null,
      rejected: {},
      replay: null,
      ...(owner ? { owner } : {}),
      pending: Array.isArray(backlog) ? null : [],
      sub: null,
    };
    this.runtimes.set(rt.id, rt);
    const drained$ = defer(() => {
      const queued = rt.pending ?? [];
      rt.pending = null;
      return concat(from(queued), frames$);
    });
    rt.sub = concat(from([start]), Array.isArray(backlog) ? from(backlog) : backlog, drained$).pipe(this.noteFollowups(rt), this.pipeline(start.start.stimulusSetId)).subscribe(this.observer(rt));
    this.changed$.next(rt);
    return rt;
  }

  /** Feeds one accepted frame to a live session's pipeline. */
  feed(rt: Runtime, frame: Frame): void {
    if (rt.pending) rt.pending.push(frame);
    else rt.frames$?.next(frame);
  }

  /**
   * Starts a replay of a recorded session as a session of its own (id `replay-N-<source>`). Records are read
   * from `source` as they are replayed (a log of any length; the replay holds its statistics, not the log).
   */
  startReplay(sourceId: string, source: RecordSource, speed: number): Runtime {
    const head = source.open(0);
    const firstItem = head.next();
    head.return?.();
    const first = !firstItem.done && 'frame' in firstItem.value ? firstItem.value.frame : null;
    if (!first || first.type !== 'session:start') throw new Error(`session ${sourceId} has no session:start record`);
    const controls: ReplayControls = { speed$: new BehaviorSubject(speed), paused$: new BehaviorSubject(false) };
    const replay: ReplayState = { controls, seek$: new Subject(), position: 0, total: source.total, done: false };
    const rt: Runtime = {
      id: `replay-${++replayCounter}-${sourceId}`.slice(0, 100),
      kind: 'replay',
      sourceSessionId: sourceId,
      state: 'replay',
      startedAt: first.startedAt,
      start: first.start,
      guard: null,
      frames$: null,
      latest: null,
      encoding: null,
      followups: null,
      rejected: {},
      replay,
      sub: null,
    };
    this.runtimes.set(rt.id, rt);
    const scheduler = this.opts.scheduler ?? asyncScheduler;
    // A seek restarts the pipeline (fresh statistics) and runs the records before the target at full speed.
    rt.sub = replay.seek$
      .pipe(
        startWith(0),
        switchMap((target) => {
          replay.done = false;
          rt.rejected = {};
          rt.seqGaps = 0;
          // records before the target run at full speed, read from the log as they go
          const before = from(replayedRange(source, 0, target));
          const rest = replayRecords(source, controls, target, scheduler);
          // wait for all the stimulus features (or their failure), so a replay fits its models like the live session did
          const ready = this.opts.models ? this.opts.models.featuresFor(first.start.stimulusSetId).pipe(filter((f) => !f || featuresComplete(f)), take(1), ignoreElements()) : of();
          return concat(ready, before, rest).pipe(
            tap((r) => {
              replay.position = r.index + 1;
              if (!('note' in r)) return;
              if (r.note.kind === 'gap') rt.seqGaps = (rt.seqGaps ?? 0) + 1;
              else rt.rejected[r.note.code] = (rt.rejected[r.note.code] ?? 0) + 1;
            }),
            filter((r): r is Extract<typeof r, { frame: Frame }> => 'frame' in r),
            map(({ frame }) => frame),
            this.noteFollowups(rt),
            this.pipeline(first.start.stimulusSetId),
            tap({
              complete: () => {
                replay.done = true;
                this.changed$.next(rt);
              },
            }),
          );
        }),
      )
      .subscribe(this.observer(rt));
    this.changed$.next(rt);
    return rt;
  }

  /** Publishes a session's updates; a fault in its pipeline is reported, never thrown to the process. */
  private observer(rt: Runtime): { next: (u: ModelUpdate) => void; error: (e: unknown) => void } {
    return {
      next: (u) => this.publish(rt, u),
      error: (e) => {
        rt.pipelineError = e instanceof Error ? e.message : String(e);
        this.opts.onPipelineError?.(rt, rt.pipelineError);
        this.changed$.next(rt);
      },
    };
  }

  /** Keeps the latest follow-up suggestions of a session as its frames pass. */
  private noteFollowups(rt: Runtime): OperatorFunction<Frame, Frame> {
    return tap((f) => {
      if (f.type !== 'followup:suggested') return;
      rt.followups = f;
      this.followups$.next(rt);
    });
  }

  /** Frames -> statistics (-> encoding models when configured). */
  private pipeline(stimulusSetId: string): OperatorFunction<Frame, ModelUpdate> {
    const m = this.opts.models;
    return (frames$) => {
      const stats$ = frames$.pipe(sessionPipeline(this.opts));
      return m ? stats$.pipe(encodingModels({ features$: m.featuresFor(stimulusSetId), config: m.encoding, ...(m.offload ? { offload: m.offload } : {}), ...(m.thread ? { thread: m.thread } : {}) })) : stats$.pipe(map((stats) => ({ stats, encoding: null })));
    };
  }

  /** Scores and drivers of every channel, or null before the models exist. */
  models(rt: Runtime): ModelSnapshot | null {
    if (!rt.latest || !rt.encoding || !this.opts.models) return null;
    // with a report worker: its latest report (computed off the event loop after each update)
    if (this.opts.models.reports) return this.opts.models.reports.report(rt.id);
    return modelReport(rt.id, rt.latest, rt.encoding, channelStats(rt.latest), this.opts.models.encoding, this.opts.models.drivers);
  }

  /** The models of `models(rt)` as JSON text when a report thread serialised them (GET /models sends it as is), else null. */
  modelsJson(rt: Runtime): string | null {
    if (!rt.latest || !rt.encoding || !this.opts.models?.reports) return null;
    return this.opts.models.reports.reportJson(rt.id);
  }

  /** Everything the neuron page shows for one channel: statistics, per-stimulus means, PSTH per category, model. */
  channelDetail(rt: Runtime, channelId: string): ChannelDetail | null {
    const st = rt.latest;
    if (!st) return null;
    const c = st.start.channels.findIndex((ch) => ch.id === channelId);
    if (c < 0) return null;
    const stats = channelStats(st)[c];
    const psth = categoryPsth(st);
    const ridge = rt.encoding?.ridge;
    const model = ridge ? neuronModel(ridge, c) : null;
    const predicted = new Map<number, number>();
    if (ridge && model) ridge.basis.rows.forEach((s, i) => predicted.set(s, model.looPredictions[i]));
    const models = this.models(rt);
    return {
      sessionId: rt.id,
      channel: stats,
      stimuli: st.stimuli.map((s, i) => ({
        id: s.id,
        category: s.category,
        nTrials: st.nStim[i],
        mean: st.nStim[i] > 0 ? st.mean[i * st.C + c] : null,
        sem: st.nStim[i] > 1 ? Math.sqrt(st.m2[i * st.C + c] / (st.nStim[i] - 1) / st.nStim[i]) : null,
        predicted: predicted.get(i) ?? null,
      })),
      psth: psth && st.psthLayout ? { binMs: st.psthLayout.binMs, startMs: st.psthLayout.startMs, byCategory: Object.fromEntries(Object.entries(psth).map(([k, v]) => [k, v[c]])) } : null,
      model: models?.channels[c] ?? null,
    };
  }

  /** Readout weights (length D) of channel `c` at its chosen regularisation, or null without a model. */
  readout(rt: Runtime, c: number): Float32Array | null {
    const ridge = rt.encoding?.ridge;
    if (this.opts.models?.reports) return ridge ? this.opts.models.reports.readout(rt.id, c) : null;
    return ridge ? Float32Array.from(neuronModel(ridge, c).weights) : null;
  }

  get(id: string): Runtime | undefined {
    return this.runtimes.get(id);
  }

  all(): Runtime[] {
    return [...this.runtimes.values()];
  }

  setState(rt: Runtime, state: SessionState): void {
    rt.state = state;
    if (state === 'ended' && !rt.endedAt) rt.endedAt = new Date().toISOString();
    this.changed$.next(rt);
  }

  /** Stops a session's pipeline and forgets it. */
  remove(rt: Runtime): void {
    this.opts.models?.reports?.forget(rt.id);
    rt.sub?.unsubscribe();
    rt.frames$?.complete();
    this.runtimes.delete(rt.id);
    this.changed$.next(rt);
  }

  snapshot(rt: Runtime, detail: boolean): SessionSnapshot | null {
    if (!rt.latest) return null;
    return buildSnapshot(
      rt.latest,
      {
        sessionId: rt.id,
        ...(rt.sourceSessionId ? { sourceSessionId: rt.sourceSessionId } : {}),
        startedAt: rt.startedAt,
        state: rt.state,
        lastSeq: rt.guard?.lastAcceptedSeq ?? 0,
        seqGaps: rt.guard?.seqGaps ?? rt.seqGaps ?? 0,
        rejected: rt.rejected,
      },
      detail,
    );
  }

  summary(rt: Runtime): SessionSummary {
    return {
      sessionId: rt.id,
      rigId: rt.start.rigId,
      subject: rt.start.subject,
      stimulusSetId: rt.start.stimulusSetId,
      startedAt: rt.startedAt,
      state: rt.state,
      channels: rt.start.channels.length,
      records: rt.replay ? rt.replay.position : (rt.guard?.lastAcceptedSeq ?? 0) + 1,
      trialsCompleted: rt.latest?.trialsCompleted ?? 0,
      ...(rt.endedAt ? { endedAt: rt.endedAt } : {}),
      ...(rt.sourceSessionId ? { sourceSessionId: rt.sourceSessionId } : {}),
    };
  }

  close(): void {
    for (const rt of this.runtimes.values()) rt.sub?.unsubscribe();
    this.runtimes.clear();
    this.updates$.complete();
    this.changed$.complete();
    this.followups$.complete();
    this.modelsReady$.complete();
  }

  private publish(rt: Runtime, mu: ModelUpdate): void {
    rt.latest = mu.stats.state;
    rt.encoding = mu.encoding;
    const m = this.opts.models;
    if (m?.reports && mu.encoding) {
      const enc = mu.encoding;
      // the job is built when it starts, from the session's state then
      m.reports.request(rt.id, enc.featureSet.features, () => (rt.latest && rt.encoding ? reportJob(rt.id, rt.latest, rt.encoding, m.encoding, m.drivers, m.reports!.minWeightCosine) : null), mu.stats.cause === 'end');
    }
    this.updates$.next({ runtime: rt, update: mu.stats });
  }
}
