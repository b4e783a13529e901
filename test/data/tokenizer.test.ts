// The CLIP tokenizer against OpenCLIP's ids (the reference cases in ../shared/data), its
// loaders and their failures, text cleaning, and CLIPA's text-length reductions.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { basicTextFix, cleanText, htmlUnescape } from '../../lib/data/text_clean.js';
import { syntaxMask, TextReducer, type TextReduction } from '../../lib/data/text_reduction.js';
import { bytesToUnicode, ClipTokenizer, defaultBpePath, defaultTokenizer, tokenize } from '../../lib/data/tokenizer.js';
import { throwsShaped } from '../support/helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shared = join(root, '..', 'shared', 'data', 'clip-bpe');
const tok = defaultTokenizer();
const tmp = mkdtempSync(join(tmpdir(), 'clipforge-tokenizer-'));

const SAMPLES = [
  'a photo of a cat.',
  'A Bad Photo of the GOLDFISH!!',
  "it's 2024 & we're here, aren't we? I'll see... you've got 3.5% left",
  'café résumé naïve',
  'emoji 🙂 👍🏽 test',
  '日本語のテキストと中文',
  'Ελληνικά ΟΔΟΣ и кириллица',
  '<start_of_text> literal tags <end_of_text>',
  'x',
  '',
];


function rowOf(ids: readonly number[], ctx: number): number[] {
  return [...ids, ...new Array<number>(ctx - ids.length).fill(0)];
}

const test = suite('tokenizer');

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('the reference cases give OpenCLIP ids with the shipped merges', () => {
  const casesPath = join(shared, 'tokenizer_cases.json');
  if (!existsSync(casesPath)) {
    console.log(`tokenizer reference cases did not run: ${casesPath} not found`);
    return;
  }
  assert.ok(readFileSync(defaultBpePath()).equals(readFileSync(join(shared, 'bpe_simple_vocab_16e6.txt.gz'))), 'shipped asset unchanged');
  const cases = JSON.parse(readFileSync(casesPath, 'utf8')) as Array<{ text: string; ids: number[] }>;
  assert.ok(cases.length > 0);
  const batch = tokenize(cases.map((c) => c.text));
  assert.equal(batch.shape, [cases.length, 77]);
  cases.forEach((c, i) => {
    assert.equal(Array.from(batch.ids.subarray(i * 77, (i + 1) * 77)), rowOf(c.ids, 77), JSON.stringify(c.text));
  });
});

test('vocabulary layout: byte symbols, merges, special tokens', () => {
  assert.is(tok.vocabSize, 49408);
  assert.is(tok.sotTokenId, 49406);
  assert.is(tok.eotTokenId, 49407);
  const { symbols, order } = bytesToUnicode();
  assert.is(new Set(symbols).size, 256);
  assert.is(symbols[0x41], 'A');
  assert.is(symbols[0x20], '\u0120');
  assert.equal([...order].sort((a, b) => a - b), Array.from({ length: 256 }, (_, i) => i));
  const vocab = tok.vocabulary();
  order.forEach((b, i) => {
    assert.is(vocab.get(symbols[b]!), i);
    assert.is(vocab.get(symbols[b]! + '</w>'), 256 + i);
  });
  assert.is(tok.mergeList().length, 48894);
  assert.equal(tok.mergeList()[0], ['i', 'n']);
});

test('encode and decode round trip on ASCII and Unicode', () => {
  for (const text of SAMPLES) {
    const ids = tok.encode(text);
    const back = tok.decode(ids);
    assert.equal(tok.encode(back), ids, JSON.stringify(text));
    assert.is(back.replace(/ /g, ''), tok.clean(text).replace(/ /g, ''), JSON.stringify(text));
  }
  assert.is(tok.decode(tok.encode('a photo of a cat.')), 'a photo of a cat . ');
  // A cut UTF-8 sequence decodes to U+FFFD, as Python's errors='replace' does.
  const eAcute = tok.vocabulary().get(bytesToUnicode().symbols[0xc3]!)!;
  assert.is(tok.decode([eAcute]), '\ufffd');
  const row = tok.tokenize('Hello World').ids;
  assert.is(tok.decode(row, { skipSpecial: true }), 'hello world ');
  assert.ok(tok.decode(row).startsWith('<start_of_text>hello world <end_of_text>!'));
});

