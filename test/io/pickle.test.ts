import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { codecsEncode, PyCallable, unpickle, type UnpickleOptions } from '../../lib/io/pickle.js';
import { expected } from '../support/io_fixtures.js';

const test = suite('pickle');

const refuseAll: UnpickleOptions = {
  where: 'test.pkl',
  resolveGlobal(module, name) {
    if (module === '_codecs' && name === 'encode') return codecsEncode;
    throw new Error(`refused ${module}.${name}`);
  },
  persistentLoad(pid) {
    return { pid };
  },
};

const bytes = (...xs: (number | string)[]): Uint8Array =>
  Uint8Array.from(xs.flatMap((x) => (typeof x === 'string' ? [...Buffer.from(x, 'latin1')] : [x])));

// The object of PLAIN in test/fixtures/gen/io_fixtures.py as this unpickler represents it.
const plain = new Map<unknown, unknown>([
  ['ints', [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31 - 1, 2n ** 53n, -(2n ** 63n), 2n ** 70n]],
  ['float', -2.5],
  ['none', null],
  ['bools', [true, false]],
  ['text', 'héllo ✓'],
  ['bytes', Uint8Array.from([0, 255, 97, 98])],
  ['nested', new Map<unknown, unknown>([['t', [1, [2, 3]]], ['l', [[], new Map()]]])],
  [7, 'int key'],
]);

/** A JSON-comparable form that keeps Map vs array, bigint vs number and bytes apart. */
function normal(v: unknown): unknown {
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [normal(k), normal(x)]) };
  if (Array.isArray(v)) return v.map(normal);
  if (typeof v === 'bigint') return { bigint: String(v) };
  if (v instanceof Uint8Array) return { bytes: [...v] };
  return v;
}

test('plain values pickled by Python in protocols 2 to 5', () => {
  assert.equal(Object.keys(expected.pickles), ['2', '3', '4', '5']);
  for (const [protocol, hex] of Object.entries(expected.pickles)) {
    const got = unpickle(Buffer.from(hex, 'hex'), refuseAll);
    assert.equal(normal(got), normal(plain), `protocol ${protocol}`);
  }
});

test('globals go through the allow-list; only its callables can be called', () => {
  const calls: unknown[][] = [];
  const opts: UnpickleOptions = {
    ...refuseAll,
    resolveGlobal(module, name) {
      if (module === 'ok' && name === 'fn') return new PyCallable('ok.fn', (args) => (calls.push(args), 'called'));
      if (module === 'ok' && name === 'value') return 42;
      throw new Error(`refused ${module}.${name}`);
    },
  };
  // GLOBAL ok.fn, (1,), REDUCE, STOP
  assert.is(unpickle(bytes(0x80, 2, 'cok\nfn\n', 0x4b, 1, 0x85, 'R.'), opts), 'called');
  assert.equal(calls, [[1]]);
  assert.throws(() => unpickle(bytes(0x80, 2, 'cposix\nsystem\n', 0x4b, 1, 0x85, 'R.'), opts), /refused posix\.system/);
  assert.throws(() => unpickle(bytes(0x80, 2, 'cok\nvalue\n', ')R.'), opts), /test\.pkl: cannot call a non-callable \(a number\)/);
  // BINPERSID hands the id to persistentLoad
  assert.equal(unpickle(bytes(0x80, 2, 0x4b, 9, 'Q.'), opts), { pid: 9 });
});

test('malformed pickles are errors naming the source and the byte', () => {
  const cases: [Uint8Array, RegExp][] = [
    [bytes(0x80, 2, 0xff), /test\.pkl: unsupported pickle opcode 0xff \(at byte 2\)/],
    [bytes(0x80, 2, 0x4b), /pickle data ends in the middle of an opcode \(truncated\)/],
    [bytes(0x80, 2, 0x4b, 1), /pickle data ends in the middle of an opcode/],
    [bytes(0x80, 2, 'R.'), /pickle stack underflow/],
    [bytes(0x80, 2, 0x68, 5, '.'), /memo key 5 was never stored/],
    [bytes(0x80, 2, 0x4b, 1, 0x4b, 2, '.'), /pickle ends with 2 values on the stack, not 1/],
    [bytes(0x80, 9), /pickle protocol newer than 5/],
    [bytes(0x80, 2, 0x58, 2, 0, 0, 0, 0xff, 0xfe, '.'), /string is not valid UTF-8/],
    [bytes(0x80, 2, 'e.'), /no mark on the pickle stack/],
    [bytes(0x80, 2, 0x4b, 1, 0x4b, 2, 's.'), /pickle stack underflow|cannot set items on a number/],
    [bytes(0x80, 2, ']}b.'), /cannot restore state into a tuple or list/],
  ];
  for (const [data, message] of cases) assert.throws(() => unpickle(data, refuseAll), message);
});

test.run();
