// Tokenizer throughput: texts per second of the CLIP tokenizer on captions this script writes
// itself (seeded), with the word cache warm and with it off (every piece through BPE), and of
// CLIPA's reductions. Where python3 can import open_clip, open_clip.tokenize runs on the same
// captions; its ids must equal ours before its time is reported.
//
// Run: node --import tsx bench/tokenizer.bench.ts
// Writes bench/results/<date>-cpu-tokenizer.json.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { TextReducer } from '../lib/data/text_reduction.js';
import { ClipTokenizer, defaultBpePath } from '../lib/data/tokenizer.js';

const here = dirname(fileURLToPath(import.meta.url));
const BATCH = 1024;
const CONTEXT = 77;

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Web-caption-like text: templates, a few hundred words, numbers, entities, accents, rare tokens. */
function captions(n: number, seed: number): string[] {
  const rnd = mulberry32(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const nouns = ('dog cat horse bird car bicycle house tree mountain river beach city street woman man child ' +
    'table chair kitchen garden flower sunset boat train airplane bridge forest lake road market shop ' +
    'guitar piano book laptop phone camera shoe dress jacket hat cup bottle plate pizza cake apple ' +
    'banana sandwich coffee wedding portrait landscape building tower castle church statue painting').split(' ');
  const adjectives = ('red blue green yellow black white small large old new beautiful vintage modern ' +
    'wooden bright dark cozy rustic snowy sunny colorful elegant tiny huge golden silver').split(' ');
  const verbs = 'sitting standing running walking playing lying flying parked floating hanging'.split(' ');
  const places = ('on the beach|in the park|at night|in the snow|near the river|on a table|in the city|' +
    'under a tree|in front of a building|at sunset').split('|');
  const templates = [
    (a: string, b: string) => `a photo of a ${a} ${b}`,
    (a: string, b: string) => `${a[0]!.toUpperCase()}${a.slice(1)} ${b} ${pick(verbs)} ${pick(places)}.`,
    (a: string, b: string) => `Stock Photo - ${a} ${b} ${pick(places)}, high resolution`,
    (a: string, b: string) => `${b} & ${pick(nouns)}: ${a} edition (${1 + Math.floor(rnd() * 2000)})`,
    (a: string, b: string) => `Close-up of a ${a} ${b} with a ${pick(adjectives)} ${pick(nouns)} ${pick(places)}`,
    (a: string, b: string) => `${a} ${b} &amp; ${pick(nouns)} | Free Shipping on orders over $${Math.floor(rnd() * 100)}`,
    (a: string, b: string) => `Café-style ${b}, ${a} and naïve — it's ${pick(adjectives)}!`,
    (a: string, b: string) => `${pick(adjectives).toUpperCase()} ${b.toUpperCase()} ${a} #${Math.floor(rnd() * 1e6).toString(36)}`,
  ];
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let text = pick(templates)(pick(adjectives), pick(nouns));
    // Some captions are paragraphs (and get truncated); some carry a rare token (cache miss).
    if (rnd() < 0.1) for (let k = 0; k < 6; k++) text += ' ' + pick(templates)(pick(adjectives), pick(nouns));
    if (rnd() < 0.1) text += ` sku-${Math.floor(rnd() * 36 ** 5).toString(36)}`;
    out.push(text);
  }
  return out;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

interface OpenClipRun {
  textsPerSecond: number;
  ids: number[][];
}

/** open_clip.tokenize on the same texts, or why it could not run. */
function openClip(texts: string[]): OpenClipRun | string {
  const probe = spawnSync('python3', ['-c', 'import open_clip'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return 'python3 with open_clip is not available';
  const dir = mkdtempSync(join(tmpdir(), 'clipforge-tokenizer-bench-'));
  try {
    writeFileSync(join(dir, 'texts.json'), JSON.stringify(texts));
    const r = spawnSync('python3', [join(here, 'compare', 'tokenizer.py'), join(dir, 'texts.json'), join(dir, 'out.json'), String(BATCH)], {
      encoding: 'utf8',
    });
    if (r.status !== 0) return `bench/compare/tokenizer.py failed: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`;
    return JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as OpenClipRun;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const tok = ClipTokenizer.fromBpeFile(defaultBpePath());
  const loadMs = performance.now() - t0;
  const cold = ClipTokenizer.fromBpeFile(defaultBpePath(), { cacheSize: 0 });
  const corpus = captions(16 * BATCH, 1234);
  const batches = Array.from({ length: 16 }, (_, i) => corpus.slice(i * BATCH, (i + 1) * BATCH));
  tok.tokenize(corpus, CONTEXT);

  const random = new TextReducer(tok, 'random', { contextLength: 32, seed: 1 });
  const syntax = new TextReducer(tok, 'syntax', { contextLength: 32 });
  syntax.tokenize(batches[0]!.slice(0, 8));

  let next = 0;
  const batch = (): string[] => batches[next++ % batches.length]!;
  const bench = new Bench({ time: 2000, warmup: true });
  bench
    .add('tokenize, word cache warm', () => void tok.tokenize(batch(), CONTEXT))
    .add('tokenize, no cache (BPE every piece)', () => void cold.tokenize(batch(), CONTEXT))
    .add("CLIPA 'random', context 32", () => void random.tokenize(batch()))
    .add("CLIPA 'syntax', context 32", () => void syntax.tokenize(batch()));
  await bench.run();

  const results = bench.tasks.map((task) => {
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`bench: expected task '${task.name}' to complete, got state '${r.state}'`);
    const medianMs = r.latency.p50;
    return { name: task.name, batch: BATCH, medianMs: +medianMs.toFixed(3), textsPerSecond: Math.round(BATCH / (medianMs / 1000)) };
  });

  const reference = openClip(corpus);
  let openClipResult: { textsPerSecond: number; ratio: number } | null = null;
  let openClipNote = typeof reference === 'string' ? reference : '';
  if (typeof reference !== 'string') {
    const ours = tok.tokenize(corpus, CONTEXT).ids;
    const mismatch = reference.ids.findIndex((row, i) => row.some((v, j) => v !== ours[i * CONTEXT + j]));
    if (mismatch >= 0) {
      openClipNote = `ids differ from open_clip on text ${mismatch}: ${JSON.stringify(corpus[mismatch])}`;
    } else {
      openClipResult = { textsPerSecond: Math.round(reference.textsPerSecond), ratio: +(results[0]!.textsPerSecond / reference.textsPerSecond).toFixed(2) };
    }
  }

  console.log(`CLIP tokenizer, batches of ${BATCH} captions, context ${CONTEXT} (load ${loadMs.toFixed(0)} ms)`);
  console.table(results.map((r) => ({ task: r.name, 'median ms / batch': r.medianMs, 'texts/s': r.textsPerSecond })));
  if (openClipResult) console.log(`open_clip.tokenize: ${openClipResult.textsPerSecond} texts/s; ours (warm) is ${openClipResult.ratio}x`);
  else console.log(`open_clip comparison did not run: ${openClipNote}`);

  const date = new Date().toISOString();
  const record = {
    bench: 'tokenizer',
    commit: gitCommit(),
    date,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, platform: platform(), node: process.version },
    device: 'cpu',
    contextLength: CONTEXT,
    loadMs: +loadMs.toFixed(1),
    results,
    openClip: openClipResult ?? { skipped: openClipNote },
  };
  const outDir = join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const outPath = join(outDir, `${date.slice(0, 10)}-cpu-tokenizer.json`);
  writeFileSync(outPath, JSON.stringify(record, null, 2) + '\n');
  console.log(`wrote ${outPath}`);
}

await main();
