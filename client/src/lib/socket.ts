/**
 * The one socket of the dashboard: connects to /dashboard (reconnecting by itself), watches the selected
 * session and keeps the stores the views read. Updates arrive throttled by the server; views render from
 * the latest store values only, so a slow page skips frames instead of queueing them.
 */
import { io } from 'socket.io-client';
import { get, writable } from 'svelte/store';
import { dashboardEvents } from '@sharedlens/shared/events';
import type { ChannelStats, ExplainFailure, ModelSnapshot, SessionSnapshot, SessionSummary, StatsDelta } from '@sharedlens/shared/stats';
import type { Suggestion } from '@sharedlens/shared/events';
import { keepUnchanged, tileShows } from './keep-unchanged';

/** signed-out: the server refused the dashboard (e.g. it restarted and forgot the sign-in); socket.io does not retry that. */
export type Connection = 'connecting' | 'connected' | 'reconnecting' | 'signed-out';

export const connection = writable<Connection>('connecting');
export const sessions = writable<SessionSummary[]>([]);
export const watched = writable<string | null>(null);
export const snapshot = writable<SessionSnapshot | null>(null);
export const channels = writable<ChannelStats[]>([]);
export const progress = writable<{ trialsCompleted: number; trialsAborted: number; trialsPerSec: number }>({ trialsCompleted: 0, trialsAborted: 0, trialsPerSec: 0 });
export const models = writable<ModelSnapshot | null>(null);
/** Counts map pairs announced since the session was picked: the drivers gallery refetches its page when it changes. */
export const pairsAnnounced = writable(0);
export const replay = writable<{ replayId: string; position: number; total: number; speed: number | 'max'; paused: boolean; done: boolean } | null>(null);
export const errors = writable<{ id: number; message: string }[]>([]);
/** The latest suggestions; notes (dashboard asks only): why a strategy asked for gave nothing. */
export const followups = writable<{ origin: string; atMs: number; suggestions: Suggestion[]; notes?: string[] } | null>(null);
export const featureProgress = writable<{ stimulusSetId: string; done: number; total: number } | null>(null);

let errorId = 0;

/** Shows an error message (server-reported or local) until dismissed. */
export function reportError(message: string): void {
  errors.update((e) => [...e.slice(-4), { id: ++errorId, message }]);
}

export const socket = io('/dashboard', { transports: ['websocket'], reconnectionDelayMax: 3000 });

