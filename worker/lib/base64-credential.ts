/**
 * The base64 spellings of a credential inside base64 text (a token, a Basic header, a data
 * blob in a target's error): base64 of three bytes is four characters, so the characters that
 * only the credential's bits decide depend on where it starts among its neighbours' bytes: one
 * run of characters for each of the three alignments, in the standard and the URL-safe
 * alphabet. The one or two characters at each end that it shares with its neighbours are left:
 * they hold at most a few bits of its first and last bytes. Found as plain text, each costs a
 * look like the credential's own spelling. A credential in base64 lines wrapped (MIME, 76
 * characters) across its run is not found.
 */
export function base64Spellings(credential: string): string[] {
  const key = new TextEncoder().encode(credential);
  const found = new Set<string>();
  for (let offset = 0; offset < 3; offset++) {
    let binary = '\0'.repeat(offset);
    for (const byte of key) binary += String.fromCharCode(byte);
    const text = btoa(`${binary}\0\0`);
    // Each character holds 6 bits: those wholly inside the credential's bits.
    const run = text.slice(Math.ceil((offset * 8) / 6), Math.floor(((offset + key.byteLength) * 8) / 6));
    found.add(run);
    found.add(run.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return [...found];
}
