// Reverse-mode autograd on a tape of nodes. An op that has an input requiring a gradient
// records a GradNode on its output: which inputs it had, the tensors its backward reads
// (held by the node, so scopes may dispose the originals), and one gradient closure per
// input that is only called when that input needs a gradient.
//
// Memory: a node is reference-counted by the tensors it produced and the nodes downstream
// of it; backward() releases each node's saved tensors as soon as it has run, and a graph
// that is never run is released when its last tensor is disposed.
import { argError, sameShape } from './check.js';
import { scope } from './scope.js';
import { dtypeBytes, ones, Storage, Tensor, type DType } from './tensor.js';
import { native } from '../native.js';

let gradDisabledDepth = 0;

/** Whether ops record gradients now. */
export function isGradEnabled(): boolean {
  return gradDisabledDepth === 0;
}

/** Runs fn without recording gradients (evaluation, optimizer updates). */
export function noGrad<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw argError('noGrad', 'fn', 'a function', fn);
  gradDisabledDepth++;
  try {
    return fn();
  } finally {
    gradDisabledDepth--;
  }
}

/** Runs fn with gradient recording on, also inside noGrad (used by checkpoint). */
export function enableGrad<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw argError('enableGrad', 'fn', 'a function', fn);
  const saved = gradDisabledDepth;
  gradDisabledDepth = 0;
  try {
    return fn();
  } finally {
    gradDisabledDepth = saved;
  }
}

interface NodeInput {
  node: GradNode | null;
  leaf: Tensor | null;
  shape: readonly number[];
  dtype: DType;
}

/**
 * Gradient closure: given the output gradient, the saved tensors and which inputs need a
 * gradient, returns one gradient per input (null where not needed). A returned gradient may
 * be `gy` itself, a view of it, a new tensor, or the tensor `pendingGrad(i)` gave after adding
 * input i's gradient into it in place.
 */
export type GradFn = (gy: Tensor, saved: Tensor[], needs: boolean[], pendingGrad: PendingGrad) => (Tensor | null)[];

/**
 * The gradient already collected for input i from its other consumers, when the gradient
 * function may add input i's gradient into it in place and return it (so an input that feeds
 * several ops, like the input of parallel convolutions or a residual stream, gets one tensor
 * written in place rather than a new tensor per consumer and a sum): a tensor of the input's
 * shape and dtype that nothing else references. Null when there is none (the first consumer, a
 * leaf, memory shared with another tensor, an input that needs no gradient); the function then
 * returns a new tensor as usual.
 */
export type PendingGrad = (i: number) => Tensor | null;

export class GradNode {
  refs = 1;
  released = false;
  consumed = false;
  readonly inputs: NodeInput[];
  saved: Tensor[];

  constructor(
    readonly op: string,
    inputs: Tensor[],
    saved: Tensor[],
    readonly gradFn: GradFn,
  ) {
    this.inputs = inputs.map((t) => {
      const node = t.requiresGrad ? t.gradFn : null;
      node?.ref();
      return { node, leaf: t.requiresGrad && !t.gradFn ? t : null, shape: t.shape, dtype: t.dtype };
    });
    // Aliases outside any scope keep the saved memory alive after the originals are disposed.
    this.saved = saved.map((t) => untrackedAlias(t));
  }

  ref(): void {
    this.refs++;
  }

  unref(): void {
    if (--this.refs > 0) return;
    this.release();
    for (const inp of this.inputs) inp.node?.unref();
  }

