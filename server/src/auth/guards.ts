/**
 * Where sign-in and roles are enforced: Express middleware for the HTTP API and pages, socket.io
 * middleware for the dashboard namespace. Every refusal is counted and logged with its code.
 */
import type { NextFunction, Request, Response } from 'express';
import type { Namespace, Socket } from 'socket.io';
import { dashboardEvents } from '@sharedlens/shared';
import { hostOrOriginProblem } from './hosts.ts';
import type { Person, SignIn } from './sign-in.ts';

/** Refusal counts by code, and the log line that goes with each. */
export interface Refusals {
  counts: { total: number; byCode: Record<string, number> };
  refuse(code: string, message: string, fields: Record<string, unknown>): void;
}

/** A Refusals counter that logs each refusal through `warn`. */
export function refusals(warn: (fields: Record<string, unknown>, msg: string) => void): Refusals {
  const counts = { total: 0, byCode: {} as Record<string, number> };
  return {
    counts,
    refuse(code, message, fields) {
      counts.total += 1;
      counts.byCode[code] = (counts.byCode[code] ?? 0) + 1;
      warn({ code, refused: counts.total, ...fields }, `refused: ${message}`);
    },
  };
}

/** The signed-in person of a request (set by `signedIn`). */
export const personOf = (res: Response): Person => res.locals.person as Person;

const deny = (res: Response, status: number, code: string, message: string) => res.status(status).json({ error: { code, message } });

/** Refuses requests whose Host or Origin is not this server's (403). */
export function hostGuard(allowed: Set<string>, r: Refusals) {
  return (req: Request, res: Response, next: NextFunction) => {
    const problem = hostOrOriginProblem(req, allowed);
    if (!problem) return next();
    const code = problem.slice(0, problem.indexOf(':'));
    r.refuse(code, problem, { address: req.socket.remoteAddress, path: req.path });
    deny(res, 403, code, problem);
  };
}

/** API requests need a signed-in person (401 otherwise), unless one is already set (a rig's token); the person goes to res.locals.person. */
export function signedIn(signIn: SignIn, r: Refusals) {
  return (req: Request, res: Response, next: NextFunction) => {
    // a rig with its token (rigBearer) reads as a viewer
    if (res.locals.person) return next();
    const person = signIn.person(req.headers.cookie);
    if (person) {
      res.locals.person = person;
      return next();
    }
    r.refuse('unauthorized', 'no signed-in person', { address: req.socket.remoteAddress, method: req.method, path: req.originalUrl });
    deny(res, 401, 'unauthorized', 'sign in first: open the URL with ?token= printed at start, or /login');
  };
}

/** Only operators pass (403 for viewers); the action is logged with who did it. */
export function requireOperator(r: Refusals, log: (fields: Record<string, unknown>, msg: string) => void) {
  return (req: Request, res: Response, next: NextFunction) => {
    const person = personOf(res);
    if (person?.role !== 'operator') {
      r.refuse('forbidden', `${req.method} ${req.originalUrl} needs the operator role`, { by: person?.name, role: person?.role });
      return deny(res, 403, 'forbidden', `${req.method} ${req.originalUrl} needs the operator role (signed in as ${person?.name ?? 'nobody'}, ${person?.role ?? 'no role'})`);
    }
    log({ by: person.name, method: req.method, path: req.originalUrl }, 'steering action');
    next();
  };
}

/** State-changing requests (not GET/HEAD/OPTIONS) need a JSON body (415) and an operator (403). */
export function steeringNeedsOperatorJson(r: Refusals, log: (fields: Record<string, unknown>, msg: string) => void) {
  const operator = requireOperator(r, log);
  return (req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
    if (!req.is('application/json')) {
      r.refuse('unsupported-media-type', `${req.method} ${req.originalUrl} sent ${req.headers['content-type'] ?? 'no content type'}`, { by: personOf(res)?.name });
      return deny(res, 415, 'unsupported-media-type', 'state-changing requests take a JSON body (Content-Type: application/json)');
    }
    operator(req, res, next);
  };
}

/**
 * Dashboard commands a viewer may send: watching only. Every other command (follow-up pushes, replays and
 * their controls, and any command added later) steers, so it needs an operator: deny by default.
 */
export const viewerEvents: readonly string[] = [dashboardEvents.sessionWatch];

/**
 * The `/dashboard` namespace: a connection needs a signed-in person (socket.data.person); commands other
 * than viewerEvents from a viewer are answered with a `forbidden` error and never reach their handler.
 */
export function guardDashboard(nsp: Namespace, signIn: SignIn, r: Refusals, log: (fields: Record<string, unknown>, msg: string) => void): void {
  nsp.use((socket, next) => {
    const person = signIn.person(socket.handshake.headers.cookie);
    if (person) {
      socket.data.person = person;
      return next();
    }
    r.refuse('unauthorized', 'dashboard connection without a signed-in person', { address: socket.handshake.address });
    next(new Error('unauthorized: sign in first (open the URL with ?token= printed at start, or /login)'));
  });
  nsp.on('connection', (socket: Socket) => {
    socket.use(([event, body, ...rest], next) => {
      const ack = [body, ...rest].reverse().find((a) => typeof a === 'function') as ((a: unknown) => void) | undefined;
      // the sign-in is checked again for every command: a signed-out or expired session stops here
      const person = signIn.person(socket.handshake.headers.cookie);
      if (!person) {
        r.refuse('unauthorized', `${event} after the sign-in ended`, { address: socket.handshake.address });
        ack?.({ error: { code: 'unauthorized', message: 'unauthorized: the sign-in ended; sign in again' } });
        return void socket.disconnect(true);
      }
      if (viewerEvents.includes(event)) return next();
      if (person.role === 'operator') {
        log({ by: person.name, event, ...(body && typeof body === 'object' && 'sessionId' in body ? { sessionId: (body as { sessionId: unknown }).sessionId } : {}) }, 'steering action');
        return next();
      }
      r.refuse('forbidden', `${event} needs the operator role`, { by: person.name, role: person.role });
      ack?.({ error: { code: 'forbidden', message: `${event} needs the operator role (signed in as ${person.name}, ${person.role})` } });
    });
  });
}
