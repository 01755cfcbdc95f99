/** Commands the dashboard sends on the `/dashboard` namespace, with their schemas. */
import { z } from 'zod';

export const sessionWatchSchema = z.object({ sessionId: z.string().min(1).max(128) });
export const sessionReplaySchema = z.object({
  sessionId: z.string().min(1).max(128),
  /** Speed factor against the recorded pace, or "max" for as fast as possible. */
  speed: z.union([z.number().positive().max(1000), z.literal('max')]).default(1),
});
export const replayControlSchema = z.object({
  replayId: z.string().min(1).max(128),
  action: z.enum(['pause', 'resume', 'speed', 'seek', 'stop']),
  speed: z.union([z.number().positive().max(1000), z.literal('max')]).optional(),
  /** For seek: index of the record to continue from (0 = start). */
  toRecord: z.number().int().min(0).optional(),
});

export type SessionWatch = z.infer<typeof sessionWatchSchema>;
export type SessionReplay = z.input<typeof sessionReplaySchema>;
export type ReplayControl = z.infer<typeof replayControlSchema>;

export interface ReplayProgress {
  replayId: string;
  sourceSessionId: string;
  position: number;
  total: number;
  speed: number | 'max';
  paused: boolean;
  done: boolean;
}
