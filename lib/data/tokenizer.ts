// The CLIP tokenizer: byte-level BPE as OpenAI's SimpleTokenizer (and OpenCLIP's copy of it)
// does it, giving the same ids.
//
//   text -> clean (ftfy-like fixes, html.unescape x2, whitespace collapse, lower-case)
//        -> pre-tokenize with CLIP's pattern (special tokens, English contractions, letter
//           runs, single digits, runs of other non-space characters)
//        -> each piece's UTF-8 bytes as byte symbols, the last one marked end-of-word ('</w>')
//        -> merge the adjacent pair of lowest rank, every occurrence left to right, until no
//           pair has a rank
//        -> ids; rows are [<start_of_text>, ids..., <end_of_text>, 0...] of contextLength,
//           a row too long is cut with <end_of_text> kept as its last token.
//
// Vocabularies load from OpenCLIP's bpe_simple_vocab_16e6.txt.gz (shipped in
// lib/data/assets, MIT, OpenAI), from a hub's vocab.json + merges.txt, or from a hub's
// tokenizer.json. Internally symbols are ids and merge ranks live in an open-addressing table
// keyed by the id pair, so a merge step allocates no strings; whole pieces are cached.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { argError, describe } from '../tensor/check.js';
import { cleanText, PY_WHITESPACE } from './text_clean.js';

/** Token ids of a batch, row-major [texts, contextLength], zero-padded. */
export interface TokenBatch {
  ids: Int32Array;
  shape: [number, number];
}

export interface ClipTokenizerOptions {
  /** Row length of `tokenize` when the call does not give one. Default 77. */
  contextLength?: number;
  /** Pieces whose ids are remembered; the oldest goes first when full. 0 turns the cache off. Default 100000. */
  cacheSize?: number;
  /** Apply the ftfy-like fixes before unescaping (OpenCLIP runs ftfy). Default true. */
  fixText?: boolean;
  /** Start token's vocabulary entry. Default '<start_of_text>', or '<|startoftext|>' if only that is present. */
  startToken?: string;
  /** End token's vocabulary entry. Default '<end_of_text>', or '<|endoftext|>' if only that is present. */
  endToken?: string;
}

export interface DecodeOptions {
  /** Drop the start token and stop at the first end token (so padding is dropped too). Default false. */
  skipSpecial?: boolean;
}

/** Merges OpenCLIP reads from its vocabulary files: lines 1 .. 49152-256-2 after the header. */
export const CLIP_MERGE_COUNT = 49152 - 256 - 2;
export const DEFAULT_CONTEXT_LENGTH = 77;
const END_OF_WORD = '</w>';
const DEFAULT_CACHE_SIZE = 100_000;

/**
 * CLIP's map from bytes to printable characters: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes for U+0100 onwards. `symbols[b]` is byte b's symbol; `order`
 * lists the bytes as the vocabulary does (the printable ones first).
 */
export function bytesToUnicode(): { symbols: string[]; order: number[] } {
  const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const symbols = new Array<string>(256);
  const order: number[] = [];
  for (let b = 0; b < 256; b++) {
    if (printable(b)) {
      symbols[b] = String.fromCharCode(b);
      order.push(b);
    }
  }
  let next = 256;
  for (let b = 0; b < 256; b++) {
    if (!printable(b)) {
      symbols[b] = String.fromCharCode(next++);
      order.push(b);
    }
  }
  return { symbols, order };
}

const BYTE_MAP = bytesToUnicode();

/** Open-addressing hash from a pair of non-negative ids to a non-negative value. */
class PairTable {
  private readonly first: Int32Array;
  private readonly second: Int32Array;
  private readonly value: Int32Array;
  private readonly mask: number;

  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.first = new Int32Array(cap).fill(-1);
    this.second = new Int32Array(cap);
    this.value = new Int32Array(cap);
    this.mask = cap - 1;
  }

  private slot(a: number, b: number): number {
    let h = Math.imul(a ^ Math.imul(b, 0x85ebca6b), 0x9e3779b1);
    h ^= h >>> 15;
    let i = h & this.mask;
    while (this.first[i] !== -1 && (this.first[i] !== a || this.second[i] !== b)) i = (i + 1) & this.mask;
    return i;
  }

  set(a: number, b: number, v: number): void {
    const i = this.slot(a, b);
    this.first[i] = a;
    this.second[i] = b;
    this.value[i] = v;
  }

  /** The value, or -1. */
  get(a: number, b: number): number {
    const i = this.slot(a, b);
    return this.first[i] === -1 ? -1 : this.value[i]!;
  }
}

