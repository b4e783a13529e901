// Gradient checkpointing: run a function's forward without keeping its activations, and
// run it again during backward to get them back. Random numbers drawn inside the function
// come out the same in the second run (the default generator is rewound).
import { attachGrad, backward, enableGrad, isGradEnabled, noGrad } from './autograd.js';
import { argError } from './check.js';
import { defaultGenerator } from './random.js';
import { checkTensor, Tensor } from './tensor.js';
import { keep } from './scope.js';

export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (typeof fn !== 'function') throw argError('checkpoint', 'fn', 'a function', fn);
  inputs.forEach((t, i) => checkTensor('checkpoint', `inputs[${i}]`, t));
  if (!isGradEnabled()) return fn(...inputs);
  const rng = defaultGenerator.getState();
  const out = noGrad(() => fn(...inputs));
  if (!(out instanceof Tensor)) throw argError('checkpoint', 'the result of fn', 'a Tensor', out);
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
      enableGrad(() => {
        const y = fn(...leaves);
        if (y.requiresGrad) backward(y, gy);
        y.dispose();
      });
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
