// The image-folder eval dataset on folders the test writes: torchvision's ordering and labels,
// names files in each accepted form (and the shared ImageNet one), and clear errors.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_ZEROSHOT_TEMPLATES, loadImageFolder } from '../../lib/data/image_folder.js';
import { throwsShaped } from '../support/helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'clipforge-image-folder-'));
const test = suite('image folder');

/** loadImageFolder's errors all begin this way. */
const throwsWith = (fn: () => unknown, pattern: RegExp): void => throwsShaped(fn, pattern, /^loadImageFolder: expected /);

async function writeImage(path: string, format: 'png' | 'jpeg' | 'webp', rgb: [number, number, number]): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  const pixels = Buffer.alloc(8 * 8 * 3);
  for (let i = 0; i < pixels.length; i += 3) pixels.set(rgb, i);
  await sharp(pixels, { raw: { width: 8, height: 8, channels: 3 } }).toFormat(format).toFile(path);
}

/** A folder of three classes (out of order on disk), one with a nested directory. */
async function makeFolder(name: string): Promise<string> {
  const dir = join(tmp, name);
  await writeImage(join(dir, 'zebra_fish', 'b.png'), 'png', [200, 0, 0]);
  await writeImage(join(dir, 'zebra_fish', 'a.JPG'), 'jpeg', [0, 200, 0]);
  await writeImage(join(dir, 'apple', 'sub', 'c.webp'), 'webp', [0, 0, 200]);
  await writeImage(join(dir, 'apple', 'x.jpeg'), 'jpeg', [9, 9, 9]);
  await writeImage(join(dir, 'mango', 'm.png'), 'png', [90, 90, 9]);
  writeFileSync(join(dir, 'mango', 'notes.txt'), 'not an image');
  writeFileSync(join(dir, 'README'), 'a stray file beside the class directories');
  return dir;
}

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('classes are sorted directories, files walked recursively in sorted order', async () => {
  const dir = await makeFolder('plain');
  const ds = loadImageFolder(dir);
  assert.equal(ds.classDirs, ['apple', 'mango', 'zebra_fish']);
  assert.equal(ds.classNames, ['apple', 'mango', 'zebra fish']);
  assert.equal(ds.templates, DEFAULT_ZEROSHOT_TEMPLATES);
  assert.equal(
    ds.entries.map((e) => [relative(dir, e.path), e.label]),
    [
      // torchvision walks (dir, files) pairs in sorted order of the directory path.
      ['apple/x.jpeg', 0],
      ['apple/sub/c.webp', 0],
      ['mango/m.png', 1],
      ['zebra_fish/a.JPG', 2],
      ['zebra_fish/b.png', 2],
    ],
  );
  assert.is(ds.length, 5);
});

test('names files: JSON with templates, prefixed keys, a JSON array, one name per line', async () => {
  const dir = await makeFolder('named');
  const json = join(tmp, 'names.json');
  writeFileSync(json, JSON.stringify({ classnames: ['red apple', 'ripe mango', 'zebrafish'], templates: ['a photo of the {}.', 'itap of a {}.'] }));
  const ds = loadImageFolder(dir, { classNamesFile: json });
  assert.equal(ds.classNames, ['red apple', 'ripe mango', 'zebrafish']);
  assert.equal(ds.templates, ['a photo of the {}.', 'itap of a {}.']);

  const prefixed = join(tmp, 'prefixed.json');
  writeFileSync(prefixed, JSON.stringify({ fruit_classnames: ['a', 'b', 'c'], simple_fruit_templates: ['{}!'], openai_fruit_templates: ['a {}.', 'the {}.'] }));
  assert.equal(loadImageFolder(dir, { classNamesFile: prefixed }).templates, ['a {}.', 'the {}.']);

  const array = join(tmp, 'array.json');
  writeFileSync(array, JSON.stringify(['x', 'y', 'z']));
  assert.equal(loadImageFolder(dir, { classNamesFile: array }).classNames, ['x', 'y', 'z']);

  const lines = join(tmp, 'names.txt');
  writeFileSync(lines, 'granny smith\r\n\nalphonso\nzebra danio\n');
  const fromLines = loadImageFolder(dir, { classNamesFile: lines });
  assert.equal(fromLines.classNames, ['granny smith', 'alphonso', 'zebra danio']);
  assert.equal(fromLines.templates, DEFAULT_ZEROSHOT_TEMPLATES);
});

