// Runs the `clipforge` command line in this process and captures what it writes.
import { main } from '../../lib/cli/main.js';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** `clipforge argv…` with stdout and stderr captured; resolves to the exit code and the text. */
export async function runCli(argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const so = process.stdout.write.bind(process.stdout);
  const se = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => (out.push(s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(s), true)) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = so;
    process.stderr.write = se;
  }
}
