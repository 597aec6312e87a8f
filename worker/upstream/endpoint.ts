/**
 * `<baseUrl>` + `path` (`/chat/completions`, `/models`), the path appended to the base URL's
 * own and its query kept after it: Azure OpenAI takes `?api-version=…` on every call. Joined as
 * text, the query came first and swallowed the path (`…/v1?api-version=1/chat/completions`).
 * A fragment is never sent, so it is dropped.
 */
export function endpointUrl(baseUrl: string, path: string): string {
  const key = `${path} ${baseUrl}`;
  let joined = joinedUrls.get(key);
  if (joined === undefined) {
    // A pool's few base URLs, joined on every call: parsing one again each time showed in profiles.
    if (joinedUrls.size >= MAX_JOINED) joinedUrls.clear();
    joined = join(baseUrl, path);
    joinedUrls.set(key, joined);
  }
  return joined;
}

const MAX_JOINED = 1_000;
const joinedUrls = new Map<string, string>();

function join(baseUrl: string, path: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    // Left to the outbound guard (or the fetch) to refuse as the text it is.
    return `${baseUrl}${path}`;
  }
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`;
  url.hash = '';
  return url.toString();
}