test('truncation keeps the end token last; rows are zero-padded', () => {
  const long = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
  const ids = tok.encode(long);
  assert.ok(ids.length > 200);
  const row = Array.from(tok.tokenize(long).ids);
  assert.is(row.length, 77);
  assert.equal(row, [49406, ...ids.slice(0, 75), 49407]);

  const three = tok.encode('red green blue');
  assert.is(three.length, 3);
  assert.equal(Array.from(tok.tokenize('red green blue', 2).ids), [49406, 49407]);
  assert.equal(Array.from(tok.tokenize('red green blue', 3).ids), [49406, three[0], 49407]);
  assert.equal(Array.from(tok.tokenize('red green blue', 4).ids), [49406, three[0], three[1], 49407]);
  assert.equal(Array.from(tok.tokenize('red green blue', 5).ids), [49406, ...three, 49407]);
  assert.equal(Array.from(tok.tokenize('red green blue', 6).ids), [49406, ...three, 49407, 0]);

  const batch = tok.tokenize(['a cat', '', 'red green blue'], 8);
  assert.equal(batch.shape, [3, 8]);
  assert.ok(batch.ids instanceof Int32Array);
  assert.equal(Array.from(batch.ids), [
    ...rowOf([49406, ...tok.encode('a cat'), 49407], 8),
    ...rowOf([49406, 49407], 8),
    ...rowOf([49406, ...three, 49407], 8),
  ]);
  assert.equal(tokenize('a cat').shape, [1, 77]);
});

test('cleaning follows Python: html.unescape twice, its whitespace, lower-case, ftfy-like fixes', () => {
  const unescaped: Array<[string, string]> = [
    ['&ampx', '&x'],
    ['&amp', '&'],
    ['&notit;', '\u00acit;'],
    ['&notin;', '\u2209'],
    ['&Amp;', '&Amp;'],
    ['&copy2', '\u00a92'],
    ['&#65;&#x41&#X42;', 'AAB'],
    ['&#128;&#150;', '\u20ac\u2013'],
    ['&#0;', '\ufffd'],
    ['&#1;', ''],
    ['&#xD800;&#x110000;&#99999999999999999999;', '\ufffd\ufffd\ufffd'],
    ['&lang;&foo;&', '\u27e8&foo;&'],
  ];
  for (const [input, want] of unescaped) assert.is(htmlUnescape(input), want, input);
  assert.is(cleanText('&amp;lt;b&amp;gt; Tom &amp;amp; Jerry', false), '<b> tom & jerry');
  // U+001C and U+0085 are whitespace to Python, U+FEFF is not (JavaScript's \s says the opposite).
  assert.is(cleanText('a\u001cb\u0085c\ufeffd\u3000\u2003 E\t\n', false), 'a b c\ufeffd e');
  assert.is(basicTextFix('\u201cit\u2019s\u201d \ufb01ne \uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33 it\x92s e\u0301'), '"it\'s" fine LOUD NOISES it\'s \u00e9');
  assert.is(basicTextFix('\x1b[36;44mblue\x1b[0m\u200b\ufeff\x07'), 'blue\u200b');
  assert.is(basicTextFix('lone \ud800 half'), 'lone \ufffd half');
  assert.equal(tok.encode('it\u2019s'), tok.encode("it's"));
  const raw = ClipTokenizer.fromBpeFile(defaultBpePath(), { fixText: false });
  assert.not.equal(raw.encode('it\u2019s'), raw.encode("it's"));
  assert.equal(raw.encode('a photo of a cat.'), tok.encode('a photo of a cat.'));
});

test('the word cache never changes ids', () => {
  const texts = [...SAMPLES, Array.from({ length: 60 }, (_, i) => `token${i % 17} x${i}`).join(' ')];
  const want = tok.tokenize(texts).ids;
  for (const cacheSize of [0, 2]) {
    const t = ClipTokenizer.fromBpeFile(defaultBpePath(), { cacheSize });
    assert.equal(t.tokenize(texts).ids, want, `cacheSize ${cacheSize}`);
    assert.equal(t.tokenize(texts).ids, want, `cacheSize ${cacheSize}, second pass`);
  }
});

