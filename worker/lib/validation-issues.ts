import type { ZodError } from 'zod';

/** One reason a request failed validation, as `details[]` shows it. */
export interface Issue {
  path: string[];
  message: string;
  code: string;
}

/**
 * Bounds of what a validation error repeats of the request. Each issue appears twice (in
 * `message` and in `details`), and zod names every unknown key in one issue: a body of 60,000
 * unknown keys (769 KB) was answered with 1.9 MB, and one of a body failing in many places
 * listed every place.
 */
export const MAX_ISSUES = 20;
const MAX_KEYS_NAMED = 10;
/** A name from the request (an unknown key, a path segment), cut to this many characters. */
const MAX_NAME_CHARS = 64;
const MAX_MESSAGE_CHARS = 1_000;

const clip = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max)}…` : text);

/** zod's message for unknown keys, naming a few of them and how many more there were. */
function unknownKeysMessage(keys: readonly string[]): string {
  const named = keys.slice(0, MAX_KEYS_NAMED).map((key) => JSON.stringify(clip(key, MAX_NAME_CHARS))).join(', ');
  const more = keys.length - MAX_KEYS_NAMED;
  return `Unrecognized key${keys.length === 1 ? '' : 's'}: ${named}${more > 0 ? `, and ${more} more` : ''}`;
}

/** The first `MAX_ISSUES` issues of a failed parse (the rest are only counted), each with its path as strings. */
export function zodIssues(error: ZodError): Issue[] {
  return error.issues.slice(0, MAX_ISSUES).map((issue) => ({
    path: issue.path.map(String),
    message: issue.code === 'unrecognized_keys' ? unknownKeysMessage(issue.keys) : issue.message,
    code: issue.code,
  }));
}

/** The first `MAX_ISSUES` issues, each cut to size (its path's segments too: a key has no length limit). */
export function boundedIssues(issues: readonly Issue[]): Issue[] {
  return issues.slice(0, MAX_ISSUES).map((issue) => ({
    path: issue.path.map((segment) => clip(segment, MAX_NAME_CHARS)),
    message: clip(issue.message, MAX_MESSAGE_CHARS),
    code: issue.code,
  }));
}

/** The issues as one line, `path: message` each, and how many were left out of `shown`. */
export function issuesMessage(shown: readonly Issue[], total: number): string {
  const text = shown.map((d) => (d.path.length > 0 ? `${d.path.join('.')}: ${d.message}` : d.message)).join('; ');
  const more = total - shown.length;
  return more > 0 ? `${text}; and ${more} more issue${more === 1 ? '' : 's'}` : text;
}
