/**
 * Whether the optional @tensorflow/tfjs-node-gpu package is installed, without loading it or TensorFlow.js
 * (for the start banner and /api/health on the main thread; the compute workers load it). npm skips its
 * install script here and its binary download needs the network, so it is usually absent or unloadable.
 */
import { createRequire } from 'node:module';

export function gpuPackageStatus(): 'installed' | 'not installed' {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node-gpu');
    return 'installed';
  } catch {
    return 'not installed';
  }
}