test('vocab.json + merges.txt and tokenizer.json give the same ids', () => {
  const vocab = Object.fromEntries(tok.vocabulary());
  const merges = tok.mergeList();
  writeFileSync(join(tmp, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(tmp, 'merges.txt'), '#version: 0.2\n' + merges.map((m) => m.join(' ')).join('\n') + '\n');
  const want = tok.tokenize(SAMPLES).ids;
  const fromPair = ClipTokenizer.fromVocabAndMerges(join(tmp, 'vocab.json'), join(tmp, 'merges.txt'));
  assert.equal(fromPair.tokenize(SAMPLES).ids, want);

  const model = { type: 'BPE', vocab, merges: merges.map((m) => m.join(' ')), end_of_word_suffix: '</w>' };
  writeFileSync(join(tmp, 'tokenizer.json'), JSON.stringify({ version: '1.0', model }));
  assert.equal(ClipTokenizer.fromTokenizerJson(join(tmp, 'tokenizer.json')).tokenize(SAMPLES).ids, want);
  assert.equal(ClipTokenizer.fromDirectory(tmp).tokenize(SAMPLES).ids, want);
  writeFileSync(join(tmp, 'pairs.json'), JSON.stringify({ model: { ...model, merges } }));
  assert.equal(ClipTokenizer.fromTokenizerJson(join(tmp, 'pairs.json')).tokenize(SAMPLES).ids, want);

  // Hubs name the special tokens <|startoftext|> and <|endoftext|>.
  const hub = { ...vocab };
  delete hub['<start_of_text>'];
  delete hub['<end_of_text>'];
  hub['<|startoftext|>'] = 49406;
  hub['<|endoftext|>'] = 49407;
  writeFileSync(join(tmp, 'hub-vocab.json'), JSON.stringify(hub));
  const hubTok = ClipTokenizer.fromVocabAndMerges(join(tmp, 'hub-vocab.json'), join(tmp, 'merges.txt'));
  assert.is(hubTok.sotTokenId, 49406);
  assert.is(hubTok.eotTokenId, 49407);
  assert.equal(hubTok.encode('a <|endoftext|> b'), [...tok.encode('a'), 49407, ...tok.encode('b')]);
  assert.equal(hubTok.tokenize(SAMPLES.slice(0, 7)).ids, tok.tokenize(SAMPLES.slice(0, 7)).ids);
});

test('a smaller merge list in the OpenCLIP form still tokenizes', () => {
  const merges = tok.mergeList().slice(0, 1000);
  const path = join(tmp, 'small_vocab.txt');
  writeFileSync(path, 'small vocab\n' + merges.map((m) => m.join(' ')).join('\n') + '\n');
  const small = ClipTokenizer.fromBpeFile(path);
  assert.is(small.vocabSize, 512 + 1000 + 2);
  assert.is(small.sotTokenId, 1512);
  const ids = small.encode('a photograph of an extraordinary cat');
  assert.ok(ids.length > tok.encode('a photograph of an extraordinary cat').length);
  assert.ok(ids.every((id) => id < 1512));
  assert.is(small.decode(ids), 'a photograph of an extraordinary cat ');
});

test('bad inputs and corrupt files throw errors that say what was wrong', () => {
  throwsShaped(() => tok.tokenize(5 as unknown as string), /tokenize: expected a string or an array of strings for texts, got 5 of type number/);
  throwsShaped(() => tok.tokenize(['a', null as unknown as string]), /expected a string for texts\[1\], got null/);
  throwsShaped(() => tok.tokenize('a', 1), /expected an integer >= 2 for contextLength, got 1 of type number/);
  throwsShaped(() => tok.tokenize('a', 2.5), /for contextLength, got 2.5/);
  throwsShaped(() => tok.encode(undefined as unknown as string), /encode: expected a string for text, got undefined/);
  throwsShaped(() => tok.decode([1, -1]), /decode: expected a token id .* for ids\[1\], got -1/);
  throwsShaped(() => tok.decode([49408]), /for ids\[0\], got 49408/);
  throwsShaped(() => ClipTokenizer.fromBpeFile(defaultBpePath(), { contextLength: 0 }), /ClipTokenizer: expected an integer >= 2 for contextLength/);

  const file = (name: string, data: string | Uint8Array): string => {
    writeFileSync(join(tmp, name), data);
    return join(tmp, name);
  };
  throwsShaped(() => ClipTokenizer.fromBpeFile(join(tmp, 'missing.txt.gz')), /expected a readable file for path, got '.*missing\.txt\.gz' \(ENOENT/);
  const gz = readFileSync(defaultBpePath());
  throwsShaped(() => ClipTokenizer.fromBpeFile(file('cut.txt.gz', gz.subarray(0, gz.length >> 1))), /expected a complete gzip file for path/);
  throwsShaped(() => ClipTokenizer.fromBpeFile(file('bad-line.txt', 'header\ni n\nt h e\n')), /expected a merge of two symbols 'a b' for line 3 of .*, got 't h e'/);
  throwsShaped(() => ClipTokenizer.fromBpeFile(file('empty.txt.gz', new Uint8Array(0))), /expected at least one merge line for path, got none in/);
  throwsShaped(() => ClipTokenizer.fromBpeFile(file('binary.txt', new Uint8Array([0x68, 0x0a, 0xff, 0xfe, 0x20, 0x41]))), /expected UTF-8 text for path/);
  throwsShaped(() => ClipTokenizer.fromVocabAndMerges(file('v.json', '{"a": 1,'), join(tmp, 'merges.txt')), /expected JSON for path/);
  throwsShaped(() => ClipTokenizer.fromVocabAndMerges(file('v2.json', '[1, 2]'), join(tmp, 'merges.txt')), /expected an object of token -> id for vocab \('.*v2\.json'\), got an array of length 2/);
  throwsShaped(() => ClipTokenizer.fromVocabAndMerges(file('v3.json', '{"a": 0, "<start_of_text>": 1, "<end_of_text>": 2}'), join(tmp, 'merges.txt')), /expected an entry '\u0100' \(byte 0x00\) for vocab, got none/);
  const vocab = Object.fromEntries(tok.vocabulary());
  delete vocab['in'];
  throwsShaped(() => ClipTokenizer.fromVocabAndMerges(file('v4.json', JSON.stringify(vocab)), join(tmp, 'merges.txt')), /expected an entry 'in' \(the result of merges\[0\]\) for vocab, got none/);
  throwsShaped(() => ClipTokenizer.fromTokenizerJson(file('wp.json', JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }))), /fromTokenizerJson: expected 'BPE' for model.type, got 'WordPiece' of type string/);
  throwsShaped(() => ClipTokenizer.fromTokenizerJson(file('nomodel.json', '{"version": "1.0"}')), /expected an object \(the tokenizer model\) for model, got undefined/);
  throwsShaped(() => ClipTokenizer.fromTokenizerJson(file('nomerges.json', '{"model": {"vocab": {}}}')), /expected an array of merges \(a BPE model\) for model.merges, got undefined/);
  throwsShaped(() => ClipTokenizer.fromDirectory(join(tmp, 'nowhere')), /expected tokenizer.json, vocab.json \+ merges.txt or bpe_simple_vocab_16e6.txt.gz for dir/);
});

