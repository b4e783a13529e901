// A restricted unpickler for the pickle opcodes of protocols 2-5 that torch.save emits.
// It executes nothing: every GLOBAL / STACK_GLOBAL is looked up in the caller's allow-list
// (resolveGlobal), which either returns a JS stand-in or throws, and only those stand-ins
// can be "called" by REDUCE / NEWOBJ. Python values map to JS as: None -> null, bool ->
// boolean, int -> number (bigint beyond 2^53), float -> number, str -> string, bytes ->
// Uint8Array, list and tuple -> arrays, dict -> Map, set -> Set.

/** An allowed Python callable: REDUCE and NEWOBJ call it with the argument tuple. */
export class PyCallable {
  constructor(
    readonly qualifiedName: string,
    readonly call: (args: unknown[]) => unknown,
  ) {}
}

/**
 * `_codecs.encode(text, 'latin1')`: how protocol 2 spells a bytes object (each character
 * one byte). Harmless, so allow-lists may include it.
 */
export const codecsEncode = new PyCallable('_codecs.encode', (args) => {
  const [text, encoding] = args;
  if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) throw new Error('_codecs.encode: only (str, "latin1") is supported');
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
});

export interface UnpickleOptions {
  /** Returns the stand-in for an allowed global, or throws naming it. */
  resolveGlobal(module: string, name: string): unknown;
  /** Returns the object for a persistent id (torch: storages). */
  persistentLoad(pid: unknown): unknown;
  /** Prefix for errors, e.g. "readTorchCheckpoint: file.pt: data.pkl". */
  where: string;
}

const MARK = Symbol('mark');

export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let opAt = 0;

  const fail = (problem: string): Error => new Error(`${opts.where}: ${problem} (at byte ${opAt})`);
  const need = (n: number): void => {
    if (pos + n > data.length) throw fail('pickle data ends in the middle of an opcode (truncated)');
  };
  const u8 = (): number => (need(1), data[pos++]!);
  const u16 = (): number => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = (): number => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const u64 = (): number => {
    const lo = u32();
    const hi = u32();
    const v = hi * 2 ** 32 + lo;
    if (v > Number.MAX_SAFE_INTEGER) throw fail(`length ${v} is absurd`);
    return v;
  };
  const bytes = (n: number): Uint8Array => (need(n), (pos += n), data.subarray(pos - n, pos));
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw fail('pickle data ends inside a text line (truncated)');
    const s = latin1.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const str = (n: number): string => {
    const b = bytes(n);
    try {
      return utf8.decode(b);
    } catch {
      throw fail('string is not valid UTF-8');
    }
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw fail('pickle stack underflow');
    const v = stack.pop();
    if (v === MARK) throw fail('pickle stack underflow (unexpected mark)');
    return v;
  };
  const top = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) throw fail('pickle stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw fail('no mark on the pickle stack');
    const items = stack.slice(i + 1);
    stack.length = i;
    return items;
  };
  const littleInt = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const memoGet = (k: number): unknown => {
    if (!memo.has(k)) throw fail(`memo key ${k} was never stored`);
    return memo.get(k);
  };
  const call = (fn: unknown, args: unknown): unknown => {
    if (!(fn instanceof PyCallable)) throw fail(`cannot call a non-callable (${describeValue(fn)})`);
    if (!Array.isArray(args)) throw fail(`arguments of ${fn.qualifiedName} are not a tuple`);
    return fn.call(args);
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof Map)) throw fail(`cannot set items on ${describeValue(target)}`);
    if (items.length % 2) throw fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const appendTo = (target: unknown, items: unknown[]): void => {
    if (!Array.isArray(target)) throw fail(`cannot append to ${describeValue(target)}`);
    target.push(...items);
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw fail('pickle protocol newer than 5');
        break;
      case 0x95: // FRAME: a length prefix only
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) throw fail(`pickle ends with ${stack.length} values on the stack, not 1`);
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        if (stack.pop() === undefined) throw fail('pickle stack underflow');
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(u32() | 0);
        break;
      case 0x8a: // LONG1
        stack.push(littleInt(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = u32();
        if (n > 1 << 20) throw fail(`integer of ${n} bytes is absurd`);
        stack.push(littleInt(bytes(n)));
        break;
      }
      case 0x49: {
        // INT (text): also how protocol 0 spells booleans
        const s = line();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else if (/^[-+]?\d+$/.test(s)) stack.push(littleIntFromText(s));
        else throw fail(`bad INT literal '${s}'`);
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        stack.push(latin1.decode(bytes(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x74: // TUPLE
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendTo(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendTo(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const m = new Map();
        setItems(m, popMark());
        stack.push(m);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) throw fail(`cannot add items to ${describeValue(s)}`);
        for (const v of items) s.add(v);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        stack.push(opts.resolveGlobal(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs two strings');
        stack.push(opts.resolveGlobal(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) throw fail('NEWOBJ_EX with keyword arguments is not supported');
        stack.push(call(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD: the only state accepted is a dict's attributes (state_dict()'s OrderedDict
        // carries `_metadata`), which are not items and are dropped.
        const state = pop();
        const target = top();
        if (target instanceof Map && (state === null || state instanceof Map)) break;
        throw fail(`cannot restore state into ${describeValue(target)}`);
      }
      case 0x51: // BINPERSID
        stack.push(opts.persistentLoad(pop()));
        break;
      case 0x50: // PERSID
        stack.push(opts.persistentLoad(line()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x67: // GET
        stack.push(memoGet(Number(line())));
        break;
      default:
        throw fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

function littleIntFromText(s: string): number | bigint {
  const v = BigInt(s);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function describeValue(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyCallable) return v.qualifiedName;
  if (Array.isArray(v)) return 'a tuple or list';
  if (v instanceof Map) return 'a dict';
  return typeof v === 'object' ? `an instance of ${(v as object).constructor?.name ?? 'object'}` : `a ${typeof v}`;
}