  /** Frees the saved tensors; the node can no longer run. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const t of this.saved) t.dispose();
    this.saved = [];
  }
}

function untrackedAlias(t: Tensor): Tensor {
  const a = t.view(t.shape);
  a.scopeSet?.delete(a);
  a.scopeSet = null;
  return a;
}

/**
 * Records a gradient node on `out` when recording is on and an input requires a gradient
 * (or `always`, for ops like checkpoint whose function may hold parameters). Returns `out`.
 */
export function attachGrad(out: Tensor, op: string, inputs: Tensor[], saved: Tensor[], gradFn: GradFn, always = false): Tensor {
  if (gradDisabledDepth > 0 || (!always && !inputs.some((t) => t.requiresGrad))) return out;
  const node = new GradNode(op, inputs, saved, gradFn);
  // A tensor that already had a node drops its reference to it (else that graph would leak).
  out.gradFn?.unref();
  out.requiresGrad = true;
  out.gradFn = node;
  return out;
}

/** Topological order (inputs before outputs) of the nodes reachable from root. */
function topoOrder(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const visited = new Set<GradNode>();
  const stack: [GradNode, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i]!.node;
      if (child && !visited.has(child)) {
        visited.add(child);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

function addInto(acc: Tensor, g: Tensor): Tensor {
  const sum = new Tensor(allocLike(acc), acc.shape, acc.dtype, 0);
  native.binary('add', acc, g, sum);
  return sum;
}

function allocLike(t: Tensor): Storage {
  return Storage.allocate(t.size * dtypeBytes(t.dtype), t.device);
}

function cloneTensor(t: Tensor): Tensor {
  const c = new Tensor(allocLike(t), t.shape, t.dtype, 0);
  native.copy(t, c);
  return c;
}

/**
 * The gradient g (returned by the gradient function that received gy) as a tensor its receiver
 * owns. A leaf keeps its gradient, and the optimizer may change it in place (clipping), so a
 * leaf gets memory shared with nothing else: gy itself, or a view of gy, when nothing else holds
 * that memory, else a copy. A node's pending gradient is only read (no gradient function writes
 * its gy, and sums are new tensors), so a node gets gy at its last use and a view of gy before
 * it, never a copy: the residual adds and the branches that sum into one activation would each
 * copy a whole activation gradient otherwise.
 */
function owned(g: Tensor, gy: Tensor, gyOwned: { taken: boolean; usesLeft: number }, forLeaf: boolean): Tensor {
  const take = (): Tensor => {
    gyOwned.taken = true;
    return gy;
  };
  if (g === gy) {
    gyOwned.usesLeft--;
    const last = !gyOwned.taken && gyOwned.usesLeft === 0;
    if (!forLeaf) return last ? take() : gy.view(gy.shape);
    return last && gy.storage.refs === 1 ? take() : cloneTensor(gy);
  }
  if (!forLeaf || g.storage.refs === 1) return g;
  if (g.storage === gy.storage && g.storage.refs === 2 && !gyOwned.taken && gyOwned.usesLeft === 0) {
    take().dispose();
    return g;
  }
  const c = cloneTensor(g);
  g.dispose();
  return c;
}

function detachFromScope(t: Tensor): Tensor {
  t.scopeSet?.delete(t);
  t.scopeSet = null;
  return t;
}

/**
 * Back-propagates from `root` (a one-element tensor, or any tensor with `grad` given):
 * accumulates into the `.grad` of every leaf that requires a gradient, then releases the
 * graph. Leaf gradients belong to their leaves (no scope disposes them).
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!(root instanceof Tensor)) throw argError('backward', 'tensor', 'a Tensor', root);
  root.assertAlive('backward', 'tensor');
  if (!root.requiresGrad) throw new Error('backward: the tensor does not require a gradient (no input of its graph requires one)');
  if (grad === undefined && root.size !== 1) {
    throw new Error(`backward: expected a one-element tensor or an explicit grad, got shape [${root.shape.join(', ')}]`);
  }
  if (grad !== undefined) {
    if (!(grad instanceof Tensor)) throw argError('backward', 'grad', 'a Tensor', grad);
    grad.assertAlive('backward', 'grad');
    if (grad.size !== root.size || grad.dtype !== root.dtype || grad.device !== root.device) {
      throw new Error(`backward: expected grad like ${root.toString()}, got ${grad.toString()}`);
    }
  }
  noGrad(() => {
    const seed = grad ? reshapeOwned(cloneTensor(grad), root.shape) : ones(root.shape, { dtype: root.dtype, device: root.device });
    if (!root.gradFn) {
      accumulateLeaf(root, seed);
      return;
    }
    const rootNode = root.gradFn;
    const order = topoOrder(rootNode);
    for (const n of order) {
      if (n.consumed || n.released) {
        seed.dispose();
        throw new Error(
          `backward: the graph through '${n.op}' has already been run or released; compute the forward again (clipforge frees a graph after one backward)`,
        );
      }
    }
    const pending = new Map<GradNode, Tensor>();
    pending.set(rootNode, seed);
    try {
      for (let k = order.length - 1; k >= 0; k--) {
        const node = order[k]!;
        const gy = pending.get(node);
        pending.delete(node);
        node.consumed = true;
        if (!gy) {
          node.release();
          continue;
        }
        const needs = node.inputs.map((i) => i.node !== null || i.leaf !== null);
        const gyOwned = { taken: false, usesLeft: 0 };
        // What pendingGrad handed out: returned, it has been added into already and stays pending.
        const offered = new Set<Tensor>();
        const pendingGrad: PendingGrad = (i) => {
          const inp = node.inputs[i];
          const prev = inp?.node ? pending.get(inp.node) : undefined;
          if (!prev || !needs[i] || prev.storage.refs !== 1 || prev.dtype !== inp!.dtype || !sameShape(prev.shape, inp!.shape)) return null;
          offered.add(prev);
          return prev;
        };
        let grads: (Tensor | null)[] = [];
        try {
          // In a scope: temporaries of the gradient function (views, partial results) are
          // freed now, not left to the caller's scope or the garbage collector.
          grads = scope(() => node.gradFn(gy, node.saved, needs, pendingGrad));
          gyOwned.usesLeft = grads.filter((g, i) => g === gy && needs[i]).length;
          node.inputs.forEach((inp, i) => {
            const g = grads[i];
            if (!g) return;
            grads[i] = null;
            if (offered.has(g)) return;
            if (!needs[i]) {
              if (g !== gy) g.dispose();
              return;
            }
            if (g.size !== inp.shape.reduce((a, b) => a * b, 1)) {
              if (g !== gy) g.dispose();
              throw new Error(`backward: '${node.op}' gave a gradient of shape [${g.shape.join(', ')}] for an input of shape [${inp.shape.join(', ')}]`);
            }
            const own = owned(g, gy, gyOwned, inp.leaf !== null);
            if (inp.leaf) {
              accumulateLeaf(inp.leaf, own);
            } else if (inp.node) {
              const prev = pending.get(inp.node);
              if (prev) {
                pending.set(inp.node, addInto(prev, own));
                prev.dispose();
                own.dispose();
              } else {
                pending.set(inp.node, own);
              }
            }
          });
        } catch (e) {
          if (Array.isArray(grads)) for (const g of grads) if (g instanceof Tensor && g !== gy && !offered.has(g)) g.dispose();
          if (!gyOwned.taken) gy.dispose();
          throw e;
        }
        if (!gyOwned.taken) gy.dispose();
        node.release();
      }
    } finally {
      for (const t of pending.values()) t.dispose();
      for (const n of order) n.release();
    }
  });
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.isDisposed) {
    g.dispose();
    return;
  }
  const shaped = g.shape.length === leaf.shape.length && g.shape.every((d, i) => d === leaf.shape[i]) ? g : reshapeOwned(g, leaf.shape);
  if (!leaf.grad) {
    leaf.grad = detachFromScope(shaped);
    return;
  }
  const sum = detachFromScope(addInto(leaf.grad, shaped));
  leaf.grad.dispose();
  shaped.dispose();
  leaf.grad = sum;
}

function reshapeOwned(g: Tensor, shape: readonly number[]): Tensor {
  const v = g.view(shape);
  g.dispose();
  return v;
}
