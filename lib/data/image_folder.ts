// An image-folder dataset for zero-shot evaluation (`--imagenet-val DIR`), laid out as
// torchvision's ImageFolder reads it: DIR/<class>/**/<image>.{jpg,jpeg,png,webp}. Classes are
// the sub-directories in sorted order (label = position), files are walked recursively with
// directories and names sorted, so labels and order match torchvision's.
//
// Class names and prompt templates come from an optional names file:
//   - JSON {"classnames": [...], "templates": [...]}, or with prefixed keys as OpenCLIP's
//     zero-shot metadata has them ("imagenet_classnames", "openai_imagenet_templates", …),
//     or a bare JSON array of names;
//   - any other file: one class name per line (blank lines ignored).
// Without one, a class's name is its directory's name with underscores as spaces.
import { accessSync, constants, readdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { argError, describe } from '../tensor/check.js';

export const IMAGE_FOLDER_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

/** CLIP's basic prompt, used when the names file gives no templates. */
export const DEFAULT_ZEROSHOT_TEMPLATES: readonly string[] = ['a photo of a {}.'];

export interface ImageFolderEntry {
  path: string;
  label: number;
}

export interface ImageFolderOptions {
  /** Path of a names file (JSON or one name per line); see the file's header. */
  classNamesFile?: string;
}

export interface ImageFolderDataset {
  readonly root: string;
  /** The class directories' names, sorted; label i is classDirs[i]. */
  readonly classDirs: readonly string[];
  /** Human-readable class names for prompts, one per class directory. */
  readonly classNames: readonly string[];
  /** Prompt templates with '{}' for the class name. */
  readonly templates: readonly string[];
  readonly entries: readonly ImageFolderEntry[];
  readonly length: number;
}

const OP = 'loadImageFolder';

function systemReason(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

function listDir(dir: string, arg: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (e) {
    throw new Error(`${OP}: expected a readable directory for ${arg}, got '${dir}' (${systemReason(e)})`);
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Image files under dir, recursively: directories in sorted path order, names sorted within each. */
function walkImages(dir: string, arg: string): string[] {
  const groups: Array<{ dir: string; files: string[] }> = [];
  const visit = (d: string): void => {
    const files: string[] = [];
    for (const name of listDir(d, arg)) {
      const p = join(d, name);
      if (isDirectory(p)) visit(p);
      else if (IMAGE_FOLDER_EXTENSIONS.includes(extname(name).toLowerCase())) files.push(p);
    }
    groups.push({ dir: d, files });
  };
  visit(dir);
  groups.sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
  return groups.flatMap((g) => g.files);
}

function stringList(value: unknown, file: string, key: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string')) {
    throw new Error(`${OP}: expected a non-empty array of strings for '${key}' in classNamesFile '${file}', got ${describe(value)}`);
  }
  return value as string[];
}

/** The one key that is `exact` or ends with `_${suffix}`, preferring OpenAI's template list. */
function findKey(record: Record<string, unknown>, suffix: string): string | undefined {
  if (suffix in record) return suffix;
  const candidates = Object.keys(record).filter((k) => k.endsWith(`_${suffix}`));
  if (candidates.length <= 1) return candidates[0];
  const openai = candidates.filter((k) => k.startsWith('openai_'));
  if (openai.length === 1) return openai[0];
  throw new Error(`${OP}: expected one '${suffix}' list in the classNamesFile, got several: ${candidates.join(', ')}`);
}

function readNamesFile(file: string): { names: string[]; templates: string[] | undefined } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${OP}: expected a readable file for options.classNamesFile, got '${file}' (${systemReason(e)})`);
  }
  const trimmed = text.trimStart();
  if (!trimmed.startsWith('{') && !trimmed.startsWith('[')) {
    const names = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
    if (names.length === 0) throw new Error(`${OP}: expected one class name per line in classNamesFile '${file}', got an empty file`);
    return { names, templates: undefined };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${OP}: expected valid JSON in classNamesFile '${file}', got a parse error (${(e as Error).message})`);
  }
  if (Array.isArray(json)) return { names: stringList(json, file, '(top level)'), templates: undefined };
  if (typeof json !== 'object' || json === null) {
    throw new Error(`${OP}: expected a JSON object or array in classNamesFile '${file}', got ${describe(json)}`);
  }
  const record = json as Record<string, unknown>;
  const namesKey = findKey(record, 'classnames');
  if (namesKey === undefined) {
    throw new Error(`${OP}: expected a 'classnames' list in classNamesFile '${file}', got keys ${Object.keys(record).join(', ') || '(none)'}`);
  }
  const templatesKey = findKey(record, 'templates');
  const templates = templatesKey === undefined ? undefined : stringList(record[templatesKey], file, templatesKey);
  if (templates !== undefined) {
    const bad = templates.find((t) => !t.includes('{}'));
    if (bad !== undefined) throw new Error(`${OP}: expected every template in '${templatesKey}' of '${file}' to contain '{}', got '${bad}'`);
  }
  return { names: stringList(record[namesKey], file, namesKey), templates };
}