const reduce = suite('text reductions (CLIPA)');

// Every word here is one BPE token, and no two are the same, so order is visible in the ids.
const CAPTION = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen';
const WORDS = tok.encode(CAPTION);

function content(batch: { ids: Int32Array; shape: [number, number] }, row = 0): number[] {
  const [, ctx] = batch.shape;
  const r = Array.from(batch.ids.subarray(row * ctx, (row + 1) * ctx));
  assert.is(r[0], tok.sotTokenId);
  return r.slice(1, r.indexOf(tok.eotTokenId));
}

function isSubsequence(sub: number[], of: number[]): boolean {
  let j = 0;
  for (const x of of) if (j < sub.length && sub[j] === x) j++;
  return j === sub.length;
}

reduce('every strategy keeps contextLength - 2 tokens and ends with the end token', () => {
  assert.is(WORDS.length, 15);
  assert.is(new Set(WORDS).size, 15);
  for (const strategy of ['truncate', 'random', 'shuffle', 'block', 'simple', 'syntax'] as TextReduction[]) {
    const batch = new TextReducer(tok, strategy, { contextLength: 10, seed: 3 }).tokenize([CAPTION, 'a cat']);
    assert.equal(batch.shape, [2, 10]);
    assert.is(batch.ids[9], tok.eotTokenId, strategy);
    assert.is(content(batch).length, 8, strategy);
    assert.ok(content(batch).every((id) => WORDS.includes(id)), strategy);
    assert.equal(content(batch, 1), tok.encode('a cat'), strategy);
    assert.equal(Array.from(batch.ids.subarray(14)), [0, 0, 0, 0, 0, 0], strategy);
  }
});

