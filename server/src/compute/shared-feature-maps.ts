/**
 * Parallel backpropagation for shared-feature maps (METHOD.md step 5; Lappe et al., NeurIPS 2024, in the
 * formulation this product commits to, since the paper's exact equations were not available to us):
 *   v = w (.) phi(x_o) (.) phi(x_ref)        dimensions active in both images and weighted by the neuron
 *   S_o = J_phi(x_o)^T v,  S_ref = J_phi(x_ref)^T v
 * Each map is ONE vector-Jacobian product: the gradient of the scalar <stop_gradient(v), phi(x)>.
 * Options: keep only positive contributions of v; integrated gradients from a grey baseline instead of
 * the plain gradient. Display: |S| summed over colour channels, Gaussian-smoothed, both maps normalised
 * by one robust maximum of the pair (99.5th percentile) so they share one colour scale.
 */
import { inputGradientOnly, tf } from './backend.ts';
import { weightedCosine } from './drivers.ts';

export interface MapOptions {
  positiveOnly: boolean;
  /** 0: plain gradient; n > 0: integrated gradients with n steps from a grey baseline. */
  integratedSteps: number;
  /** Gaussian smoothing of the display maps, in pixels (0: none). */
  smoothSigmaPx: number;
}

export const defaultMapOptions: MapOptions = { positiveOnly: true, integratedSteps: 0, smoothSigmaPx: 2 };

/** phi: images (1 x H x W x 3 in [0, 1]) to feature vectors (1 x D). */
export type FeatureFn = (x: tf.Tensor4D) => tf.Tensor2D;

export interface SharedFeatureMaps {
  /** Display maps, H x W, in [0, 1] on a common scale. */
  driverMap: Float32Array;
  referenceMap: Float32Array;
  size: number;
  /** Raw attribution totals before normalisation (sum of |S| over pixels). */
  driverMass: number;
  referenceMass: number;
  /** Shared-feature similarity: sum of v over cosine normaliser, i.e. cos(w (.) phi_o, w (.) phi_ref). */
  similarity: number;
}

/** The vector v = w (.) phi(x_o) (.) phi(x_ref), optionally clipped at zero. */
export function sharedVector(w: ArrayLike<number>, phiO: ArrayLike<number>, phiRef: ArrayLike<number>, positiveOnly: boolean): Float32Array {
  return Float32Array.from({ length: w.length }, (_, d) => {
    const v = w[d] * phiO[d] * phiRef[d];
    return positiveOnly ? Math.max(0, v) : v;
  });
}

/** Gradient of <v, phi(x)> with respect to the pixels (plain or integrated), 1 x H x W x 3. */
export function attribution(phi: FeatureFn, x: tf.Tensor4D, v: tf.Tensor1D, integratedSteps: number): tf.Tensor4D {
  const g = tf.grad((inp: tf.Tensor) => tf.sum(tf.mul(phi(inp as tf.Tensor4D), v)));
  return inputGradientOnly(() => {
    if (integratedSteps <= 0) return g(x) as tf.Tensor4D;
    return tf.tidy(() => {
      const baseline = tf.fill(x.shape, 0.5);
      let sum: tf.Tensor4D = tf.zerosLike(x);
      for (let k = 1; k <= integratedSteps; k++) {
        const xk = tf.add(baseline, tf.mul(tf.sub(x, baseline), k / integratedSteps));
        const next = tf.add(sum, g(xk));
        sum.dispose();
        sum = next as tf.Tensor4D;
      }
      return tf.mul(tf.div(sum, integratedSteps), tf.sub(x, baseline)) as tf.Tensor4D;
    });
  });
}

