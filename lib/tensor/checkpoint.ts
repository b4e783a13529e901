// Gradient checkpointing: run a function's forward without keeping its activations, and
// run it again during backward to get them back. Random numbers drawn inside the function
// come out the same in the second run (the default generator is rewound), and the second run
// computes in the precision of the first (the autocast state is restored).
import { attachGrad, backward, enableGrad, isGradEnabled, noGrad } from './autograd.js';
import { autocast, autocastDtype } from './autocast.js';
import { argError } from './check.js';
import { defaultGenerator } from './random.js';
import { checkTensor, Tensor } from './tensor.js';
import { keep, scope } from './scope.js';

export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (typeof fn !== 'function') throw argError('checkpoint', 'fn', 'a function', fn);
  inputs.forEach((t, i) => checkTensor('checkpoint', `inputs[${i}]`, t));
  if (!isGradEnabled()) return fn(...inputs);
  const rng = defaultGenerator.getState();
  const precision = autocastDtype();
  // In a scope: the activations are freed as soon as the forward is done.
  let out = scope(() => noGrad(() => fn(...inputs)));
  if (!(out instanceof Tensor)) throw argError('checkpoint', 'the result of fn', 'a Tensor', out);
  // fn returned a tensor it did not make (an input, a captured parameter): the node goes on a
  // new view of it, never on that tensor itself.
  if (out.requiresGrad || inputs.includes(out)) out = out.view(out.shape);
  return attachGrad(out, 'checkpoint', inputs, inputs, (gy, saved, needs) => {
    const now = defaultGenerator.getState();
    defaultGenerator.setState(rng);
    const leaves = saved.map((s, i) => {
      const v = s.view(s.shape);
      keep(v);
      v.requiresGrad = needs[i]!;
      return v;
    });
    try {
      // The recomputed activations are freed by the scope; y is disposed by it only if fn made
      // it (fn may return one of its inputs or a captured tensor, which must live on).
      scope(() =>
        enableGrad(() => {
          const y = autocast(precision, () => fn(...leaves));
          if (!(y instanceof Tensor)) throw argError('checkpoint', 'the result of fn', 'a Tensor', y);
          if (y.requiresGrad) backward(y, gy);
        }),
      );
      return leaves.map((l) => {
        const g = l.grad;
        l.grad = null;
        return g;
      });
    } finally {
      leaves.forEach((l) => l.dispose());
      defaultGenerator.setState(now);
    }
  }, true);
}