reduce('truncate, random, shuffle and block select as they should', () => {
  const run = (s: TextReduction, seed: number): number[] => content(new TextReducer(tok, s, { contextLength: 10, seed }).tokenize(CAPTION));
  assert.equal(run('truncate', 0), WORDS.slice(0, 8));
  let shuffledOutOfOrder = false;
  for (let seed = 0; seed < 20; seed++) {
    const random = run('random', seed);
    assert.ok(isSubsequence(random, WORDS), `random keeps order (seed ${seed})`);
    const shuffled = run('shuffle', seed);
    assert.is(new Set(shuffled).size, 8);
    shuffledOutOfOrder ||= !isSubsequence(shuffled, WORDS);
    const block = run('block', seed);
    const start = WORDS.indexOf(block[0]!);
    assert.equal(block, WORDS.slice(start, start + 8), `block is contiguous (seed ${seed})`);
    assert.equal(run('simple', seed), block);
  }
  assert.ok(shuffledOutOfOrder);
  const first = content(new TextReducer(tok, 'block', { contextLength: 10, random: () => 0 }).tokenize(CAPTION));
  assert.equal(first, WORDS.slice(0, 8));
  const last = content(new TextReducer(tok, 'block', { contextLength: 10, random: () => 0.999999 }).tokenize(CAPTION));
  assert.equal(last, WORDS.slice(7));
});

reduce('a seed fixes the draws; successive batches differ', () => {
  for (const strategy of ['random', 'shuffle', 'block'] as TextReduction[]) {
    const a = new TextReducer(tok, strategy, { contextLength: 6, seed: 42 });
    const b = new TextReducer(tok, strategy, { contextLength: 6, seed: 42 });
    const batches = [a.tokenize([CAPTION, CAPTION]), a.tokenize([CAPTION, CAPTION])];
    assert.equal(b.tokenize([CAPTION, CAPTION]).ids, batches[0]!.ids, strategy);
    assert.equal(b.tokenize([CAPTION, CAPTION]).ids, batches[1]!.ids, strategy);
    const other = new TextReducer(tok, strategy, { contextLength: 6, seed: 43 }).tokenize([CAPTION, CAPTION]);
    assert.ok(!batches[0]!.ids.every((v, i) => v === batches[1]!.ids[i]) || !other.ids.every((v, i) => v === batches[0]!.ids[i]), strategy);
  }
});

reduce('syntax masking keeps nouns, then adjectives, then verbs, in text order', () => {
  const text = 'a small red dog runs quickly on the green grass';
  assert.is(syntaxMask(text, 2), 'dog grass');
  assert.is(syntaxMask(text, 4), 'small red dog grass');
  assert.is(syntaxMask(text, 5), 'small red dog green grass');
  assert.is(syntaxMask(text, 6), 'small red dog runs green grass');
  assert.is(syntaxMask(text, 100), text);
  assert.is(syntaxMask('', 5), '');
  const batch = new TextReducer(tok, 'syntax', { contextLength: 7 }).tokenize(text);
  assert.is(tok.decode(batch.ids, { skipSpecial: true }), 'small red dog green grass ');
  assert.equal(Array.from(new TextReducer(tok, 'syntax', { contextLength: 3 }).tokenize(text).ids), [49406, ...tok.encode('dog'), 49407]);
});

reduce('reducer arguments are checked', () => {
  throwsShaped(() => new TextReducer(tok, 'bogus' as TextReduction), /TextReducer: expected 'truncate' \| .* for strategy, got 'bogus' of type string/);
  throwsShaped(() => new TextReducer(tok, 'random', { contextLength: 1 }), /expected an integer >= 2 for options.contextLength, got 1/);
  throwsShaped(() => new TextReducer(tok, 'random', { seed: 0.5 }), /expected an integer for options.seed, got 0.5/);
  throwsShaped(() => new TextReducer(tok, 'random').tokenize([CAPTION, 7 as unknown as string]), /expected a string for texts\[1\], got 7/);
  throwsShaped(() => syntaxMask('a b', -1), /syntaxMask: expected a non-negative integer for keep, got -1/);
});

test.run();
reduce.run();
