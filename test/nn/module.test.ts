// The module system: parameter names as state-dict keys, buffers, train/eval, strict and
// non-strict loading with its errors, moving and disposing, and the basic layers.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as cf from '../../lib/index.js';
import { Embedding, LayerNorm, LayerScale, Linear, Mlp } from '../../lib/nn/layers.js';
import { Module, ModuleList } from '../../lib/nn/module.js';
import { assertClose, Rng } from '../support/helpers.js';

const test = suite('nn.module');
const rng = new Rng(7);

class Block extends Module {
  readonly fc: Linear;
  readonly norm: LayerNorm;
  constructor() {
    super();
    this.fc = this.registerModule('fc', new Linear(3, 2));
    this.norm = this.registerModule('norm', new LayerNorm(2));
    this.registerBuffer('running_mean', cf.zeros([2]));
    this.registerBuffer('cache', cf.ones([4]), { persistent: false });
  }
}

class Net extends Module {
  readonly blocks: ModuleList<Block>;
  constructor(depth = 2) {
    super();
    this.registerParameter('scale', cf.ones([]));
    this.registerParameter('frozen', cf.zeros([2]), { requiresGrad: false });
    this.blocks = this.registerModule('blocks', new ModuleList([...Array(depth)].map(() => new Block())));
  }
}

const netKeys = [
  'scale', 'frozen',
  'blocks.0.fc.weight', 'blocks.0.fc.bias', 'blocks.0.norm.weight', 'blocks.0.norm.bias',
  'blocks.1.fc.weight', 'blocks.1.fc.bias', 'blocks.1.norm.weight', 'blocks.1.norm.bias',
];

test('parameter names are dotted paths, module lists indexed by number', () => {
  const net = new Net();
  assert.equal(net.namedParameters().map(([k]) => k), netKeys);
  assert.equal(net.parameters().map((t) => t.name), netKeys, 'tensors carry their full names');
  assert.equal(net.namedBuffers().map(([k]) => k), ['blocks.0.running_mean', 'blocks.0.cache', 'blocks.1.running_mean', 'blocks.1.cache']);
  assert.equal(net.namedBuffers({ persistentOnly: true }).map(([k]) => k), ['blocks.0.running_mean', 'blocks.1.running_mean']);
  const sd = [...net.stateDict().keys()];
  // PyTorch's order: a module's own parameters, then its own buffers, then its children's.
  assert.equal(sd, ['scale', 'frozen', 'blocks.0.running_mean', 'blocks.0.fc.weight', 'blocks.0.fc.bias', 'blocks.0.norm.weight', 'blocks.0.norm.bias',
    'blocks.1.running_mean', 'blocks.1.fc.weight', 'blocks.1.fc.bias', 'blocks.1.norm.weight', 'blocks.1.norm.bias']);
  assert.is(net.numParameters(), 1 + 2 + 2 * (6 + 2 + 2 + 2));
  assert.ok(net.parameters().filter((t) => t.name !== 'frozen').every((t) => t.requiresGrad));
  assert.not.ok(net.parameters()[1]!.requiresGrad, 'a frozen parameter needs no gradient');
  assert.is(net.blocks.length, 2);
  assert.is(net.blocks.get(1), [...net.blocks][1]);
  assert.throws(() => net.blocks.get(2), /ModuleList.get: expected an integer in \[0, 1\] for index/);
  net.dispose();
});

test('an inline child keeps its names at the parent level and cannot shadow the parent', () => {
  class Outer extends Module {
    readonly inner: Block;
    constructor(clash = false) {
      super();
      this.registerModule('other', new Linear(2, 2));
      this.inner = this.registerModule('inner', new Block(), { inline: true });
      if (clash) this.registerParameter('fc', cf.zeros([1]));
    }
  }
  const o = new Outer();
  assert.equal([...o.stateDict().keys()], ['other.weight', 'other.bias', 'running_mean', 'fc.weight', 'fc.bias', 'norm.weight', 'norm.bias']);
  assert.is(o.inner.fc.weight.name, 'fc.weight');
  assert.equal(o.namedModules().map(([k]) => k), ['', 'other', '', 'fc', 'norm']);
  o.to('cpu');
  o.dispose();
  assert.throws(() => new Outer(true), /Outer.registerParameter: Outer already has a member named 'fc'/);
  class Shadow extends Module {
    constructor() {
      super();
      this.registerModule('fc', new Linear(1, 1));
      this.registerModule('inner', new Block(), { inline: true });
    }
  }
  assert.throws(() => new Shadow(), /Shadow.registerModule: Shadow already has a member named 'fc'/);
});

test('parameters made inside a scope outlive it; dispose releases them', () => {
  const live0 = cf.liveTensorCount();
  const net = cf.scope(() => new Net(1));
  assert.ok(net.parameters().every((t) => !t.isDisposed));
  net.dispose();
  assert.ok(net.parameters().every((t) => t.isDisposed));
  assert.is(cf.liveTensorCount(), live0);
});

