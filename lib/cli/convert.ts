// `clipforge convert IN OUT`: reads a UniRepLKNet checkpoint in training form (safetensors or
// a torch.save .pt / .bin; a bare trunk, a tower or a whole CLIP model, whatever the key
// prefix) and writes its deploy form as safetensors: every block's dilated branches and
// BatchNorms merged into one large kernel with bias,
// GRN's beta and the layer scale folded into pwconv2 (lib/nn/unireplknet_reparam.ts). Other
// tensors (the text tower, the projection, non-UniRepLKNet keys) are copied unchanged.
import { existsSync } from 'node:fs';
import { writeSafetensors } from '../io/safetensors.js';
import { readStateDict } from '../io/state_dict.js';
import { deployStateDict } from '../nn/unireplknet_reparam.js';
import { scope } from '../tensor/scope.js';

export const CONVERT_USAGE = `usage: clipforge convert IN OUT.safetensors

Converts a UniRepLKNet checkpoint (IN: .safetensors, or a torch.save .pt / .bin) from the
training form to the deploy form.`;

/** Runs the subcommand; returns the exit status (0 done, 1 failed, 2 usage error). */
export function convertCommand(args: string[]): number {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(CONVERT_USAGE + '\n');
    return 0;
  }
  if (args.length !== 2) {
    process.stderr.write(`clipforge convert: expected 2 arguments (IN and OUT), got ${args.length}\n\n${CONVERT_USAGE}\n`);
    return 2;
  }
  const [input, output] = args as [string, string];
  if (!existsSync(input)) {
    process.stderr.write(`clipforge convert: input file '${input}' does not exist\n`);
    return 1;
  }
  try {
    const converted = scope(() => {
      const tensors = readStateDict(input);
      const deploy = deployStateDict(tensors);
      writeSafetensors(output, deploy, { metadata: { unireplknet_form: 'deploy' } });
      return { before: tensors.size, after: deploy.size };
    });
    process.stdout.write(`clipforge convert: wrote '${output}' (${converted.before} tensors in training form -> ${converted.after} in deploy form)\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`clipforge convert: ${(e as Error).message}\n`);
    return 1;
  }
}