function readBytes(op: string, path: unknown): Buffer {
  if (typeof path !== 'string' || path.length === 0) throw argError(op, 'path', 'a file path string', path);
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`${op}: expected a readable file for path, got '${path}' (${(e as Error).message})`);
  }
}

function utf8(op: string, path: string, bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${op}: expected UTF-8 text for path, got bytes that are not UTF-8 in '${path}'`);
  }
}

function readJson(op: string, path: string): unknown {
  const text = utf8(op, path, readBytes(op, path));
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${op}: expected JSON for path, got '${path}' (${(e as Error).message})`);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// A merge line is two symbols split by whitespace (Python's str.split()); byte symbols never
// contain whitespace.
const MERGE_LINE = new RegExp(`^([^${PY_WHITESPACE}]+) ([^${PY_WHITESPACE}]+)$`);
const WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`);

/**
 * Merge lines "a b" to pairs. `from` is the first line that holds a merge (after headers);
 * empty lines are skipped (files end with a newline); at most `limit` merges are read.
 */
function parseMergeLines(op: string, path: string, lines: readonly string[], from: number, limit: number): Array<[string, string]> {
  const merges: Array<[string, string]> = [];
  for (let i = from; i < lines.length && merges.length < limit; i++) {
    const line = lines[i]!;
    const m = MERGE_LINE.exec(line);
    const parts = m !== null ? [m[1]!, m[2]!] : line.split(WHITESPACE_RUN).filter((p) => p.length > 0);
    if (parts.length === 0) continue;
    if (parts.length !== 2) {
      throw new Error(`${op}: expected a merge of two symbols 'a b' for line ${i + 1} of '${path}', got ${describe(lines[i])}`);
    }
    merges.push(parts as [string, string]);
  }
  // An empty or header-only file is a broken download far more often than a wanted vocabulary.
  if (merges.length === 0) throw new Error(`${op}: expected at least one merge line for path, got none in '${path}'`);
  return merges;
}

function checkContextLength(op: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 2) throw argError(op, 'contextLength', 'an integer >= 2', v);
  return v;
}

function checkTexts(op: string, texts: unknown): readonly string[] {
  if (typeof texts === 'string') return [texts];
  if (!Array.isArray(texts)) throw argError(op, 'texts', 'a string or an array of strings', texts);
  for (let i = 0; i < texts.length; i++) {
    if (typeof texts[i] !== 'string') throw argError(op, `texts[${i}]`, 'a string', texts[i]);
  }
  return texts as readonly string[];
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Where the shipped merges live: lib/data/assets under tsx, and still lib/data/assets when running from dist/lib/data. */
export function defaultBpePath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const name = 'bpe_simple_vocab_16e6.txt.gz';
  const candidates = [join(here, 'assets', name), join(here, '..', '..', '..', 'lib', 'data', 'assets', name)];
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`defaultBpePath: expected the shipped merges file for ${name}, got none at ${candidates.join(' or ')}`);
}

export class ClipTokenizer {
  readonly contextLength: number;
  /** One more than the largest id. */
  readonly vocabSize: number;
  readonly sotTokenId: number;
  readonly eotTokenId: number;
  readonly fixText: boolean;

  private readonly tokens: string[];
  private readonly encoder: Map<string, number>;
  private readonly merges: ReadonlyArray<readonly [string, string]>;
  private readonly byteSym = new Int32Array(256);
  private readonly byteSymEnd = new Int32Array(256);
  private readonly ranks: PairTable;
  private readonly mergeFirst: Int32Array;
  private readonly mergeSecond: Int32Array;
  private readonly mergeResult: Int32Array;
  private readonly specials: Map<string, number>;
  private readonly pattern: RegExp;
  private readonly cache = new Map<string, Int32Array>();
  private readonly cacheSize: number;
  private readonly byteOfSymbol: Int16Array;
  private readonly utf8Encoder = new TextEncoder();

  /**
   * A tokenizer from a vocabulary (token string -> id) and ranked merges (rank = index).
   * Every byte symbol must be in the vocabulary with and without '</w>', and so must every
   * merge's result when both its halves are; then every piece encodes.
   */
  constructor(
    vocab: ReadonlyMap<string, number> | Readonly<Record<string, number>>,
    merges: ReadonlyArray<readonly [string, string]>,
    options: ClipTokenizerOptions = {},
  ) {
    const op = 'ClipTokenizer';
    if (typeof options !== 'object' || options === null) throw argError(op, 'options', 'an object', options);
    this.contextLength = checkContextLength(op, options.contextLength ?? DEFAULT_CONTEXT_LENGTH);
    const cacheSize = options.cacheSize ?? DEFAULT_CACHE_SIZE;
    if (typeof cacheSize !== 'number' || !Number.isSafeInteger(cacheSize) || cacheSize < 0) {
      throw argError(op, 'options.cacheSize', 'a non-negative integer', cacheSize);
    }
    this.cacheSize = cacheSize;
    const fixText = options.fixText ?? true;
    if (typeof fixText !== 'boolean') throw argError(op, 'options.fixText', 'a boolean', fixText);
    this.fixText = fixText;

    if (!(vocab instanceof Map) && !isRecord(vocab)) throw argError(op, 'vocab', 'a Map or an object of token -> id', vocab);
    this.encoder = new Map();
    this.tokens = [];
    const add = (token: string, id: unknown): void => {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id >= 1 << 24) {
        throw argError(op, `vocab['${token}']`, 'an integer id in [0, 2^24)', id);
      }
      if (this.tokens[id] !== undefined) {
        throw argError(op, `vocab['${token}']`, `an id not already taken (by '${this.tokens[id]}')`, id);
      }
      this.encoder.set(token, id);
      this.tokens[id] = token;
    };
    if (vocab instanceof Map) for (const [token, id] of vocab) add(token, id);
    else for (const token of Object.keys(vocab)) add(token, (vocab as Record<string, unknown>)[token]);
    this.vocabSize = this.tokens.length;

    for (let b = 0; b < 256; b++) {
      const sym = BYTE_MAP.symbols[b]!;
      const plain = this.encoder.get(sym);
      const end = this.encoder.get(sym + END_OF_WORD);
      if (plain === undefined || end === undefined) {
        const missing = plain === undefined ? sym : sym + END_OF_WORD;
        throw new Error(`${op}: expected an entry '${missing}' (byte 0x${b.toString(16).padStart(2, '0')}) for vocab, got none`);
      }
      this.byteSym[b] = plain;
      this.byteSymEnd[b] = end;
    }
    this.byteOfSymbol = new Int16Array(0x200).fill(-1);
    for (let b = 0; b < 256; b++) this.byteOfSymbol[BYTE_MAP.symbols[b]!.charCodeAt(0)] = b;

    if (!Array.isArray(merges)) throw argError(op, 'merges', 'an array of [string, string] pairs', merges);
    this.merges = merges.slice();
    this.ranks = new PairTable(merges.length);
    this.mergeFirst = new Int32Array(merges.length);
    this.mergeSecond = new Int32Array(merges.length);
    this.mergeResult = new Int32Array(merges.length);
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      if (!Array.isArray(m) || m.length !== 2 || typeof m[0] !== 'string' || typeof m[1] !== 'string' || !m[0] || !m[1]) {
        throw argError(op, `merges[${r}]`, 'a pair of non-empty strings', m);
      }
      const a = this.encoder.get(m[0]);
      const b = this.encoder.get(m[1]);
      // A merge whose half is no vocabulary entry can never apply: every symbol of a word in
      // progress is a byte symbol or an earlier merge's result, and those are entries.
      if (a === undefined || b === undefined) continue;
      const result = this.encoder.get(m[0] + m[1]);
      if (result === undefined) {
        throw new Error(`${op}: expected an entry '${m[0] + m[1]}' (the result of merges[${r}]) for vocab, got none`);
      }
      this.mergeFirst[r] = a;
      this.mergeSecond[r] = b;
      this.mergeResult[r] = result;
      // A repeated pair takes its later rank, as a Python dict built from the list does.
      this.ranks.set(a, b, r);
    }

    const pick = (given: string | undefined, names: string[], arg: string): [string, number] => {
      if (given !== undefined) {
        const id = typeof given === 'string' ? this.encoder.get(given) : undefined;
        if (id === undefined) throw argError(op, arg, 'a token that is in the vocabulary', given);
        return [given, id];
      }
      for (const n of names) {
        const id = this.encoder.get(n);
        if (id !== undefined) return [n, id];
      }
      throw new Error(`${op}: expected ${names.map((n) => `'${n}'`).join(' or ')} for vocab, got neither`);
    };
    const [sotName, sot] = pick(options.startToken, ['<start_of_text>', '<|startoftext|>'], 'options.startToken');
    const [eotName, eot] = pick(options.endToken, ['<end_of_text>', '<|endoftext|>'], 'options.endToken');
    this.sotTokenId = sot;
    this.eotTokenId = eot;
    this.specials = new Map([
      [sotName, sot],
      [eotName, eot],
    ]);
    // CLIP's pre-tokenization. Python's \s is spelled out (see text_clean.ts); the i flag
    // mirrors OpenCLIP's re.IGNORECASE, which matters only for the special tokens' names.
    const special = [sotName, eotName].map(escapeRegExp).join('|');
    this.pattern = new RegExp(
      `${special}|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${PY_WHITESPACE}\\p{L}\\p{N}]+`,
      'giu',
    );
  }

  /** OpenCLIP's merges file (bpe_simple_vocab_16e6.txt.gz, gzip or plain text): header line, then merges. */
  static fromBpeFile(path: string = defaultBpePath(), options: ClipTokenizerOptions = {}): ClipTokenizer {
    const op = 'ClipTokenizer.fromBpeFile';
    let bytes: Uint8Array = readBytes(op, path);
    if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
      try {
        bytes = gunzipSync(bytes);
      } catch (e) {
        throw new Error(`${op}: expected a complete gzip file for path, got '${path}' (${(e as Error).message})`);
      }
    }
    // The shipped file holds 262,144 merges of which CLIP reads the first 48,894: decode only
    // up to the last line read (a newline byte never falls inside a UTF-8 sequence).
    let end = -1;
    for (let line = 0; line <= CLIP_MERGE_COUNT; line++) {
      end = bytes.indexOf(0x0a, end + 1);
      if (end < 0) break;
    }
    const lines = utf8(op, path, end < 0 ? bytes : bytes.subarray(0, end)).split('\n');
    const merges = parseMergeLines(op, path, lines, 1, CLIP_MERGE_COUNT);
    // The vocabulary this form implies: byte symbols, the same with '</w>', one entry per
    // merge, then the two special tokens. A repeated string keeps its later id (Python dict).
    const vocab = new Map<string, number>();
    const list: string[] = [];
    for (const b of BYTE_MAP.order) list.push(BYTE_MAP.symbols[b]!);
    for (const b of BYTE_MAP.order) list.push(BYTE_MAP.symbols[b]! + END_OF_WORD);
    for (const [a, b] of merges) list.push(a + b);
    list.push('<start_of_text>', '<end_of_text>');
    list.forEach((t, i) => vocab.set(t, i));
    return new ClipTokenizer(vocab, merges, options);
  }

  /** A hub's vocab.json (token -> id) and merges.txt ("#version" header, then "a b" lines). */
  static fromVocabAndMerges(vocabPath: string, mergesPath: string, options: ClipTokenizerOptions = {}): ClipTokenizer {
    const op = 'ClipTokenizer.fromVocabAndMerges';
    const vocab = readJson(op, vocabPath);
    if (!isRecord(vocab)) throw new Error(`${op}: expected an object of token -> id for vocab ('${vocabPath}'), got ${describe(vocab)}`);
    const lines = utf8(op, mergesPath, readBytes(op, mergesPath)).split('\n');
    const from = lines[0]?.startsWith('#version') ? 1 : 0;
    // Hubs' CLIPTokenizer reads the same number of merges as OpenCLIP, whatever the file holds.
    const merges = parseMergeLines(op, mergesPath, lines, from, CLIP_MERGE_COUNT);
    return new ClipTokenizer(vocab as Record<string, number>, merges, options);
  }

  /** A hub's tokenizer.json whose model is BPE with '</w>' as end-of-word suffix. */
  static fromTokenizerJson(path: string, options: ClipTokenizerOptions = {}): ClipTokenizer {
    const op = 'ClipTokenizer.fromTokenizerJson';
    const json = readJson(op, path);
    const model = isRecord(json) ? json.model : undefined;
    if (!isRecord(model)) throw argError(op, 'model', 'an object (the tokenizer model)', model);
    if (model.type !== undefined && model.type !== 'BPE') throw argError(op, 'model.type', "'BPE'", model.type);
    if (!isRecord(model.vocab)) throw argError(op, 'model.vocab', 'an object of token -> id (a BPE model)', model.vocab);
    if (!Array.isArray(model.merges)) throw argError(op, 'model.merges', 'an array of merges (a BPE model)', model.merges);
    const suffix = model.end_of_word_suffix;
    if (suffix !== undefined && suffix !== END_OF_WORD) throw argError(op, 'model.end_of_word_suffix', `'${END_OF_WORD}'`, suffix);
    // Older files write a merge as "a b", newer ones as ["a", "b"].
    const merges = model.merges.map((m: unknown, i: number): [string, string] => {
      if (typeof m === 'string') {
        const parts = m.split(' ');
        if (parts.length === 2) return parts as [string, string];
      } else if (Array.isArray(m) && m.length === 2) {
        return m as [string, string];
      }
      throw argError(op, `model.merges[${i}]`, "a merge 'a b' or ['a', 'b']", m);
    });
    return new ClipTokenizer(model.vocab as Record<string, number>, merges, options);
  }

  /**
   * The tokenizer files of a model folder as hubs lay it out: tokenizer.json, else
   * vocab.json + merges.txt, else bpe_simple_vocab_16e6.txt.gz.
   */
  static fromDirectory(dir: string, options: ClipTokenizerOptions = {}): ClipTokenizer {
    const op = 'ClipTokenizer.fromDirectory';
    if (typeof dir !== 'string' || dir.length === 0) throw argError(op, 'dir', 'a folder path string', dir);
    const at = (f: string): string => join(dir, f);
    if (existsSync(at('tokenizer.json'))) return ClipTokenizer.fromTokenizerJson(at('tokenizer.json'), options);
    if (existsSync(at('vocab.json')) && existsSync(at('merges.txt'))) {
      return ClipTokenizer.fromVocabAndMerges(at('vocab.json'), at('merges.txt'), options);
    }
    if (existsSync(at('bpe_simple_vocab_16e6.txt.gz'))) return ClipTokenizer.fromBpeFile(at('bpe_simple_vocab_16e6.txt.gz'), options);
    throw new Error(`${op}: expected tokenizer.json, vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz for dir, got none in '${dir}'`);
  }

  /** The vocabulary, token -> id (for writing vocab.json). */
  vocabulary(): Map<string, number> {
    return new Map(this.encoder);
  }

  /** The merges in rank order (for writing merges.txt). */
  mergeList(): Array<[string, string]> {
    return this.merges.map(([a, b]) => [a, b]);
  }

  /** The text as the tokenizer sees it before splitting. */
  clean(text: string): string {
    if (typeof text !== 'string') throw argError('clean', 'text', 'a string', text);
    return cleanText(text, this.fixText);
  }

  /** Ids of a text, without start and end tokens or any length limit. */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw argError('encode', 'text', 'a string', text);
    const out: number[] = [];
    const clean = cleanText(text, this.fixText);
    const re = this.pattern;
    re.lastIndex = 0;
    for (let m = re.exec(clean); m !== null; m = re.exec(clean)) {
      const ids = this.piece(m[0]);
      for (let j = 0; j < ids.length; j++) out.push(ids[j]!);
    }
    return out;
  }

  /**
   * Text of ids, as OpenCLIP decodes: each token's bytes, UTF-8 (invalid sequences become
   * U+FFFD), '</w>' read as a space.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const op = 'decode';
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw argError(op, 'ids', 'an array of token ids', ids);
    const skip = options.skipSpecial ?? false;
    const bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const token = Number.isInteger(id) ? this.tokens[id] : undefined;
      if (token === undefined) throw argError(op, `ids[${i}]`, `a token id in the vocabulary (0..${this.vocabSize - 1})`, id);
      if (skip && id === this.sotTokenId) continue;
      if (skip && id === this.eotTokenId) break;
      for (let k = 0; k < token.length; k++) {
        const b = this.byteOfSymbol[token.charCodeAt(k)] ?? -1;
        if (b < 0) throw new Error(`${op}: expected byte symbols for token ${id}, got '${token}'`);
        bytes.push(b);
      }
    }
    return new TextDecoder('utf-8').decode(Uint8Array.from(bytes)).replaceAll(END_OF_WORD, ' ');
  }

  /**
   * Rows of [start, ids..., end] zero-padded to contextLength; a text too long keeps its
   * first contextLength - 2 ids and the end token.
   */
  tokenize(texts: string | readonly string[], contextLength: number = this.contextLength): TokenBatch {
    const op = 'tokenize';
    const list = checkTexts(op, texts);
    const ctx = checkContextLength(op, contextLength);
    const ids = new Int32Array(list.length * ctx);
    const re = this.pattern;
    for (let r = 0; r < list.length; r++) {
      const base = r * ctx;
      const limit = base + ctx - 1;
      let k = base;
      ids[k++] = this.sotTokenId;
      const clean = cleanText(list[r]!, this.fixText);
      re.lastIndex = 0;
      fill: for (let m = re.exec(clean); m !== null; m = re.exec(clean)) {
        const piece = this.piece(m[0]);
        for (let j = 0; j < piece.length; j++) {
          if (k === limit) break fill;
          ids[k++] = piece[j]!;
        }
      }
      ids[k] = this.eotTokenId;
    }
    return { ids, shape: [list.length, ctx] };
  }

  /** Ids of one pre-tokenized piece, from the cache or by BPE. */
  private piece(text: string): Int32Array {
    const hit = this.cache.get(text);
    if (hit !== undefined) return hit;
    const special = this.specials.get(text);
    const ids = special !== undefined ? Int32Array.of(special) : this.bpe(text);
    if (this.cacheSize > 0) {
      if (this.cache.size >= this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(text, ids);
    }
    return ids;
  }

  private bpe(text: string): Int32Array {
    let ascii = true;
    for (let i = 0; i < text.length && ascii; i++) ascii = text.charCodeAt(i) < 0x80;
    let bytes: ArrayLike<number>;
    if (ascii) {
      const a = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) a[i] = text.charCodeAt(i);
      bytes = a;
    } else {
      bytes = this.utf8Encoder.encode(text);
    }
    const n = bytes.length;
    let word: number[] = new Array<number>(n);
    for (let i = 0; i < n - 1; i++) word[i] = this.byteSym[bytes[i]!]!;
    word[n - 1] = this.byteSymEnd[bytes[n - 1]!]!;
    while (word.length > 1) {
      let best = -1;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.ranks.get(word[i]!, word[i + 1]!);
        if (r >= 0 && (best < 0 || r < best)) best = r;
      }
      if (best < 0) break;
      const a = this.mergeFirst[best]!;
      const b = this.mergeSecond[best]!;
      const merged = this.mergeResult[best]!;
      const next: number[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === a && i + 1 < word.length && word[i + 1] === b) {
          next.push(merged);
          i += 2;
        } else {
          next.push(word[i]!);
          i += 1;
        }
      }
      word = next;
    }
    return Int32Array.from(word);
  }
}

let shared: ClipTokenizer | undefined;

/** The CLIP tokenizer from the shipped merges, loaded once. */
export function defaultTokenizer(): ClipTokenizer {
  shared ??= ClipTokenizer.fromBpeFile(defaultBpePath());
  return shared;
}

/** open_clip.tokenize: the default tokenizer's rows for one text or many. */
export function tokenize(texts: string | readonly string[], contextLength: number = DEFAULT_CONTEXT_LENGTH): TokenBatch {
  return defaultTokenizer().tokenize(texts, contextLength);
}
