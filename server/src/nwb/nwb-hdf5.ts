/**
 * Small helpers that write NWB 2.6 objects with h5wasm (HDF5 compiled to wasm; the Node build reads and
 * writes the host file system directly, so nothing is held in memory beyond the slice being written).
 * Every helper mirrors what pynwb 2.3.1 writes for the same object: the `namespace`, `neurodata_type` and
 * `object_id` attributes, the same attribute dtypes, and the same dataset layout.
 */
import { randomUUID } from 'node:crypto';
import h5wasm, { type Dataset, type Group } from 'h5wasm/node';

export const NWB_VERSION = '2.6.0';

/** Resolves once the wasm module is loaded; every other helper needs it. */
export const h5Ready = (): Promise<unknown> => h5wasm.ready;

export type H5Group = Group;
export type H5Dataset = Dataset;

/** Marks an HDF5 object as an instance of an NWB (`core`) or hdmf-common type. */
export function typed(obj: Group | Dataset, type: string, namespace: 'core' | 'hdmf-common' = 'core'): void {
  obj.create_attribute('namespace', namespace);
  obj.create_attribute('neurodata_type', type);
  obj.create_attribute('object_id', randomUUID());
}

/** A float64 attribute (h5wasm would store a whole number as an integer). */
export const floatAttr = (obj: Group | Dataset, name: string, value: number): void => obj.create_attribute(name, value, null, '<d');

/** A group of an NWB type with string attributes. */
export function typedGroup(parent: Group, name: string, type: string, attrs: Record<string, string> = {}, namespace: 'core' | 'hdmf-common' = 'core'): Group {
  const g = parent.create_group(name);
  typed(g, type, namespace);
  for (const [k, v] of Object.entries(attrs)) g.create_attribute(k, v);
  return g;
}

/** A scalar text dataset (`identifier`, `session_description`, ...). */
export const text = (parent: Group, name: string, value: string): Dataset => parent.create_dataset({ name, data: value });

/** A column of a DynamicTable, written whole. Numbers: float64 unless `dtype` says otherwise. */
export type Column =
  | { name: string; description: string; strings: string[] }
  | { name: string; description: string; values: ArrayLike<number>; dtype?: string; shape?: number[] };

/**
 * A DynamicTable (or a subtype such as TimeIntervals) with `n` rows and the given columns, ids 0..n-1.
 * 2-D columns give `shape` [n, k] and row-major values.
 */
export function dynamicTable(parent: Group, name: string, opts: { type?: string; namespace?: 'core' | 'hdmf-common'; description: string; n: number; columns: Column[] }): Group {
  const g = typedGroup(parent, name, opts.type ?? 'DynamicTable', {}, opts.namespace ?? (opts.type ? 'core' : 'hdmf-common'));
  g.create_attribute('colnames', opts.columns.map((c) => c.name));
  g.create_attribute('description', opts.description);
  typed(g.create_dataset({ name: 'id', data: BigInt64Array.from({ length: opts.n }, (_, i) => BigInt(i)), shape: [opts.n], dtype: '<q' }), 'ElementIdentifiers', 'hdmf-common');
  for (const c of opts.columns) {
    let d: Dataset;
    if ('strings' in c) {
      if (c.strings.length !== opts.n) throw new Error(`column ${c.name} has ${c.strings.length} rows, the table ${opts.n}`);
      d = g.create_dataset({ name: c.name, data: c.strings, shape: [opts.n] });
    } else {
      const shape = c.shape ?? [opts.n];
      if (shape[0] !== opts.n) throw new Error(`column ${c.name} has ${shape[0]} rows, the table ${opts.n}`);
      const dtype = c.dtype ?? '<d';
      const data = dtype === '<d' ? Float64Array.from(c.values) : dtype === '<B' ? Uint8Array.from(c.values) : dtype === '<i' ? Int32Array.from(c.values) : Float32Array.from(c.values);
      d = g.create_dataset({ name: c.name, data, shape, dtype });
    }
    typed(d, 'VectorData', 'hdmf-common');
    d.create_attribute('description', c.description);
  }
  return g;
}

/**
 * A dataset that grows along its first axis as rows arrive (chunked, gzip level 1), so an export of any
 * length writes one block at a time. `append` takes row-major rows of `rowSize` values.
 */
export class Appendable {
  readonly dataset: Dataset;
  rows = 0;

  constructor(parent: Group, name: string, readonly rowSize: number, dtype: string, chunkRows: number, rank: 1 | 2 = 2) {
    const shape = rank === 1 ? [0] : [0, rowSize];
    const chunks = rank === 1 ? [chunkRows] : [chunkRows, rowSize];
    const empty = dtype === '<H' ? new Uint16Array(0) : dtype === '<I' ? new Uint32Array(0) : new Float64Array(0);
    this.dataset = parent.create_dataset({ name, data: empty, shape, dtype, maxshape: rank === 1 ? [null] : [null, rowSize], chunks, compression: 1 });
  }

  /** Appends `values.length / rowSize` rows. */
  append(values: Uint16Array<ArrayBufferLike> | Uint32Array<ArrayBufferLike> | Float64Array<ArrayBufferLike>): void {
    const n = values.length / this.rowSize;
    if (!Number.isInteger(n)) throw new Error(`${values.length} values are not whole rows of ${this.rowSize}`);
    if (n === 0) return;
    const rank2 = this.dataset.shape?.length === 2;
    this.dataset.resize(rank2 ? [this.rows + n, this.rowSize] : [this.rows + n]);
    this.dataset.write_slice(rank2 ? [[this.rows, this.rows + n], []] : [[this.rows, this.rows + n]], values);
    this.rows += n;
  }
}

/** TimeSeries data attributes as pynwb writes them. */
export function seriesData(d: Dataset, unit: string, conversion = 1): void {
  floatAttr(d, 'conversion', conversion);
  floatAttr(d, 'offset', 0);
  floatAttr(d, 'resolution', -1);
  d.create_attribute('unit', unit);
}

/** The `timestamps` attributes of a TimeSeries. */
export function timestampsAttrs(d: Dataset): void {
  d.create_attribute('interval', 1, null, '<i');
  d.create_attribute('unit', 'seconds');
}
