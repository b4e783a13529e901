// Argument fuzzer for the library's exports and the native addon. Run as a child process by
// test/tensor/fuzz.test.ts (so that a crash or a hang is observed, not suffered):
//
//   CLIPFORGE_FUZZ_CHILD=1 [CLIPFORGE_FUZZ_SEED=n] [CLIPFORGE_FUZZ_CALLS=n] \
//     node --import tsx --expose-gc test/support/fuzz.ts
//
// Before every call it writes "@@CALL <i> <target>(<arguments>)" to stdout, so the last such
// line before a crash or a hang is the reproducing call; at the end it writes
// "@@REPORT <json>". The arguments are seeded: the same seed makes the same calls.
//
// Every function exported by lib/index.ts (found at run time, so new ops are fuzzed too), the
// methods of the exported classes, and every function of the native addon are called with
// random, mostly wrong arguments. Native functions get arguments shaped by their signature in
// lib/native.ts (forged tensor-like objects: wrong handles, freed storage, bad offsets, shapes
// and dtypes) so that calls get past the first check often enough to reach the deep ones.
// Valid sizes are small; every huge size is far beyond any machine's memory (it must be
// refused before allocation).
import { openSync, writeSync, mkdtempSync, rmSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as cf from '../../lib/index.js';
import type { NativeTensor } from '../../lib/native.js';
import { Rng } from './helpers.js';

export interface FuzzReport {
  seed: number;
  calls: number;
  libCalls: number;
  nativeCalls: number;
  /** Top-level calls that returned normally. */
  succeeded: number;
  nativeSucceeded: number;
  /** Thrown values that are not Error instances (must be empty). */
  nonErrors: string[];
  /** Errors escaping to the event loop: uncaught exceptions, unhandled rejections (must be empty). */
  uncaught: string[];
  /** A live tensor returned by a call that could not be read back (must be empty). */
  unreadable: string[];
  /** Calls that left the scope stack or the gradient mode changed (must be empty). */
  stateLeaks: string[];
  /** Targets and how often each was called. */
  coverage: Record<string, number>;
  /** Targets and how often a call returned normally. */
  returned: Record<string, number>;
  /** Native functions with a corpus of valid calls (recorded from the library) to mutate. */
  corpus: Record<string, number>;
  /** Seed workload items that failed (an API changed under the fuzzer; informative). */
  seedFailures: string[];
  /** Errors that are not in the library's "<op>: ..." shape (TypeError etc.), per target: count and a sample. */
  unshaped: Record<string, { count: number; sample: string }>;
  slowest: { ms: number; call: string }[];
  peakAllocatedBytes: number;
  leak: { liveTensorsBefore: number; liveTensorsAfter: number; bytesBefore: number; bytesAfter: number };
  seconds: number;
}

type Fn = (...args: unknown[]) => unknown;

interface Target {
  name: string;
  kind: 'lib' | 'native';
  fn: Fn;
  construct?: boolean; // a class: called with `new` (sometimes without)
  thisArg?: () => unknown; // a method: the receiver
  params?: Param[]; // native: parsed from lib/native.ts
}

interface Param {
  name: string;
  kind: 'tensor' | 'handle' | 'intlist' | 'number' | 'boolean' | 'enum' | 'string' | 'typedarray' | 'any';
  nullable: boolean;
  optional: boolean;
  values?: string[];
}

// ---------------------------------------------------------------------------------------
// Native signatures, read from the NativeAddon interface in lib/native.ts.

export function nativeSignatures(): Map<string, Param[]> {
  const src = readFileSync(new URL('../../lib/native.ts', import.meta.url), 'utf8');
  const start = src.indexOf('export interface NativeAddon {');
  const body = src.slice(start, src.indexOf('\n}', start));
  const out = new Map<string, Param[]>();
  for (const line of body.split('\n')) {
    const m = /^\s+(\w+)\((.*)\):\s*[^;]+;\s*$/.exec(line);
    if (!m) continue;
    const params: Param[] = [];
    let depth = 0, cur = '';
    const parts: string[] = [];
    for (const ch of m[2]!) {
      if (ch === '(' || ch === '[' || ch === '{' || ch === '<') depth++;
      if (ch === ')' || ch === ']' || ch === '}' || ch === '>') depth--;
      if (ch === ',' && depth === 0) {
        parts.push(cur);
        cur = '';
      } else cur += ch;
    }
    if (cur.trim()) parts.push(cur);
    for (const p of parts) {
      const pm = /^\s*(\w+)(\??):\s*(.+?)\s*$/.exec(p);
      if (!pm) continue;
      const type = pm[3]!;
      const literals = [...type.matchAll(/'([^']*)'/g)].map((x) => x[1]!);
      let kind: Param['kind'] = 'any';
      if (/\bT\b/.test(type)) kind = 'tensor';
      else if (type === 'unknown') kind = 'handle';
      else if (type === 'number[]') kind = 'intlist';
      else if (type === 'number') kind = 'number';
      else if (type === 'boolean') kind = 'boolean';
      else if (literals.length) kind = 'enum';
      else if (type === 'string') kind = 'string';
      else if (/Array/.test(type)) kind = 'typedarray';
      params.push({ name: pm[1]!, kind, nullable: /\bnull\b/.test(type), optional: pm[2] === '?', values: literals });
    }
    out.set(m[1]!, params);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Value pools. No number here may make a valid allocation of more than a few KiB: sizes are
// small, or so large (>= 2^44 elements) that they must be refused before allocation.

const HUGE = [2 ** 46, 2 ** 53, -(2 ** 53), 1e308, 2 ** 64];
const LIB_NUMBERS = [0, 1, 2, 3, 4, 6, 7, -1, -2, 0.5, 1.5, -0, NaN, Infinity, -Infinity, 1e-30, -1e-7, ...HUGE];
const OP_STRINGS = [
  'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'square', 'reciprocal', 'sigmoid', 'tanh', 'relu', 'geluErf', 'geluTanh',
  'quickGelu', 'affine', 'pow', 'clamp', 'add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'sum', 'mean', 'max', 'none',
  'uniform', 'normal', 'bogus', '', 'ADD', 'add ', 'exp\u0000',
];
const STRINGS = ['f32', 'bf16', 'i32', 'f16', 'cpu', 'cuda', 'cuda:0', 'cuda:7', 'cuda:-1', 'cuda:999', 'mean', 'sum', 'none', 'tanh', '', 'x', 'a photo of a cat', 'ünïcödé 🐈', 'cuda:0\u0000'];
const SMALL_SHAPES: number[][] = [[], [1], [3], [6], [2, 3], [3, 2], [1, 3], [2, 1], [2, 2, 3], [2, 3, 4], [4, 4], [1, 2, 3, 4], [2, 2, 2, 2], [0], [0, 3], [64], [65], [2, 1, 3], [2, 2, 2, 3]];
const BAD_SHAPES: unknown[] = [
  [-1], [NaN], [1.5], [2 ** 31], [2 ** 53], [2 ** 40, 2 ** 40], [2 ** 64], Array(9).fill(1), Array(65).fill(1), [[2]], ['2'],
  [0, 2 ** 50], [2 ** 50, 0], [0, 2 ** 53], [2 ** 31, 0, 2 ** 31], [2 ** 26, 2 ** 26, 0], { length: 2, 0: 1, 1: 2 }, new Array(3),
  new Int32Array([2, 3]), 'abc', 5, null, undefined, [Symbol('dim')], [1n], [Infinity], [-0], [2, 3, null], [-(2 ** 53)],
];
const BAD_OFFSETS: unknown[] = [-1, NaN, 0.5, 2 ** 53, 2 ** 60, Infinity, -Infinity, -0, '0', undefined, null, 63, 64, 65, 1e308, 2 ** 31, 2 ** 32 - 1];
const BAD_DTYPES: unknown[] = ['f16', 'F32', '', 5, null, undefined, Symbol('dtype'), 'f32\u0000', ['f32'], {}, 'float32'];
const INT_LISTS: unknown[] = [
  [0, 1], [1, 0], [0, 0], [2, 1, 0], [-1, 0], [0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 1], [], [2 ** 53], [0.5], [NaN], ['0'],
  Array.from({ length: 64 }, (_, i) => i), Array.from({ length: 65 }, (_, i) => i), [0, 1, 2, 3, 4, 5, 6, 7, 8], [2 ** 31], [-(2 ** 31)],
];

// ---------------------------------------------------------------------------------------

export function runFuzz(seed: number, totalCalls: number, log: (line: string) => void): Promise<FuzzReport> {
  const rng = new Rng(seed);
  const t0 = performance.now();
  const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rng.next() * xs.length)]!;
  const chance = (p: number): boolean => rng.next() < p;

  const report: FuzzReport = {
    seed, calls: 0, libCalls: 0, nativeCalls: 0, succeeded: 0, nativeSucceeded: 0, nonErrors: [], uncaught: [], unreadable: [],
    stateLeaks: [], coverage: {}, returned: {}, corpus: {}, seedFailures: [], unshaped: {}, slowest: [], peakAllocatedBytes: 0,
    leak: { liveTensorsBefore: 0, liveTensorsAfter: 0, bytesBefore: 0, bytesAfter: 0 }, seconds: 0,
  };
  const pending: Promise<void>[] = [];
  let currentCall = '';
  const onUncaught = (e: unknown): void => {
    report.uncaught.push(`uncaught exception after call ${currentCall}: ${fmtThrown(e)}`);
  };
  const onRejection = (e: unknown): void => {
    report.uncaught.push(`unhandled rejection after call ${currentCall}: ${fmtThrown(e)}`);
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onRejection);

  // --- describing values, for the reproduction line -----------------------------------
  const names = new Map<unknown, string>();
  function fmt(v: unknown, depth = 0): string {
    if (names.has(v)) return names.get(v)!;
    if (v === null) return 'null';
    if (v === undefined) return 'undefined';
    if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'string') return JSON.stringify(v);
    if (typeof v === 'symbol') return v.toString();
    if (typeof v === 'boolean') return String(v);
    if (typeof v === 'function') return `fn ${v.name || 'anonymous'}`;
    if (v instanceof cf.Tensor) {
      const t = v as cf.Tensor;
      return t.shape === undefined ? 'Object.create(Tensor.prototype)' : `${t.isDisposed ? 'disposed ' : ''}Tensor([${t.shape}], ${t.dtype}${t.requiresGrad ? ', grad' : ''}${t.offset ? `, offset ${t.offset}` : ''})`;
    }
    if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length?: number }).length ?? v.byteLength})`;
    if (depth > 2) return '…';
    if (Array.isArray(v)) {
      const items = v.slice(0, 10).map((x) => fmt(x, depth + 1));
      return `[${items.join(', ')}${v.length > 10 ? `, … (${v.length})` : ''}]`;
    }
    if (v instanceof Map) return `Map(${v.size})`;
    if (typeof v === 'object') {
      const proto = Object.getPrototypeOf(v);
      const keys = Object.keys(v);
      const inner = keys.slice(0, 8).map((k) => `${k}: ${fmt((v as Record<string, unknown>)[k], depth + 1)}`).join(', ');
      const cname = proto === null ? 'Object.create(null) ' : proto === Object.prototype ? '' : `${proto.constructor?.name ?? '?'} `;
      return `${cname}{${inner}}`;
    }
    return String(v);
  }

  function fmtThrown(e: unknown): string {
    if (e instanceof Error) return `${e.constructor.name}: ${e.message}`.slice(0, 300);
    try {
      return `non-Error ${typeof e}: ${fmt(e)}`;
    } catch {
      return `non-Error ${typeof e}`;
    }
  }

  // --- targets ----------------------------------------------------------------------------
  const lib: Target[] = [];
  const nat: Target[] = [];
  const isClass = (f: unknown): boolean => typeof f === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(f));
  const exported = cf as unknown as Record<string, unknown>;
  const instanceOf = new Map<unknown, () => unknown>();
  for (const [name, v] of Object.entries(exported)) {
    if (name === 'native' || typeof v !== 'function') continue;
    const klass = isClass(v);
    lib.push({ name, kind: 'lib', fn: v as Fn, construct: klass });
    if (!klass) continue;
    // Static methods and prototype methods and getters of exported classes.
    for (const key of Object.getOwnPropertyNames(v)) {
      if (['length', 'name', 'prototype'].includes(key)) continue;
      const d = Object.getOwnPropertyDescriptor(v, key)!;
      if (typeof d.value === 'function') lib.push({ name: `${name}.${key}`, kind: 'lib', fn: d.value as Fn, thisArg: () => v });
    }
    const proto = (v as { prototype: object }).prototype;
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key === 'constructor') continue;
      const d = Object.getOwnPropertyDescriptor(proto, key)!;
      const fn = typeof d.value === 'function' ? d.value : d.get;
      if (typeof fn !== 'function') continue;
      lib.push({ name: `${name}#${key}`, kind: 'lib', fn: fn as Fn, thisArg: () => (instanceOf.get(v) ?? (() => Object.create(proto)))() });
    }
  }
  const sigs = nativeSignatures();
  const addon = cf.native as unknown as Record<string, unknown>;
  const originals = new Map<string, Fn>();
  for (const [name, v] of Object.entries(addon)) {
    if (typeof v !== 'function') continue;
    originals.set(name, v as Fn);
    nat.push({ name: `native.${name}`, kind: 'native', fn: v as Fn, params: sigs.get(name) });
  }

  // --- corpus: valid native calls, recorded as the library makes them ----------------------
  // A tensor argument is kept as its shape, dtype, offset and a copy of its storage (one slot
  // per distinct storage, so aliasing, as in in-place ops, is kept too); a list holding tensors
  // (the branches of batchNormSum, AdamW's parameter lists) item by item; other arguments as values.
  type ArgSnap =
    | { kind: 'tensor'; shape: number[]; dtype: string; offset: number; slot: number }
    | { kind: 'list'; items: ArgSnap[] }
    | { kind: 'value'; value: unknown };
  interface CorpusEntry {
    args: ArgSnap[];
    slots: { nbytes: number; words: Int32Array }[];
  }
  const corpus = new Map<string, CorpusEntry[]>();
  const seen = new Map<string, number>();
  const CORPUS_PER_FN = 12;
  const cloneValue = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(cloneValue) : ArrayBuffer.isView(v) && !(v instanceof DataView) ? (v as unknown as { slice(): unknown }).slice() : v;
  const isTensorLike = (v: unknown): v is NativeTensor =>
    v !== null && typeof v === 'object' && 'handle' in v && 'shape' in v && 'dtype' in v && 'offset' in v;
  function record(name: string, args: unknown[]): void {
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    const list = corpus.get(name) ?? [];
    const at = list.length < CORPUS_PER_FN ? list.length : Math.floor(rng.next() * n);
    if (at >= CORPUS_PER_FN) return;
    const slots: CorpusEntry['slots'] = [];
    const handles: unknown[] = [];
    const snap = (a: unknown): ArgSnap | null => {
      if (Array.isArray(a) && a.some(isTensorLike)) {
        const items = a.map(snap);
        return items.every((it) => it !== null) ? { kind: 'list', items: items as ArgSnap[] } : null;
      }
      if (!isTensorLike(a)) return { kind: 'value', value: cloneValue(a) };
      let slot = handles.indexOf(a.handle);
      if (slot < 0) {
        const nbytes = originals.get('storageBytes')!(a.handle) as number;
        if (nbytes > 1 << 20) return null; // the fuzzer's own tensors are small; never copy a big one
        const words = nbytes >= 4 ? (originals.get('download')!({ handle: a.handle, offset: 0, shape: [nbytes >> 2], dtype: 'i32' }) as Int32Array) : new Int32Array(0);
        handles.push(a.handle);
        slots.push({ nbytes, words });
        slot = handles.length - 1;
      }
      return { kind: 'tensor', shape: [...a.shape], dtype: a.dtype, offset: a.offset, slot };
    };
    const snaps = args.map(snap);
    if (snaps.some((sn) => sn === null)) return;
    list[at] = { args: snaps as ArgSnap[], slots };
    corpus.set(name, list);
  }
  let recording = true;
  for (const [name, orig] of originals) {
    addon[name] = function recorded(this: unknown, ...args: unknown[]): unknown {
      const r = orig.apply(this, args);
      if (recording) record(name, args);
      return r;
    };
  }
  const restoreAddon = (): void => {
    for (const [name, orig] of originals) addon[name] = orig;
  };

  // --- per-batch state --------------------------------------------------------------------
  interface Scratch {
    handle: unknown;
    nbytes: number;
  }
  let pool: cf.Tensor[] = [];
  let disposed: cf.Tensor[] = [];
  let scratch: Scratch[] = [];
  let freedHandles: unknown[] = [];
  let generator = new cf.Generator(1);

  const fakeTensor = Object.create(cf.Tensor.prototype) as cf.Tensor;
  names.set(fakeTensor, 'Object.create(Tensor.prototype)');

  function makePool(): void {
    const r = (shape: number[], opts: cf.TensorOptions = {}): cf.Tensor => cf.fromArray(rng.array(shape.reduce((a, b) => a * b, 1)), shape, opts);
    const x = r([2, 3], { requiresGrad: true });
    pool = [
      r([2, 3]), r([3]), x, r([], {}), r([3, 2]), r([1, 3]), r([2, 3], { dtype: 'bf16' }), r([4, 4]), r([2, 3, 4]), r([6]),
      r([2, 2, 3, 4]), r([1, 2, 3, 4], { requiresGrad: true }), r([2, 4, 4, 3]), r([4], { requiresGrad: true }), r([2, 2]),
      cf.fromArray([0, 1, 2, 1, 0, 2], [2, 3], { dtype: 'i32' }), cf.fromArray([0, 2], [2], { dtype: 'i32' }), cf.fromArray([1, 0, 2, 5], [4], { dtype: 'i32' }),
      cf.zeros([0, 3]), cf.mul(x, x), cf.sum(cf.exp(x)), cf.scalar(2.5, { requiresGrad: true }), r([2, 3]).view([3], 3),
      cf.full([2, 3], NaN), cf.full([3], Infinity),
    ];
    const d1 = r([2, 3]);
    const d2 = r([3], { requiresGrad: true });
    d1.dispose();
    d2.dispose();
    disposed = [d1, d2];
    scratch = [256, 256, 256, 64, 0, 12, 4096].map((nbytes) => ({ handle: cf.native.alloc(nbytes, 'cpu'), nbytes }));
    // Random bits in the scratch memory: i32 views of it hold wild indices.
    for (const s of scratch) {
      const words = new Int32Array(s.nbytes >> 2);
      for (let i = 0; i < words.length; i++) words[i] = (rng.next() * 2 ** 32) | 0;
      if (words.length) cf.native.upload({ handle: s.handle, offset: 0, shape: [words.length], dtype: 'i32' }, words);
    }
    const h = cf.native.alloc(64, 'cpu');
    cf.native.free(h);
    freedHandles = [h, d1.handle, d2.handle];
    generator = new cf.Generator(rng.int(0, 1000));
    instanceOf.set(cf.Tensor, () => (chance(0.9) ? pick(pool) : pick(disposed)));
    instanceOf.set(cf.Storage, () => pick(pool).storage);
    instanceOf.set(cf.Generator, () => (chance(0.8) ? generator : cf.defaultGenerator));
    instanceOf.set(cf.GradNode, () => {
      const withNode = pool.filter((t) => t.gradFn);
      return withNode.length ? pick(withNode).gradFn : Object.create(cf.GradNode.prototype);
    });
    pool.forEach((t, i) => names.set(t, `pool[${i}]`));
    disposed.forEach((t, i) => names.set(t, `disposed[${i}]`));
    scratch.forEach((s, i) => names.set(s.handle, `<scratch ${i}: ${s.nbytes} B>`));
    names.set(h, '<freed handle>');
    names.set(generator, 'generator');
  }

  // --- generators for native arguments -------------------------------------------------
  const JUNK: unknown[] = [
    undefined, null, true, false, 0, -1, 1, 2, 0.5, NaN, Infinity, -Infinity, -0, ...HUGE, '', 'f32', 'cuda:7', 'x',
    Symbol('junk'), 1n, [], [1], [[1]], ['a'], {}, () => 0, new Float32Array(2), new Int32Array(1), new Uint16Array(3),
    new Float64Array(1), new Map(), new Date(0), Object.create(null), new Error('not a tensor'),
  ];
  const anyHandle = (): unknown => {
    if (chance(0.6)) return pick(scratch).handle;
    if (chance(0.3)) return pick(freedHandles);
    if (chance(0.3)) return pick(pool).handle;
    return pick(JUNK);
  };

  function forgedTensor(prevShape: unknown): unknown {
    if (chance(0.12)) return chance(0.8) ? pick(pool) : chance(0.5) ? pick(disposed) : fakeTensor;
    const s = pick(scratch);
    const dtype = pick(['f32', 'f32', 'f32', 'f32', 'bf16', 'bf16', 'i32', 'i32']);
    const shape = prevShape !== undefined && chance(0.45) ? prevShape : pick(SMALL_SHAPES);
    const t: Record<string, unknown> = { handle: s.handle, offset: chance(0.85) ? 0 : rng.int(0, 8), shape, dtype };
    const mutations = chance(0.4) ? rng.int(1, 2) : 0;
    for (let m = 0; m < mutations; m++) {
      const field = pick(['handle', 'offset', 'shape', 'shape', 'dtype', 'missing']);
      if (field === 'handle') t.handle = chance(0.5) ? pick(freedHandles) : pick([...JUNK, pick(pool)]);
      else if (field === 'offset') t.offset = pick(BAD_OFFSETS);
      else if (field === 'shape') t.shape = pick(BAD_SHAPES);
      else if (field === 'dtype') t.dtype = pick(BAD_DTYPES);
      else delete t[pick(['handle', 'offset', 'shape', 'dtype'])];
    }
    if (chance(0.03)) return Object.assign(Object.create({ inherited: true }), t); // fields on a non-plain object
    if (chance(0.03)) return [t.handle, t.offset, t.shape, t.dtype];
    return t;
  }

  function typedArrayFor(): unknown {
    const n = pick([0, 1, 3, 6, 12, 64, 65]);
    const make = pick([
      () => new Float32Array(n).map(() => rng.normal()),
      () => new Int32Array(n).map(() => rng.int(-3, 70)),
      () => new Uint16Array(n).map(() => rng.int(0, 65535)),
      () => new Float64Array(n),
      () => new Uint8Array(n),
      () => new Float32Array(new ArrayBuffer(4 * n + 8), 8, n),
      () => {
        const buf = new ArrayBuffer(4 * n);
        const view = new Float32Array(buf);
        structuredClone(buf, { transfer: [buf] }); // detaches buf
        return view;
      },
      () => new DataView(new ArrayBuffer(16)),
      () => Array.from({ length: n }, () => 1),
    ]);
    return make();
  }

  /** Work to do after the current call (freeing the storage made for a replayed call). */
  const afterCall: (() => void)[] = [];

  // 2^31 and 2^32 probe 32-bit overflows, but as a byte count they are a valid request of
  // gigabytes, which this test must not make: alloc's sizes stay small or absurd.
  let mutatingAlloc = false;
  function mutateNumber(v: unknown): unknown {
    const n = typeof v === 'number' ? v : 0;
    const mid = mutatingAlloc ? [] : [2 ** 31, 2 ** 32, 2 ** 31 - 1];
    return pick([NaN, Infinity, -Infinity, -1, 0, 1, n + 1, n - 1, -n, ...mid, 2 ** 53, 0.5, n + 0.5, 1e308, -0, 2 ** 46]);
  }

  function mutateShape(shape: unknown): unknown {
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number') || chance(0.15)) return pick(BAD_SHAPES);
    const s = [...(shape as number[])];
    const i = rng.int(0, Math.max(0, s.length - 1));
    switch (rng.int(0, 8)) {
      case 0: if (s.length) s[i] = s[i]! + 1; break;
      case 1: if (s.length) s[i] = Math.max(0, s[i]! - 1); break;
      case 2: if (s.length) s[i] = 0; break;
      case 3: if (s.length) s[i] = pick([2 ** 31, 2 ** 32 + 1, 2 ** 53, 2 ** 40, -1, NaN, 1.5, 2 ** 62]); break;
      case 4: s.splice(i, 0, pick([1, 2, 0])); break;
      case 5: s.splice(i, 1); break;
      case 6: s.reverse(); break;
      case 7: return [s.reduce((a, b) => a * b, 1)];
      default:
        // numel 0 with a huge dim: nothing to touch, but any loop over the huge dim would spin
        if (s.length) { s[i] = 0; s[(i + 1) % s.length] = pick([2 ** 31, 2 ** 40, 2 ** 53]); } else s.push(0, 2 ** 40);
    }
    return s;
  }

  /** Every tensor among args, inside lists too. */
  const tensorsIn = (args: unknown[]): Record<string, unknown>[] =>
    args.flatMap((x) => (Array.isArray(x) ? tensorsIn(x) : isTensorLike(x) ? [x as unknown as Record<string, unknown>] : []));

  /** Breaks the tensor at list[i] one way: its shape, dtype, offset, storage, or the tensor itself. */
  function mutateTensorAt(list: unknown[], i: number, others: Record<string, unknown>[]): void {
    const t = list[i] as Record<string, unknown>;
    switch (rng.int(0, 9)) {
      case 0: case 1: case 2: t.shape = mutateShape(t.shape); break;
      case 3: t.dtype = chance(0.7) ? pick(['f32', 'bf16', 'i32']) : pick(BAD_DTYPES); break;
      case 4: t.offset = chance(0.5) ? (t.offset as number) + pick([1, -1, 2, 64]) : pick(BAD_OFFSETS); break;
      case 5: // alias another argument's memory, exactly or shifted by one element
        if (others.length) {
          const o = pick(others);
          t.handle = o.handle;
          t.offset = (o.offset as number) + (chance(0.5) ? 0 : 1);
        }
        break;
      case 6: t.handle = chance(0.5) ? pick(freedHandles) : pick([...JUNK, pick(pool)]); break;
      case 7: { // a storage smaller than needed
        const small = originals.get('alloc')!(rng.int(0, 8), 'cpu');
        afterCall.push(() => originals.get('free')!(small));
        t.handle = small;
        break;
      }
      case 8: list[i] = chance(0.5) ? null : pick(pool); break;
      default: delete t[pick(['handle', 'offset', 'shape', 'dtype'])];
    }
  }

  /**
   * A list of tensors (one per branch or parameter) changed one way: one item broken, one
   * repeated (two items on one storage), one dropped, or the list emptied or made longer than
   * any native call takes.
   */
  function mutateTensorList(items: unknown[], all: Record<string, unknown>[]): unknown[] {
    const l = [...items];
    const r = rng.next();
    const j = rng.int(0, l.length - 1);
    if (r < 0.6) {
      if (isTensorLike(l[j])) mutateTensorAt(l, j, all.filter((x) => x !== l[j]));
      else l[j] = pick(JUNK);
    } else if (r < 0.75) l.splice(rng.int(0, l.length), 0, l[j]);
    else if (r < 0.9) l.splice(j, 1);
    else return chance(0.5) ? [] : Array.from({ length: pick([9, 65]) }, () => l[j]);
    return l;
  }

  function replayArgs(name: string, entry: CorpusEntry): unknown[] {
    const handles = entry.slots.map((sl) => {
      const h = originals.get('alloc')!(sl.nbytes, 'cpu');
      if (sl.words.length) originals.get('upload')!({ handle: h, offset: 0, shape: [sl.words.length], dtype: 'i32' }, sl.words);
      return h;
    });
    afterCall.push(() => handles.forEach((h) => originals.get('free')!(h)));
    const rebuild = (a: ArgSnap): unknown =>
      a.kind === 'tensor'
        ? { handle: handles[a.slot], offset: a.offset, shape: [...a.shape], dtype: a.dtype }
        : a.kind === 'list' ? a.items.map(rebuild) : cloneValue(a.value);
    const args: unknown[] = entry.args.map(rebuild);
    names.set(args, name);
    mutatingAlloc = name === 'native.alloc';
    const mutations = chance(0.25) ? 0 : rng.int(1, 3);
    for (let m = 0; m < mutations && args.length; m++) {
      const i = rng.int(0, args.length - 1);
      const a = args[i];
      if (chance(0.08)) {
        args[i] = pick(JUNK);
      } else if (isTensorLike(a)) {
        mutateTensorAt(args, i, tensorsIn(args).filter((x) => x !== (a as unknown)));
      } else if (Array.isArray(a) && a.some(isTensorLike)) {
        args[i] = mutateTensorList(a, tensorsIn(args));
      } else if (a === null) {
        const others = entry.args.filter((x) => x.kind === 'tensor');
        args[i] = others.length ? { ...(args[entry.args.indexOf(pick(others))] as object) } : pick(JUNK);
      } else if (typeof a === 'number') {
        args[i] = mutateNumber(a);
      } else if (typeof a === 'boolean') {
        args[i] = chance(0.7) ? !a : pick([0, 1, 'true', null]);
      } else if (typeof a === 'string') {
        args[i] = pick(OP_STRINGS);
      } else if (Array.isArray(a)) {
        const l = [...a];
        if (l.length && chance(0.6)) l[rng.int(0, l.length - 1)] = mutateNumber(l[0]);
        else if (chance(0.5)) l.push(pick([0, 1, -1]));
        else l.pop();
        args[i] = l;
      } else if (ArrayBuffer.isView(a)) {
        args[i] = typedArrayFor();
      } else {
        args[i] = pick(JUNK);
      }
    }
    if (chance(0.05)) args.length = rng.int(0, args.length);
    return args;
  }

  function nativeArgs(t: Target): unknown[] {
    const entries = corpus.get(t.name.slice('native.'.length));
    if (entries?.length && chance(0.85)) return replayArgs(t.name, pick(entries));
    const params = t.params;
    if (!params || chance(0.05)) {
      // Unknown signature (a function not yet in the interface), or plain junk.
      return Array.from({ length: rng.int(0, 8) }, () => (chance(0.5) ? forgedTensor(undefined) : pick(JUNK)));
    }
    const args: unknown[] = [];
    let prevShape: unknown;
    for (const p of params) {
      let v: unknown;
      if (chance(0.12)) v = pick(JUNK);
      else if (p.nullable && chance(0.2)) v = null;
      else {
        switch (p.kind) {
          case 'tensor':
            v = forgedTensor(prevShape);
            if (v && typeof v === 'object' && 'shape' in (v as object)) prevShape = (v as { shape: unknown }).shape;
            break;
          case 'handle':
            v = anyHandle();
            break;
          case 'intlist':
            v = pick(INT_LISTS);
            break;
          case 'boolean':
            v = chance(0.9) ? chance(0.5) : pick([0, 1, 'true', null]);
            break;
          case 'enum':
            v = chance(0.85) ? pick(p.values!) : pick(OP_STRINGS);
            break;
          case 'string':
            v = /device/i.test(p.name) ? pick(['cpu', 'cuda', 'cuda:0', 'cuda:7', 'cuda:', 'cuda:1000', 'CPU', 'cuda:-1', 'cuda:01']) : pick(OP_STRINGS);
            break;
          case 'typedarray':
            v = typedArrayFor();
            break;
          case 'number':
            if (p.name === 'nbytes') v = chance(0.8) ? pick([0, 1, 4, 7, 64, 1000]) : pick([...HUGE, -1, 0.5, NaN, Infinity]);
            else if (p.name === 'n') v = chance(0.7) ? rng.int(1, 3) : pick([0, -1, 1025, 0.5, NaN, 2 ** 53]);
            else if (/axis|side|start|count|offset|rank|index/i.test(p.name)) v = chance(0.75) ? rng.int(-3, 4) : pick([2 ** 31, -(2 ** 31), 2 ** 53, 0.5, NaN, Infinity]);
            else v = chance(0.7) ? pick([0, 1, 2, -1, 0.5, 1e-5, 3, 100, -0]) : pick([NaN, Infinity, -Infinity, ...HUGE, 2 ** 31]);
            break;
          default:
            v = pick(JUNK);
        }
      }
      args.push(v);
    }
    // Missing arguments, or extra ones.
    if (chance(0.1)) args.length = rng.int(0, args.length);
    else if (chance(0.05)) args.push(pick(JUNK));
    return args;
  }

  // --- generators for library arguments ------------------------------------------------
  const CALLBACKS: Fn[] = [
    function identity(t: unknown) { return t; },
    function double(t: unknown) { return cf.mul(t as cf.Tensor, 2); },
    function addOne(...ts: unknown[]) { return cf.add(ts[0] as cf.Tensor, 1); },
    function fails() { throw new Error('callback failed'); },
    function three() { return 3; },
    function nothing() { return undefined; },
    async function asyncIdentity(t: unknown) { return t; },
    function total(t: unknown) { return cf.sum(t as cf.Tensor); },
    function fresh() { return cf.zeros([2]); },
    function capture() { return cf.mul(pool[2]!, pool[0]!); },
  ];
  const OPT_KEYS = [
    'dtype', 'device', 'requiresGrad', 'keepDims', 'approximate', 'reduction', 'ignoreIndex', 'labelSmoothing', 'eps', 'causal',
    'scale', 'bias', 'weight', 'transA', 'transB', 'generator', 'low', 'high', 'mean', 'std', 'axis', 'dim', 'stride', 'padding',
    'dilation', 'groups', 'contextLength', 'truncate', 'rank', 'worldSize', 'log', 'accumulate', 'kernelSize', 'layout',
  ];
  function optsObject(depth: number): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    const n = rng.int(1, 3);
    for (let i = 0; i < n; i++) o[pick(OPT_KEYS)] = libArg(depth + 1);
    return o;
  }
  // A list that the library may take as a shape must be small or absurdly large: [2^31]
  // would be a valid 8 GiB request, which this test must not make.
  const safeAsShape = (v: unknown): boolean => {
    if (!Array.isArray(v) || !v.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) return true;
    const n = (v as number[]).reduce((a, b) => a * b, 1);
    return n <= 2 ** 16 || n >= 2 ** 44;
  };
  const LIB_BAD_SHAPES = [...BAD_SHAPES, [-1, 3], [2, -1], [3, -1], [-1]].filter(safeAsShape);
  const LIB_INT_LISTS = INT_LISTS.filter(safeAsShape);
  function libArray(depth: number): unknown {
    if (chance(0.35)) return pick(SMALL_SHAPES);
    if (chance(0.3)) return pick(LIB_BAD_SHAPES);
    if (chance(0.5)) return Array.from({ length: rng.int(0, 4) }, () => (chance(0.8) ? pick(pool) : libArg(depth + 1)));
    return pick(LIB_INT_LISTS);
  }
  function libArg(depth = 0): unknown {
    const r = rng.next();
    if (r < 0.42) return pick(pool);
    if (r < 0.46) return pick(disposed);
    if (r < 0.48) return fakeTensor;
    if (r < 0.5) return forgedTensor(undefined);
    if (r < 0.6) return pick(LIB_NUMBERS);
    if (r < 0.68) return depth < 2 ? libArray(depth) : pick(SMALL_SHAPES);
    if (r < 0.76) return depth < 2 ? optsObject(depth) : {};
    if (r < 0.82) return pick(STRINGS);
    if (r < 0.86) return pick(CALLBACKS);
    if (r < 0.88) return generator;
    if (r < 0.9) return typedArrayFor();
    return pick([undefined, null, true, false, Symbol('s'), 1n, new Map([['k', pool[0]]]), new Set([pool[1]]), Object.create(null), new Date(0)]);
  }
  function libArgs(t: Target): unknown[] {
    const n = Math.max(0, Math.min(7, (t.fn.length || 1) + rng.int(-1, 2)));
    return Array.from({ length: n }, () => libArg());
  }

  // --- checks on results ------------------------------------------------------------------
  function tensorsOf(v: unknown, out: Set<cf.Tensor>, depth = 0): Set<cf.Tensor> {
    if (v === null || typeof v !== 'object' || depth > 3) return out;
    if (v instanceof cf.Tensor) out.add(v);
    else if (Array.isArray(v)) v.forEach((x) => tensorsOf(x, out, depth + 1));
    else if (v instanceof Map) v.forEach((x) => tensorsOf(x, out, depth + 1));
    else if (Object.getPrototypeOf(v) === Object.prototype) Object.values(v).forEach((x) => tensorsOf(x, out, depth + 1));
    return out;
  }

  function recordThrown(target: string, call: string, e: unknown): void {
    if (!(e instanceof Error)) {
      report.nonErrors.push(`${call} threw ${fmtThrown(e)}`);
      return;
    }
    // The library's own shape is "<op>: <message>"; anything else (TypeError from a missing
    // check, say) is an Error too, but is counted so that it can be looked at.
    if (!/^[\w.#]+: /.test(e.message) || e.constructor !== Error) {
      const u = (report.unshaped[target] ??= { count: 0, sample: '' });
      if (u.count++ === 0) u.sample = `${call} -> ${e.constructor.name}: ${e.message}`.slice(0, 400);
    }
  }

  function checkResult(target: string, call: string, res: unknown, args: unknown[]): void {
    if (res !== null && (typeof res === 'object' || typeof res === 'function')) {
      let then: unknown;
      try {
        then = (res as { then?: unknown }).then;
      } catch {
        then = undefined;
      }
      if (typeof then === 'function') {
        pending.push(
          Promise.resolve(res as Promise<unknown>).then(
            () => undefined,
            (e) => recordThrown(target, `${call} (rejected)`, e),
          ),
        );
        return;
      }
    }
    for (const t of tensorsOf(res, new Set())) {
      if (t.isDisposed || args.includes(t) || pool.includes(t) || t === fakeTensor || t.shape === undefined) continue;
      // A view of a pool tensor whose storage an earlier call freed (native.free, Storage#release) is rightly unreadable.
      if (pool.some((p) => p.storage === t.storage) || disposed.some((p) => p.storage === t.storage)) continue;
      try {
        t.toArray();
      } catch (e) {
        report.unreadable.push(`${call} returned ${fmt(t)} that cannot be read: ${fmtThrown(e)}`);
        continue;
      }
      if (t.requiresGrad && chance(0.4)) {
        try {
          if (t.size === 1 && chance(0.7)) t.backward();
          else t.backward(chance(0.5) ? cf.onesLike(t) : (pick(pool) as cf.Tensor));
        } catch (e) {
          recordThrown(`${target} (backward of its result)`, `${call} then backward`, e);
        }
      }
    }
  }

  // --- seed workload: valid calls of every op family, forward and backward, so that the
  // corpus has valid native calls to mutate from the start. Best effort: an item whose API
  // changed is reported in seedFailures, not fatal.
  function seedCorpus(): void {
    const T = (shape: number[], dtype: cf.DType = 'f32', grad = true): cf.Tensor =>
      cf.fromArray(rng.array(shape.reduce((a, b) => a * b, 1)), shape, { dtype, requiresGrad: grad });
    const back = (y: cf.Tensor | cf.Tensor[]): void => {
      const ys = Array.isArray(y) ? y : [y];
      let total: cf.Tensor | null = null;
      for (const t of ys) {
        const s = cf.sum(cf.mul(cf.cast(t, 'f32'), cf.cast(T(t.shape as number[], 'f32', false), 'f32')));
        total = total ? cf.add(total, s) : s;
      }
      total!.backward();
    };
    const items: [string, (dt: cf.DType) => void][] = [
      ['creation', (dt) => {
        cf.zeros([2, 3], { dtype: dt });
        cf.arange(0, 6, 1, { dtype: dt });
        cf.rand([5], { dtype: dt === 'i32' ? 'f32' : dt });
        cf.randn([5], { dtype: dt === 'i32' ? 'f32' : dt });
        cf.cast(T([4], dt, false), 'i32');
        cf.cast(cf.fromArray([1, 2, 3], [3], { dtype: 'i32' }), dt);
        cf.clone(T([2, 2], dt, false)).toArray();
        cf.to(T([2], dt, false), 'cpu');
      }],
      ['unary', (dt) => {
        const x = T([2, 3], dt);
        const p = cf.add(cf.abs(x), 0.5);
        back([cf.neg(x), cf.exp(x), cf.log(p), cf.sqrt(p), cf.rsqrt(p), cf.square(x), cf.reciprocal(p), cf.sigmoid(x), cf.tanh(x),
          cf.relu(x), cf.gelu(x), cf.gelu(x, { approximate: 'tanh' }), cf.quickGelu(x), cf.pow(p, 1.5), cf.clamp(x, -0.5, 0.5), cf.affine(x, 2, 1)]);
      }],
      ['binary', (dt) => {
        const a = T([2, 3], dt), b = T([3], dt), c = T([2, 1], dt);
        back([cf.add(a, b), cf.sub(a, c), cf.mul(a, b), cf.div(a, cf.add(cf.abs(c), 1)), cf.maximum(a, b), cf.minimum(c, a)]);
      }],
      ['reduce', (dt) => {
        const x = T([2, 3, 4], dt);
        back([cf.sum(x), cf.mean(x, 1), cf.max(x, 2), cf.max(x), cf.sum(x, 0, { keepDims: true }), cf.maxWithIndices(x, 1).values]);
      }],
      ['matmul', (dt) => {
        back([cf.matmul(T([2, 3], dt), T([3, 4], dt)), cf.matmul(T([3, 2], dt), T([4, 3], dt), { transA: true, transB: true }),
          cf.matmul(T([2, 2, 3], dt), T([3, 4], dt), { bias: T([4], dt) }), cf.linear(T([5, 3], dt), T([4, 3], dt), T([4], dt))]);
      }],
      ['attention', (dt) => {
        back([cf.attention(T([1, 2, 4, 8], dt), T([1, 2, 4, 8], dt), T([1, 2, 4, 8], dt)),
          cf.attention(T([2, 1, 3, 4], dt), T([2, 1, 3, 4], dt), T([2, 1, 3, 4], dt), { causal: true, scale: 0.3 }),
          cf.attentionPacked(T([1, 4, 3, 2, 8], dt), { causal: true })]);
      }],
      ['norms', (dt) => {
        const x = T([2, 3, 8], dt);
        back([cf.layerNorm(x, T([8], dt), T([8], dt)), cf.layerNorm(x), cf.l2Normalize(T([3, 8], dt)), cf.softmax(T([2, 5], dt)), cf.logSoftmax(T([2, 5], dt))]);
      }],
      ['crossEntropy', (dt) => {
        const labels = cf.fromArray([0, 4, -100, 2], [4], { dtype: 'i32' });
        back([cf.crossEntropy(T([4, 5], dt), labels), cf.crossEntropy(T([4, 5], dt), labels, { reduction: 'none', labelSmoothing: 0.1 }),
          cf.crossEntropy(T([4, 5], dt), labels, { reduction: 'sum' })]);
      }],
      ['embedding', (dt) => back(cf.embedding(T([10, 4], dt), cf.fromArray([1, 9, 0, 3, 3, 7], [2, 3], { dtype: 'i32' })))],
      ['shape', (dt) => {
        const x = T([2, 3, 4], dt);
        back([cf.permute(x, [2, 0, 1]), cf.transpose(x, 0, 2), cf.slice(x, 1, 1, 3), cf.concat([x, T([2, 3, 4], dt)], 1), ...cf.split(x, 2, 2), cf.reshape(x, [6, -1]), cf.flatten(x, 1)]);
      }],
      ['dwconv', (dt) => {
        back([cf.depthwiseConv2d(T([1, 5, 5, 3], dt), T([3, 3, 3], dt), T([3], dt), { stride: 2, padding: 1 } as never),
          cf.depthwiseConv2d(T([2, 6, 6, 2], dt), T([2, 1, 5, 5], dt), null, { padding: 4, dilation: 2 } as never)]);
        cf.nhwcToNchw(cf.nchwToNhwc(T([1, 2, 3, 3], dt, false)));
      }],
      ['UniRepLKNet ops', (dt) => {
        const x = T([2, 3, 3, 4], dt);
        const vec = (grad = true): cf.Tensor => T([4], dt, grad);
        const variance = (): cf.Tensor => cf.cast(cf.add(cf.abs(T([4], 'f32', false)), 1), dt);
        const branch = (): cf.BatchNormBranch => ({ x: T([2, 3, 3, 4], dt), weight: vec(), bias: vec(), runningMean: vec(false), runningVar: variance() });
        back([
          cf.batchNorm(x, vec(), vec(), vec(false), variance(), { training: true, residual: T([2, 3, 3, 4], 'f32') }),
          cf.batchNormSum([branch(), branch()], { training: true }),
          cf.grn(x, vec(), vec(), { gelu: true, inputBias: vec() }),
          cf.squeezeExcite(x, T([2, 4, 1, 1], dt), T([2], dt), T([4, 2, 1, 1], dt), vec()),
          cf.conv2d(x, T([3, 4, 3, 3], dt), T([3], dt), { padding: 1 } as never),
        ]);
      }],
      ['clipLoss', (dt) => back(cf.clipLoss(T([4, 8], dt), T([4, 8], dt), T([], 'f32')))],
      ['siglipLoss', (dt) => back(cf.siglipLoss(T([4, 8], dt), T([4, 8], dt), T([], 'f32'), T([], 'f32')))],
      ['localClipLoss', (dt) => back(cf.localClipLoss(T([4, 8], dt), T([4, 8], dt), T([8, 8], dt), T([8, 8], dt), T([], 'f32'), { rank: 1 }))],
      ['localSiglipLoss', (dt) => back(cf.localSiglipLoss(T([4, 8], dt), T([8, 8], dt), T([], 'f32'), T([], 'f32'), { rank: 0 }))],
      ['devices and kernel choice', () => {
        cf.native.gemmKernel('auto');
        cf.native.synchronize('cpu');
        cf.native.storageBytes(T([2, 3], 'f32', false).handle);
        if (cf.backendInfo().devices.length > 0) {
          cf.native.cudaGemmKernel('cuda:0', 'auto');
          cf.native.cudaLossChunkRows('cuda:0', 0);
        }
      }],
      ['adamw', (dt) => {
        const params = [T([2, 3], 'f32'), T([4], 'f32')];
        params.forEach((p) => (p.grad = T([...p.shape], dt === 'bf16' ? 'bf16' : 'f32', false)));
        const opt = new cf.AdamW(cf.paramGroups(params.map((p, i): [string, cf.Tensor] => [`w${i}`, p]), 0.1), { lr: 1e-3 });
        cf.clipGradNorm(params, 0.5);
        opt.step();
        opt.dispose();
        opt.zeroGrad();
      }],
    ];
    recording = true;
    for (const [what, f] of items) {
      for (const dt of ['f32', 'bf16'] as const) {
        try {
          cf.scope(() => f(dt));
        } catch (e) {
          report.seedFailures.push(`${what} (${dt}): ${fmtThrown(e)}`);
        }
      }
    }
  }

  // --- the loop ---------------------------------------------------------------------------
  const threads = cf.backendInfo().threads;
  const batchSize = 200;
  const slow: { ms: number; call: string }[] = [];

  function runBatch(batchCalls: number, firstIndex: number): void {
    cf.scope(() => {
      makePool();
      for (let k = 0; k < batchCalls; k++) {
        const i = firstIndex + k;
        const native = chance(0.5);
        const target = native ? pick(nat) : pick(lib);
        const args = native ? nativeArgs(target) : libArgs(target);
        const useNew = !!target.construct && chance(0.8);
        const self = target.thisArg ? (chance(0.9) ? target.thisArg() : pick(JUNK)) : undefined;
        const call = `${useNew ? 'new ' : ''}${target.name}(${args.map((a) => fmt(a)).join(', ')})${target.thisArg ? ` with this = ${fmt(self)}` : ''}`;
        currentCall = `#${i} ${call}`;
        log(`@@CALL ${i} ${call.slice(0, 600)}`);
        report.calls++;
        if (native) report.nativeCalls++;
        else report.libCalls++;
        report.coverage[target.name] = (report.coverage[target.name] ?? 0) + 1;
        const start = performance.now();
        recording = !native; // calls the library makes are recorded; the fuzzer's own are not
        try {
          const res = useNew ? Reflect.construct(target.fn, args) : target.fn.apply(self, args);
          report.succeeded++;
          report.returned[target.name] = (report.returned[target.name] ?? 0) + 1;
          if (native) report.nativeSucceeded++;
          checkResult(target.name, `#${i} ${call}`, res, args);
        } catch (e) {
          recordThrown(target.name, `#${i} ${call}`, e);
        }
        const ms = performance.now() - start;
        recording = !native;
        for (const f of afterCall.splice(0)) f();
        if (ms > 50) slow.push({ ms, call: `#${i} ${call}`.slice(0, 300) });
        if (cf.scopeDepth() !== 1 || !cf.isGradEnabled()) {
          report.stateLeaks.push(`#${i} ${call} left scopeDepth ${cf.scopeDepth()} (expected 1), grad enabled ${cf.isGradEnabled()}`);
          if (cf.scopeDepth() > 1) throw new Error('fuzz: the scope stack is unbalanced; stopping');
        }
      }
    });
    for (const s of scratch) cf.native.free(s.handle);
    cf.native.setNumThreads(threads);
  }

  return (async () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('fuzz: run node with --expose-gc');
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 6; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    const workDir = mkdtempSync(join(tmpdir(), 'clipforge-fuzz-'));
    const cwd = process.cwd();
    process.chdir(workDir); // anything a fuzzed call writes by a relative path lands here
    try {
      seedCorpus();
      await settle();
      report.leak.liveTensorsBefore = cf.liveTensorCount();
      report.leak.bytesBefore = cf.memoryStats().cpu.allocatedBytes;
      for (let done = 0; done < totalCalls; done += batchSize) {
        runBatch(Math.min(batchSize, totalCalls - done), done);
        // Let promise callbacks and finalizers run between batches.
        await new Promise((r) => setImmediate(r));
      }
      currentCall = '(after the last call)';
      await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, 5000))]);
      pool = [];
      disposed = [];
      scratch = [];
      freedHandles = [];
      names.clear();
      instanceOf.clear();
      cf.manualSeed(0x5eed);
      await settle();
      report.leak.liveTensorsAfter = cf.liveTensorCount();
      report.leak.bytesAfter = cf.memoryStats().cpu.allocatedBytes;
      report.peakAllocatedBytes = cf.memoryStats().cpu.peakAllocatedBytes;
      for (const [name, list] of corpus) report.corpus[name] = list.length;
    } finally {
      restoreAddon();
      process.chdir(cwd);
      rmSync(workDir, { recursive: true, force: true });
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onRejection);
    }
    report.slowest = slow.sort((a, b) => b.ms - a.ms).slice(0, 5);
    report.seconds = (performance.now() - t0) / 1000;
    return report;
  })();
}

if (process.env.CLIPFORGE_FUZZ_CHILD === '1') {
  const seed = Number(process.env.CLIPFORGE_FUZZ_SEED ?? 20250101);
  const calls = Number(process.env.CLIPFORGE_FUZZ_CALLS ?? 12000);
  const quiet = process.env.CLIPFORGE_FUZZ_QUIET === '1';
  // A regular file when the parent names one: writes to a full pipe fail with EAGAIN under load.
  const out = process.env.CLIPFORGE_FUZZ_OUT ? openSync(process.env.CLIPFORGE_FUZZ_OUT, 'w') : 1;
  const log = (line: string): void => {
    if (!quiet) writeSync(out, line.replace(/\n/g, '\\n') + '\n');
  };
  runFuzz(seed, calls, log).then(
    (r) => {
      writeSync(out, `@@REPORT ${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (e) => {
      writeSync(out, `@@FATAL ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(3);
    },
  );
}
