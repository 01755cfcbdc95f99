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

let patched = false;
function patchKernels(): void {
  if (patched) return;
  patched = true;
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
}

/** Selects and initialises the backend; returns the one in use. */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<BackendName> {
  patchKernels();
  if (choice === 'auto' || choice === 'tensorflow') {
    try {
      // optional dependency: present only where its install could download libtensorflow
      createRequire(import.meta.url)('@tensorflow/tfjs-node-gpu');
      if (await tf.setBackend('tensorflow')) return 'tensorflow';
    } catch {
      if (choice === 'tensorflow') throw new Error('backend "tensorflow" requested but @tensorflow/tfjs-node-gpu is not installed or does not load');
    }
  }
  if (choice === 'auto' || choice === 'wasm') {
    if (await tf.setBackend('wasm')) {
      await tf.ready();
      return 'wasm';
    }
    if (choice === 'wasm') throw new Error('the wasm backend failed to initialise');
  }
  await tf.setBackend('cpu');
  await tf.ready();
  return 'cpu';
}

export { tf };
