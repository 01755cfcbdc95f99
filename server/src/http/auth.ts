/**
 * `/api/auth`: sign in (`POST /login` with `{ token }` or `{ user, password }`), sign out, who am I; and the
 * pages' side of sign-in: the login page at /login, and the start-token URL (`/?token=...`), which sets
 * the session cookie and redirects to the same page without the token.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import type { Refusals } from '../auth/guards.ts';
import type { SignIn } from '../auth/sign-in.ts';
import { apiError } from './api-error.ts';

const loginDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'login-page');

/** Routes under /api/auth. Sign-in takes JSON only (like every state-changing request). */
export function authRouter(signIn: SignIn): Router {
  const router = Router();
  router.post('/login', async (req, res, next) => {
    try {
      if (!req.is('application/json')) return apiError(res, 415, 'unsupported-media-type', 'sign in with a JSON body (Content-Type: application/json)');
      const body = (req.body ?? {}) as { token?: unknown; user?: unknown; password?: unknown };
      const str = (v: unknown) => (typeof v === 'string' && v.length <= 1024 ? v : undefined);
      const r = await signIn.signIn({ token: str(body.token), user: str(body.user), password: str(body.password) }, req.socket.remoteAddress ?? '');
      if ('error' in r) return apiError(res, r.error.status, r.error.code, r.error.message);
      res.setHeader('Set-Cookie', signIn.cookie(r.sessionId));
      res.json(r.person);
    } catch (e) {
      next(e);
    }
  });
  router.post('/logout', (req, res) => {
    signIn.signOut(req.headers.cookie);
    res.setHeader('Set-Cookie', signIn.cookie(''));
    res.json({ signedOut: true });
  });
  router.get('/me', (req, res) => {
    const person = signIn.person(req.headers.cookie);
    if (!person) return apiError(res, 401, 'unauthorized', 'not signed in');
    res.json(person);
  });
  return router;
}

/** The login page (/login, /login/login.js, /login/login.css): open to everybody. */
export function loginPageRouter(): Router {
  const router = Router();
  router.get('/login', (_req, res) => res.sendFile(path.join(loginDir, 'index.html')));
  router.use('/login', express.static(loginDir, { index: false }));
  return router;
}

/**
 * Pages need sign-in: `?token=` signs in with the start token and redirects without it (the token leaves
 * the address bar and the history); a person not signed in is sent to /login.
 */
export function pageSignIn(signIn: SignIn, r: Refusals) {
  return async (req: Request, res: Response, next: NextFunction) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    const token = req.query.token;
    if (typeof token === 'string') {
      const result = await signIn.signIn({ token }, req.socket.remoteAddress ?? '');
      if ('error' in result) {
        r.refuse(result.error.code, `token URL: ${result.error.message}`, { address: req.socket.remoteAddress });
        return res.redirect(303, `/login?error=${encodeURIComponent(result.error.message)}`);
      }
      res.setHeader('Set-Cookie', signIn.cookie(result.sessionId));
      const url = new URL(req.originalUrl, 'http://x');
      url.searchParams.delete('token');
      return res.redirect(303, url.pathname + url.search);
    }
    if (signIn.person(req.headers.cookie)) return next();
    res.redirect(303, `/login?next=${encodeURIComponent(req.originalUrl)}`);
  };
}
