import type { Observable, Subscription } from 'rxjs';
import type { Logger } from 'pino';
import type { Rejection } from '../sources/rig-gateway.ts';
import type { SessionStore } from './session-store.ts';

export interface RejectionCounts {
  total: number;
  byCode: Record<string, number>;
}

/**
 * Counts every rejected rig input (globally and per session) and writes one log line per rejection
 * carrying the running count, so an operator sees both the problem and how often it happened.
 */
export function logRejections(rejections$: Observable<Rejection>, store: SessionStore, logger: Logger): { counts: RejectionCounts; sub: Subscription } {
  const counts: RejectionCounts = { total: 0, byCode: {} };
  const sub = rejections$.subscribe((r) => {
    counts.total++;
    const n = (counts.byCode[r.error.code] = (counts.byCode[r.error.code] ?? 0) + 1);
    // another rig's attempts are its own fault, not the session's: they do not count in the session's figures
    const rt = r.sessionId && r.error.code !== 'not-owner' ? store.get(r.sessionId) : undefined;
    if (rt) rt.rejected[r.error.code] = (rt.rejected[r.error.code] ?? 0) + 1;
    logger.warn(
      { code: r.error.code, event: r.event, sessionId: r.sessionId, socketId: r.socketId, details: r.error.details, count: n, totalRejected: counts.total },
      `rejected rig input: ${r.error.message}`,
    );
  });
  return { counts, sub };
}
