import { ApiError } from '../errors';

const PREFIX = 'enc:v1:';
const keyCache = new Map<string, Promise<CryptoKey>>();

function bytes(b64: string): Uint8Array {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function b64(data: ArrayBuffer | Uint8Array): string {
  let s = '';
  for (const b of new Uint8Array(data)) s += String.fromCharCode(b);
  return btoa(s);
}

/** The AES-256-GCM key from the UPSTREAM_ENCRYPTION_KEY secret (base64 of 32 bytes). */
function encryptionKey(secret: string | undefined): Promise<CryptoKey> {
  if (!secret) throw new ApiError('invalid_request', 'storing upstream credentials needs the UPSTREAM_ENCRYPTION_KEY secret; ask the operator');
  let key = keyCache.get(secret);
  if (!key) {
    const raw = bytes(secret);
    if (raw.length !== 32) throw new Error('UPSTREAM_ENCRYPTION_KEY must be base64 of 32 bytes');
    key = crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
    keyCache.set(secret, key);
  }
  return key;
}

/**
 * Encrypts an upstream credential for storage. `context` (tenant, pool, target) is bound as
 * additional data, so a ciphertext copied to another pool or tenant does not decrypt.
 */
export async function sealSecret(secret: string | undefined, plaintext: string, context: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const data = new TextEncoder().encode(plaintext);
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(context) }, await encryptionKey(secret), data);
  return `${PREFIX}${b64(iv)}:${b64(sealed)}`;
}

/** Whose credential a sealed value is, for the refusal when it cannot be opened. */
export interface SealedOwner {
  /** e.g. `pool "main" target "o"`. */
  what: string;
  /** What the tenant can do about it, e.g. `PUT the pool again with its credential`. */
  again: string;
}

/**
 * Opens a credential sealed by `sealSecret`. One the key cannot open (the operator replaced or
 * unset UPSTREAM_ENCRYPTION_KEY since it was stored) is a 500 that names the credential and the
 * two ways out, logged for the operator: the runtime's own "OperationError" said neither, and an
 * unset key was answered as if the caller were storing one.
 */
export async function openSecret(secret: string | undefined, stored: string, context: string, owner: SealedOwner): Promise<string> {
  if (!stored.startsWith(PREFIX)) throw new Error('credential is not sealed');
  const [iv = '', sealed = ''] = stored.slice(PREFIX.length).split(':');
  try {
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: bytes(iv), additionalData: new TextEncoder().encode(context) }, await encryptionKey(secret), bytes(sealed));
    return new TextDecoder().decode(plain);
  } catch (error) {
    const message = `the stored credential of ${owner.what} cannot be opened with this gateway's UPSTREAM_ENCRYPTION_KEY (changed or unset since it was stored): ${owner.again}, or ask the operator to restore the key`;
    console.error(JSON.stringify({ level: 'error', msg: 'sealed credential not opened', credential: owner.what, context, error: error instanceof Error ? error.message : String(error) }));
    throw new ApiError('internal_error', message);
  }
}

export const isSealed = (value: string): boolean => value.startsWith(PREFIX);

/**
 * The length in bytes of a sealed credential, read from its ciphertext (AES-GCM adds a 16-byte
 * tag and nothing else), so a view can size its mask without the key.
 */
export function sealedLength(stored: string): number {
  if (!isSealed(stored)) return 0;
  const sealed = stored.slice(PREFIX.length).split(':')[1] ?? '';
  try {
    return Math.max(0, atob(sealed).length - 16);
  } catch {
    return 0;
  }
}
