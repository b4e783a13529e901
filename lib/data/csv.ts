// A CSV/TSV file of (image path, caption) rows as an indexed source, as OpenCLIP's CsvDataset
// reads it: a header row names the columns, `csvImgKey` (default 'filepath') and
// `csvCaptionKey` (default 'title') pick two of them, `csvSeparator` defaults to a tab.
// Fields may be quoted ("a, b", "say ""hi""", line breaks inside quotes); relative image
// paths are taken from the CSV's directory. The table is read when the source opens; each
// image file is read when its sample is asked for.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { argError } from '../tensor/check.js';
import type { IndexedSource, RawSample } from './source.js';

export interface CsvOptions {
  /** Path of the CSV file. */
  path: string;
  /** Column of image paths (`--csv-img-key`). Default 'filepath'. */
  csvImgKey?: string;
  /** Column of captions (`--csv-caption-key`). Default 'title'. */
  csvCaptionKey?: string;
  /** Field separator (`--csv-separator`). Default '\t'. */
  csvSeparator?: string;
}

/**
 * Rows of `text` split on `separator`, with double-quoted fields ("" inside quotes is a quote;
 * separators and line breaks inside quotes are kept). `line` of each row is where it starts.
 */
export function parseCsv(text: string, separator = ','): { fields: string[]; line: number }[] {
  const op = 'parseCsv';
  if (typeof text !== 'string') throw argError(op, 'text', 'a string', text);
  if (typeof separator !== 'string' || separator.length !== 1 || separator === '"' || separator === '\n' || separator === '\r') {
    throw argError(op, 'separator', 'one character other than a quote or a line break', separator);
  }
  const rows: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let rowLine = 1;
  let quoted = false;
  let fieldStarted = false;
  const start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRow = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === '' && !fieldStarted)) rows.push({ fields, line: rowLine });
    fields = [];
    field = '';
    fieldStarted = false;
  };
  for (let i = start; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
    } else if (ch === '"' && field === '') {
      quoted = true;
      fieldStarted = true;
    } else if (ch === separator) {
      fields.push(field);
      field = '';
      fieldStarted = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else {
      field += ch;
      fieldStarted = true;
    }
  }
  if (quoted) throw new Error(`${op}: unterminated quoted field starting on line ${rowLine}`);
  if (field !== '' || fields.length > 0 || fieldStarted) endRow();
  return rows;
}

export interface CsvSource extends IndexedSource {
  readonly path: string;
  /** Absolute image path of row i (0 = the first row after the header). */
  imagePath(index: number): string;
  caption(index: number): string;
  get(index: number): Promise<RawSample>;
}

export function createCsvSource(options: CsvOptions): CsvSource {
  const op = 'createCsvSource';
  if (typeof options !== 'object' || options === null) throw argError(op, 'options', 'an object', options);
  if (typeof options.path !== 'string' || options.path === '') throw argError(op, 'options.path', 'a file path', options.path);
  const imgKey = options.csvImgKey ?? 'filepath';
  const captionKey = options.csvCaptionKey ?? 'title';
  const separator = options.csvSeparator ?? '\t';
  if (typeof imgKey !== 'string') throw argError(op, 'options.csvImgKey', 'a column name', imgKey);
  if (typeof captionKey !== 'string') throw argError(op, 'options.csvCaptionKey', 'a column name', captionKey);
  let text: string;
  try {
    text = readFileSync(options.path, 'utf8');
  } catch (e) {
    throw new Error(`${op}: cannot read ${options.path}: ${(e as Error).message}`);
  }
  let rows: { fields: string[]; line: number }[];
  try {
    rows = parseCsv(text, separator);
  } catch (e) {
    throw new Error(`${op}: ${options.path}: ${(e as Error).message}`);
  }
  if (rows.length === 0) throw new Error(`${op}: ${options.path} is empty (expected a header row)`);
  const header = rows[0]!.fields.map((h) => h.trim());
  const column = (key: string, flag: string): number => {
    const i = header.indexOf(key);
    if (i < 0) {
      const hint = header.length === 1 && text.includes(separator === '\t' ? ',' : '\t') ? ` (is csvSeparator ${JSON.stringify(separator)} right?)` : '';
      throw new Error(`${op}: expected a column '${key}' (${flag}) in ${options.path}, got columns ${header.map((h) => `'${h}'`).join(', ')}${hint}`);
    }
    return i;
  };
  const imgColumn = column(imgKey, 'csvImgKey');
  const captionColumn = column(captionKey, 'csvCaptionKey');
  const base = dirname(resolve(options.path));
  const paths: string[] = [];
  const captions: string[] = [];
  for (let r = 1; r < rows.length; r++) {
    const { fields, line } = rows[r]!;
    if (fields.length !== header.length) {
      throw new Error(`${op}: line ${line} of ${options.path} has ${fields.length} fields, the header ${header.length}`);
    }
    const p = fields[imgColumn]!;
    paths.push(isAbsolute(p) ? p : resolve(base, p));
    captions.push(fields[captionColumn]!);
  }
  const path = options.path;
  const checkIndex = (name: string, index: number): void => {
    if (!Number.isSafeInteger(index) || index < 0 || index >= paths.length) throw argError(`CsvSource.${name}`, 'index', `an integer in [0, ${paths.length - 1}]`, index);
  };
  return {
    kind: 'indexed',
    path,
    length: paths.length,
    imagePath(index: number): string {
      checkIndex('imagePath', index);
      return paths[index]!;
    },
    caption(index: number): string {
      checkIndex('caption', index);
      return captions[index]!;
    },
    async get(index: number): Promise<RawSample> {
      checkIndex('get', index);
      const file = paths[index]!;
      let image: Buffer;
      try {
        image = await readFile(file);
      } catch (e) {
        throw new Error(`CsvSource.get: cannot read image of row ${index} of ${path}: ${(e as Error).message}`);
      }
      return { key: file, image, caption: captions[index]! };
    },
  };
}
