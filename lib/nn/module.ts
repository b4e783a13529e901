// The module system: a tree of modules, each owning named parameters (learned tensors),
// buffers (state that is not learned, e.g. BatchNorm running statistics) and child modules.
// Names join with '.' down the tree, so a model's parameter names are the keys of its
// OpenCLIP state dict (`visual.transformer.resblocks.0.attn.in_proj_weight`), and weights
// move between the two systems by name.
//
// Parameters are leaf tensors that live outside every scope: a module made inside scope()
// keeps its weights when the scope closes. They are released by dispose().
//
// Subclasses register everything in their constructor and read their tensors back through
// param() / buffer() (typically behind a getter), never from a field captured at construction:
// to() replaces the tensors with copies on another device.
import { noGrad } from '../tensor/autograd.js';
import { argError, checkBoolean, sameShape, shapeStr } from '../tensor/check.js';
import { keep } from '../tensor/scope.js';
import { checkDevice, empty, isTensor, type Device, type Tensor } from '../tensor/tensor.js';
import { cast } from '../tensor/ops/shape.js';
import { native } from '../native.js';

const NAME_PATTERN = /^[A-Za-z0-9_]+$/;

interface BufferEntry {
  tensor: Tensor;
  persistent: boolean;
}

export interface LoadStateDictOptions {
  /**
   * Require the keys to match exactly (default true). With false, missing and unexpected
   * keys are reported in the result instead of thrown; shape mismatches always throw.
   */
  strict?: boolean;
}

export interface LoadStateDictResult {
  missing: string[];
  unexpected: string[];
}

export class Module {
  /** Training mode (dropout-like behaviour on); set by train() / eval(). */
  training = true;
  private readonly ownParams = new Map<string, Tensor>();
  private readonly ownBuffers = new Map<string, BufferEntry>();
  private readonly ownChildren = new Map<string, Module>();
  private readonly inlineChildren = new Set<string>();

  /** The class name, used in error messages. */
  get typeName(): string {
    return this.constructor.name;
  }

  /**
   * Registers `tensor` as parameter `name`: it becomes a leaf that requires a gradient (unless
   * `requiresGrad: false`, a frozen parameter that is still in the state dict) and leaves
   * every scope. Returns the tensor.
   */
  protected registerParameter(name: string, tensor: Tensor, opts: { requiresGrad?: boolean } = {}): Tensor {
    const op = `${this.typeName}.registerParameter`;
    this.checkNewName(op, name);
    if (!isTensor(tensor)) throw argError(op, name, 'a Tensor', tensor);
    tensor.assertAlive(op, name);
    if (tensor.gradFn) throw new Error(`${op}: expected a leaf tensor for ${name}, got the output of '${tensor.gradFn.op}' (create parameters under noGrad)`);
    if (tensor.dtype === 'i32') throw new Error(`${op}: expected dtype 'f32' or 'bf16' for ${name}, got 'i32'`);
    keep(tensor);
    tensor.requiresGrad = opts.requiresGrad === undefined ? true : checkBoolean(op, 'requiresGrad', opts.requiresGrad);
    tensor.name = name;
    this.ownParams.set(name, tensor);
    return tensor;
  }

  /**
   * Registers `tensor` as buffer `name` (no gradient). A persistent buffer (the default) is
   * part of the state dict; a non-persistent one (a cache that can be recomputed) is not.
   */
  protected registerBuffer(name: string, tensor: Tensor, opts: { persistent?: boolean } = {}): Tensor {
    const op = `${this.typeName}.registerBuffer`;
    this.checkNewName(op, name);
    if (!isTensor(tensor)) throw argError(op, name, 'a Tensor', tensor);
    tensor.assertAlive(op, name);
    keep(tensor);
    tensor.name = name;
    const persistent = opts.persistent === undefined ? true : checkBoolean(op, 'persistent', opts.persistent);
    this.ownBuffers.set(name, { tensor, persistent });
    return tensor;
  }

