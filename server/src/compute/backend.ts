/**
 * TensorFlow.js backend selection: `tensorflow` (the optional @tensorflow/tfjs-node-gpu, when it loads),
 * else WebAssembly (SIMD; binaries inside the npm package), with the cpu backend as the reference.
 *
 * The wasm backend lacks Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropInput and
 * DepthwiseConv2dNativeBackpropFilter; they are provided here by delegating to the cpu backend. The fused
 * convolution gradients of tfjs compute the filter gradient eagerly although a pixel map needs only the
 * input gradient (79.6 s of 85 s of one MobileNetV2 gradient on the cpu backend, measured for the compute
 * issue); inside `inputGradientOnly` the filter-gradient kernels return zeros instead, on every backend.
 */
import * as tf from '@tensorflow/tfjs-core';
// the gradient registrations ship only in the umbrella package's bundle (registries are global)
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { gpuPackageStatus } from './gpu-package.ts';
import type { KernelConfig, KernelFunc, TensorInfo, NamedAttrMap, KernelBackend } from '@tensorflow/tfjs-core';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';
export type BackendChoice = BackendName | 'auto';

let filterGradSkipped = false;

/** Runs `fn` with filter gradients skipped (they come back as zeros); only the input gradient is valid. */
export function inputGradientOnly<T>(fn: () => T): T {
  const before = filterGradSkipped;
  filterGradSkipped = true;
  try {
    return fn();
  } finally {
    filterGradSkipped = before;
  }
}

const FILTER_GRADS = ['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropFilter'];
const MISSING_IN_WASM = ['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter'];

/** Zeros of the filter's shape, made on the calling backend (cpu: makeTensorInfo; wasm: makeOutput). */
function zerosLikeFilter(backend: KernelBackend, attrs: NamedAttrMap): TensorInfo {
  const shape = attrs.filterShape as number[];
  const size = shape.reduce((a, b) => a * b, 1);
  return writeTensor(backend, shape, new Float32Array(size));
}

/** A float32 tensor with the given values on `backend`. */
function writeTensor(backend: KernelBackend, shape: number[], values: Float32Array): TensorInfo {
  const b = backend as unknown as {
    makeTensorInfo?: (s: number[], d: string, v: Float32Array) => TensorInfo;
    makeOutput?: (s: number[], d: string) => TensorInfo;
    typedArrayFromHeap?: (t: TensorInfo) => Float32Array;
  };
  if (b.makeTensorInfo) return b.makeTensorInfo(shape, 'float32', values);
  const out = b.makeOutput!(shape, 'float32');
  b.typedArrayFromHeap!(out).set(values);
  return out;
}

/** A kernel for `backendName` that runs the cpu implementation on copies of the inputs. */
function delegateToCpu(kernelName: string, backendName: string, cpuFunc: KernelFunc): KernelConfig {
  return {
    kernelName,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      if (filterGradSkipped && FILTER_GRADS.includes(kernelName)) return zerosLikeFilter(backend as KernelBackend, attrs!);
      const cpu = tf.findBackend('cpu') as unknown as { makeTensorInfo: (s: number[], d: string, v: unknown) => TensorInfo; readSync: (id: unknown) => Float32Array; disposeIntermediateTensorInfo: (t: TensorInfo) => void };
      const own = backend as unknown as { readSync: (id: unknown) => Float32Array };
      const copies: Record<string, TensorInfo> = {};
      for (const [k, t] of Object.entries(inputs)) copies[k] = cpu.makeTensorInfo(t!.shape, t!.dtype, own.readSync(t!.dataId));
      const out = cpuFunc({ inputs: copies, backend: cpu as unknown as KernelBackend, attrs: attrs! }) as TensorInfo;
      const result = writeTensor(backend as KernelBackend, out.shape, cpu.readSync(out.dataId));
      for (const t of Object.values(copies)) cpu.disposeIntermediateTensorInfo(t);
      cpu.disposeIntermediateTensorInfo(out);
      return result;
    },
  };
}

type Info = TensorInfo & { dataId: object };

/** True when a stride or dilation attribute is 1 in every dimension (or absent). */
const allOnes = (v: number | number[] | undefined) => v === undefined || (Array.isArray(v) ? v.every((x) => x === 1) : v === 1);

/** A depthwise filter (kh x kw x C x 1) rotated by 180 degrees in space. */
function flipSpatial(vals: Float32Array, shape: number[]): Float32Array {
  const [kh, kw, c] = shape;
  const out = new Float32Array(vals.length);
  for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) for (let k = 0; k < c; k++) out[(i * kw + j) * c + k] = vals[((kh - 1 - i) * kw + (kw - 1 - j)) * c + k];
  return out;
}
interface WasmLike {
  readSync: (id: unknown) => Float32Array;
  disposeData: (id: unknown) => void;
}

