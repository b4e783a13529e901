// CLIPA's text-length reductions (specs/models.md §B.2): during low-cost pretraining a caption
// is fitted into a short context (e.g. 8..32 tokens) by one of these rules, as OpenCLIP's
// `reduction_mask` tokenizers do. Each applies only when a caption's BPE ids do not fit
// between the start and end tokens (contextLength - 2 of them); a caption that fits comes out
// as plain tokenization gives it, except under 'syntax', which re-joins the tagger's words.
//
//   truncate  the first contextLength - 2 ids (plain tokenization)
//   random    contextLength - 2 ids drawn without replacement, kept in their order
//   shuffle   the same draw, in the drawn order
//   block     (OpenCLIP: 'simple') a contiguous window of contextLength - 2 ids at a random start
//   syntax    part-of-speech tag the words (Penn Treebank tags, as NLTK's tagger gives them);
//             keep nouns (NN*), then adjectives (JJ*), then verbs (VB*), then the rest, ties in
//             text order, as many words as contextLength - 2; restore text order, join with
//             spaces, tokenize, cutting with the end token kept if words split into several ids.
//             CLIPA found this the best of the four.
import { createRequire } from 'node:module';
import { argError } from '../tensor/check.js';
import type { ClipTokenizer, TokenBatch } from './tokenizer.js';

export type TextReduction = 'truncate' | 'random' | 'shuffle' | 'block' | 'simple' | 'syntax';

const STRATEGIES: readonly TextReduction[] = ['truncate', 'random', 'shuffle', 'block', 'simple', 'syntax'];

export interface TextReducerOptions {
  /** Row length. Default: the tokenizer's contextLength. */
  contextLength?: number;
  /** Seed of the draws of 'random', 'shuffle' and 'block'. Default 0. */
  seed?: number;
  /** A source of uniform numbers in [0, 1) to draw from instead of the seeded one. */
  random?: () => number;
}

/** mulberry32: small, fast, and the same sequence for a seed on every platform. */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface TaggedWord {
  value: string;
  pos: string;
}
interface PosTagger {
  tagSentence(text: string): TaggedWord[];
}

let tagger: PosTagger | undefined;

// wink-pos-tagger is CommonJS and loads a 13 MB lexicon, so it is required on first use only.
function posTagger(): PosTagger {
  if (tagger === undefined) {
    const create = createRequire(import.meta.url)('wink-pos-tagger') as () => PosTagger;
    tagger = create();
  }
  return tagger;
}

function priority(pos: string): number {
  if (pos.startsWith('NN')) return 1;
  if (pos.startsWith('JJ')) return 2;
  if (pos.startsWith('VB')) return 3;
  return 4;
}

/**
 * The `keep` words of a text that syntax masking keeps: nouns, then adjectives, then verbs,
 * then the rest (ties in text order), joined with spaces in text order.
 */
export function syntaxMask(text: string, keep: number): string {
  const op = 'syntaxMask';
  if (typeof text !== 'string') throw argError(op, 'text', 'a string', text);
  if (typeof keep !== 'number' || !Number.isSafeInteger(keep) || keep < 0) throw argError(op, 'keep', 'a non-negative integer', keep);
  const words = posTagger().tagSentence(text);
  // Array.prototype.sort is stable, so equal priorities stay in text order.
  const chosen = words
    .map((w, i) => ({ i, p: priority(w.pos) }))
    .sort((a, b) => a.p - b.p)
    .slice(0, keep)
    .map((w) => w.i)
    .sort((a, b) => a - b);
  return chosen.map((i) => words[i]!.value).join(' ');
}

/** Tokenizes with one of CLIPA's reductions; draws are reproducible from the seed. */
export class TextReducer {
  readonly strategy: TextReduction;
  readonly contextLength: number;
  private readonly random: () => number;

  constructor(
    readonly tokenizer: ClipTokenizer,
    strategy: TextReduction,
    options: TextReducerOptions = {},
  ) {
    const op = 'TextReducer';
    if (tokenizer === null || typeof tokenizer !== 'object' || typeof tokenizer.encode !== 'function') {
      throw argError(op, 'tokenizer', 'a ClipTokenizer', tokenizer);
    }
    if (!STRATEGIES.includes(strategy)) throw argError(op, 'strategy', STRATEGIES.map((s) => `'${s}'`).join(' | '), strategy);
    this.strategy = strategy;
    const ctx = options.contextLength ?? tokenizer.contextLength;
    if (typeof ctx !== 'number' || !Number.isSafeInteger(ctx) || ctx < 2) throw argError(op, 'options.contextLength', 'an integer >= 2', ctx);
    this.contextLength = ctx;
    if (options.random !== undefined) {
      if (typeof options.random !== 'function') throw argError(op, 'options.random', 'a function returning numbers in [0, 1)', options.random);
      this.random = options.random;
    } else {
      const seed = options.seed ?? 0;
      if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw argError(op, 'options.seed', 'an integer', seed);
      this.random = seeded(seed);
    }
  }

  /** Rows of [start, kept ids..., end] zero-padded to contextLength. */
  tokenize(texts: string | readonly string[]): TokenBatch {
    const op = 'TextReducer.tokenize';
    const list = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(list)) throw argError(op, 'texts', 'a string or an array of strings', texts);
    list.forEach((t, i) => {
      if (typeof t !== 'string') throw argError(op, `texts[${i}]`, 'a string', t);
    });
    const ctx = this.contextLength;
    const tok = this.tokenizer;
    if (this.strategy === 'truncate') return tok.tokenize(list, ctx);
    if (this.strategy === 'syntax') return tok.tokenize(list.map((t) => syntaxMask(t, ctx - 2)), ctx);
    const keep = ctx - 2;
    const ids = new Int32Array(list.length * ctx);
    list.forEach((text, r) => {
      const all = tok.encode(text);
      const kept = all.length > keep ? this.select(all, keep) : all;
      const base = r * ctx;
      ids[base] = tok.sotTokenId;
      ids.set(kept, base + 1);
      ids[base + 1 + kept.length] = tok.eotTokenId;
    });
    return { ids, shape: [list.length, ctx] };
  }

  /** `keep` of the ids (fewer than there are) by the random strategies. */
  private select(all: number[], keep: number): number[] {
    const n = all.length;
    const draw = (m: number): number => Math.min(m - 1, Math.floor(this.random() * m));
    if (this.strategy === 'block' || this.strategy === 'simple') {
      const start = draw(n - keep + 1);
      return all.slice(start, start + keep);
    }
    // The first `keep` places of a Fisher-Yates shuffle: a uniform draw without replacement.
    const order = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < keep; i++) {
      const j = i + draw(n - i);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    const chosen = order.slice(0, keep);
    if (this.strategy === 'random') chosen.sort((a, b) => a - b);
    return chosen.map((i) => all[i]!);
  }
}