/** |S| summed over colour channels, optionally Gaussian-smoothed: H x W. */
export function displayMap(s: tf.Tensor4D, sigmaPx: number): tf.Tensor2D {
  return tf.tidy(() => {
    let m = tf.sum(tf.abs(s), 3, true) as tf.Tensor4D; // 1 x H x W x 1
    if (sigmaPx > 0) {
      const r = Math.ceil(3 * sigmaPx);
      const k1 = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigmaPx * sigmaPx)));
      const total = k1.reduce((a, b) => a + b, 0);
      const k = tf.tensor1d(k1.map((x) => x / total));
      m = tf.conv2d(m, k.reshape([2 * r + 1, 1, 1, 1]) as tf.Tensor4D, 1, 'same');
      m = tf.conv2d(m, k.reshape([1, 2 * r + 1, 1, 1]) as tf.Tensor4D, 1, 'same');
    }
    return m.squeeze([0, 3]) as tf.Tensor2D;
  });
}

export interface SideMap {
  /** Display map (H x W), not yet normalised. */
  map: Float32Array;
  /** Sum of |S| over pixels. */
  mass: number;
  /** cos(w (.) phi_o, w (.) phi_ref). */
  similarity: number;
}

/**
 * One side of a pair: the display map of the driver (`side` 'driver') or of the reference image. Both
 * sides need both forward passes (for v); the vector-Jacobian products of the two sides are independent,
 * so two workers can compute them at once.
 */
export function sideMap(
  phi: FeatureFn,
  xO: tf.Tensor4D,
  xRef: tf.Tensor4D,
  w: ArrayLike<number>,
  opts: MapOptions,
  side: 'driver' | 'reference',
  /** phi(x_o) and phi(x_ref) when already known (the cached stimulus features): saves two forward passes. */
  known?: { phiO: ArrayLike<number>; phiRef: ArrayLike<number> },
): SideMap {
  const read = (x: tf.Tensor4D) => {
    const t = phi(x);
    const out = t.dataSync() as Float32Array;
    t.dispose();
    return out;
  };
  const phiO = known?.phiO ?? read(xO);
  const phiRef = known?.phiRef ?? read(xRef);
  const v = tf.tensor1d(sharedVector(w, phiO, phiRef, opts.positiveOnly));
  try {
    const s = attribution(phi, side === 'driver' ? xO : xRef, v, opts.integratedSteps);
    const m = displayMap(s, opts.smoothSigmaPx);
    const mass = tf.tidy(() => tf.sum(tf.abs(s)).dataSync()[0]);
    const map = m.dataSync() as Float32Array;
    tf.dispose([s, m]);
    return { map, mass, similarity: weightedCosine(w, phiO, phiRef) };
  } finally {
    v.dispose();
  }
}

/**
 * Both display maps on one colour scale in [0, 1]: divided by the 99.5th percentile of the pair's values
 * and clipped, because raw gradient maps are dominated by a few pixels (with the plain maximum most of a
 * map rounded to 0 of 255 on screen).
 */
export function normalizePair(a: Float32Array, b: Float32Array): [Float32Array, Float32Array] {
  const all = new Float32Array(a.length + b.length);
  all.set(a);
  all.set(b, a.length);
  all.sort();
  const top = all[Math.min(all.length - 1, Math.floor(0.995 * all.length))] || all[all.length - 1];
  const scale = top > 0 ? 1 / top : 0;
  return [a.map((x) => Math.min(1, x * scale)), b.map((x) => Math.min(1, x * scale))];
}

/**
 * Both maps of one (driver, reference) pair for a neuron with readout weights w (length D), in this
 * thread: two forward passes per side and one vector-Jacobian product per side (times the
 * integrated-gradient steps).
 */
export function sharedFeatureMaps(phi: FeatureFn, xO: tf.Tensor4D, xRef: tf.Tensor4D, w: ArrayLike<number>, opts: MapOptions = defaultMapOptions): SharedFeatureMaps {
  const d = sideMap(phi, xO, xRef, w, opts, 'driver');
  const r = sideMap(phi, xO, xRef, w, opts, 'reference');
  const [driverMap, referenceMap] = normalizePair(d.map, r.map);
  return { driverMap, referenceMap, size: xO.shape[1], driverMass: d.mass, referenceMass: r.mass, similarity: d.similarity };
}
