// .dev.vars for `npm run dev`: made on first start with random secrets, completed after an
// upgrade that added one. Two first starts at the same moment (two terminals, or tests that
// start dev servers side by side in a fresh clone) must end with one file that both read: the
// second used to read the first's half-written copy of the example, or write its own key over
// the one the first printed.
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Writes `content` to `file` whole or not at all. `replace`: over the file there (a rename);
 * otherwise only while none exists (a hard link, which fails when the name is taken: the file
 * there, made by a concurrent start, is kept).
 */
function writeWhole(file, content, { replace }) {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, content);
  try {
    if (replace) renameSync(temporary, file);
    else linkSync(temporary, file);
  } catch (error) {
    if (error.code === 'EEXIST') return;
    if (replace) throw error;
    // A file system without hard links: an exclusive create keeps the file there, if one is.
    try {
      writeFileSync(file, content, { flag: 'wx' });
    } catch (fallback) {
      if (fallback.code !== 'EEXIST') throw fallback;
    }
  } finally {
    rmSync(temporary, { force: true });
  }
}

/** The vars of `dir`/.dev.vars, made or completed first; `log` hears that it was made. */
export function devVars(dir = '.', log = console.log) {
  const file = path.join(dir, '.dev.vars');
  if (!existsSync(file)) {
    const filled = readFileSync(path.join(dir, '.dev.vars.example'), 'utf8')
      .replace(/^ADMIN_TOKEN=generate$/m, `ADMIN_TOKEN=adm_${randomBytes(24).toString('base64url')}`)
      .replace(/^DEMO_API_KEY=generate$/m, `DEMO_API_KEY=eag_${randomBytes(32).toString('base64url')}`)
      .replace(/^UPSTREAM_ENCRYPTION_KEY=generate$/m, `UPSTREAM_ENCRYPTION_KEY=${randomBytes(32).toString('base64')}`);
    writeWhole(file, filled, { replace: false });
    log('created .dev.vars with a random ADMIN_TOKEN and DEMO_API_KEY');
  }
  // A .dev.vars made before a newer secret was added gets that secret appended.
  const before = readFileSync(file, 'utf8');
  let current = before;
  if (!/^UPSTREAM_ENCRYPTION_KEY=/m.test(current)) current = `${current.trimEnd()}\nUPSTREAM_ENCRYPTION_KEY=${randomBytes(32).toString('base64')}\n`;
  if (!/^ENABLE_CONFORMANCE_UPSTREAM=/m.test(current)) current = `${current.trimEnd()}\nENABLE_CONFORMANCE_UPSTREAM=true\n`;
  if (current !== before) writeWhole(file, current, { replace: true });
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1).trim()]),
  );
}
