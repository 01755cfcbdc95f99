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
/** Log lines written about the option (at most one: not supported here). */
export const threadNiceCounts = { warnings: 0 };

/** Whether this system gives threads a nice value of their own (Linux with /proc/thread-self). */
export function perThreadNiceSupported(): boolean {
  return process.platform === 'linux' && fs.existsSync('/proc/thread-self');
}

/**
 * Sets the nice value analysis threads started from now on ask for (compute.workerNice; 0: off); `warn`
 * hears once that it cannot apply here.
 */
export function configureThreadNice(nice: number, warn: (message: string) => void): void {
  base = nice;
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
