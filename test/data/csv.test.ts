// CSV/TSV sources: quoting, separators, OpenCLIP's column keys and defaults, paths relative to
// the file, and the errors for missing columns, ragged rows and unreadable images.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createCsvSource, parseCsv } from '../../lib/data/csv.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipforge-csv-'));
const test = suite('csv');
test.after(() => rmSync(tmp, { recursive: true, force: true }));

test('parseCsv: quotes, doubled quotes, separators and line breaks inside quotes, CRLF, BOM', () => {
  const rows = parseCsv('\ufeffa,b,c\r\n1,"x, y","say ""hi"""\n2,"two\nlines",\n\n3,,"" \n');
  assert.equal(rows.map((r) => r.fields), [
    ['a', 'b', 'c'],
    ['1', 'x, y', 'say "hi"'],
    ['2', 'two\nlines', ''],
    ['3', '', ' '],
  ]);
  assert.equal(rows.map((r) => r.line), [1, 2, 3, 6]);
  assert.equal(parseCsv('p\tq\n"a\tb"\tc', '\t').map((r) => r.fields), [['p', 'q'], ['a\tb', 'c']]);
  assert.throws(() => parseCsv('a,b\n"open,1\n'), /parseCsv: unterminated quoted field starting on line 2/);
  assert.throws(() => parseCsv('a', '"'), /parseCsv: expected one character other than a quote or a line break for separator/);
});

test('default keys filepath/title with tabs; paths relative to the CSV; images read as bytes', async () => {
  const dir = join(tmp, 'set');
  mkdirSync(join(dir, 'img'), { recursive: true });
  writeFileSync(join(dir, 'img', 'a.jpg'), Buffer.from([1, 2, 3]));
  writeFileSync(join(dir, 'b.png'), Buffer.from([4, 5]));
  writeFileSync(join(dir, 'train.tsv'), `title\tfilepath\tignored\n"a cat, sitting"\timg/a.jpg\tx\nsecond\t${join(dir, 'b.png')}\ty\n`);
  const src = createCsvSource({ path: join(dir, 'train.tsv') });
  assert.is(src.length, 2);
  assert.is(src.imagePath(0), join(dir, 'img', 'a.jpg'));
  assert.is(src.caption(0), 'a cat, sitting');
  const s = await src.get(1);
  assert.equal([...(s.image as Uint8Array)], [4, 5]);
  assert.is(s.caption, 'second');
  assert.throws(() => src.caption(2), /CsvSource.caption: expected an integer in \[0, 1\] for index, got 2/);
});

test('custom keys and separator', async () => {
  const path = join(tmp, 'custom.csv');
  writeFileSync(path, 'url,text\nx.jpg,"hello, world"\n');
  const src = createCsvSource({ path, csvImgKey: 'url', csvCaptionKey: 'text', csvSeparator: ',' });
  assert.is(src.caption(0), 'hello, world');
  assert.is(src.imagePath(0), join(tmp, 'x.jpg'));
});

test('missing columns, ragged rows, missing files and unreadable images are named', async () => {
  const path = join(tmp, 'bad.csv');
  writeFileSync(path, 'filepath,caption\na.jpg,x\n');
  assert.throws(() => createCsvSource({ path }), /createCsvSource: expected a column 'filepath' \(csvImgKey\) in .*bad\.csv, got columns 'filepath,caption' \(is csvSeparator "\\t" right\?\)/);
  assert.throws(() => createCsvSource({ path, csvSeparator: ',' }), /expected a column 'title' \(csvCaptionKey\) in .*bad\.csv, got columns 'filepath', 'caption'/);
  writeFileSync(path, 'filepath,title\na.jpg,x\nb.jpg\n');
  assert.throws(() => createCsvSource({ path, csvSeparator: ',' }), /line 3 of .*bad\.csv has 1 fields, the header 2/);
  assert.throws(() => createCsvSource({ path: join(tmp, 'none.csv') }), /createCsvSource: cannot read .*none\.csv/);
  assert.throws(() => createCsvSource({ path: 3 } as never), /createCsvSource: expected a file path for options.path, got 3 of type number/);
  writeFileSync(path, 'filepath,title\nmissing.jpg,x\n');
  let message = '';
  await createCsvSource({ path, csvSeparator: ',' }).get(0).catch((e: Error) => (message = e.message));
  assert.match(message, /CsvSource.get: cannot read image of row 0 of .*bad\.csv: ENOENT.*missing\.jpg/);
});

test.run();
