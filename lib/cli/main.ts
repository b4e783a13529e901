// The `clipforge` command line. Each subcommand lives in its own module.
import { infoText } from './info.js';
import { modelInfoText } from './info.js';
import { trainCommand } from './train.js';
import { convertCommand } from './convert.js';
import { evalCommand } from './eval.js';
import { withExitCode } from './common.js';

const USAGE = `usage: clipforge <command>

commands:
  info     version, backends compiled in, GPUs found, CPU threads
           info --model NAME: parameter counts and FLOPs of a model config
  train    train a CLIP model (OpenCLIP's flags; no flags: a tiny CLIP on the built-in dataset)
  eval     zero-shot top-1/top-5 and retrieval R@1/5/10 of a checkpoint or a pretrained model
           (eval --help: the model flags and the evaluation data)
  convert  UniRepLKNet checkpoint (safetensors): training form -> deploy form
  help     this text`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info':
      if (rest[0] === '--model') {
        if (rest.length !== 2) {
          process.stderr.write(`clipforge info: expected --model NAME, got ${rest.length === 1 ? 'no name' : `extra argument '${rest[2]}'`}\n`);
          return 2;
        }
        try {
          process.stdout.write(modelInfoText(rest[1]!) + '\n');
          return 0;
        } catch (e) {
          process.stderr.write(`clipforge info: ${(e as Error).message}\n`);
          return 2;
        }
      }
      if (rest.length) {
        process.stderr.write(`clipforge info: unexpected argument '${rest[0]}'\n`);
        return 2;
      }
      process.stdout.write(infoText() + '\n');
      return 0;
    case 'train':
      return withExitCode('clipforge train', () => trainCommand(rest));
    case 'eval':
      return evalCommand(rest);
    case 'convert':
      return convertCommand(rest);
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
