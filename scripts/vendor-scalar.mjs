#!/usr/bin/env node
// The API reference page (GET /docs) loads Scalar's browser bundle from this origin, not from a
// CDN: public/vendor/scalar/standalone.js, a static asset kept in git with its license and a
// notice naming its version and SHA-256. Kept in git rather than installed: the npm package
// that ships it brings about 300 packages (330 MB, 30 s of every `npm ci`) for this one file.
//
// `node scripts/vendor-scalar.mjs 1.76.4` replaces it with that version (downloads the package
// from the npm registry with `npm pack`); `node scripts/vendor-scalar.mjs --check` verifies the
// committed file against its notice (npm run deploy:check does the same on the built assets).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');
const PACKAGE = '@scalar/api-reference';
/** The URL path of the bundle (worker/app.ts points the page at it). */
export const SCALAR_ASSET = '/vendor/scalar/standalone.js';
const NOTICE = 'LICENSE';

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/**
 * Why the bundle under `assetsDir` (public/, or the assets directory a deploy read) is not the
 * one its notice names, or null: missing, no notice, or bytes that differ from its hash.
 */
export function vendoredProblem(assetsDir = path.join(root, 'public')) {
  const file = path.join(assetsDir, SCALAR_ASSET);
  const notice = path.join(path.dirname(file), NOTICE);
  if (!existsSync(file)) return `${file} is missing`;
  if (!existsSync(notice)) return `${notice} is missing`;
  const recorded = /^sha256: ([0-9a-f]{64})$/m.exec(readFileSync(notice, 'utf8'))?.[1];
  if (!recorded) return `${notice} names no sha256`;
  if (sha256(readFileSync(file)) !== recorded) return `${file} is not the file ${notice} names (sha256 differs)`;
  return null;
}

/** Downloads `version` of the package and writes its bundle and the notice under public/. */
function vendor(version) {
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`an exact version, such as 1.76.4, not ${version}`);
  const work = mkdtempSync(path.join(tmpdir(), 'vendor-scalar-'));
  try {
    const tarball = execFileSync('npm', ['pack', '--silent', `${PACKAGE}@${version}`], { cwd: work, encoding: 'utf8' }).trim().split('\n').at(-1);
    execFileSync('tar', ['xzf', tarball, 'package/dist/browser/standalone.js', 'package/package.json'], { cwd: work });
    const packed = JSON.parse(readFileSync(path.join(work, 'package/package.json'), 'utf8'));
    if (packed.license !== 'MIT') throw new Error(`${PACKAGE} ${version} is licensed ${packed.license}, not MIT: check before vendoring it`);
    const file = path.join(root, 'public', SCALAR_ASSET);
    mkdirSync(path.dirname(file), { recursive: true });
    copyFileSync(path.join(work, 'package/dist/browser/standalone.js'), file);
    const bytes = readFileSync(file);
    // The package ships no license file; it is the Scalar monorepo's MIT license, which its
    // sibling packages (the Hono middleware this repo installs among them) ship.
    const license = readFileSync(path.join(root, 'node_modules/@scalar/hono-api-reference/LICENSE'), 'utf8');
    writeFileSync(
      path.join(path.dirname(file), NOTICE),
      `standalone.js is ${PACKAGE} ${version}, dist/browser/standalone.js (https://github.com/scalar/scalar),\n` +
        `vendored by scripts/vendor-scalar.mjs.\nsha256: ${sha256(bytes)}\n\nIts license:\n\n${license}`,
    );
    return bytes.length;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [argument] = process.argv.slice(2);
  try {
    if (argument === '--check' || argument === undefined) {
      const problem = vendoredProblem();
      if (problem) throw new Error(problem);
      console.log(`public${SCALAR_ASSET} matches its notice`);
    } else {
      const bytes = vendor(argument);
      console.log(`vendored ${PACKAGE} ${argument} at public${SCALAR_ASSET} (${(bytes / 1024 / 1024).toFixed(1)} MB)`);
    }
  } catch (error) {
    console.error(`vendor-scalar: ${error.message}`);
    process.exit(1);
  }
}
