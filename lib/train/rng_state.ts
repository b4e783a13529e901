// Random-number state for checkpoints: resuming a run must continue every generator's
// sequence where it stopped (dropout masks, augmentations drawn from them), or N steps +
// resume + N steps would not equal 2N steps. A snapshot is plain JSON: {name: {seed, counter}}.
import { argError } from '../tensor/check.js';
import { defaultGenerator, Generator } from '../tensor/random.js';

export type RngSnapshot = Record<string, { seed: number; counter: number }>;

function checkGenerators(op: string, generators: unknown): Record<string, Generator> {
  if (generators === null || typeof generators !== 'object' || Object.values(generators).some((g) => !(g instanceof Generator))) {
    throw argError(op, 'generators', 'an object of named Generators', generators);
  }
  return generators as Record<string, Generator>;
}

/** The state of each named generator (default: the default generator, as "default"). */
export function snapshotRng(generators: Record<string, Generator> = { default: defaultGenerator }): RngSnapshot {
  const gens = checkGenerators('snapshotRng', generators);
  return Object.fromEntries(Object.entries(gens).map(([name, g]) => [name, g.getState()]));
}

/**
 * Puts each named generator back to its state in `snapshot`. Every entry is checked before
 * any generator changes, so a bad snapshot leaves them all as they were.
 */
export function restoreRng(snapshot: RngSnapshot, generators: Record<string, Generator> = { default: defaultGenerator }): void {
  const op = 'restoreRng';
  const gens = checkGenerators(op, generators);
  if (snapshot === null || typeof snapshot !== 'object') throw argError(op, 'snapshot', 'an object of {seed, counter} states', snapshot);
  const probe = new Generator();
  for (const name of Object.keys(gens)) {
    if (!(name in snapshot)) throw new Error(`${op}: the snapshot has no state for generator '${name}' (it has: ${Object.keys(snapshot).join(', ') || 'none'})`);
    probe.setState(snapshot[name]!);
  }
  for (const [name, g] of Object.entries(gens)) g.setState(snapshot[name]!);
}