/**
 * Transposed and flipped copies of filters, kept between gradients. With the zero-copy Identity below, a
 * model's weights reach the gradient kernels as the same tensors on every run, so their dataIds are stable
 * keys (with the copying wasm Identity every run brought new dataIds, and a cache on them leaked about
 * 50 MB of wasm heap per gradient). A dataId object is never reused, so a key cannot match other values.
 * Bounded: past `maxFilters` filters the copies of the oldest are freed.
 */
class DerivedFilterCache {
  /** Per filter (oldest first), its copies by kind. */
  private readonly entries = new Map<object, Map<string, Info>>();
  constructor(private readonly maxFilters: number) {}

  get(backend: KernelBackend, filter: Info, kind: string, shape: number[], make: () => Float32Array): Info {
    const byKind = this.entries.get(filter.dataId) ?? new Map<string, Info>();
    const hit = byKind.get(kind);
    if (hit) return hit;
    const info = writeTensor(backend, shape, make()) as Info;
    byKind.set(kind, info);
    this.entries.set(filter.dataId, byKind);
    for (const [key, old] of this.entries) {
      if (this.entries.size <= this.maxFilters) break;
      this.entries.delete(key);
      for (const e of old.values()) (backend as unknown as WasmLike).disposeData(e.dataId);
    }
    return info;
  }
}
const derivedFilters = new DerivedFilterCache(128);

/**
 * A convolution filter (kh x kw x Cin x Cout, read as a K x Cout matrix) transposed to Cout x K, kept:
 * the 1x1 input gradient reads it as a 1 x 1 x Cout x Cin filter, the im2col one as a Cout x K matrix.
 */
function transposedFilter(backend: KernelBackend, filter: Info): Info {
  const cout = filter.shape[3];
  const K = filter.shape[0] * filter.shape[1] * filter.shape[2];
  return derivedFilters.get(backend, filter, 'transposed', [cout, K], () => {
    const vals = (backend as unknown as WasmLike).readSync(filter.dataId);
    const t = new Float32Array(vals.length);
    for (let k = 0; k < K; k++) for (let o = 0; o < cout; o++) t[o * K + k] = vals[k * cout + o];
    return t;
  });
}

/** A depthwise filter rotated by 180 degrees in space, kept. */
const flippedFilter = (backend: KernelBackend, filter: Info): Info =>
  derivedFilters.get(backend, filter, 'flipped', filter.shape, () => flipSpatial((backend as unknown as WasmLike).readSync(filter.dataId), filter.shape));

/**
 * Input gradient of a 1x1, stride-1 convolution as a forward 1x1 convolution of dy with the transposed
 * filter, dx = dy W^T (XNNPACK's fast path). Measured on MobileNetV2 1.4: the generic wasm
 * Conv2DBackpropInput took 535 ms of a 1.1 s gradient in these layers, BatchMatMul still 487 ms.
 */
function fastConv2DBackpropInput(generic: KernelFunc, conv2d: KernelFunc, matMul: KernelFunc): KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const { strides, dilations, dataFormat } = args.attrs as { strides: number | number[]; dilations?: number | number[]; dataFormat?: string };
    if (!allOnes(dilations) || (dataFormat && dataFormat !== 'NHWC')) return generic(args);
    if (filter.shape[0] !== 1 || filter.shape[1] !== 1 || !allOnes(strides)) return im2colConv2DBackpropInput(args, matMul);
    const [cin, cout] = [filter.shape[2], filter.shape[3]];
    const ft = transposedFilter(args.backend as KernelBackend, filter);
    return conv2d({ inputs: { x: dy, filter: { dataId: ft.dataId, shape: [1, 1, cout, cin], dtype: 'float32' } }, backend: args.backend, attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined } as unknown as NamedAttrMap });
  };
}

/**
 * Input gradient of any other (NHWC, undilated) convolution as one matrix product and a scatter-add:
 * columns = dy (P x Cout) W^T (Cout x kh kw Cin), then each column entry is added to the input pixel its
 * patch position came from (col2im). For MobileNetV2's 3x3 stride-2 stem the generic wasm kernel took
 * 15.8 ms of a 157 ms gradient.
 */
