// PyTorch checkpoints in the zip format torch.save writes since 1.6: `<dir>/data.pkl` (the
// pickled object tree, tensors referring to storages by persistent id) and one entry
// `<dir>/data/<key>` of raw little-endian bytes per storage. The pickle is read by our
// restricted unpickler: only tensor rebuilds, storage and dtype types and OrderedDict are
// allowed, so loading never runs code from the file.
import { native } from '../native.js';
import { checkPath } from './files.js';
import { checkDevice, empty, type Device, type Tensor } from '../tensor/tensor.js';
import { aligned, decodeValues, ELEMENT_BYTES, READ_AS, READABLE } from './element_types.js';
import { codecsEncode, PyCallable, unpickle } from './pickle.js';
import { ZipArchive } from './zip.js';

// Element types of torch's storage classes and dtype globals (named as in element_types.ts).
const STORAGE_TYPES: Readonly<Record<string, string>> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL', UntypedStorage: 'U8',
};
const DTYPES: Readonly<Record<string, string>> = {
  float32: 'F32', float: 'F32', float16: 'F16', half: 'F16', bfloat16: 'BF16', float64: 'F64', double: 'F64',
  int64: 'I64', long: 'I64', int32: 'I32', int: 'I32', int16: 'I16', short: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

/** A storage named by a persistent id: zip entry `entry`, `numel` elements of `type`. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly entry: string,
    readonly type: string,
    readonly numel: number,
  ) {}
}

/** A storage class or dtype global: only its element type matters. */
class ElementType {
  constructor(readonly type: string) {}
}

/** torch.Tensor / nn.Parameter as the target class of _rebuild_from_type_v2. */
class TensorClass {}

/** A tensor as the pickle describes it: a strided view of a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly type: string,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** A short rendering of an unpickled value for error messages (bigints included). */
function show(v: unknown, depth = 0): string {
  if (Array.isArray(v)) return depth > 2 ? '[...]' : `[${v.slice(0, 8).map((x) => show(x, depth + 1)).join(', ')}${v.length > 8 ? ', ...' : ''}]`;
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '...' : v}'`;
  if (v === null) return 'None';
  return typeof v === 'object' ? (v as object).constructor?.name ?? 'object' : String(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Unpickles data.pkl of an opened checkpoint into a tree of plain values and TensorRefs. */
function readObjectTree(archive: ZipArchive, op: string): unknown {
  const file = archive.path;
  const pickles = [...archive.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    const listing = archive.entries.size === 0 ? '' : ` (entries: ${[...archive.entries.keys()].slice(0, 5).join(', ')})`;
    throw new Error(`${op}: ${file}: expected one <name>/data.pkl in the zip, found ${pickles.length}: not a torch.save checkpoint${listing}`);
  }
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  if (archive.entries.has(`${prefix}byteorder`)) {
    const order = new TextDecoder().decode(archive.readEntry(`${prefix}byteorder`));
    if (order !== 'little') throw new Error(`${op}: ${file}: storages are ${order}-endian; only little-endian checkpoints are supported`);
  }
  const where = `${op}: ${file}: ${pickles[0]}`;
  const storages = new Map<string, StorageRef>();
  const fail = (problem: string): Error => new Error(`${where}: ${problem}`);

  const rebuild = (name: string, args: unknown[], typeOverride?: unknown): TensorRef => {
    const [storage, offset, shape, stride] = args;
    if (!(storage instanceof StorageRef)) throw fail(`${name}: expected a storage as the first argument`);
    if (!isIndex(offset)) throw fail(`${name}: bad storage offset ${String(offset)}`);
    if (!Array.isArray(shape) || !shape.every(isIndex) || !Array.isArray(stride) || !stride.every(isIndex) || stride.length !== shape.length) {
      throw fail(`${name}: bad size ${show(shape)} / stride ${show(stride)}`);
    }
    let type = storage.type;
    if (typeOverride !== undefined) {
      if (!(typeOverride instanceof ElementType)) throw fail(`${name}: expected a dtype, got ${String(typeOverride)}`);
      type = typeOverride.type;
    }
    const numel = shape.reduce((a: number, b: number) => a * b, 1);
    const last = shape.reduce((a: number, d: number, k: number) => a + (d - 1) * stride[k]!, offset);
    if (numel > 0 && (last + 1) * ELEMENT_BYTES[type]! > storage.numel * ELEMENT_BYTES[storage.type]!) {
      throw fail(`${name}: a view of size [${shape.join(', ')}], stride [${stride.join(', ')}] at offset ${offset} reaches past storage '${storage.key}' (${storage.numel} elements)`);
    }
    return new TensorRef(storage, type, offset, shape, stride);
  };
  const passTensor = (name: string) => (args: unknown[]) => {
    if (!(args[0] instanceof TensorRef)) throw fail(`${name}: expected a tensor as the first argument`);
    return args[0];
  };

  const allowed: Record<string, unknown> = {
    'torch._utils._rebuild_tensor_v2': new PyCallable('torch._utils._rebuild_tensor_v2', (a) => rebuild('_rebuild_tensor_v2', a)),
    'torch._utils._rebuild_tensor_v3': new PyCallable('torch._utils._rebuild_tensor_v3', (a) => rebuild('_rebuild_tensor_v3', a, a[6])),
    'torch._utils._rebuild_parameter': new PyCallable('torch._utils._rebuild_parameter', passTensor('_rebuild_parameter')),
    'torch._utils._rebuild_parameter_with_state': new PyCallable('torch._utils._rebuild_parameter_with_state', passTensor('_rebuild_parameter_with_state')),
    'torch._tensor._rebuild_from_type_v2': new PyCallable('torch._tensor._rebuild_from_type_v2', (a) => {
      const [fn, cls, args] = a;
      if (!(fn instanceof PyCallable) || !(cls instanceof TensorClass) || !Array.isArray(args)) throw fail('_rebuild_from_type_v2: unsupported arguments');
      return fn.call(args);
    }),
    '_codecs.encode': codecsEncode,
    'torch.Tensor': new TensorClass(),
    'torch.nn.parameter.Parameter': new TensorClass(),
    'collections.OrderedDict': new PyCallable('collections.OrderedDict', (a) => {
      const m = new Map<unknown, unknown>();
      for (const pair of (a[0] ?? []) as unknown[]) {
        if (!Array.isArray(pair) || pair.length !== 2) throw fail('OrderedDict: expected (key, value) pairs');
        m.set(pair[0], pair[1]);
      }
      return m;
    }),
  };
  for (const [cls, type] of Object.entries(STORAGE_TYPES)) allowed[`torch.${cls}`] = new ElementType(type);
  allowed['torch.storage.UntypedStorage'] = new ElementType('U8');
  for (const [name, type] of Object.entries(DTYPES)) allowed[`torch.${name}`] = new ElementType(type);

  return unpickle(archive.readEntry(pickles[0]!), {
    where,
    resolveGlobal(module, name) {
      const qualified = `${module}.${name}`;
      if (!Object.hasOwn(allowed, qualified)) throw fail(`refusing to load global '${qualified}': only tensors and plain containers are rebuilt, loading never runs code`);
      return allowed[qualified];
    },
    persistentLoad(pid) {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length !== 5) throw fail(`unsupported persistent id ${show(pid)}`);
      const [, storageType, key, , numel] = pid;
      if (!(storageType instanceof ElementType) || typeof key !== 'string' || !isIndex(numel)) throw fail(`malformed storage id for key ${String(key)}`);
      const seen = storages.get(key);
      if (seen) {
        if (seen.type !== storageType.type || seen.numel !== numel) throw fail(`storage '${key}' is referenced with two different types or sizes`);
        return seen;
      }
      const entry = archive.entries.get(`${prefix}data/${key}`);
      if (!entry) throw fail(`storage '${key}' has no entry ${prefix}data/${key}`);
      const nbytes = numel * ELEMENT_BYTES[storageType.type]!;
      if (entry.size !== nbytes) throw fail(`storage '${key}' should hold ${numel} × ${ELEMENT_BYTES[storageType.type]} bytes, but its entry holds ${entry.size}`);
      const ref = new StorageRef(key, `${prefix}data/${key}`, storageType.type, numel);
      storages.set(key, ref);
      return ref;
    },
  });
}

/** The tensors of a state dict: the tree itself, or its "state_dict" / "model" member. */
function stateDictOf(tree: unknown, op: string, file: string): [string, TensorRef][] {
  if (!(tree instanceof Map)) throw new Error(`${op}: ${file}: the checkpoint holds ${Array.isArray(tree) ? 'a list' : typeof tree}, not a dict of tensors`);
  let dict: Map<unknown, unknown> = tree;
  for (const wrapper of ['state_dict', 'model']) {
    const inner = tree.get(wrapper);
    if (inner instanceof Map) {
      dict = inner;
      break;
    }
  }
  const pairs = [...dict].filter((p): p is [string, TensorRef] => typeof p[0] === 'string' && p[1] instanceof TensorRef);
  if (pairs.length > 0 && pairs.every(([k]) => k.startsWith('module.'))) return pairs.map(([k, t]) => [k.slice('module.'.length), t]);
  return pairs;
}

/** Copies a strided view into contiguous bytes; returns a view when it is contiguous already. */
function contiguousBytes(ref: TensorRef, storage: Uint8Array): Uint8Array {
  const bytes = ELEMENT_BYTES[ref.type]!;
  const numel = ref.shape.reduce((a, b) => a * b, 1);
  let expected = 1;
  let contiguous = true;
  for (let k = ref.shape.length - 1; k >= 0; k--) {
    if (ref.shape[k]! !== 1 && ref.stride[k]! !== expected) contiguous = false;
    expected *= ref.shape[k]!;
  }
  if (contiguous || numel === 0) return storage.subarray(ref.offset * bytes, (ref.offset + numel) * bytes);
  // Gather in words of the element's width (8-byte elements as two 4-byte words).
  const wordBytes = Math.min(bytes, 4);
  const words = bytes / wordBytes;
  const Words = wordBytes === 1 ? Uint8Array : wordBytes === 2 ? Uint16Array : Uint32Array;
  const src = aligned(storage, wordBytes);
  const from = new Words(src.buffer as ArrayBuffer, src.byteOffset, src.length / wordBytes);
  const to = new Words(numel * words);
  const rank = ref.shape.length;
  const index = new Array<number>(rank).fill(0);
  let p = ref.offset;
  for (let i = 0; i < numel; i++) {
    for (let w = 0; w < words; w++) to[i * words + w] = from[p * words + w]!;
    for (let d = rank - 1; d >= 0; d--) {
      p += ref.stride[d]!;
      if (++index[d]! < ref.shape[d]!) break;
      p -= ref.stride[d]! * ref.shape[d]!;
      index[d] = 0;
    }
  }
  return new Uint8Array(to.buffer as ArrayBuffer);
}

export interface ReadTorchCheckpointOptions {
  /** Device for the tensors (default 'cpu'). */
  device?: Device;
}

/**
 * Creates the tensors of `named` (in that order) from the archive's storages. On failure,
 * disposes what it created and throws.
 */
function materialize(archive: ZipArchive, named: [string, TensorRef][], op: string, device: Device): Tensor[] {
  const path = archive.path;
  for (const [name, ref] of named) {
    if (!Object.hasOwn(READ_AS, ref.type)) throw new Error(`${op}: ${path}: tensor '${name}' has element type ${ref.type}, which is not supported (${READABLE} are)`);
    if (ref.shape.length > 8) throw new Error(`${op}: ${path}: tensor '${name}' has ${ref.shape.length} dimensions; at most 8 are supported`);
  }
  // Storages are read once each, however many tensors view them, and dropped after use.
  const byStorage = new Map<StorageRef, number[]>();
  named.forEach(([, ref], i) => {
    const list = byStorage.get(ref.storage) ?? [];
    list.push(i);
    byStorage.set(ref.storage, list);
  });
  // One reused buffer for the stored (uncompressed) storages: allocating a fresh one per
  // storage costs about as much as reading it.
  let largest = 0;
  for (const s of byStorage.keys()) largest = Math.max(largest, s.numel * ELEMENT_BYTES[s.type]!);
  const scratch = new Uint8Array(largest);
  const out = new Array<Tensor>(named.length);
  const created: Tensor[] = [];
  try {
    for (const [storage, indices] of byStorage) {
      const bytes = archive.readEntry(storage.entry, scratch);
      for (const i of indices) {
        const [name, ref] = named[i]!;
        const values = decodeValues(contiguousBytes(ref, bytes), ref.type, `${op}: ${path}`, name);
        const t = empty(ref.shape, { dtype: READ_AS[ref.type]!, device });
        created.push(t);
        out[i] = t;
        native.upload(t, values);
      }
    }
    return out;
  } catch (err) {
    for (const t of created) t.dispose();
    throw err;
  }
}

function openCheckpoint(op: string, path: unknown, opts: ReadTorchCheckpointOptions): { archive: ZipArchive; device: Device } {
  const file = checkPath(op, 'path', path);
  const device = checkDevice(op, 'opts.device', opts.device ?? 'cpu');
  return { archive: new ZipArchive(file, op), device };
}

/**
 * Reads the tensors of a torch.save checkpoint (zip format) as a state dict: the top-level
 * dict, or its "state_dict" / "model" member when it has one. Views become contiguous
 * tensors; a "module." prefix shared by every key is removed; non-tensor values (epoch,
 * names, ...) are skipped. f32 / bf16 / i32 keep their dtype, f16 becomes f32, i64 (and the
 * smaller integer types) i32. Refuses any pickled global other than tensor rebuilds.
 */
export function readTorchCheckpoint(path: string, opts: ReadTorchCheckpointOptions = {}): Map<string, Tensor> {
  const op = 'readTorchCheckpoint';
  const { archive, device } = openCheckpoint(op, path, opts);
  try {
    const named = stateDictOf(readObjectTree(archive, op), op, path);
    const tensors = materialize(archive, named, op, device);
    return new Map(named.map(([name], i) => [name, tensors[i]!]));
  } finally {
    archive.close();
  }
}

// Deeper nesting than any real checkpoint: a guard against hostile pickles.
const MAX_DEPTH = 1000;

/**
 * Reads a whole torch.save checkpoint as plain values: dicts with string keys become
 * objects (other dicts stay Maps), lists and tuples arrays, and every tensor anywhere in
 * the tree (optimizer state included) a Tensor, converted as readTorchCheckpoint does; a
 * tensor that appears twice in the file is one Tensor here. Integers beyond 2^53 are bigints.
 */
export function readTorchCheckpointFull(path: string, opts: ReadTorchCheckpointOptions = {}): unknown {
  const op = 'readTorchCheckpointFull';
  const { archive, device } = openCheckpoint(op, path, opts);
  try {
    const tree = readObjectTree(archive, op);
    const refs = new Map<TensorRef, string>();
    const seen = new Set<unknown>();
    const collect = (v: unknown, where: string, depth: number): void => {
      if (depth > MAX_DEPTH) throw new Error(`${op}: ${path}: values nested more than ${MAX_DEPTH} deep`);
      if (v instanceof TensorRef) {
        if (!refs.has(v)) refs.set(v, where);
      } else if (v !== null && typeof v === 'object' && !seen.has(v)) {
        seen.add(v);
        if (v instanceof Map) for (const [k, x] of v) collect(x, where ? `${where}.${String(k)}` : String(k), depth + 1);
        else if (Array.isArray(v) || v instanceof Set) [...v].forEach((x, i) => collect(x, `${where}[${i}]`, depth + 1));
      }
    };
    collect(tree, '', 0);
    const named = [...refs].map(([ref, where]): [string, TensorRef] => [where, ref]);
    const tensors = materialize(archive, named, op, device);
    const tensorOf = new Map(named.map(([, ref], i) => [ref, tensors[i]!]));
    // Converted containers are registered before their contents, so shared and cyclic
    // references come out shared and cyclic rather than recursing forever.
    const converted = new Map<unknown, unknown>();
    const convert = (v: unknown): unknown => {
      if (v instanceof TensorRef) return tensorOf.get(v);
      if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
      if (converted.has(v)) return converted.get(v);
      if (Array.isArray(v)) {
        const out: unknown[] = [];
        converted.set(v, out);
        for (const x of v) out.push(convert(x));
        return out;
      }
      if (v instanceof Set) {
        const out = new Set<unknown>();
        converted.set(v, out);
        for (const x of v) out.add(convert(x));
        return out;
      }
      if (v instanceof Map) {
        if ([...v.keys()].every((k) => typeof k === 'string')) {
          const out: Record<string, unknown> = {};
          converted.set(v, out);
          for (const [k, x] of v) Object.defineProperty(out, k as string, { value: convert(x), enumerable: true, writable: true, configurable: true });
          return out;
        }
        const out = new Map<unknown, unknown>();
        converted.set(v, out);
        for (const [k, x] of v) out.set(convert(k), convert(x));
        return out;
      }
      // Storage and dtype stand-ins left in the tree carry no data a caller can use.
      return null;
    };
    return convert(tree);
  } finally {
    archive.close();
  }
}
