/**
 * Development instrument of the scale benchmark (BENCH_SCALE_STALLS=MS): every event-loop stall longer than
 * MS ms, with what the machine did meanwhile, so that a long stall can be named rather than guessed:
 * - the main thread's own CPU time and its run-queue wait in the stall (Linux /proc/thread-self/schedstat:
 *   nanoseconds on a CPU, nanoseconds runnable but waiting): CPU close to the stall = it ran (JS or GC),
 *   wait close to it = it was ready but not scheduled, neither = it slept (a blocking call off the CPU);
 * - the garbage collections that overlap the stall (perf_hooks 'gc' entries: kind, duration) and the heap
 *   after it (used, external);
 * - the CPU the process's other threads (with their nice value: the analysis threads' priorities tell
 *   them apart), the rig's process and the whole machine (/proc/stat: busy, I/O wait, stolen) used in the stall;
 * - what a watcher thread saw the main thread do every 2 ms (its state and system call).
 * Linux only; elsewhere it records the stalls' lengths and GCs alone.
 */
import fs from 'node:fs';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

/** Samples of the main thread kept by the watcher thread: [monotonic us, state (char code), syscall number or -1]. */
const RING = 4096;
/**
 * The watcher: a thread that reads every 2 ms what the main thread is doing as the kernel sees it (its state:
 * R running or runnable, S sleeping, D in uninterruptible sleep, e.g. waiting for a disk; the system call it is
 * in, if any) into a ring in shared memory, so that a stall's samples can be read after it.
 */
const WATCHER = `
const fs = require('node:fs');
const { workerData } = require('node:worker_threads');
const ring = new Float64Array(workerData.ring);
const head = new Int32Array(workerData.head);
const base = '/proc/' + workerData.pid + '/task/' + workerData.pid + '/';
const tick = () => {
  try {
    const st = fs.readFileSync(base + 'stat', 'utf8');
    const state = st.charCodeAt(st.lastIndexOf(')') + 2);
    const sc = fs.readFileSync(base + 'syscall', 'utf8');
    const nr = sc.startsWith('running') ? -1 : Number(sc.split(' ')[0]);
    const i = Atomics.load(head, 0) % ${RING};
    ring[i * 3] = Number(process.hrtime.bigint() / 1000n);
    ring[i * 3 + 1] = state;
    ring[i * 3 + 2] = nr;
    Atomics.add(head, 0, 1);
  } catch {}
};
setInterval(tick, 2);
`;

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};

export interface StallRecord {
  /** Seconds since the recorder started, and the wall clock at the stall's end. */
  atS: number;
  wall: string;
  /** The stall's end on the monotonic clock in microseconds (what a --cpu-prof profile's timestamps count). */
  monoUs: number;
  /** The stall: the gap between two ticks minus the tick's 10 ms. */
  stallMs: number;
  /** The main thread in the gap: on a CPU, runnable but waiting (ms). */
  mainCpuMs: number | null;
  mainWaitMs: number | null;
  /** Garbage collections of the main thread's heap that overlap the gap. */
  gcs: { kind: string; ms: number; startS: number }[];
  heapUsedMB: number;
  /** Memory outside the JS heap held by JS objects (ArrayBuffers included). */
  externalMB: number;
  /** The other threads of this process that used CPU in the gap, most first (ms, nice). */
  threads: { tid: number; nice: number; cpuMs: number }[];
  /** The rig's process, and both cores together (ms of CPU in the gap; the machine's includes everything). */
  rigCpuMs: number | null;
  machineBusyMs: number | null;
  machineIowaitMs: number | null;
  machineStealMs: number | null;
  /** The main thread's page faults in the gap (minor, major). */
  mainFaults: [number, number] | null;
  /** What the watcher thread saw the main thread do in the gap: "state/syscall" -> samples (syscall -1: none, running). */
  mainStates: Record<string, number>;
}

const readNs = (file: string): [number, number] | null => {
  try {
    const [run, wait] = fs.readFileSync(file, 'utf8').split(' ');
    return [Number(run) / 1e6, Number(wait) / 1e6];
  } catch {
    return null;
  }
};

/** CPU ms of every thread of this process (tid -> ms on a CPU). */
function threadsCpu(): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[] = [];
  try {
    tids = fs.readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const t of tids) {
    const v = readNs(`/proc/self/task/${t}/schedstat`);
    if (v) out.set(Number(t), v[0]);
  }
  return out;
}

/**
 * The whole machine so far, in ms over every CPU (jiffies of 10 ms): busy (user + nice + system + irq +
 * softirq), waiting for I/O, and stolen (a virtual machine's CPUs running something else of the host's).
 */
function machineTimes(): { busy: number; iowait: number; steal: number } | null {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { busy: (f[0] + f[1] + f[2] + f[5] + f[6]) * 10, iowait: f[4] * 10, steal: f[7] * 10 };
  } catch {
    return null;
  }
}

/** Page faults of the main thread so far (minor, major: field 10 and 12 of /proc/thread-self/stat). */
function mainFaults(): [number, number] | null {
  try {
    const s = fs.readFileSync('/proc/thread-self/stat', 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [Number(f[10 - 3]), Number(f[12 - 3])];
  } catch {
    return null;
  }
}

const niceOf = (tid: number): number => {
  try {
    const s = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[19 - 3]);
  } catch {
    return NaN;
  }
};

/**
 * Starts a 10 ms ticker that records every stall over `thresholdMs`; `rigPid` (set once the rig runs) names
 * the rig's process. `stop()` ends it and returns the records, longest first.
 */