test('train() and eval() set training on every descendant', () => {
  const net = new Net();
  assert.ok(net.namedModules().every(([, m]) => m.training));
  net.eval();
  assert.ok(net.namedModules().every(([, m]) => !m.training));
  assert.equal(net.namedModules().map(([k]) => k), ['', 'blocks', 'blocks.0', 'blocks.0.fc', 'blocks.0.norm', 'blocks.1', 'blocks.1.fc', 'blocks.1.norm']);
  net.train();
  assert.ok(net.blocks.get(1).norm.training);
  assert.throws(() => net.train('yes' as unknown as boolean), /Net.train: expected a boolean for mode/);
  net.dispose();
});

test('registration refuses duplicate names, bad names and non-leaf tensors', () => {
  class Bad extends Module {
    constructor(kind: string) {
      super();
      if (kind === 'dup') {
        this.registerParameter('w', cf.zeros([1]));
        this.registerModule('w', new Linear(1, 1));
      } else if (kind === 'name') {
        this.registerParameter('a.b', cf.zeros([1]));
      } else if (kind === 'i32') {
        this.registerParameter('ids', cf.zeros([1], { dtype: 'i32' }));
      } else {
        const x = cf.zeros([2], { requiresGrad: true });
        this.registerParameter('y', cf.mul(x, x));
      }
    }
  }
  assert.throws(() => new Bad('dup'), /Bad.registerModule: Bad already has a member named 'w'/);
  assert.throws(() => new Bad('name'), /Bad.registerParameter: expected a name of letters, digits and underscores for name, got 'a.b'/);
  assert.throws(() => new Bad('i32'), /expected dtype 'f32' or 'bf16' for ids/);
  assert.throws(() => new Bad('graph'), /expected a leaf tensor for y, got the output of 'mul'/);
});

test('stateDict round-trips through loadStateDict', () => {
  const a = new Net();
  const b = new Net();
  const values = new Map<string, cf.Tensor>();
  for (const [k, t] of a.stateDict()) values.set(k, cf.fromArray(rng.array(t.size), [...t.shape]));
  a.loadStateDict(values);
  const before = b.blocks.get(0).fc.weight;
  const r = b.loadStateDict(a.stateDict());
  assert.equal(r, { missing: [], unexpected: [] });
  assert.is(b.blocks.get(0).fc.weight, before, 'loading copies in place');
  for (const [k, t] of b.stateDict()) assertClose(t.toArray(), values.get(k)!.toArray(), { what: k, rtol: 0, atol: 0 });
  for (const t of values.values()) t.dispose();
  a.dispose();
  b.dispose();
});

