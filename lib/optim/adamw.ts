// AdamW with decoupled weight decay, as torch.optim.AdamW: f32 master weights, per-parameter
// state (step, exp_avg, exp_avg_sq) created on a parameter's first update, and one fused
// native update for all parameters of a device and gradient dtype (a single kernel launch
// on CUDA). Parameters whose grad is null are skipped and their step does not advance.
import { native } from '../native.js';
import { argError, describe, sameShape, shapeStr } from '../tensor/check.js';
import { keep } from '../tensor/scope.js';
import { checkTensor, empty, zeros, type Tensor } from '../tensor/tensor.js';

export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay for groups that do not set their own (default 1e-2). */
  weightDecay?: number;
}

export interface ParamGroupSpec {
  params: Tensor[];
  weightDecay?: number;
}

export interface ParamGroup {
  readonly params: readonly Tensor[];
  lr: number;
  weightDecay: number;
}

export interface AdamWParamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

/** torch.optim.Optimizer.state_dict's shape; parameters are referred to by their index over the groups. */
export interface AdamWStateDict {
  state: Record<number, { step: number; exp_avg: Tensor; exp_avg_sq: Tensor }>;
  param_groups: { lr: number; betas: [number, number]; eps: number; weight_decay: number; params: number[] }[];
}

function checkBeta(op: string, arg: string, v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw argError(op, arg, 'a number in [0, 1)', v);
  return v;
}

function checkNonNegative(op: string, arg: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw argError(op, arg, 'a finite number >= 0', v);
  return v;
}

function checkBetas(op: string, arg: string, betas: unknown): [number, number] {
  if (!Array.isArray(betas) || betas.length !== 2) throw argError(op, arg, 'two numbers [beta1, beta2]', betas);
  return [checkBeta(op, `${arg}[0]`, betas[0]), checkBeta(op, `${arg}[1]`, betas[1])];
}

export class AdamW {
  readonly paramGroups: ParamGroup[];
  betas: [number, number];
  eps: number;
  private readonly state = new Map<Tensor, AdamWParamState>();

  constructor(groups: ParamGroupSpec[] | Tensor[], opts: AdamWOptions = {}) {
    const op = 'AdamW';
    const lr = checkNonNegative(op, 'opts.lr', opts.lr ?? 1e-3);
    this.betas = checkBetas(op, 'opts.betas', opts.betas ?? [0.9, 0.999]);
    this.eps = checkNonNegative(op, 'opts.eps', opts.eps ?? 1e-8);
    const wd = checkNonNegative(op, 'opts.weightDecay', opts.weightDecay ?? 1e-2);
    if (!Array.isArray(groups) || groups.length === 0) throw argError(op, 'groups', 'a non-empty array of tensors or of parameter groups', groups);
    const specs: ParamGroupSpec[] = groups.every((g) => g !== null && typeof g === 'object' && 'params' in g)
      ? (groups as ParamGroupSpec[])
      : [{ params: groups as Tensor[] }];
    const seen = new Set<Tensor>();
    this.paramGroups = specs.map((g, gi) => {
      if (!Array.isArray(g.params)) throw argError(op, `groups[${gi}].params`, 'an array of tensors', g.params);
      g.params.forEach((p, pi) => {
        const t = checkTensor(op, `groups[${gi}].params[${pi}]`, p);
        if (t.dtype !== 'f32') throw new Error(`${op}: expected an f32 parameter (AdamW keeps f32 master weights) for groups[${gi}].params[${pi}], got ${t.toString()}`);
        if (seen.has(t)) throw new Error(`${op}: parameter ${t.name ?? t.toString()} appears in more than one place in groups`);
        seen.add(t);
      });
      const groupWd = g.weightDecay === undefined ? wd : checkNonNegative(op, `groups[${gi}].weightDecay`, g.weightDecay);
      return { params: [...g.params], lr, weightDecay: groupWd };
    });
  }

  /** The state of a parameter, once it has been updated (exp_avg and exp_avg_sq for checkpoints). */
  stateOf(param: Tensor): AdamWParamState | undefined {
    return this.state.get(param);
  }

  /** Sets the learning rate of every group (what the schedules call each step). */
  setLr(lr: number): void {
    checkNonNegative('AdamW.setLr', 'lr', lr);
    for (const g of this.paramGroups) g.lr = lr;
  }