socket.on('connect', () => {
  connection.set('connected');
  const id = get(watched);
  if (id) watch(id);
});
socket.on('disconnect', () => connection.set('reconnecting'));
socket.on('connect_error', (e: Error) => connection.set(/^unauthorized/.test(e.message) ? 'signed-out' : 'reconnecting'));
socket.on(dashboardEvents.sessionsUpdated, (list: SessionSummary[]) => {
  sessions.set(list);
  if (!get(watched)) {
    const live = list.find((s) => s.state === 'live') ?? list[0];
    if (live) watch(live.sessionId);
  }
});
socket.on(dashboardEvents.statsDelta, (d: StatsDelta) => {
  if (d.sessionId !== get(watched)) return;
  channels.set(keepUnchanged(get(channels), d.channels, tileShows));
  progress.set({ trialsCompleted: d.trialsCompleted, trialsAborted: d.trialsAborted, trialsPerSec: d.trialsPerSec });
});
socket.on(dashboardEvents.statsSnapshot, (s: SessionSnapshot) => {
  if (s.sessionId === get(watched)) snapshot.set(s);
});
socket.on(dashboardEvents.modelsUpdated, (m: ModelSnapshot) => {
  if (m.sessionId !== get(watched)) return;
  const prev = get(models);
  models.set(prev ? { ...m, channels: keepUnchanged(prev.channels, m.channels) } : m);
});
// the announcement carries no maps: the gallery fetches a page of pairs and the maps of the cards on screen
socket.on(dashboardEvents.explainReady, (e: { sessionId: string }) => {
  if (e.sessionId === get(watched)) pairsAnnounced.update((n) => n + 1);
});
// a pair's maps not made (a map job timed out: no worker, or all busy; or it failed): one error line, the latest
// (the jobs in flight, eight by default, time out together when no worker runs)
const MAPS_NOT_MADE = 'Maps not made';
socket.on(dashboardEvents.explainFailed, (f: ExplainFailure) => {
  if (f.sessionId !== get(watched)) return;
  errors.update((l) => l.filter((e) => !e.message.startsWith(MAPS_NOT_MADE)));
  reportError(`${MAPS_NOT_MADE} for driver ${f.driverId} of channel ${f.channelId} (${f.reason === 'timeout' ? 'timed out' : 'failed'}): ${f.message}. They are tried again.`);
});
// clustered: an exact refit's job on the workers timed out or failed (the node refits itself): one error line, the latest
const REFIT_NOT_MADE = 'Refit job';
socket.on(dashboardEvents.refitJobFailed, (f: { message: string }) => {
  errors.update((l) => l.filter((e) => !e.message.startsWith(REFIT_NOT_MADE)));
  reportError(`${REFIT_NOT_MADE}: ${f.message}`);
});
socket.on(dashboardEvents.replayProgress, (p) => replay.set(p));
socket.on(dashboardEvents.followupSuggested, (f: { sessionId: string; origin: string; atMs: number; suggestions: Suggestion[] }) => {
  if (f.sessionId === get(watched)) followups.set(f);
});
socket.on(dashboardEvents.featuresProgress, (p) => featureProgress.set(p));
socket.on(dashboardEvents.inputRejected, (r: { event: string; error: { message: string } }) => reportError(`rig input rejected (${r.event}): ${r.error.message}`));

/** Switches the views to a session (live or replay). */
export function watch(sessionId: string): void {
  if (get(watched) !== sessionId) {
    snapshot.set(null);
    channels.set([]);
    models.set(null);
    pairsAnnounced.set(0);
    followups.set(null);
    progress.set({ trialsCompleted: 0, trialsAborted: 0, trialsPerSec: 0 });
  }
  watched.set(sessionId);
  socket.timeout(5000).emit(dashboardEvents.sessionWatch, { sessionId }, (err: Error | null, ack: { data?: SessionSnapshot | null; error?: { message: string } }) => {
    if (err) return reportError(`the server did not answer (watch ${sessionId}): ${err.message}`);
    if (ack.error) return reportError(ack.error.message);
    if (ack.data) {
      snapshot.set(ack.data);
      channels.set(ack.data.channels);
      progress.set({ trialsCompleted: ack.data.trialsCompleted, trialsAborted: ack.data.trialsAborted, trialsPerSec: ack.data.trialsPerSec });
    }
  });
  // the latest report over HTTP; one pushed while it was on its way (newer, unless this one's version is higher) wins
  const before = get(models);
  fetch(`/api/sessions/${encodeURIComponent(sessionId)}/models`)
    .then((r) => (r.ok ? r.json() : null))
    .then((m: ModelSnapshot | null) => {
      const now = get(models);
      if (m && m.sessionId === get(watched) && (now === before || !now || m.version > now.version)) models.set(m);
    })
    .catch(() => {});
}

/** Sends a command and reports its error, if any; resolves with the data. */
export function command<T>(event: string, body: unknown): Promise<T | null> {
  return new Promise((resolve) => {
    socket.timeout(5000).emit(event, body, (err: Error | null, ack: { data?: T; error?: { message: string } }) => {
      if (err) {
        reportError(`the server did not answer (${event}): ${err.message}`);
        return resolve(null);
      }
      if (ack.error) {
        reportError(ack.error.message);
        return resolve(null);
      }
      resolve(ack.data ?? null);
    });
  });
}
