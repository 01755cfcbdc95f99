/**
 * `--help` and readable argument errors for the command-line tools: node:util parseArgs with a usage text,
 * so `npm run sim -- --help` prints what the tool does and its options, and a wrong option says which
 * instead of a stack trace.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses argv with `options` plus --help/-h; prints `usage` and exits 0 on --help, prints the problem and exits 2 on a bad option. */
export function parseCli<O extends Options>(name: string, usage: string, options: O, argv = process.argv.slice(2), allowPositionals = false) {
  try {
    const parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h', default: false } }, allowPositionals, strict: true }) as { values: Record<string, unknown>; positionals: string[] };
    if (parsed.values.help) {
      console.log(usage.trim());
      process.exit(0);
    }
    return parsed as unknown as { values: { [K in keyof O]: O[K]['type'] extends 'boolean' ? boolean : string }; positionals: string[] };
  } catch (e) {
    console.error(`${name}: ${(e as Error).message}\n(${name} --help lists the options)`);
    process.exit(2);
  }
}