test('strict loading names every missing and unexpected key and every shape mismatch', () => {
  const net = new Net();
  const sd = new Map(net.stateDict());
  sd.delete('blocks.1.fc.bias');
  sd.delete('scale');
  const extra = cf.zeros([3]);
  sd.set('blocks.2.fc.weight', extra);
  const wrong = cf.zeros([3, 3]);
  sd.set('blocks.0.fc.weight', wrong);
  const before = Array.from(net.blocks.get(0).norm.parameters()[0]!.toArray());
  let msg = '';
  try {
    net.loadStateDict(sd);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.match(msg, /^Net.loadStateDict: the state dict does not fit the model:/);
  assert.match(msg, /missing keys \(2\): scale, blocks\.1\.fc\.bias/);
  assert.match(msg, /unexpected keys \(1\): blocks\.2\.fc\.weight/);
  assert.match(msg, /blocks\.0\.fc\.weight: expected shape \[2, 3\], got \[3, 3\]/);
  assert.equal(Array.from(net.blocks.get(0).norm.parameters()[0]!.toArray()), before, 'nothing was copied');
  // Non-strict: missing and unexpected keys are reported, shape mismatches still throw.
  assert.throws(() => net.loadStateDict(sd, { strict: false }), /blocks\.0\.fc\.weight: expected shape \[2, 3\], got \[3, 3\]/);
  sd.delete('blocks.0.fc.weight');
  const r = net.loadStateDict(sd, { strict: false });
  assert.equal(r.missing, ['scale', 'blocks.0.fc.weight', 'blocks.1.fc.bias']);
  assert.equal(r.unexpected, ['blocks.2.fc.weight']);
  assert.throws(() => net.loadStateDict(sd, { strict: 1 as unknown as boolean }), /expected a boolean for strict/);
  extra.dispose();
  wrong.dispose();
  net.dispose();
});

test('to() moves tensors and keeps names and requiresGrad; zeroGrad drops gradients', () => {
  const net = new Net(1);
  assert.is(net.device, 'cpu');
  assert.is(net.to('cpu'), net);
  assert.throws(() => net.to('gpu'), /Net.to: expected 'cpu', 'cuda' or 'cuda:N' for device/);
  const y = cf.scope(() => cf.sum(net.blocks.get(0).fc.forward(cf.ones([1, 3]))));
  y.backward();
  y.dispose();
  assert.ok(net.blocks.get(0).fc.weight.grad);
  net.zeroGrad();
  assert.is(net.blocks.get(0).fc.weight.grad, null);
  net.dispose();
});

test('Linear, LayerNorm, Embedding, LayerScale and Mlp: shapes, keys and values', () => {
  const fc = new Linear(4, 3, { generator: new cf.Generator(1) });
  assert.equal(fc.namedParameters().map(([k, t]) => [k, [...t.shape]]), [['weight', [3, 4]], ['bias', [3]]]);
  const bound = 1 / Math.sqrt(4);
  assert.ok(Array.from(fc.weight.toArray()).every((v) => Math.abs(v) <= bound), 'default init within 1/sqrt(fan_in)');
  const noBias = new Linear(4, 3, { bias: false });
  assert.is(noBias.bias, null);
  assert.equal(noBias.namedParameters().map(([k]) => k), ['weight']);
  const x = cf.fromArray(rng.array(8), [2, 4]);
  const w = fc.weight.toArray(), b = fc.bias!.toArray(), xv = x.toArray();
  const expected = new Float32Array(6);
  for (let i = 0; i < 2; i++) for (let o = 0; o < 3; o++) {
    let s = b[o]!;
    for (let k = 0; k < 4; k++) s += xv[i * 4 + k]! * w[o * 4 + k]!;
    expected[i * 3 + o] = s;
  }
  cf.scope(() => assertClose(fc.forward(x).toArray(), expected, { rtol: 1e-5, atol: 1e-6 }));
  const ln = new LayerNorm(4, { eps: 1e-6 });
  assert.equal(ln.namedParameters().map(([k]) => k), ['weight', 'bias']);
  assert.is(ln.eps, 1e-6);
  const emb = new Embedding(10, 4);
  cf.scope(() => {
    const out = emb.forward(cf.fromArray(new Int32Array([3, 9]), [2]));
    assert.equal([...out.shape], [2, 4]);
    assertClose(out.toArray().subarray(0, 4), emb.weight.toArray().subarray(12, 16), { rtol: 0, atol: 0 });
  });
  const ls = new LayerScale(4, 0.5);
  cf.scope(() => assertClose(ls.forward(x).toArray(), Array.from(xv, (v) => v * 0.5)));
  const mlp = new Mlp(4, 8, { activation: 'quickGelu' });
  assert.equal(mlp.namedParameters().map(([k]) => k), ['c_fc.weight', 'c_fc.bias', 'c_proj.weight', 'c_proj.bias']);
  assert.throws(() => new Mlp(4, 8, { activation: 'relu' as 'gelu' }), /Mlp: expected 'gelu' or 'quickGelu' for activation/);
  assert.throws(() => new Linear(0, 3), /Linear: expected an integer in \[1, Infinity\] for inFeatures/);
  for (const m of [fc, noBias, ln, emb, ls, mlp]) m.dispose();
  x.dispose();
});

test('Mlp forward is c_proj(act(c_fc(x))) and every parameter gets a gradient', () => {
  for (const activation of ['gelu', 'quickGelu'] as const) {
    const mlp = new Mlp(3, 5, { activation, generator: new cf.Generator(3) });
    const [w1, b1, w2, b2] = mlp.parameters();
    const x = cf.fromArray(rng.array(6), [2, 3], { requiresGrad: true });
    cf.scope(() => {
      const act = activation === 'gelu' ? cf.gelu : cf.quickGelu;
      const want = cf.linear(act(cf.linear(x, w1!, b1!)), w2!, b2!);
      assertClose(mlp.forward(x).toArray(), want.toArray(), { rtol: 0, atol: 0 });
    });
    const y = cf.scope(() => cf.sum(mlp.forward(x)));
    y.backward();
    assert.ok(mlp.parameters().every((t) => t.grad !== null), 'every MLP parameter gets a gradient');
    y.dispose();
    x.dispose();
    mlp.dispose();
  }
});

test('loadStateDict casts integer sources (a checkpoint read i64 -> i32) to the parameter dtype', () => {
  const layer = new cf.Linear(2, 3);
  const state = new Map([...layer.stateDict()].map(([k, v]) => [k, cf.full(v.shape, 7, { dtype: 'i32' })]));
  layer.loadStateDict(state);
  for (const [k, v] of layer.stateDict()) assert.equal(Array.from(v.toArray()), new Array(v.size).fill(7), k);
  for (const t of state.values()) t.dispose();
  layer.dispose();
});

test.run();