test("the shared ImageNet names file gives 1000 names and OpenAI's 80 templates", () => {
  const file = join(root, '..', 'shared', 'data', 'zeroshot', 'imagenet.json');
  if (!existsSync(file)) {
    console.log(`ImageNet names file test did not run: ${file} not found`);
    return;
  }
  const dir = join(tmp, 'imagenet');
  for (let c = 0; c < 1000; c++) {
    const classDir = join(dir, `n${String(c).padStart(8, '0')}`);
    mkdirSync(classDir, { recursive: true });
    writeFileSync(join(classDir, 'img.jpg'), 'bytes');
  }
  const ds = loadImageFolder(dir, { classNamesFile: file });
  assert.is(ds.classNames.length, 1000);
  assert.is(ds.classNames[1], 'goldfish');
  assert.is(ds.templates.length, 80);
  assert.is(ds.entries[999]!.label, 999);
});

test('bad folders and names files are clear errors', async () => {
  throwsWith(() => loadImageFolder(join(tmp, 'missing')), /readable directory for root, got '.*missing' \(ENOENT\)/);
  const flat = join(tmp, 'flat');
  await writeImage(join(flat, 'a.png'), 'png', [1, 2, 3]);
  throwsWith(() => loadImageFolder(flat), /class sub-directories in root, got none/);

  const emptyClass = await makeFolder('empty-class');
  mkdirSync(join(emptyClass, 'durian'));
  writeFileSync(join(emptyClass, 'durian', 'readme.md'), 'no images here');
  throwsWith(() => loadImageFolder(emptyClass), /in every class directory .* got none in durian/);

  const broken = await makeFolder('broken');
  symlinkSync(join(tmp, 'nowhere.png'), join(broken, 'mango', 'gone.png'));
  throwsWith(() => loadImageFolder(broken), /readable image files .* got 1 unreadable: .*gone\.png \(ENOENT\)/);

  const dir = await makeFolder('mismatch');
  const two = join(tmp, 'two.txt');
  writeFileSync(two, 'one\ntwo\n');
  throwsWith(() => loadImageFolder(dir, { classNamesFile: two }), /expected 3 class names .* got 2/);
  const bad = join(tmp, 'bad.json');
  writeFileSync(bad, '{"classnames": [');
  throwsWith(() => loadImageFolder(dir, { classNamesFile: bad }), /valid JSON .* parse error/);
  const noKey = join(tmp, 'nokey.json');
  writeFileSync(noKey, JSON.stringify({ names: ['a', 'b', 'c'] }));
  throwsWith(() => loadImageFolder(dir, { classNamesFile: noKey }), /'classnames' list .* got keys names/);
  const noSlot = join(tmp, 'noslot.json');
  writeFileSync(noSlot, JSON.stringify({ classnames: ['a', 'b', 'c'], templates: ['a photo'] }));
  throwsWith(() => loadImageFolder(dir, { classNamesFile: noSlot }), /contain '\{\}', got 'a photo'/);
  throwsWith(() => loadImageFolder(dir, { classNamesFile: join(tmp, 'absent.txt') }), /readable file for options\.classNamesFile, got .*absent\.txt.* \(ENOENT\)/);
  throwsWith(() => loadImageFolder('' as string), /a directory path for root, got '' of type string/);
  throwsWith(() => loadImageFolder(dir, { classNamesFile: 3 as unknown as string }), /options\.classNamesFile, got 3 of type number/);
});

test.run();
