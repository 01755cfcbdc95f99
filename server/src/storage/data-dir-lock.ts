/**
 * One server per data folder: an exclusive lock file `<dataDir>/server.pid` holding the owner's pid, created
 * with O_EXCL (like a database's postmaster.pid). A second server refuses to start and names the other
 * process; a lock left by a process that no longer exists is taken over.
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
 * Takes the data folder's lock for this process; throws DataDirLockedError when a live process holds it.
 * Returns the release function (removes the file if it is still ours).
 */
export function lockDataDir(dataDir: string, pid = process.pid): { file: string; release: () => void } {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'server.pid');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx');
      fs.writeSync(fd, `${pid}\n`);
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
    try {
      other = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
    } catch {
      continue; // removed meanwhile: try again
    }
    if (Number.isInteger(other) && other > 0 && other !== pid && alive(other)) throw new DataDirLockedError(other, file);
    // stale: the process that wrote it is gone (or the file is unreadable garbage); take it over
    try {
      fs.unlinkSync(file);
    } catch {
      // another starter removed it first; the exclusive create decides
    }
  }
  throw new Error(`could not take the lock ${file}: another server keeps taking it`);
}
