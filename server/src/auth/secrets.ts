/** Secrets compared in constant time, and scrypt password hashes (node:crypto). */
import crypto from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(crypto.scrypt) as (password: string, salt: Buffer, keylen: number, options: crypto.ScryptOptions) => Promise<Buffer>;

/** SHA-256 of a secret: fixed length, so `timingSafeEqual` can compare any two. */
export const digest = (secret: string): Buffer => crypto.createHash('sha256').update(secret, 'utf8').digest();

/**
 * Index of the digest in `known` that `secret` matches, or -1. Every entry is compared, whatever matches,
 * so the time taken says nothing about which token (or how much of one) was right.
 */
export function matchSecret(known: Buffer[], secret: string): number {
  const d = digest(secret);
  let found = -1;
  for (let i = 0; i < known.length; i++) if (crypto.timingSafeEqual(known[i]!, d) && found < 0) found = i;
  return found;
}

/** A random URL-safe token of `bytes` random bytes (default 24: 32 characters). */
export const randomToken = (bytes = 24): string => crypto.randomBytes(bytes).toString('base64url');

// OWASP's scrypt minimum (N=2^17, r=8, p=1): ~0.2 s and 128 MiB per hash
const SCRYPT = { N: 2 ** 17, r: 8, p: 1, keylen: 32 };

/** Hashes a password as `scrypt$N$r$p$salt$hash` (base64url). */
export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: 256 * 1024 * 1024 });
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** True when `password` matches a hash made by hashPassword; false for a malformed hash. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const [kind, n, r, p, salt, key] = hash.split('$');
  if (kind !== 'scrypt' || !salt || !key) return false;
  const [N, R, P] = [Number(n), Number(r), Number(p)];
  if (![N, R, P].every((x) => Number.isInteger(x) && x > 0)) return false;
  const want = Buffer.from(key, 'base64url');
  if (want.length < 16) return false;
  const got = await scrypt(password, Buffer.from(salt, 'base64url'), want.length, { N, r: R, p: P, maxmem: 256 * 1024 * 1024 });
  return crypto.timingSafeEqual(got, want);
}

/** A plausible-looking hash verified when the user name is unknown, so both cases take the same time. */
export const DUMMY_HASH = 'scrypt$131072$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