  /**
   * Registers a child module under `name`; its tensors' names gain the prefix `name.`. With
   * `inline: true` they keep their names, as if the child's members were this module's own
   * (OpenCLIP's CLIP holds its text tower's members at the top level: `token_embedding.weight`,
   * not `text.token_embedding.weight`); `name` then only names the child for child(name).
   */
  protected registerModule<M extends Module>(name: string, module: M, opts: { inline?: boolean } = {}): M {
    const op = `${this.typeName}.registerModule`;
    this.checkNewName(op, name);
    if (!(module instanceof Module)) throw argError(op, name, 'a Module', module);
    if ((module as Module) === this) throw new Error(`${op}: a module cannot be its own child (${name})`);
    const inline = opts.inline === undefined ? false : checkBoolean(op, 'inline', opts.inline);
    if (inline) {
      for (const member of module.memberNames()) this.checkNewName(op, member);
      this.inlineChildren.add(name);
    }
    this.ownChildren.set(name, module);
    for (const [key, t] of module.namedParameters()) t.name = inline ? key : `${name}.${key}`;
    for (const [key, t] of module.namedBuffers()) t.name = inline ? key : `${name}.${key}`;
    return module;
  }

  /** The names this module's members take in its parent's namespace (inline children's included). */
  private memberNames(): string[] {
    const names = [...this.ownParams.keys(), ...this.ownBuffers.keys()];
    for (const [name, m] of this.ownChildren) {
      if (this.inlineChildren.has(name)) names.push(...m.memberNames());
      else names.push(name);
    }
    return names;
  }

  private checkNewName(op: string, name: unknown): void {
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw argError(op, 'name', 'a name of letters, digits and underscores', name);
    if (this.ownChildren.has(name) || this.memberNames().includes(name)) {
      throw new Error(`${op}: ${this.typeName} already has a member named '${name}'`);
    }
  }

  /** This module's own parameter `name`. */
  protected param(name: string): Tensor {
    const t = this.ownParams.get(name);
    if (!t) throw new Error(`${this.typeName}: no parameter named '${name}'`);
    return t;
  }

  /** This module's own parameter `name`, or null when it has none of that name (an optional bias). */
  protected optionalParam(name: string): Tensor | null {
    return this.ownParams.get(name) ?? null;
  }

  /** This module's own buffer `name`. */
  protected buffer(name: string): Tensor {
    const b = this.ownBuffers.get(name);
    if (!b) throw new Error(`${this.typeName}: no buffer named '${name}'`);
    return b.tensor;
  }

  /** This module's own child `name`. */
  protected child<M extends Module = Module>(name: string): M {
    const m = this.ownChildren.get(name);
    if (!m) throw new Error(`${this.typeName}: no submodule named '${name}'`);
    return m as M;
  }

