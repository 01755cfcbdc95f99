/**
 * Sign-in for people: the start token (Jupyter-style, printed in a URL at start or fixed in config) or a
 * named account's password; either opens a server-side session named by a random id kept in an httpOnly,
 * SameSite=Strict cookie. Sessions live in memory: a restart signs everybody out.
 */
import fs from 'node:fs';
import { z } from 'zod';
import { fieldErrors } from '@sharedlens/shared';
import { AttemptLimiter } from './attempt-limiter.ts';
import { DUMMY_HASH, digest, matchSecret, randomToken, verifyPassword } from './secrets.ts';

export const roles = ['viewer', 'operator'] as const;
export type Role = (typeof roles)[number];
/** Who is signed in: an account name, or `token` for the start token. */
export interface Person {
  name: string;
  role: Role;
}
export type Account = { hash: string; role: Role };

export const COOKIE = 'sharedlens_session';

export const usersFileSchema = z.object({
  users: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/), z.object({ hash: z.string().min(1), role: z.enum(roles) })),
});

/** Reads the users file written by `npm run user -- add`; a missing file is no accounts, a bad one an error. */
export function readUsersFile(file: string): Record<string, Account> {
  if (!fs.existsSync(file)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`users file ${file} is not JSON: ${(e as Error).message}`);
  }
  const p = usersFileSchema.safeParse(raw);
  if (!p.success) throw new Error(`users file ${file}: ${fieldErrors(p.error).join('; ')}`);
  return p.data.users;
}

/** Reads one cookie from a Cookie header (`a=1; b=2`); undefined when absent. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

export interface SignInOptions {
  /** Fixed start token; empty: a random one. */
  token: string;
  tokenRole: Role;
  /** Accounts from config (auth.users). */
  users: Record<string, Account>;
  /** Accounts added by the user CLI; read at each password sign-in, so no restart is needed. */
  usersFile: string;
  sessionHours: number;
  maxFailedAttempts: number;
  failedWindowS: number;
  /** Adds `Secure` to the cookie (served over https). */
  secure: boolean;
  now?: () => number;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>) => void;
}

export type SignInResult = { sessionId: string; person: Person } | { error: { status: number; code: string; message: string } };

/** The sign-in state of one server: start token, accounts, open sessions, failed attempts per address. */
export class SignIn {
  /** The start token (print it only to the person who started the server). */
  readonly token: string;
  private readonly tokenDigest: Buffer[];
  private readonly sessions = new Map<string, { person: Person; expiresAt: number }>();
  private readonly limiter: AttemptLimiter;
  private readonly now: () => number;

  constructor(private readonly opts: SignInOptions) {
    this.token = opts.token || randomToken();
    this.tokenDigest = [digest(this.token)];
    this.now = opts.now ?? Date.now;
    this.limiter = new AttemptLimiter(opts.maxFailedAttempts, opts.failedWindowS * 1000, this.now);
  }

  /** Signs in with `{ token }` or `{ user, password }` from `address`; failures count against that address. */
  async signIn(creds: { token?: string; user?: string; password?: string }, address: string): Promise<SignInResult> {
    const waitS = this.limiter.blockedForS(address);
    if (waitS > 0) {
      this.opts.log('warn', 'sign-in refused: too many failed attempts from this address', { address });
      return { error: { status: 429, code: 'rate-limited', message: `too many failed sign-ins from ${address}; try again in ${waitS} s` } };
    }
    let person: Person | null = null;
    if (typeof creds.token === 'string') {
      if (matchSecret(this.tokenDigest, creds.token) === 0) person = { name: 'token', role: this.opts.tokenRole };
    } else if (typeof creds.user === 'string' && typeof creds.password === 'string') {
      const account = this.accounts()[creds.user];
      // an unknown name still costs one scrypt, so timing does not tell which names exist
      const ok = await verifyPassword(creds.password, account?.hash ?? DUMMY_HASH);
      if (ok && account) person = { name: creds.user, role: account.role };
    } else {
      return { error: { status: 400, code: 'invalid', message: 'sign in with { token } or { user, password }' } };
    }
    if (!person) {
      this.limiter.fail(address);
      this.opts.log('warn', 'sign-in failed', { address, ...(creds.user ? { user: creds.user } : { with: 'token' }) });
      return { error: { status: 401, code: 'unauthorized', message: creds.user !== undefined ? 'wrong user name or password' : 'wrong sign-in token' } };
    }
    if (this.sessions.size > 10_000) for (const [id, s] of this.sessions) if (s.expiresAt <= this.now()) this.sessions.delete(id);
    const sessionId = randomToken(32);
    this.sessions.set(sessionId, { person, expiresAt: this.now() + this.opts.sessionHours * 3_600_000 });
    this.opts.log('info', 'signed in', { user: person.name, role: person.role, address });
    return { sessionId, person };
  }

  /** The person whose session cookie is in this Cookie header, or null (none, unknown or expired). */
  person(cookieHeader: string | undefined): Person | null {
    const id = cookieValue(cookieHeader, COOKIE);
    const s = id ? this.sessions.get(id) : undefined;
    if (!s) return null;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(id!);
      return null;
    }
    return s.person;
  }

  /** Ends the session named in this Cookie header. */
  signOut(cookieHeader: string | undefined): void {
    const id = cookieValue(cookieHeader, COOKIE);
    if (id) this.sessions.delete(id);
  }

  /** Set-Cookie value for a session id (empty id: clears the cookie). */
  cookie(sessionId: string): string {
    const maxAge = sessionId ? Math.round(this.opts.sessionHours * 3600) : 0;
    return `${COOKIE}=${sessionId}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${this.opts.secure ? '; Secure' : ''}`;
  }

  /** Accounts from config, then the users file (the file wins); a broken file is logged and skipped. */
  private accounts(): Record<string, Account> {
    try {
      return { ...this.opts.users, ...readUsersFile(this.opts.usersFile) };
    } catch (e) {
      this.opts.log('error', (e as Error).message, {});
      return { ...this.opts.users };
    }
  }
}
