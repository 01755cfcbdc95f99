/**
 * Welch's unequal-variance t-test from summary statistics (count, mean, unbiased variance), so running
 * Welford accumulators are all it needs, and the Student t survival function behind its p-value.
 * Written here because no statistics library is a dependency; checked against scipy.stats in
 * test/drivers.test.ts (test/reference/driver_tests.py).
 */

/** Count, mean and unbiased variance of one sample. */
export interface SampleSummary {
  n: number;
  mean: number;
  variance: number;
}

export interface WelchResult {
  /** (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b). */
  t: number;
  /** Welch-Satterthwaite degrees of freedom. */
  df: number;
  /** One-sided p-value of mean_a > mean_b. */
  p: number;
}

/**
 * One-sided Welch t-test of H1: mean(a) > mean(b); null when a side has fewer than two values.
 * Both variances zero: p = 0 when mean_a > mean_b, else 1 (the difference is exact).
 * Example: welchTest({ n: 5, mean: 12, variance: 4 }, { n: 40, mean: 10, variance: 9 }) gives t 1.98, df 6.5, p 0.046.
 */
export function welchTest(a: SampleSummary, b: SampleSummary): WelchResult | null {
  if (a.n < 2 || b.n < 2) return null;
  const va = a.variance / a.n;
  const vb = b.variance / b.n;
  const se2 = va + vb;
  const diff = a.mean - b.mean;
  if (!(se2 > 0)) return { t: diff > 0 ? Infinity : diff < 0 ? -Infinity : 0, df: a.n + b.n - 2, p: diff > 0 ? 0 : 1 };
  const t = diff / Math.sqrt(se2);
  const df = (se2 * se2) / ((va * va) / (a.n - 1) + (vb * vb) / (b.n - 1));
  return { t, df, p: studentTSf(t, df) };
}

/** P(T > t) for Student's t with `df` degrees of freedom (df > 0, not necessarily an integer). */
export function studentTSf(t: number, df: number): number {
  if (t === Infinity) return 0;
  if (t === -Infinity) return 1;
  const tail = 0.5 * regularizedBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? tail : 1 - tail;
}

/** ln Gamma(x), x > 0 (Lanczos approximation, g = 7, 9 terms; relative error below 1e-13). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  const z = x - 1;
  let s = c[0];
  for (let i = 1; i < 9; i++) s += c[i] / (z + i);
  const tt = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(tt) - tt + Math.log(s);
}

/** Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz), x in [0, 1]. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  // the fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise
  if (x > (a + 1) / (a + b + 2)) return 1 - regularizedBeta(1 - x, b, a);
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  const tiny = 1e-300;
  let f = 1;
  let c = 1;
  let d = 0;
  for (let i = 0; i <= 400; i++) {
    const m = i >> 1;
    let num: number;
    if (i === 0) num = 1;
    else if (i % 2 === 0) num = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m));
    else num = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1 + num * d;
    if (Math.abs(d) < tiny) d = tiny;
    d = 1 / d;
    c = 1 + num / c;
    if (Math.abs(c) < tiny) c = tiny;
    const cd = c * d;
    f *= cd;
    if (Math.abs(1 - cd) < 1e-15) break;
  }
  return (front * (f - 1)) / a;
}
