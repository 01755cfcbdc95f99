/**
 * `npm run stimuli -- add FOLDER [--id ID] [--categories subfolders|csv FILE]`: builds a stimulus set's
 * manifest from a folder of images, checks that every image decodes, and registers the set in the stimulus
 * directory (config stimulusDir, STIMULUS_DIR). `npm run stimuli -- schema` prints the manifest's JSON schema
 * (docs/stimulus-manifest.schema.json). docs/stimuli.md describes both.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from './config.ts';
import { manifestJsonSchema, uncategorised } from './stimulus-sets.ts';
import { buildManifest, ImportError, registerSet, stimulusIdOf, undecodable, type CategorySource } from './stimulus-import.ts';

const USAGE = 'usage: npm run stimuli -- add FOLDER [--id ID] [--categories subfolders|csv FILE]\n       npm run stimuli -- schema';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function main(): Promise<number> {
  // `--categories csv FILE` takes two values; parseArgs takes one per option, so the file is picked out first
  const args = process.argv.slice(2);
  const at = args.findIndex((a, i) => a === '--categories' && args[i + 1] === 'csv');
  const csvFile = at >= 0 ? args[at + 2] : undefined;
  if (at >= 0) args.splice(at + 2, 1);
  const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { id: { type: 'string' }, categories: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (command === 'schema') {
    console.log(JSON.stringify(manifestJsonSchema(), null, 2));
    return 0;
  }
  if (command !== 'add') {
    console.error(`stimuli: unknown command "${command}"\n${USAGE}`);
    return 2;
  }
  const [folder, ...extra] = rest;
  const cat = values.categories ?? 'none';
  if (!folder || extra.length || (cat === 'csv' && !csvFile) || !['none', 'subfolders', 'csv'].includes(cat)) {
    console.error(USAGE);
    return 2;
  }
  const categories: CategorySource = cat === 'csv' ? { kind: 'csv', file: path.resolve(csvFile!) } : cat === 'subfolders' ? { kind: 'subfolders' } : { kind: 'none' };
  const config = loadConfig(root);
  const dir = path.resolve(folder);
  const manifest = buildManifest(dir, values.id ?? stimulusIdOf(path.basename(dir)), categories);
  const bad = await undecodable(dir, manifest);
  if (bad.length) throw new ImportError(`${bad.length} of ${manifest.stimuli.length} images do not decode:\n  ${bad.join('\n  ')}`);
  const dest = registerSet(config.stimulusDir, dir, manifest);
  const cats = [...new Set(manifest.stimuli.map((s) => s.category))];
  console.log(`stimulus set "${manifest.id}": ${manifest.stimuli.length} images, ${uncategorised(manifest) ? 'no categories (drivers, generalisation and selectivity need two)' : `categories ${cats.join(', ')}`}; registered in ${dest}`);
  console.log('a running server picks it up after a restart or POST /api/stimuli/rescan');
  return 0;
}

try {
  process.exitCode = await main();
} catch (e) {
  if (!(e instanceof ImportError || e instanceof ConfigError)) throw e;
  console.error(`stimuli: ${e.message}`);
  process.exitCode = 1;
}
