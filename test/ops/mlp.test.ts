import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { bf16Rounded, devices, gradCheck, recordNativeCalls, Rng, throwsShaped } from '../support/helpers.js';

const test = suite('mlp');
const rng = new Rng(29);

type Activation = 'gelu' | 'quickGelu';
const ACTIVATIONS: Activation[] = ['gelu', 'quickGelu'];

interface Params {
  x: Float32Array;
  w1: Float32Array;
  b1: Float32Array | null;
  w2: Float32Array;
  b2: Float32Array | null;
}

function params(rows: number, width: number, hidden: number, biases: boolean, dtype: 'f32' | 'bf16'): Params {
  const r = (n: number): Float32Array => (dtype === 'bf16' ? bf16Rounded(rng.array(n)) : rng.array(n));
  return { x: r(rows * width), w1: r(hidden * width), b1: biases ? r(hidden) : null, w2: r(width * hidden), b2: biases ? r(width) : null };
}

/** Output and gradients of x, w1, b1, w2, b2 (absent biases: empty) of `fn` on the parameters. */
function outputAndGrads(
  p: Params,
  lead: number[],
  width: number,
  hidden: number,
  opts: { device: string; dtype: 'f32' | 'bf16' },
  fn: (x: cf.Tensor, w1: cf.Tensor, b1: cf.Tensor | null, w2: cf.Tensor, b2: cf.Tensor | null) => cf.Tensor,
): Float32Array[] {
  return cf.scope(() => {
    const t = (d: Float32Array | null, shape: number[]): cf.Tensor | null => (d ? cf.fromArray(d, shape, { ...opts, requiresGrad: true }) : null);
    const inputs = [t(p.x, [...lead, width]), t(p.w1, [hidden, width]), t(p.b1, [hidden]), t(p.w2, [width, hidden]), t(p.b2, [width])];
    const y = fn(inputs[0]!, inputs[1]!, inputs[2]!, inputs[3]!, inputs[4]!);
    // The same output gradient for every fn compared.
    const gy = cf.fromArray(new Rng(7).array(y.size), [...y.shape], { device: opts.device, dtype: y.dtype });
    cf.sum(cf.mul(y, gy)).backward();
    return [y.toArray() as Float32Array, ...inputs.map((i) => (i?.grad ? (i.grad.toArray() as Float32Array) : new Float32Array(0)))];
  });
}

const separate = (activation: Activation) => (x: cf.Tensor, w1: cf.Tensor, b1: cf.Tensor | null, w2: cf.Tensor, b2: cf.Tensor | null): cf.Tensor =>
  cf.linear(cf.activate(cf.linear(x, w1, b1), activation), w2, b2);
const fused = (activation: Activation) => (x: cf.Tensor, w1: cf.Tensor, b1: cf.Tensor | null, w2: cf.Tensor, b2: cf.Tensor | null): cf.Tensor =>
  cf.mlp(x, w1, b1, w2, b2, activation);

const NAMES = ['output', 'dx', 'dfcWeight', 'dfcBias', 'dprojWeight', 'dprojBias'];

test('mlp gives exactly the values and gradients of linear, activation, linear on every backend and dtype', () => {
  for (const device of devices()) {
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const activation of ACTIVATIONS) {
        // Widths and rows past no tile size; one case without biases.
        for (const [lead, width, hidden, biases] of [[[2, 7], 12, 40, true], [[5], 8, 33, false], [[1], 3, 5, true]] as const) {
          const rows = (lead as readonly number[]).reduce((a, b) => a * b, 1);
          const p = params(rows, width, hidden, biases, dtype);
          const want = outputAndGrads(p, [...lead], width, hidden, { device, dtype }, separate(activation));
          const got = outputAndGrads(p, [...lead], width, hidden, { device, dtype }, fused(activation));
          got.forEach((g, i) => assert.equal(Array.from(g), Array.from(want[i]!), `${NAMES[i]} (${activation}, ${dtype}, ${JSON.stringify(lead)} x ${width} -> ${hidden}, on ${device})`));
        }
      }
    }
  }
});