  /** Direct children, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.ownChildren];
  }

  /**
   * This module and every descendant, with the dotted prefix of their tensors' names ('' for
   * this module; an inline child shares its parent's prefix).
   */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, m] of this.ownChildren) {
      const path = this.inlineChildren.has(name) ? prefix : prefix ? `${prefix}.${name}` : name;
      out.push(...m.namedModules(path));
    }
    return out;
  }

  /** Every parameter with its full dotted name: own first, then children's, in registration order. */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules()) {
      for (const [name, t] of m.ownParams) out.push([path ? `${path}.${name}` : name, t]);
    }
    return out;
  }

  /** Every parameter (frozen ones included: filter on requiresGrad for an optimizer). */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Every buffer with its full dotted name; only the persistent ones with `persistentOnly`. */
  namedBuffers(opts: { persistentOnly?: boolean } = {}): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules()) {
      for (const [name, b] of m.ownBuffers) {
        if (opts.persistentOnly && !b.persistent) continue;
        out.push([path ? `${path}.${name}` : name, b.tensor]);
      }
    }
    return out;
  }

  /** Total number of parameter elements (frozen ones included, as PyTorch counts). */
  numParameters(): number {
    let n = 0;
    for (const t of this.parameters()) n += t.size;
    return n;
  }

  /** Sets training mode on this module and every descendant. Returns this. */
  train(mode = true): this {
    checkBoolean(`${this.typeName}.train`, 'mode', mode);
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode: train(false). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Parameters and persistent buffers by full name (the module's own tensors, not copies:
   * save them, do not dispose them).
   */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [path, m] of this.namedModules()) {
      const at = (name: string): string => (path ? `${path}.${name}` : name);
      for (const [name, t] of m.ownParams) out.set(at(name), t);
      for (const [name, b] of m.ownBuffers) if (b.persistent) out.set(at(name), b.tensor);
    }
    return out;
  }

  /**
   * Copies values from `state` (name -> tensor, e.g. a safetensors file's tensors) into this
   * module's parameters and persistent buffers, in place (optimizers holding the parameters
   * keep working). Values are cast to each parameter's dtype and copied to its device.
   * Throws one Error listing every missing key, unexpected key (both only when strict) and
   * shape mismatch; nothing is copied then.
   */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, opts: LoadStateDictOptions = {}): LoadStateDictResult {
    const op = `${this.typeName}.loadStateDict`;
    if (opts === null || typeof opts !== 'object') throw argError(op, 'opts', 'an options object', opts);
    const strict = opts.strict === undefined ? true : checkBoolean(op, 'strict', opts.strict);
    let entries: Map<string, Tensor>;
    if (state instanceof Map) entries = state;
    else if (state !== null && typeof state === 'object') entries = new Map(Object.entries(state));
    else throw argError(op, 'state', 'a Map or a record of tensors', state);
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !entries.has(k));
    const unexpected = [...entries.keys()].filter((k) => !own.has(k));
    const problems: string[] = [];
    for (const [key, src] of entries) {
      const dst = own.get(key);
      if (!dst) continue;
      if (!isTensor(src) || src.isDisposed) {
        problems.push(`${key}: expected a live Tensor, got ${isTensor(src) ? 'a disposed tensor' : typeof src}`);
      } else if (!sameShape(src.shape, dst.shape)) {
        problems.push(`${key}: expected shape ${shapeStr(dst.shape)}, got ${shapeStr(src.shape)}`);
      }
    }
    if (strict && missing.length) problems.unshift(`missing keys (${missing.length}): ${missing.join(', ')}`);
    if (strict && unexpected.length) problems.unshift(`unexpected keys (${unexpected.length}): ${unexpected.join(', ')}`);
    if (problems.length) throw new Error(`${op}: the state dict does not fit the model:\n  ${problems.join('\n  ')}`);
    noGrad(() => {
      for (const [key, dst] of own) {
        const src = entries.get(key);
        if (!src) continue;
        const converted = cast(src, dst.dtype);
        native.copy(converted, dst);
        if (converted !== src) converted.dispose();
      }
    });
    return { missing, unexpected };
  }

  /**
   * Moves every parameter and buffer to `device` (new tensors there; the old ones are
   * disposed, gradients dropped). Returns this.
   */
  to(device: Device): this {
    const d = checkDevice(`${this.typeName}.to`, 'device', device);
    const move = (t: Tensor): Tensor => {
      if (t.device === d) return t;
      const moved = keep(empty(t.shape, { dtype: t.dtype, device: d }));
      native.copy(t, moved);
      moved.requiresGrad = t.requiresGrad;
      moved.name = t.name;
      t.dispose();
      return moved;
    };
    for (const [, m] of this.namedModules()) {
      for (const [name, t] of m.ownParams) m.ownParams.set(name, move(t));
      for (const [, b] of m.ownBuffers) b.tensor = move(b.tensor);
    }
    return this;
  }

  /** The device of the first parameter (or buffer); 'cpu' for a module without tensors. */
  get device(): Device {
    const first = this.parameters()[0] ?? this.namedBuffers()[0]?.[1];
    return first ? first.device : 'cpu';
  }

  /** Drops every parameter's gradient. */
  zeroGrad(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.grad = null;
    }
  }

  /** Releases every parameter, gradient and buffer of this module and its descendants. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const t of m.ownParams.values()) t.dispose();
      for (const b of m.ownBuffers.values()) b.tensor.dispose();
    }
  }
}

/** An ordered list of modules, registered under '0', '1', ... (PyTorch's nn.ModuleList). */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly items: M[] = [];

  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.push(m);
  }

  push(module: M): void {
    this.registerModule(String(this.items.length), module);
    this.items.push(module);
  }

  get length(): number {
    return this.items.length;
  }

  get(index: number): M {
    const m = this.items[index];
    if (!m) throw argError('ModuleList.get', 'index', `an integer in [0, ${this.items.length - 1}]`, index);
    return m;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}
