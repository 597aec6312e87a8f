/** The media type of a Content-Type header, lower-cased and without parameters (`; charset=…`). */
export function mediaType(contentType: string | undefined): string | undefined {
  return contentType?.split(';')[0]?.trim().toLowerCase();
}
