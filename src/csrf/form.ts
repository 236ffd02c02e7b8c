/**
 * Reading a CSRF token a request presents: its header, else the field of a form body (URL-encoded
 * or multipart), read from a copy of the body up to a bound so the handler still reads its own.
 *
 * @module
 */

/** Where a token may be, and how much of a body may be read to find it. */
export interface TokenPlaces {
  /** The request header (lower case). */
  header: string;
  /** The form field. */
  field: string;
  /** At most this many bytes of a form body are read (bytes). */
  maxBodyBytes: number;
}

/** Reads at most `limit` bytes of a body; `complete` when the whole body fit. */
async function readPrefix(
  body: ReadableStream<Uint8Array>,
  limit: number,
): Promise<{ text: string; complete: boolean }> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let complete = false;
  try {
    while (size <= limit) {
      const { done, value } = await reader.read();
      if (done) {
        complete = true;
        break;
      }
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    reader.cancel().catch(ignore); // only this copy of the body: the handler still reads its own
  }
  const bytes = new Uint8Array(Math.min(size, limit));
  let at = 0;
  for (const chunk of chunks) {
    if (at >= bytes.length) break;
    const part = chunk.subarray(0, bytes.length - at);
    bytes.set(part, at);
    at += part.byteLength;
  }
  // One character per byte keeps offsets; the token and the field name are ASCII.
  return { text: new TextDecoder("latin1").decode(bytes), complete: complete && size <= limit };
}

function ignore(): void {}

function urlEncodedField(text: string, complete: boolean, field: string): string | undefined {
  const pairs = text.split("&");
  if (!complete) pairs.pop(); // the last pair may be cut off
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const name = eq < 0 ? pair : pair.slice(0, eq);
    try {
      if (decodeURIComponent(name.replace(/\+/g, " ")) === field) {
        return decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, " "));
      }
    } catch {
      // a malformed escape: not the field
    }
  }
  return undefined;
}

function multipartField(text: string, contentType: string, field: string): string | undefined {
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = match?.[1] ?? match?.[2];
  if (boundary === undefined) return undefined;
  const delimiter = `--${boundary}`;
  let at = text.indexOf(delimiter);
  while (at !== -1 && !text.startsWith("--", at + delimiter.length)) {
    const headersStart = text.indexOf("\r\n", at) + 2;
    const headersEnd = text.indexOf("\r\n\r\n", headersStart);
    if (headersStart < 2 || headersEnd < 0) return undefined;
    const next = text.indexOf(`\r\n${delimiter}`, headersEnd + 4);
    if (next < 0) return undefined; // the part is cut off by maxBodyBytes
    for (const line of text.slice(headersStart, headersEnd).split("\r\n")) {
      const disposition = /^content-disposition:\s*form-data\s*;(.*)$/i.exec(line)?.[1];
      if (disposition === undefined) continue;
      const name = /(?:^|;)\s*name="([^"]*)"/i.exec(disposition)?.[1];
      if (name === field && !/(?:^|;)\s*filename\*?=/i.test(disposition)) {
        return text.slice(headersEnd + 4, next);
      }
    }
    at = next + 2;
  }
  return undefined;
}

/** The token the request presents: the header, else the form field of a form body. */
export async function presentedToken(request: Request, o: TokenPlaces): Promise<string | undefined> {
  const header = request.headers.get(o.header);
  if (header !== null) return header.trim();
  const type = request.headers.get("content-type") ?? "";
  const kind = /^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)
    ? "urlencoded"
    : /^multipart\/form-data\s*;/i.test(type)
    ? "multipart"
    : undefined;
  if (kind === undefined || request.body === null || request.bodyUsed) return undefined;
  const { text, complete } = await readPrefix(request.clone().body!, o.maxBodyBytes);
  return kind === "urlencoded"
    ? urlEncodedField(text, complete, o.field)
    : multipartField(text, type, o.field);
}
