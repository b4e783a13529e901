#!/usr/bin/env node
// Rewrites a CUDA source file into C++ for the CPU emulator (native/emu/cuda_emu.h):
//   kernel<Args><<<grid, block, smem, stream>>>(a, b)
//     -> ::cf_emu::launch("kernel<Args>", &kernel<Args>, [&]() { kernel<Args>(a, b); }, grid, block, smem, stream)
//   __shared__ T name[N][M];        -> T (&name)[N][M] = ::cf_emu::shared<T[N][M]>("site", align);
//   extern __shared__ T name[];     -> T* name = ::cf_emu::dynamic_shared<T>();
//   __global__ void __launch_bounds__(N) k(...) {
//                                   -> __global__ void k(...) { ::cf_emu::launch_bounds(N);
// Line numbers are kept (a #line directive names the original file), so compiler errors and
// the emulator's reports point into native/cuda.
// Usage: node scripts/cuda-emu.mjs IN.cu OUT.cpp
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

function matchForward(text, open, openCh, closeCh) {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === openCh) depth++;
    else if (text[i] === closeCh && --depth === 0) return i;
  }
  throw new Error(`unbalanced ${openCh}${closeCh} from offset ${open}`);
}

// Start of the callee expression that ends just before `end` (an identifier, possibly
// qualified, possibly with template arguments).
function calleeStart(text, end) {
  let i = end;
  while (i > 0 && /\s/.test(text[i - 1])) i--;
  if (text[i - 1] === '>') {
    let depth = 0;
    for (i = i - 1; i >= 0; i--) {
      if (text[i] === '>') depth++;
      else if (text[i] === '<' && --depth === 0) break;
    }
  }
  while (i > 0 && /[\w:]/.test(text[i - 1])) i--;
  return i;
}

const newlines = (s) => '\n'.repeat((s.match(/\n/g) ?? []).length);

function rewriteLaunches(text) {
  let out = '';
  let from = 0;
  for (let at = text.indexOf('<<<'); at >= 0; at = text.indexOf('<<<', from)) {
    const start = calleeStart(text, at);
    const configEnd = text.indexOf('>>>', at);
    let argsOpen = configEnd + 3;
    while (/\s/.test(text[argsOpen])) argsOpen++;
    if (text[argsOpen] !== '(') throw new Error(`no argument list after the launch at offset ${at}`);
    const argsClose = matchForward(text, argsOpen, '(', ')');
    const callee = text.slice(start, at).trim();
    const config = text.slice(at + 3, configEnd).trim();
    const args = text.slice(argsOpen + 1, argsClose);
    // Only a launch that names the template arguments has an address to look attributes up by.
    const fn = callee.includes('<') ? `reinterpret_cast<const void*>(&${callee})` : 'nullptr';
    const original = text.slice(start, argsClose + 1);
    out += text.slice(from, start);
    out += `::cf_emu::launch(${JSON.stringify(callee)}, ${fn}, [&]() { ${callee}(${args.replace(/\n/g, ' ')}); }, ${config.replace(/\n/g, ' ')})`;
    out += newlines(original);
    from = argsClose + 1;
  }
  return out + text.slice(from);
}

// Splits "a[1][2], b[3]" at commas outside brackets and parentheses.
function splitDeclarators(s) {
  const parts = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if ('[('.includes(ch)) depth++;
    if ('])'.includes(ch)) depth--;
    if (ch === ',' && depth === 0) {
      parts.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  parts.push(cur.trim());
  return parts;
}

function rewriteShared(text, file) {
  text = text.replace(/extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([^;]*?)\s*(\w+)\s*\[\s*\]\s*;/g,
    (_, type, name) => `${type}* ${name} = ::cf_emu::dynamic_shared<${type}>();`);
  return text.replace(/__shared__\s+(?:__align__\((\d+)\)\s+)?([^;]*);/g, (whole, align, decl, offset) => {
    const line = text.slice(0, offset).split('\n').length;
    const first = /^(.*?)\s*\b(\w+)\s*((?:\[[^\]]*\]\s*)*)(,|$)/s.exec(decl);
    if (!first) throw new Error(`${file}:${line}: cannot read the __shared__ declaration "${whole}"`);
    const type = first[1];
    const declarators = splitDeclarators(decl.slice(type.length));
    const defs = declarators.map((d) => {
      const m = /^(\w+)\s*((?:\[[^\]]*\]\s*)*)$/.exec(d);
      if (!m) throw new Error(`${file}:${line}: cannot read the __shared__ declarator "${d}"`);
      const [, name, dims] = m;
      const site = JSON.stringify(`${file}:${line}:${name}`);
      const ref = dims ? `${type} (&${name})${dims.trim()}` : `${type}& ${name}`;
      return `${ref} = ::cf_emu::shared<${type}${dims.trim()}>(${site}, ${align ?? 0});`;
    });
    return defs.join(' ') + newlines(whole);
  });
}

// The bound moves into the kernel's body, where the kernel's template parameters it may
// name are in scope, as a check that the launch has at most that many threads.
function rewriteLaunchBounds(text) {
  let out = '';
  let from = 0;
  const key = '__launch_bounds__(';
  for (let at = text.indexOf(key, from); at >= 0; at = text.indexOf(key, from)) {
    const close = matchForward(text, at + key.length - 1, '(', ')');
    const maxThreads = splitDeclarators(text.slice(at + key.length, close))[0];
    let depth = 0;
    let body = close + 1;
    for (; body < text.length; body++) {
      if (text[body] === '(') depth++;
      else if (text[body] === ')') depth--;
      else if (text[body] === '{' && depth === 0) break;
    }
    out += text.slice(from, at) + text.slice(close + 1, body + 1) + ` ::cf_emu::launch_bounds(${maxThreads});`;
    from = body + 1;
  }
  return out + text.slice(from);
}

export function translate(source, file) {
  const cpp = rewriteShared(rewriteLaunches(rewriteLaunchBounds(source)), basename(file));
  return `#include "cuda_emu.h"\n#line 1 ${JSON.stringify(file)}\n${cpp}`;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node scripts/cuda-emu.mjs IN.cu OUT.cpp');
    process.exit(2);
  }
  mkdirSync(dirname(output), { recursive: true });
  writeFileSync(output, translate(readFileSync(input, 'utf8'), resolve(input)));
}
