import { debounceTime, filter, groupBy, mergeMap, throttleTime, type Observable, type SchedulerLike, type Subscription, asyncScheduler, merge, map } from 'rxjs';
import type { Namespace } from 'socket.io';
import { dashboardEvents, type ReplayProgress, type SessionSummary, type StatsDelta } from '@sharedlens/shared';
import { channelStats, trialsPerSec } from '../compute/neuron-stats.ts';
import type { Rejection } from '../sources/rig-gateway.ts';
import type { Runtime, SessionStore } from './session-store.ts';

export interface BroadcastOptions {
  deltaThrottleMs: number;
  snapshotThrottleMs: number;
  scheduler?: SchedulerLike;
  /**
   * Clustered (cluster/attach-cluster.ts): the session list of every node, and when the other nodes' lists
   * changed. Each node then sends the whole list to its own dashboards only (an emit to all would reach every
   * node's dashboards through the Redis adapter, each with a different list).
   */
  sessionList?: { all: () => SessionSummary[]; changed$: Observable<unknown> };
}

/** Quiet time after which the latest state of a session is sent once more, reliably. */
const SETTLE_MS = 1000;
/** Quiet time of a session's model reports after which its latest report is sent once more, reliably. */
const REPORTS_SETTLE_MS = 2000;

/** How often the sessions list goes out again while sessions run. */
const LIST_REFRESH_MS = 2000;

/** A session's start update (its statistics reset, no trials yet), as opposed to a trial, abort or end. */
const isStart = (u: { update?: { cause: string } }) => u.update?.cause === 'start';

/** Room of the dashboards watching one session. */
export const watchRoom = (sessionId: string) => `watch:${sessionId}`;

/** Replay position and controls of a replay runtime. */
export function replayProgress(rt: Runtime): ReplayProgress | null {
  if (!rt.replay || !rt.sourceSessionId) return null;
  const speed = rt.replay.controls.speed$.value;
  return {
    replayId: rt.id,
    sourceSessionId: rt.sourceSessionId,
    position: rt.replay.position,
    total: rt.replay.total,
    speed: Number.isFinite(speed) ? speed : 'max',
    paused: rt.replay.controls.paused$.value,
    done: rt.replay.done,
  };
}

/**
 * Sends statistics to watching dashboards, throttled per session to what a person can follow: deltas
 * (channel statistics) every `deltaThrottleMs`, snapshots (session figures, model scores) every
 * `snapshotThrottleMs`. Both are
 * volatile, so a slow client drops stale frames instead of queueing them.
 */
export function broadcastToDashboards(nsp: Namespace, store: SessionStore, rejections$: Observable<Rejection>, opts: BroadcastOptions): Subscription {
  const scheduler = opts.scheduler ?? asyncScheduler;
  /**
   * Per session: throttled volatile emissions (a slow client drops stale frames), plus one reliable
   * emission once the session goes quiet, so the last state is never the frame that was dropped.
   */
  const perSession = (ms: number) =>
    store.updates$.pipe(
      groupBy((u) => u.runtime.id),
      mergeMap((g) =>
        merge(
          // a session's start (one per session, no trials yet) goes out at once and takes no place in the
          // throttle's window: rigs send their first trial within the window, whose delta then waited for the
          // window's end (bench cluster: trials 1 and 2 at 115 and 62 ms on both nodes, the whole p99)
          g.pipe(filter((u) => isStart(u)), map((u) => ({ rt: u.runtime, volatile: false }))),
          g.pipe(filter((u) => !isStart(u)), throttleTime(ms, scheduler, { leading: true, trailing: true }), map((u) => ({ rt: u.runtime, volatile: true }))),
          g.pipe(debounceTime(Math.max(ms, SETTLE_MS), scheduler), map((u) => ({ rt: u.runtime, volatile: false }))),
        ),
      ),
    );
  const to = (id: string, volatile: boolean) => (volatile ? nsp.to(watchRoom(id)).volatile : nsp.to(watchRoom(id)));
  // nothing built or encoded for a session no dashboard of this node watches (socket.io encodes a packet
  // before it looks at the room: a CPU profile of the scale bench, with no dashboard open, spent more on
  // these statistics and their encoding than on the rig's acknowledgements); clustered, another node's
  // dashboards may watch through the Redis adapter
  const watched = (id: string) => opts.sessionList !== undefined || (nsp.adapter.rooms.get(watchRoom(id))?.size ?? 0) > 0;
  const deltas = perSession(opts.deltaThrottleMs).subscribe(({ rt, volatile }) => {
    if (!rt.latest || !watched(rt.id)) return;
    const delta: StatsDelta = {
      sessionId: rt.id,
      trialsCompleted: rt.latest.trialsCompleted,
      trialsAborted: rt.latest.trialsAborted,
      trialsPerSec: trialsPerSec(rt.latest),
      channels: channelStats(rt.latest),
    };
    to(rt.id, volatile).emit(dashboardEvents.statsDelta, delta);
    const progress = replayProgress(rt);
    if (progress) to(rt.id, volatile).emit(dashboardEvents.replayProgress, progress);
  });
  const snapshots = perSession(opts.snapshotThrottleMs).subscribe(({ rt, volatile }) => {
    if (!watched(rt.id)) return;
    const models = store.models(rt);
    if (models) to(rt.id, volatile).emit(dashboardEvents.modelsUpdated, models);
    // without per-stimulus detail (channels x stimuli x 2 numbers, about 1 MB at 384 channels): the
    // neuron page fetches the detail of its one channel
    const snap = store.snapshot(rt, false);
    if (snap) to(rt.id, volatile).emit(dashboardEvents.statsSnapshot, snap);
  });
  // on every change of the sessions, and every 2 s while trials arrive (the list shows their trial counts)
  const list = opts.sessionList;
  const lists = merge(store.changed$.pipe(map(() => 0)), store.updates$.pipe(throttleTime(LIST_REFRESH_MS, scheduler, { leading: false, trailing: true })), list ? list.changed$ : [])
    .pipe(throttleTime(opts.deltaThrottleMs, scheduler, { leading: true, trailing: true }))
    .subscribe(() => (list ? nsp.local.emit(dashboardEvents.sessionsUpdated, list.all()) : nsp.emit(dashboardEvents.sessionsUpdated, store.all().map((rt) => store.summary(rt)))));
  const followups = store.followups$.subscribe((rt) => rt.followups && nsp.to(watchRoom(rt.id)).emit(dashboardEvents.followupSuggested, rt.followups));
  deltas.add(followups);
  const rejected = rejections$.subscribe((r) => nsp.volatile.emit(dashboardEvents.inputRejected, { sessionId: r.sessionId, event: r.event, error: r.error }));
  // reports are pushed volatile as they finish (app.ts); the end's report finishes after the session went quiet,
  // after its settle frame, so once a session's reports stop the latest goes out again, reliably
  const settledModels = store.modelsReady$
    .pipe(
      groupBy((rt) => rt.id),
      mergeMap((g) => g.pipe(debounceTime(REPORTS_SETTLE_MS, scheduler))),
    )
    .subscribe((rt) => {
      if (!watched(rt.id)) return;
      const models = store.models(rt);
      if (models) to(rt.id, false).emit(dashboardEvents.modelsUpdated, models);
    });
  deltas.add(settledModels);
  deltas.add(snapshots);
  deltas.add(lists);
  deltas.add(rejected);
  return deltas;
}