test('mlp under autocast: bf16 products of f32 parameters, the same values and gradients as the separate ops', () => {
  for (const device of devices()) {
    const p = params(6, 16, 24, true, 'f32');
    const amp = (f: ReturnType<typeof fused>) => (...a: Parameters<typeof f>): cf.Tensor => cf.autocast('bf16', () => f(...a));
    const want = outputAndGrads(p, [2, 3], 16, 24, { device, dtype: 'f32' }, amp(separate('gelu')));
    const got = outputAndGrads(p, [2, 3], 16, 24, { device, dtype: 'f32' }, amp(fused('gelu')));
    got.forEach((g, i) => assert.equal(Array.from(g), Array.from(want[i]!), `${NAMES[i]} under autocast on ${device}`));
    const dtype = cf.scope(() => cf.autocast('bf16', () => cf.mlp(cf.randn([2, 16], { device }), cf.randn([24, 16], { device }), null, cf.randn([16, 24], { device }), null).dtype));
    assert.is(dtype, 'bf16');
  }
});

test('mlp: gradients by finite differences, both activations', () => {
  for (const activation of ACTIVATIONS) {
    const p = params(3, 4, 6, true, 'f32');
    gradCheck((x, w1, b1, w2, b2) => cf.mlp(x, w1, b1, w2, b2, activation), [
      { data: p.x, shape: [3, 4] },
      { data: p.w1, shape: [6, 4] },
      { data: p.b1!, shape: [6] },
      { data: p.w2, shape: [4, 6] },
      { data: p.b2!, shape: [4] },
    ]);
  }
});

test('mlp runs the activation inside the two products: no elementwise call forward or backward, the hidden layer written once each way', () => {
  const describe = (name: string) => (a: unknown[]): string => `${name}${name === 'matmul' ? ` ${String(a[7] ?? 'none')}` : ''}`;
  const { calls } = recordNativeCalls({ matmul: describe('matmul'), unary: describe('unary'), unaryBackward: describe('unaryBackward') }, () =>
    cf.scope(() => {
      const x = cf.randn([4, 8], { requiresGrad: true });
      const w1 = cf.randn([32, 8], { requiresGrad: true });
      const w2 = cf.randn([8, 32], { requiresGrad: true });
      cf.sum(cf.mlp(x, w1, cf.zeros([32]), w2, cf.zeros([8]))).backward();
    }),
  );
  // Forward: c_fc with the activation, c_proj. Backward: dW2, the activation's input gradient
  // from the product with W2, dW1, dx.
  assert.equal(calls, ['matmul gelu', 'matmul none', 'matmul none', 'matmul geluBackward', 'matmul none', 'matmul none']);
  // Without gradients nothing is kept for a backward: no pre-activation output.
  const { calls: inference } = recordNativeCalls({ matmul: (a) => `aux ${a[8] === null ? 'null' : 'tensor'}` }, () =>
    cf.scope(() => cf.noGrad(() => cf.mlp(cf.randn([4, 8]), cf.randn([32, 8]), null, cf.randn([8, 32]), null))),
  );
  assert.equal(inference, ['aux null', 'aux null']);
});

test('mlp: wrong shapes, dtypes and activations are errors naming the argument', () => {
  cf.scope(() => {
    const x = cf.randn([3, 8]);
    const w1 = cf.randn([16, 8]);
    const w2 = cf.randn([8, 16]);
    throwsShaped(() => cf.mlp(cf.randn([3, 7]), w1, null, w2, null), /expected shape \[\.\.\., 8\] for x/);
    throwsShaped(() => cf.mlp(x, cf.randn([16]), null, w2, null), /expected shape \[hidden, width\] for fcWeight/);
    throwsShaped(() => cf.mlp(x, w1, cf.randn([8]), w2, null), /expected shape \[16\] for fcBias/);
    throwsShaped(() => cf.mlp(x, w1, null, cf.randn([16, 8]), null), /expected shape \[8, 16\] for projWeight/);
    throwsShaped(() => cf.mlp(x, w1, null, w2, cf.randn([16])), /expected shape \[8\] for projBias/);
    throwsShaped(() => cf.mlp(x, w1, null, w2, null, 'relu' as never), /expected 'gelu' or 'quickGelu' for activation, got 'relu'/);
    throwsShaped(() => cf.mlp(x, w1, null, cf.randn([8, 16], { dtype: 'bf16' }), null), /expected x and projWeight of the same dtype, got f32 and bf16/, /^mlp: expected /);
    throwsShaped(() => cf.mlp(cf.zeros([3, 8], { dtype: 'i32' }), w1, null, w2, null), /for x/);
  });
});

