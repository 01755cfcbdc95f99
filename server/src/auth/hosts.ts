/**
 * Which Host names the server answers and which Origins may talk to it. A page on another origin cannot
 * use a person's cookie (SameSite=Strict) and is refused by Origin; DNS rebinding (another name resolving
 * to this machine) is refused by Host.
 */
import os from 'node:os';
import type { IncomingMessage } from 'node:http';

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]']);

/** True for a loopback bind address (127.0.0.0/8, ::1, localhost). */
export const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);

/** `example.org:8450` -> `example.org`; `[::1]:8450` -> `[::1]`; lower case. */
export function hostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.indexOf(':');
  return colon >= 0 && h.indexOf(':', colon + 1) < 0 ? h.slice(0, colon) : h;
}

/**
 * The Host names answered: localhost, 127.0.0.1, [::1], the bound host (for a wildcard bind: this machine's
 * own interface addresses) and `extra` (config.allowedHosts).
 */
export function allowedHostNames(bindHost: string, extra: string[]): Set<string> {
  const names = new Set(['localhost', '127.0.0.1', '[::1]', ...extra.map((h) => hostName(h))]);
  const bracket = (a: string) => (a.includes(':') ? `[${a.toLowerCase()}]` : a.toLowerCase());
  if (WILDCARDS.has(bindHost)) {
    for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) names.add(bracket(a.address));
  } else names.add(bracket(bindHost.replace(/^\[|\]$/g, '')));
  return names;
}

/** Why a request is refused by Host or Origin, or null when it may pass. */
export function hostOrOriginProblem(req: IncomingMessage, allowed: Set<string>): string | null {
  const host = req.headers.host;
  if (!host || !allowed.has(hostName(host))) return `host-not-allowed: Host "${host ?? ''}" is not one this server answers (config allowedHosts)`;
  const origin = req.headers.origin;
  // clients outside a browser (rigs, scripts) send no Origin; a browser page must come from this very server
  if (origin !== undefined) {
    let originHost: string;
    try {
      originHost = new URL(origin).host.toLowerCase();
    } catch {
      return `origin-not-allowed: Origin "${origin}" is not a URL`;
    }
    if (originHost !== host.trim().toLowerCase()) return `origin-not-allowed: pages from ${origin} may not use this server`;
  }
  return null;
}
