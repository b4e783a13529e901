// Prints the CPU-only addon's sources for binding.gyp (gyp has no glob of its own).
const fs = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..');
const files = [];
for (const dir of ['native/cpu', 'native/addon']) {
  for (const f of fs.readdirSync(path.join(root, dir)).sort()) {
    if (f.endsWith('.cpp')) files.push(`${dir}/${f}`);
  }
}
console.log(files.join(' '));
