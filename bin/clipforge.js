#!/usr/bin/env node
// Entry point of the `clipforge` command: runs the compiled CLI from dist/ (built by
// `npm install` through the prepare script, or `npm run build:ts`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'lib', 'cli', 'main.js');
if (!existsSync(cli)) {
  console.error('clipforge: the TypeScript build is missing (dist/); run `npm run build:ts`');
  process.exit(1);
}
try {
  const { main } = await import(pathToFileURL(cli).href);
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  const message = e instanceof Error ? e.message : String(e);
  // Subcommands' errors already name themselves ("clipforge train: …").
  console.error(message.startsWith('clipforge') ? message : `clipforge: ${message}`);
  process.exitCode = 1;
}
