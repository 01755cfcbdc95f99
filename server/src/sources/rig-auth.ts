/**
 * Rig sign-in: the `/rig` handshake's `auth.token` must be one of the configured rig tokens (compared in
 * constant time), and an address that failed too often recently is refused until its window ends. A rig
 * that passes gets `socket.data.rigName`, the name its token carries in config.rigTokens. The same token
 * as `Authorization: Bearer` lets a rig read the stimulus sets over HTTP (their manifests and images).
 */
import type { NextFunction, Request, Response } from 'express';
import type { Socket } from 'socket.io';
import { AttemptLimiter } from '../auth/attempt-limiter.ts';
import type { Refusals } from '../auth/guards.ts';
import { digest, matchSecret } from '../auth/secrets.ts';

export interface RigTokenOptions {
  /** Rig token -> rig name (config.rigTokens). */
  tokens: Record<string, string>;
  maxFailedAttempts: number;
  failedWindowS: number;
  now?: () => number;
}

/** The configured rig tokens and the failed attempts per address, shared by the socket and HTTP checks. */
export class RigTokens {
  private readonly names: string[];
  private readonly known: Buffer[];
  private readonly limiter: AttemptLimiter;

  constructor(opts: RigTokenOptions) {
    this.names = Object.values(opts.tokens);
    this.known = Object.keys(opts.tokens).map(digest);
    this.limiter = new AttemptLimiter(opts.maxFailedAttempts, opts.failedWindowS * 1000, opts.now);
  }

  /** The rig a token from `address` names, or why it is refused (`unauthorized: ...`, `rate-limited: ...`). */
  check(address: string, token: unknown): { rigName: string } | { refused: string } {
    const waitS = this.limiter.blockedForS(address);
    if (waitS > 0) return { refused: `rate-limited: too many wrong rig tokens from ${address}; try again in ${waitS} s` };
    const i = typeof token === 'string' ? matchSecret(this.known, token) : -1;
    if (i < 0) {
      this.limiter.fail(address);
      return { refused: 'unauthorized: the rig token is missing or not one of the configured rigTokens' };
    }
    return { rigName: this.names[i]! };
  }
}

/** socket.io middleware for `/rig`: `nsp.use(rigAuth(tokens, onRefused))`. */
export function rigAuth(tokens: RigTokens, onRefused: (socket: Socket, message: string) => void): (socket: Socket, next: (err?: Error) => void) => void {
  return (socket, next) => {
    const r = tokens.check(socket.handshake.address, (socket.handshake.auth as { token?: unknown } | undefined)?.token);
    if ('refused' in r) {
      onRefused(socket, r.refused);
      return next(new Error(r.refused));
    }
    socket.data.rigName = r.rigName;
    next();
  };
}

/**
 * Express middleware for GET requests with `Authorization: Bearer <rig token>`: the rig reads as a viewer
 * named `rig:NAME` (res.locals.person). Requests without that header pass on to the sign-in check.
 */
export function rigBearer(tokens: RigTokens, refused: Refusals) {
  return (req: Request, res: Response, next: NextFunction) => {
    const auth = req.headers.authorization;
    if (!auth?.startsWith('Bearer ') || (req.method !== 'GET' && req.method !== 'HEAD')) return next();
    const r = tokens.check(req.socket.remoteAddress ?? '', auth.slice('Bearer '.length).trim());
    if ('refused' in r) {
      const code = r.refused.slice(0, r.refused.indexOf(':'));
      refused.refuse(code, `rig token over HTTP: ${r.refused}`, { address: req.socket.remoteAddress, path: req.originalUrl });
      return res.status(code === 'rate-limited' ? 429 : 401).json({ error: { code, message: r.refused } });
    }
    res.locals.person = { name: `rig:${r.rigName}`, role: 'viewer' };
    next();
  };
}
