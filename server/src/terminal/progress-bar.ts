/**
 * A progress bar for long steps on a terminal: rewritten in place on a TTY, one line per tenth when piped
 * (so a log file gets ten lines, not a thousand). Written by hand: thirty characters and a carriage return.
 */
export interface ProgressBar {
  update(done: number, total: number, note?: string): void;
  /** Ends the bar's line. */
  done(message?: string): void;
}

/** `progressBar('features demo')` then `update(25, 72)` shows `features demo [##########          ] 25/72`. */
export function progressBar(label: string, out: NodeJS.WriteStream = process.stderr): ProgressBar {
  const tty = !!out.isTTY;
  let lastTenth = -1;
  let open = false;
  const line = (done: number, total: number, note?: string) => {
    const f = total > 0 ? Math.min(1, done / total) : 0;
    return `${label} [${'#'.repeat(Math.round(30 * f)).padEnd(30)}] ${done}/${total} (${Math.round(100 * f)}%)${note ? ` ${note}` : ''}`;
  };
  return {
    update(done, total, note) {
      if (tty) {
        out.write(`\r${line(done, total, note)}\x1b[K`);
        open = true;
        return;
      }
      const tenth = total > 0 ? Math.floor((10 * done) / total) : 0;
      if (tenth !== lastTenth) {
        lastTenth = tenth;
        out.write(`${line(done, total, note)}\n`);
      }
    },
    done(message) {
      if (open) out.write('\n');
      open = false;
      if (message) out.write(`${message}\n`);
    },
  };
}