export function loadImageFolder(root: string, options: ImageFolderOptions = {}): ImageFolderDataset {
  if (typeof root !== 'string' || root === '') throw argError(OP, 'root', 'a directory path', root);
  if (typeof options !== 'object' || options === null) throw argError(OP, 'options', 'an object', options);
  const { classNamesFile } = options;
  if (classNamesFile !== undefined && (typeof classNamesFile !== 'string' || classNamesFile === '')) {
    throw argError(OP, 'options.classNamesFile', 'a file path', classNamesFile);
  }
  const dir = resolve(root);
  const classDirs = listDir(dir, 'root').filter((name) => isDirectory(join(dir, name)));
  if (classDirs.length === 0) throw new Error(`${OP}: expected class sub-directories in root, got none in '${dir}'`);

  const entries: ImageFolderEntry[] = [];
  const empty: string[] = [];
  classDirs.forEach((name, label) => {
    const files = walkImages(join(dir, name), `class directory '${name}'`);
    if (files.length === 0) empty.push(name);
    for (const path of files) entries.push({ path, label });
  });
  if (empty.length > 0) {
    throw new Error(
      `${OP}: expected at least one ${IMAGE_FOLDER_EXTENSIONS.join('/')} file in every class directory of '${dir}', got none in ${empty.slice(0, 5).join(', ')}${empty.length > 5 ? ` and ${empty.length - 5} more` : ''}`,
    );
  }
  const unreadable: string[] = [];
  for (const e of entries) {
    try {
      accessSync(e.path, constants.R_OK);
    } catch (err) {
      unreadable.push(`${e.path} (${systemReason(err)})`);
    }
  }
  if (unreadable.length > 0) {
    throw new Error(`${OP}: expected readable image files in '${dir}', got ${unreadable.length} unreadable: ${unreadable.slice(0, 3).join(', ')}${unreadable.length > 3 ? ', …' : ''}`);
  }

  let classNames = classDirs.map((d) => d.replace(/_/g, ' '));
  let templates: readonly string[] = DEFAULT_ZEROSHOT_TEMPLATES;
  if (classNamesFile !== undefined) {
    const file = readNamesFile(classNamesFile);
    if (file.names.length !== classDirs.length) {
      throw new Error(`${OP}: expected ${classDirs.length} class names (one per class directory in '${dir}') in classNamesFile '${classNamesFile}', got ${file.names.length}`);
    }
    classNames = file.names;
    if (file.templates !== undefined) templates = file.templates;
  }
  return { root: dir, classDirs, classNames, templates, entries, length: entries.length };
}

/**
 * The image folder as a data-loader source (for `createDataLoader({ source: { type: 'module',
 * export: 'createImageFolderSource', … } })`): sample i is entry i's file with its label and
 * an empty caption.
 */
export function createImageFolderSource(options: { root: string; classNamesFile?: string }): {
  length: number;
  get(index: number): Promise<{ key: string; image: Uint8Array; caption: string; label: number }>;
} {
  const folder = loadImageFolder(options?.root, options?.classNamesFile === undefined ? {} : { classNamesFile: options.classNamesFile });
  return {
    length: folder.length,
    async get(index: number) {
      const entry = folder.entries[index];
      if (!entry) throw argError('ImageFolderSource.get', 'index', `an integer in [0, ${folder.length - 1}]`, index);
      return { key: entry.path, image: new Uint8Array(await readFile(entry.path)), caption: '', label: entry.label };
    },
  };
}