  /** One update of every parameter that has a gradient; `lr` first sets every group's learning rate. */
  step(lr?: number): void {
    if (lr !== undefined) this.setLr(lr);
    const batches = new Map<string, { params: Tensor[]; grads: Tensor[]; states: AdamWParamState[]; lrs: number[]; wds: number[]; steps: number[] }>();
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        p.assertAlive('AdamW.step', `parameter ${p.name ?? p.toString()}`);
        const grad = p.grad;
        if (!grad) continue;
        if (grad.dtype === 'i32' || !sameShape(grad.shape, p.shape) || grad.device !== p.device) {
          throw new Error(`AdamW.step: expected an f32 or bf16 tensor of shape ${shapeStr(p.shape)} on ${p.device} for the gradient of ${p.name ?? p.toString()}, got ${grad.toString()}`);
        }
        let st = this.state.get(p);
        if (!st) {
          st = { step: 0, expAvg: keep(zeros(p.shape, { device: p.device })), expAvgSq: keep(zeros(p.shape, { device: p.device })) };
          this.state.set(p, st);
        }
        const key = `${p.device}/${grad.dtype}`;
        let b = batches.get(key);
        if (!b) batches.set(key, (b = { params: [], grads: [], states: [], lrs: [], wds: [], steps: [] }));
        b.params.push(p);
        b.grads.push(grad);
        b.states.push(st);
        b.lrs.push(g.lr);
        b.wds.push(g.weightDecay);
        b.steps.push(st.step + 1);
      }
    }
    for (const b of batches.values()) {
      native.adamw(b.params, b.grads, b.states.map((s) => s.expAvg), b.states.map((s) => s.expAvgSq), b.lrs, b.wds, b.steps, this.betas[0], this.betas[1], this.eps);
      b.states.forEach((s) => s.step++);
    }
  }

  /** Drops every parameter's gradient (torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /**
   * The optimizer state in torch's state_dict layout. The tensors are the live state (not
   * copies): serialize them before the next step.
   */
  stateDict(): AdamWStateDict {
    const state: AdamWStateDict['state'] = {};
    const groups: AdamWStateDict['param_groups'] = [];
    let index = 0;
    for (const g of this.paramGroups) {
      const ids: number[] = [];
      for (const p of g.params) {
        const st = this.state.get(p);
        if (st) state[index] = { step: st.step, exp_avg: st.expAvg, exp_avg_sq: st.expAvgSq };
        ids.push(index++);
      }
      groups.push({ lr: g.lr, betas: [...this.betas], eps: this.eps, weight_decay: g.weightDecay, params: ids });
    }
    return { state, param_groups: groups };
  }

  /** Restores a stateDict() (tensors are copied onto each parameter's device). */
  loadStateDict(sd: AdamWStateDict): void {
    const op = 'AdamW.loadStateDict';
    if (sd === null || typeof sd !== 'object' || !Array.isArray(sd.param_groups) || sd.state === null || typeof sd.state !== 'object') {
      throw argError(op, 'stateDict', 'an object with state and param_groups', sd);
    }
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new Error(`${op}: expected ${this.paramGroups.length} parameter groups, got ${sd.param_groups.length}`);
    }
    const params: Tensor[] = [];
    sd.param_groups.forEach((sg, gi) => {
      const g = this.paramGroups[gi]!;
      if (!Array.isArray(sg.params) || sg.params.length !== g.params.length) {
        throw new Error(`${op}: expected ${g.params.length} parameters in param_groups[${gi}], got ${describe(sg.params)}`);
      }
      sg.params.forEach((id, k) => (params[id] = g.params[k]!));
    });
    const first = sd.param_groups[0]!;
    const betas = checkBetas(op, 'param_groups[0].betas', first.betas);
    const eps = checkNonNegative(op, 'param_groups[0].eps', first.eps);
    const groupSettings = sd.param_groups.map((sg, gi) => ({
      lr: checkNonNegative(op, `param_groups[${gi}].lr`, sg.lr),
      weightDecay: checkNonNegative(op, `param_groups[${gi}].weight_decay`, sg.weight_decay),
    }));
    const restored = new Map<Tensor, AdamWParamState>();
    try {
      for (const [key, entry] of Object.entries(sd.state)) {
        const p = params[Number(key)];
        if (!p) throw new Error(`${op}: state ${key} names no parameter`);
        const step = entry?.step;
        if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) throw argError(op, `state[${key}].step`, 'an integer >= 0', step);
        const copyOf = (t: unknown, arg: string): Tensor => {
          const src = checkTensor(op, arg, t);
          if (src.dtype !== 'f32' || src.size !== p.size) throw new Error(`${op}: expected an f32 tensor of ${p.size} elements (like ${p.toString()}) for ${arg}, got ${src.toString()}`);
          const dst = keep(empty(p.shape, { device: p.device }));
          native.copy(src, dst);
          return dst;
        };
        const expAvg = copyOf(entry.exp_avg, `state[${key}].exp_avg`);
        try {
          restored.set(p, { step, expAvg, expAvgSq: copyOf(entry.exp_avg_sq, `state[${key}].exp_avg_sq`) });
        } catch (e) {
          expAvg.dispose();
          throw e;
        }
      }
    } catch (e) {
      for (const s of restored.values()) {
        s.expAvg.dispose();
        s.expAvgSq.dispose();
      }
      throw e;
    }
    this.dispose();
    for (const [p, s] of restored) this.state.set(p, s);
    this.betas = betas;
    this.eps = eps;
    groupSettings.forEach((s, gi) => Object.assign(this.paramGroups[gi]!, s));
  }

  /** Frees the optimizer state. */
  dispose(): void {
    for (const s of this.state.values()) {
      s.expAvg.dispose();
      s.expAvgSq.dispose();
    }
    this.state.clear();
  }
}
