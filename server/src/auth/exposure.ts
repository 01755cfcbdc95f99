/**
 * Refusals at start: bound to an address other people can reach, the server must not accept a secret
 * that is written in the documentation. Each problem names the key to set.
 */
import { isLoopback } from './hosts.ts';

/** Rig tokens that appear in the docs and the default config. */
export const DEMO_RIG_TOKENS: readonly string[] = ['demo-rig-token'];
/** A fixed sign-in token shorter than this is guessable (the random one has 32 characters). */
export const MIN_FIXED_TOKEN = 16;

/**
 * Why the server must not start with this configuration, or [] when it may. Only non-loopback binds are
 * checked: on 127.0.0.1 nobody else can use the demo secrets.
 */
export function exposureProblems(cfg: { host: string; rigTokens: Record<string, string>; auth: { token: string } }): string[] {
  if (isLoopback(cfg.host)) return [];
  const problems: string[] = [];
  for (const t of Object.keys(cfg.rigTokens)) {
    if (DEMO_RIG_TOKENS.includes(t)) problems.push(`rigTokens: the demo rig token "${t}" (rig "${cfg.rigTokens[t]}") is in the documentation; set rigTokens (or RIG_TOKENS=TOKEN=RIG,...) to your own tokens before binding ${cfg.host}`);
  }
  if (cfg.auth.token && cfg.auth.token.length < MIN_FIXED_TOKEN) problems.push(`auth.token: a fixed sign-in token of ${cfg.auth.token.length} characters is guessable; set auth.token (or AUTH_TOKEN) to at least ${MIN_FIXED_TOKEN} random characters, or leave it empty for a random one`);
  return problems;
}