function im2colConv2DBackpropInput(args: Parameters<KernelFunc>[0], matMul: KernelFunc): TensorInfo {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const { strides, pad, inputShape, dimRoundingMode } = args.attrs as unknown as { strides: number | [number, number]; pad: 'same' | 'valid' | number; inputShape: [number, number, number, number]; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
  const backend = args.backend as unknown as WasmLike;
  const [kh, kw, cin, cout] = filter.shape;
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  const [b, hin, win] = inputShape;
  const { outHeight, outWidth, strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  const P = b * outHeight * outWidth;
  const K = kh * kw * cin;
  // W^T kept as its own matrix: the wasm matrix product with transposeB took 15 ms here, without 1.3 ms
  const wt = transposedFilter(args.backend as KernelBackend, filter);
  const cols = matMul({
    inputs: { a: { dataId: dy.dataId, shape: [1, P, cout], dtype: 'float32' }, b: { dataId: wt.dataId, shape: [1, cout, K], dtype: 'float32' } },
    backend: args.backend,
    attrs: { transposeA: false, transposeB: false } as unknown as NamedAttrMap,
  }) as Info;
  const c = backend.readSync(cols.dataId);
  backend.disposeData(cols.dataId);
  const dx = new Float32Array(b * hin * win * cin);
  for (let n = 0; n < b; n++)
    for (let oy = 0; oy < outHeight; oy++)
      for (let ox = 0; ox < outWidth; ox++) {
        const row = ((n * outHeight + oy) * outWidth + ox) * K;
        for (let i = 0; i < kh; i++) {
          const iy = oy * strideHeight - top + i;
          if (iy < 0 || iy >= hin) continue;
          for (let j = 0; j < kw; j++) {
            const ix = ox * strideWidth - left + j;
            if (ix < 0 || ix >= win) continue;
            const to = ((n * hin + iy) * win + ix) * cin;
            const from = row + (i * kw + j) * cin;
            for (let ch = 0; ch < cin; ch++) dx[to + ch] += c[from + ch];
          }
        }
      }
  return writeTensor(args.backend as KernelBackend, inputShape, dx);
}

/**
 * Input gradient of a stride-1 depthwise convolution with 'same' padding and an odd kernel, as a
 * depthwise convolution of dy with the spatially flipped filter (the wasm backend has no kernel for it;
 * the cpu fallback took 351 ms of a 1.1 s MobileNetV2 gradient). Other cases use `fallback`.
 */
function fastDepthwiseBackpropInput(fallback: KernelFunc, depthwise: KernelFunc): KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: Info; filter: Info };
    const { strides, dilations, pad } = args.attrs as { strides: number | number[]; dilations?: number | number[]; pad: unknown };
    const [kh, kw, , mult] = filter.shape;
    const stride = Array.isArray(strides) ? strides : [strides, strides];
    if (!allOnes(dilations) || pad !== 'same' || kh % 2 === 0 || kw % 2 === 0 || mult !== 1) return fallback(args);
    if (stride[0] !== 1 || stride[1] !== 1) return stridedDepthwiseBackpropInput(args, depthwise, stride as [number, number]);
    const f = flippedFilter(args.backend as KernelBackend, filter);
    return depthwise({ inputs: { x: dy, filter: f }, backend: args.backend, attrs: { strides: [1, 1], pad: 'same', dilations: [1, 1], dimRoundingMode: undefined } as unknown as NamedAttrMap });
  };
}

/**
 * Strided ('same') depthwise input gradient as a stride-1 'valid' depthwise convolution of the zero-dilated,
 * padded dy with the flipped filter: dy[o] goes to position (k - 1 - padBefore) + s o of an array of
 * length in + k - 1 (the stride-2 layers of MobileNetV2 otherwise went through the cpu kernel).
 */
function stridedDepthwiseBackpropInput(args: Parameters<KernelFunc>[0], depthwise: KernelFunc, stride: [number, number]): TensorInfo {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const { inputShape } = args.attrs as { inputShape: number[] };
  const backend = args.backend as unknown as WasmLike;
  const [kh, kw, c] = filter.shape;
  const [b, hin, win] = inputShape;
  const [, hout, wout] = dy.shape;
  const padTop = Math.floor(Math.max((hout - 1) * stride[0] + kh - hin, 0) / 2);
  const padLeft = Math.floor(Math.max((wout - 1) * stride[1] + kw - win, 0) / 2);
  const H = hin + kh - 1;
  const W = win + kw - 1;
  const offH = kh - 1 - padTop;
  const offW = kw - 1 - padLeft;
  const src = backend.readSync(dy.dataId);
  const dil = new Float32Array(b * H * W * c);
  for (let n = 0; n < b; n++)
    for (let o = 0; o < hout; o++)
      for (let p = 0; p < wout; p++) {
        const to = ((n * H + offH + stride[0] * o) * W + offW + stride[1] * p) * c;
        const from = ((n * hout + o) * wout + p) * c;
        dil.set(src.subarray(from, from + c), to);
      }
  const f = flippedFilter(args.backend as KernelBackend, filter);
  const x = writeTensor(args.backend as KernelBackend, [b, H, W, c], dil) as Info;
  try {
    return depthwise({ inputs: { x, filter: f }, backend: args.backend, attrs: { strides: [1, 1], pad: 'valid', dilations: [1, 1], dimRoundingMode: undefined } as unknown as NamedAttrMap }) as TensorInfo;
  } finally {
    backend.disposeData(x.dataId);
  }
}