export function recordStalls(thresholdMs: number): { setRigPid(pid: number): void; maxStallMs(): number; stop(): StallRecord[] } {
  const t0 = performance.now();
  const gcs: { kind: string; start: number; ms: number }[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push({ kind: GC_KINDS[((e as PerformanceEntry & { detail?: { kind: number } }).detail)?.kind ?? -1] ?? 'gc', start: e.startTime, ms: e.duration });
    // only the last few seconds are ever asked for
    if (gcs.length > 2000) gcs.splice(0, gcs.length - 1000);
  });
  obs.observe({ entryTypes: ['gc'] });
  const ring = new SharedArrayBuffer(RING * 3 * 8);
  const head = new SharedArrayBuffer(4);
  const watcher = fs.existsSync(`/proc/${process.pid}/task/${process.pid}/syscall`) ? new Worker(WATCHER, { eval: true, workerData: { ring, head, pid: process.pid } }) : null;
  watcher?.unref();
  const ringF = new Float64Array(ring);
  const headI = new Int32Array(head);
  /** The watcher's samples between two monotonic times (us), counted by "state/syscall". */
  const statesIn = (fromUs: number, toUs: number): Record<string, number> => {
    const out: Record<string, number> = {};
    const h = Atomics.load(headI, 0);
    for (let k = Math.max(0, h - RING); k < h; k++) {
      const i = k % RING;
      const t = ringF[i * 3];
      if (t < fromUs || t > toUs) continue;
      const key = `${String.fromCharCode(ringF[i * 3 + 1])}/${ringF[i * 3 + 2]}`;
      out[key] = (out[key] ?? 0) + 1;
    }
    return out;
  };
  let rigPid = 0;
  let max = 0;
  const records: StallRecord[] = [];
  let last = { t: t0, main: readNs('/proc/thread-self/schedstat'), threads: threadsCpu(), rig: null as number | null, machine: machineTimes(), faults: mainFaults() };
  const timer = setInterval(() => {
    const t = performance.now();
    const now = { t, main: readNs('/proc/thread-self/schedstat'), threads: threadsCpu(), rig: rigPid ? (readNs(`/proc/${rigPid}/schedstat`)?.[0] ?? null) : null, machine: machineTimes(), faults: mainFaults() };
    const stall = t - last.t - 10;
    max = Math.max(max, stall);
    if (stall > thresholdMs) {
      const mainTid = process.pid;
      const threads = [...now.threads].filter(([tid]) => tid !== mainTid).map(([tid, ms]) => ({ tid, nice: 0, cpuMs: ms - (last.threads.get(tid) ?? ms) })).filter((x) => x.cpuMs > 1).sort((a, b) => b.cpuMs - a.cpuMs).slice(0, 6);
      for (const x of threads) x.nice = niceOf(x.tid);
      const mem = process.memoryUsage();
      const monoUs = Number(process.hrtime.bigint() / 1000n);
      records.push({
        atS: (t - t0) / 1000,
        wall: new Date(performance.timeOrigin + t).toISOString(),
        monoUs,
        stallMs: stall,
        mainCpuMs: now.main && last.main ? now.main[0] - last.main[0] : null,
        mainWaitMs: now.main && last.main ? now.main[1] - last.main[1] : null,
        gcs: gcs.filter((g) => g.start + g.ms > last.t && g.start < t).map((g) => ({ kind: g.kind, ms: g.ms, startS: (g.start - t0) / 1000 })),
        heapUsedMB: mem.heapUsed / 2 ** 20,
        externalMB: mem.external / 2 ** 20,
        threads,
        rigCpuMs: now.rig !== null && last.rig !== null ? now.rig - last.rig : null,
        machineBusyMs: now.machine && last.machine ? now.machine.busy - last.machine.busy : null,
        machineIowaitMs: now.machine && last.machine ? now.machine.iowait - last.machine.iowait : null,
        machineStealMs: now.machine && last.machine ? now.machine.steal - last.machine.steal : null,
        mainFaults: now.faults && last.faults ? [now.faults[0] - last.faults[0], now.faults[1] - last.faults[1]] : null,
        mainStates: statesIn(monoUs - (stall + 10) * 1000, monoUs),
      });
    }
    last = now;
  }, 10);
  return {
    setRigPid: (pid) => {
      rigPid = pid;
      last.rig = readNs(`/proc/${pid}/schedstat`)?.[0] ?? null;
    },
    maxStallMs: () => max,
    stop: () => {
      clearInterval(timer);
      obs.disconnect();
      void watcher?.terminate();
      return records.sort((a, b) => b.stallMs - a.stallMs);
    },
  };
}

/** One line per record: when, how long, the main thread's CPU / wait, GCs, the busiest other threads. */
export function stallLine(r: StallRecord): string {
  const f = (x: number | null) => (x === null ? '?' : x.toFixed(0));
  const gc = r.gcs.length ? r.gcs.map((g) => `${g.kind} ${g.ms.toFixed(1)}`).join(', ') : 'no gc';
  const th = r.threads.map((x) => `${x.tid}(n${x.nice}) ${x.cpuMs.toFixed(0)}`).join(' ');
  const states = Object.entries(r.mainStates).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} x${n}`).join(' ');
  return `${r.wall.slice(11, 23)} +${r.atS.toFixed(1)} s: stall ${r.stallMs.toFixed(0)} ms; main cpu ${f(r.mainCpuMs)} wait ${f(r.mainWaitMs)} [${states}]; ${gc}; heap ${r.heapUsedMB.toFixed(0)} MB ext ${r.externalMB.toFixed(0)} MB; faults ${r.mainFaults?.join('/') ?? '?'}; rig ${f(r.rigCpuMs)}; machine busy ${f(r.machineBusyMs)} iowait ${f(r.machineIowaitMs)} steal ${f(r.machineStealMs)}; threads ${th}`;
}
