/**
 * `npm run bench` runs every benchmark; `npm run bench -- NAME` one. Each prints a readable summary and
 * writes its figures to bench/results/NAME.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { root } from './support.ts';

const benchmarks: Record<string, () => Promise<{ run: () => Promise<Record<string, unknown>> }>> = {
  ingest: () => import('./ingest.ts'),
  ridge: () => import('./ridge.ts'),
  absorb: () => import('./absorb.ts'),
  maps: () => import('./maps.ts'),
  deletion: () => import('./deletion.ts'),
  'maps-quality': () => import('./maps-quality.ts'),
  dashboard: () => import('./dashboard.ts'),
  'closed-loop': () => import('./closed-loop.ts'),
  durability: () => import('./durability.ts'),
  drivers: () => import('./drivers.ts'),
  scale: () => import('./scale.ts'),
  nwb: () => import('./nwb.ts'),
  cluster: () => import('./cluster.ts'),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((n) => !benchmarks[n]);
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${Object.keys(benchmarks).join(', ')}`);
  process.exit(2);
}
const outDir = path.join(root, 'bench', 'results');
fs.mkdirSync(outDir, { recursive: true });
for (const name of wanted.length ? wanted : Object.keys(benchmarks)) {
  console.log(`\n== ${name} ==`);
  const result = await (await benchmarks[name]()).run();
  const file = path.join(outDir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ name, at: new Date().toISOString(), ...result }, null, 2));
  console.log(`  -> ${path.relative(root, file)}`);
}
process.exit(0);