let patched = false;
function patchKernels(): void {
  if (patched) return;
  patched = true;
  // ReLU6 gradient without boolean masks and casts (tfjs: lessEqual, step, cast, two multiplies; the
  // elementwise ops took about 150 ms of a 0.47 s MobileNetV2 gradient on wasm): dy * (step(x) - step(x - 6))
  tf.registerGradient({
    kernelName: 'Relu6',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      return { x: () => tf.mul(dy as tf.Tensor, tf.sub(tf.step(x), tf.step(tf.sub(x, 6)))) };
    },
  });
  // cpu: keep its implementations, but skip filter gradients when asked
  for (const name of FILTER_GRADS) {
    const k = tf.getKernel(name, 'cpu');
    if (!k) continue;
    tf.unregisterKernel(name, 'cpu');
    tf.registerKernel({ kernelName: name, backendName: 'cpu', kernelFunc: (args) => (filterGradSkipped ? zerosLikeFilter(args.backend as KernelBackend, args.attrs!) : k.kernelFunc(args)) });
  }
  for (const name of MISSING_IN_WASM) {
    if (tf.getKernel(name, 'wasm')) continue;
    tf.registerKernel(delegateToCpu(name, 'wasm', tf.getKernel(name, 'cpu')!.kernelFunc));
  }
  // fast paths wrap the registered kernels; their setupFunc (binding the wasm functions) is kept
  const wrap = (name: string, make: (original: KernelFunc) => KernelFunc) => {
    const original = tf.getKernel(name, 'wasm')!;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...original, kernelFunc: make(original.kernelFunc) });
  };
  const wasmKernel = (name: string): KernelFunc => (args) => tf.getKernel(name, 'wasm')!.kernelFunc(args);
  wrap('DepthwiseConv2dNativeBackpropInput', (fallback) => fastDepthwiseBackpropInput(fallback, wasmKernel('DepthwiseConv2dNative')));
  wrap('Conv2DBackpropInput', (generic) => fastConv2DBackpropInput(generic, wasmKernel('Conv2D'), wasmKernel('BatchMatMul')));
  // Identity without a copy (a shared reference, as the wasm Reshape and the cpu Identity do): the graph
  // model passes every weight through an Identity per run, and the wasm kernel copied them all
  wrap('Identity', (copying) => (args) => {
    const x = (args.inputs as { x: Info }).x;
    if (x.dtype === 'string') return copying(args);
    (args.backend as unknown as { incRef: (id: object) => void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
}

/** Selects and initialises the backend; returns the one in use. */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendName> {
  patchKernels();
  let gpu = 'not tried (COMPUTE_BACKEND=' + choice + ')';
  if (choice === 'auto' || choice === 'tensorflow') {
    try {
      // optional dependency: present only where its install could download libtensorflow
      createRequire(import.meta.url)('@tensorflow/tfjs-node-gpu');
      if (await tf.setBackend('tensorflow')) {
        backendReason = 'tensorflow: @tensorflow/tfjs-node-gpu loaded';
        return 'tensorflow';
      }
      gpu = 'loaded but its backend did not initialise';
    } catch (e) {
      gpu = gpuPackageStatus() === 'not installed' ? 'not installed' : `does not load (${(e as Error).message.split('\n')[0]})`;
      if (choice === 'tensorflow') throw new Error(`backend "tensorflow" requested but @tensorflow/tfjs-node-gpu ${gpu}`);
    }
  }
  if (choice === 'auto' || choice === 'wasm') {
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      backendReason = `wasm: @tensorflow/tfjs-node-gpu ${gpu}`;
      return 'wasm';
    }
    if (choice === 'wasm') throw new Error('the wasm backend failed to initialise');
  }
  await tf.setBackend('cpu');
  await tf.ready();
  backendReason = choice === 'cpu' ? 'cpu: requested (COMPUTE_BACKEND=cpu)' : `cpu: wasm did not initialise; @tensorflow/tfjs-node-gpu ${gpu}`;
  return 'cpu';
}

/** Why the backend of this thread is the one in use, e.g. "wasm: @tensorflow/tfjs-node-gpu not installed" (set by initBackend). */
export let backendReason = 'not initialised';

export { tf };