test('native matmul epilogues: wrong combinations are errors naming the argument', () => {
  cf.scope(() => {
    const a = cf.randn([4, 8]), b = cf.randn([8, 6]), bias = cf.randn([6]);
    const out = cf.zeros([4, 6]), aux = cf.zeros([4, 6]);
    const mm = (...rest: unknown[]): void => (cf.native.matmul as (...a: unknown[]) => void)(a, b, ...rest);
    throwsShaped(() => mm(null, out, false, false, false, 'relu', aux), /expected 'none', 'gelu', 'quickGelu', 'geluBackward' or 'quickGeluBackward' for epilogue, got 'relu'/);
    throwsShaped(() => mm(null, out, false, false, true, 'gelu', aux), /expected false with an epilogue for accumulate, got true/);
    throwsShaped(() => mm(bias, out, false, false, false, 'geluBackward', aux), /expected null with a backward epilogue for bias/);
    throwsShaped(() => mm(null, out, false, false, false, 'quickGeluBackward', null), /expected the pre-activation tensor with a backward epilogue for aux, got null/);
    throwsShaped(() => mm(null, out, false, false, false, 'none', aux), /expected null without an epilogue for aux/);
    throwsShaped(() => mm(null, out, false, false, false, 'gelu', cf.zeros([4, 5])), /expected \[4, 6\] for aux.shape, got \[4, 5\]/);
    throwsShaped(() => mm(null, out, false, false, false, 'gelu', cf.zeros([4, 6], { dtype: 'bf16' })), /expected out and aux of the same dtype, got f32 and bf16/, /^matmul: expected /);
    const overlap = /^matmul: \w+ must not share memory with \w+/;
    throwsShaped(() => mm(null, out, false, false, false, 'gelu', out), /out must not share memory with aux/, overlap);
    const square = cf.randn([4, 6]);
    throwsShaped(() => cf.native.matmul(square, cf.randn([6, 6]), null, out, false, false, false, 'geluBackward', square), /aux must not share memory with a\b/, overlap);
  });
});

test('native matmul epilogues on CUDA equal the separate matmul and unary ops on every kernel, split K included', () => {
  if (!devices().includes('cuda:0')) return;
  try {
    for (const which of ['auto', 'mma.sync'] as const) {
      cf.native.cudaGemmKernel('cuda:0', which);
      // Tails past the tiles, and one output tile with a long K (split into slices on Hopper).
      for (const [m, n, k] of [[200, 264, 584], [40, 48, 2560]] as const) {
        for (const dtype of ['bf16', 'f32'] as const) {
          cf.scope(() => {
            const t = (shape: number[]): cf.Tensor => cf.randn(shape, { device: 'cuda:0', dtype });
            const a = t([m, k]), b = t([n, k]), bias = t([n]), pre = t([m, n]);
            const product = cf.zeros([m, n], { device: 'cuda:0', dtype });
            for (const activation of ACTIVATIONS) {
              const what = `${activation}, ${dtype} ${m} x ${n} x ${k} (${which})`;
              const out = cf.zeros([m, n], { device: 'cuda:0', dtype }), aux = cf.zeros([m, n], { device: 'cuda:0', dtype });
              cf.native.matmul(a, b, bias, out, false, true, false, activation, aux);
              cf.native.matmul(a, b, bias, product, false, true, false);
              assert.equal(Array.from(aux.toArray()), Array.from(product.toArray()), `pre-activation, ${what}`);
              assert.equal(Array.from(out.toArray()), Array.from(cf.activate(product, activation).toArray()), `activation, ${what}`);
              const grad = cf.zeros([m, n], { device: 'cuda:0', dtype });
              cf.native.matmul(a, b, null, grad, false, true, false, `${activation}Backward`, pre);
              cf.native.matmul(a, b, null, product, false, true, false);
              const dz = cf.zeros([m, n], { device: 'cuda:0', dtype });
              cf.native.unaryBackward(activation === 'gelu' ? 'geluErf' : 'quickGelu', pre, product, dz, 0, 0);
              assert.equal(Array.from(grad.toArray()), Array.from(dz.toArray()), `activation gradient, ${what}`);
            }
          });
        }
      }
    }
  } finally {
    cf.native.cudaGemmKernel('cuda:0', 'auto');
  }
});

test.run();
