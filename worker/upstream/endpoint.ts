/**
 * `<baseUrl>` + `path` (`/chat/completions`, `/models`), the path appended to the base URL's
 * own and its query kept after it: Azure OpenAI takes `?api-version=…` on every call. Joined as
 * text, the query came first and swallowed the path (`…/v1?api-version=1/chat/completions`).
 * A fragment is never sent, so it is dropped.
 */
export function endpointUrl(baseUrl: string, path: string): string {
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
