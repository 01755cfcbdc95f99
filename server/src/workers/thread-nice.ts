/**
 * Scheduling priority of the analysis threads (features, maps, models, refits; the report thread runs at
 * the normal priority, report-client.ts): each runs at compute.workerNice (default 10) above the process's
 * nice, so on two busy cores the event loop that acknowledges rig events is scheduled first. On Linux a
 * thread's nice value is its own (setpriority on a thread id; threads it starts later inherit it); the entry
 * (worker-entry.mjs) renices its own thread by the value it is given. Elsewhere the option is ignored, with
 * one log line.
 */
import fs from 'node:fs';
import os from 'node:os';

let base = 10;
let warned = false;
/**
 * Log lines written about the option (at most one: not supported here; at most one more: a thread could not
 * renice itself), and the threads that could not (each counted, the first one logged with its reason).
 */
export const threadNiceCounts = { warnings: 0, reniceFailures: 0 };

/** The channel on which worker-entry.mjs says that a thread could not renice itself. */
export const THREAD_NICE_CHANNEL = 'sharedlens:thread-nice';
let listener: BroadcastChannel | null = null;
let warnFailure: (message: string) => void = () => {};

/** A thread's report that it could not renice itself: counted; the first one logged with the reason (e.g. EACCES). */
function reniceFailed(m: { module: string; nice: number; code: string | null; message: string }): void {
  threadNiceCounts.reniceFailures++;
  if (threadNiceCounts.reniceFailures > 1) return;
  threadNiceCounts.warnings++;
  warnFailure(`compute.workerNice: an analysis thread (${m.module}) could not lower its priority by ${m.nice} (${m.code ?? 'error'}: ${m.message}); it runs at the event loop's priority (further failures are counted, not logged)`);
}

/** Whether this system gives threads a nice value of their own (Linux with /proc/thread-self). */
export function perThreadNiceSupported(): boolean {
  return process.platform === 'linux' && fs.existsSync('/proc/thread-self');
}

/**
 * Sets the nice value analysis threads started from now on ask for (compute.workerNice; 0: off); `warn`
 * hears once that it cannot apply here, and once that a thread could not renice itself (with the reason).
 */
export function configureThreadNice(nice: number, warn: (message: string) => void): void {
  base = nice;
  warnFailure = warn;
  if (!listener) {
    listener = new BroadcastChannel(THREAD_NICE_CHANNEL);
    listener.onmessage = (ev) => reniceFailed((ev as MessageEvent).data);
    // never keeps the process alive
    (listener as BroadcastChannel & { unref(): void }).unref();
  }
  if (nice > 0 && !perThreadNiceSupported() && !warned) {
    warned = true;
    threadNiceCounts.warnings++;
    warn(`compute.workerNice ${nice} ignored: per-thread priorities need Linux (${os.platform()} here); analysis threads run at the event loop's priority`);
  }
}

/**
 * The nice value for a thread's workerData: the configured one, or `cap` when that is lower (the feature
 * threads ask for at most 4: their throughput is compared with a plain script at the normal priority).
 */
export function threadNice(cap = Infinity): number {
  return perThreadNiceSupported() ? Math.min(base, cap) : 0;
}

/** The nice value of thread `tid` of this process (Linux: field 19 of /proc/self/task/TID/stat). */
export function threadNiceOf(tid: number): number {
  const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  // fields after the command's closing parenthesis start at field 3
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19 - 3]);
}

/** This thread's id (Linux: the last part of /proc/thread-self, "PID/task/TID"). */
export function currentThreadId(): number {
  return Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
}
