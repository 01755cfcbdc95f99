/**
 * Rig sign-in on the `/rig` namespace: the handshake's `auth.token` must be one of the configured rig tokens
 * (compared in constant time), and an address that failed too often recently is refused until its window
 * ends. A rig that passes gets `socket.data.rigName`, the name its token carries in config.rigTokens.
 */
import type { Socket } from 'socket.io';
import { AttemptLimiter } from '../auth/attempt-limiter.ts';
import { digest, matchSecret } from '../auth/secrets.ts';

export interface RigAuthOptions {
  /** Rig token -> rig name (config.rigTokens). */
  tokens: Record<string, string>;
  maxFailedAttempts: number;
  failedWindowS: number;
  now?: () => number;
  /** Called for every refused handshake (counted and logged as a rejection). */
  onRefused: (socket: Socket, message: string) => void;
}

/** socket.io middleware for `/rig`: `nsp.use(rigAuth({ tokens, ... }))`. */
export function rigAuth(opts: RigAuthOptions): (socket: Socket, next: (err?: Error) => void) => void {
  const names = Object.values(opts.tokens);
  const known = Object.keys(opts.tokens).map(digest);
  const limiter = new AttemptLimiter(opts.maxFailedAttempts, opts.failedWindowS * 1000, opts.now);
  const refuse = (socket: Socket, next: (err?: Error) => void, message: string) => {
    opts.onRefused(socket, message);
    next(new Error(message));
  };
  return (socket, next) => {
    const address = socket.handshake.address;
    const waitS = limiter.blockedForS(address);
    if (waitS > 0) return refuse(socket, next, `rate-limited: too many wrong rig tokens from ${address}; try again in ${waitS} s`);
    const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
    const i = typeof token === 'string' ? matchSecret(known, token) : -1;
    if (i < 0) {
      limiter.fail(address);
      return refuse(socket, next, 'unauthorized: the rig token is missing or not one of the configured rigTokens');
    }
    socket.data.rigName = names[i];
    next();
  };
}
