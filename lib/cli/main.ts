// The `clipforge` command line. Each subcommand lives in its own module.
import { infoText } from './info.js';
import { trainCommand } from './train.js';

const USAGE = `usage: clipforge <command>

commands:
  info     version, backends compiled in, GPUs found, CPU threads
  train    train a CLIP model (OpenCLIP's flags; no flags: a tiny CLIP on the built-in dataset)
  help     this text`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info':
      if (rest.length) {
        process.stderr.write(`clipforge info: unexpected argument '${rest[0]}'\n`);
        return 2;
      }
      process.stdout.write(infoText() + '\n');
      return 0;
    case 'train':
      return trainCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`clipforge: unknown command '${command}'\n\n${USAGE}\n`);
      return 2;
  }
}
