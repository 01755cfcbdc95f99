/**
 * One server per data folder: an exclusive lock file `<dataDir>/server.pid` holding the owner's pid
 * and its start time, created with O_EXCL (like a database's postmaster.pid). A second server refuses to start
 * and names the other process; a lock left by a process that no longer exists, or whose pid now belongs to
 * another process (reused after a crash or reboot), is taken over. Clustered nodes share a data folder: each
 * takes `node-<nodeId>.pid`, and Redis decides which node writes which session (cluster/cluster-node.ts).
 */
import fs from 'node:fs';
import path from 'node:path';

export class DataDirLockedError extends Error {
  constructor(
    readonly pid: number,
    readonly file: string,
  ) {
    super(`the data folder is in use by another sharedlens server (pid ${pid}, lock ${file}); stop it, or point DATA_DIR elsewhere`);
  }
}

/** True when a process with this pid exists (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When the process `pid` started (clock ticks since boot, field 22 of /proc/PID/stat), or null where /proc
 * is not available. With the pid it names one process for good: a pid reused after a crash or a reboot has
 * another start time.
 */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * True when the lock's owner still runs: its pid is alive and, where the lock recorded the start time, the
 * live process is that same one (not an unrelated process that reused the pid); a lock without a start time
 * (older form) counts as held only by a node process.
 */
function holds(pid: number, started: string | undefined): boolean {
  if (!alive(pid)) return false;
  if (started !== undefined) {
    const now = processStartTime(pid);
    return now === null || now === started;
  }
  try {
    return /node|tsx/.test(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  } catch {
    return true;
  }
}

/**
 * Takes the data folder's lock for this process; throws DataDirLockedError when a live process holds it.
 * Returns the release function (removes the file if it is still ours).
 */
export function lockDataDir(dataDir: string, pid = process.pid, name = 'server.pid'): { file: string; release: () => void } {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, name);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx');
      const started = processStartTime(pid);
      fs.writeSync(fd, started === null ? `${pid}\n` : `${pid} ${started}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      return {
        file,
        release: () => {
          try {
            if (Number.parseInt(fs.readFileSync(file, 'utf8'), 10) === pid) fs.unlinkSync(file);
          } catch {
            // already gone
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let other = Number.NaN;
    let otherStarted: string | undefined;
    try {
      const [p, started] = fs.readFileSync(file, 'utf8').trim().split(/\s+/);
      other = /^\d+$/.test(p ?? '') ? Number(p) : Number.NaN;
      otherStarted = started && /^\d+$/.test(started) ? started : undefined;
    } catch {
      continue; // removed meanwhile: try again
    }
    if (Number.isInteger(other) && other > 0 && other !== pid && holds(other, otherStarted)) throw new DataDirLockedError(other, file);
    // stale: the process that wrote it is gone, its pid now names another process, or the file is garbage; take it over
    try {
      fs.unlinkSync(file);
    } catch {
      // another starter removed it first; the exclusive create decides
    }
  }
  throw new Error(`could not take the lock ${file}: another server keeps taking it`);
}
