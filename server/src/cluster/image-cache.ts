/**
 * A worker's images by content hash on disk (`<compute.cacheDir>/cluster-images/`, docs/deploy.md), bounded
 * by bytes (`cluster.workerCacheMB`): past the bound the least recently used images are deleted, and fetched
 * again from the node when a job names them. A worker runs for days over many stimulus sets; unbounded, the
 * folder kept every image it ever saw. The images of a running job are pinned (never deleted under it), so the
 * folder exceeds the bound by at most the running jobs' images until they finish.
 * The bound is this process's: files another process deletes from a shared folder are fetched again.
 * Written here, not with `lru-cache` (not a dependency of the project): the LRU is a Map kept in use order;
 * the files, the pins and the index of an earlier run's files (by modification time) are this cache's own.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Fetches an image's bytes by content hash (from the node named in the job, or Redis), checked against the hash. */
export type FetchImage = (hash: string, from?: string) => Promise<Buffer>;

/** A temporary file this old is a killed worker's leftover, deleted when the cache opens. */
const STALE_TMP_MS = 3600_000;

export class ImageCache {
  /** Hash -> bytes, least recently used first (a Map keeps insertion order; a use moves a hash to the end). */
  private readonly entries = new Map<string, number>();
  /** Hash -> running uses (pinned: not evicted). */
  private readonly pins = new Map<string, number>();
  /** Fetches in flight: two jobs naming one image fetch it once. */
  private readonly fetching = new Map<string, Promise<void>>();
  private total = 0;
  /** Uses answered from the folder, images fetched, images deleted for the bound. */
  readonly counts = { hits: 0, fetched: 0, evicted: 0 };

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly fetchImage: FetchImage,
    private readonly log: (msg: string, fields: Record<string, unknown>) => void = () => {},
  ) {
    if (!(maxBytes > 0)) throw new Error(`image cache bound must be positive, not ${maxBytes}`);
    fs.mkdirSync(dir, { recursive: true });
    const now = Date.now();
    const found: { hash: string; size: number; mtimeMs: number }[] = [];
    for (const name of fs.readdirSync(dir)) {
      const st = fs.statSync(path.join(dir, name), { throwIfNoEntry: false });
      if (!st?.isFile()) continue;
      if (/^[0-9a-f]{64}$/.test(name)) found.push({ hash: name, size: st.size, mtimeMs: st.mtimeMs });
      else if (name.endsWith('.tmp') && now - st.mtimeMs > STALE_TMP_MS) fs.rmSync(path.join(dir, name), { force: true });
    }
    // an earlier run's files in their order of last use (a use touches the file)
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const f of found) this.add(f.hash, f.size);
    this.evict();
  }

  /** Bytes of the images in the folder this cache knows of. */
  get bytes(): number {
    return this.total;
  }

  /** Whether the folder holds the image of `hash` (as far as this cache knows). */
  has(hash: string): boolean {
    return this.entries.has(hash);
  }

  /** Runs `fn` with the files of `hashes` (fetched when missing), pinned until it settles; then trims to the bound. */
  async use<T>(hashes: string[], from: string | undefined, fn: (files: string[]) => Promise<T>): Promise<T> {
    for (const h of hashes) this.pins.set(h, (this.pins.get(h) ?? 0) + 1);
    try {
      const files = await Promise.all(hashes.map((h) => this.file(h, from)));
      return await fn(files);
    } finally {
      for (const h of hashes) {
        const n = (this.pins.get(h) ?? 1) - 1;
        if (n > 0) this.pins.set(h, n);
        else this.pins.delete(h);
      }
      this.evict();
    }
  }

  private add(hash: string, size: number): void {
    this.total += size - (this.entries.get(hash) ?? 0);
    this.entries.delete(hash);
    this.entries.set(hash, size);
  }

  /** The file of one image: a use of a known one (moved to the recent end, its file touched), or fetched once. */
  private async file(hash: string, from?: string): Promise<string> {
    const file = path.join(this.dir, hash);
    const size = this.entries.get(hash);
    if (size !== undefined && fs.existsSync(file)) {
      this.counts.hits++;
      this.add(hash, size);
      const now = new Date();
      await fs.promises.utimes(file, now, now).catch(() => {});
      return file;
    }
    let running = this.fetching.get(hash);
    if (!running) {
      running = this.fetchOnce(hash, file, from).finally(() => this.fetching.delete(hash));
      this.fetching.set(hash, running);
    }
    await running;
    return file;
  }

  /** Fetched and written under a temporary name, then renamed: a reader never sees half a file. */
  private async fetchOnce(hash: string, file: string, from?: string): Promise<void> {
    const bytes = await this.fetchImage(hash, from);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    await fs.promises.writeFile(tmp, bytes);
    await fs.promises.rename(tmp, file);
    this.counts.fetched++;
    this.add(hash, bytes.length);
  }

  /** Deletes the least recently used unpinned images until the folder is within the bound. */
  private evict(): void {
    if (this.total <= this.maxBytes) return;
    let evicted = 0;
    let freed = 0;
    for (const [hash, size] of this.entries) {
      if (this.total <= this.maxBytes) break;
      if (this.pins.has(hash) || this.fetching.has(hash)) continue;
      fs.rmSync(path.join(this.dir, hash), { force: true });
      this.entries.delete(hash);
      this.total -= size;
      freed += size;
      evicted++;
    }
    if (evicted === 0) return;
    this.counts.evicted += evicted;
    this.log('image cache over its bound: least recently used images deleted', { evicted, freedBytes: freed, cachedBytes: this.total, maxBytes: this.maxBytes, evictedTotal: this.counts.evicted });
  }
}
