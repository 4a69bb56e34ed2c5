// Pure pieces of drag-and-share (panel/drop.ts): which dropped files go to the daemon, in which
// chunks, and what the new share is called. Unit-tested (test/drop.test.ts).

/** Files one drop (or pick) may hold: more are refused with a message, not half-shared. */
export const MAX_DROP_FILES = 10_000;
/** The daemon's bounds (`files.import_*`): a file's size and one chunk's bytes before base64. */
export const MAX_IMPORT_BYTES = 4 * 1024 ** 3;
export const IMPORT_CHUNK = 768 * 1024;
/** `media.add` takes at most this many paths a call. */
export const MEDIA_BATCH = 1000;

/**
 * Why a dropped file is left out (null: it goes): the daemon's rule for imported names (plain, not hidden, no
 * control characters, ≤ 255 bytes, not `.part`) and its size bound. Hidden files (`.DS_Store`) are skipped quietly.
 */
export function skipReason(name: string, size: number): string | null {
  if (name.startsWith(".")) return "hidden";
  if (!name || name.trim() !== name) return "its name starts or ends with spaces";
  if (new TextEncoder().encode(name).length > 255) return "its name is too long";
  if (/[\/\\\u0000-\u001f\u007f-\u009f]/.test(name)) return "its name holds a path separator or a control character";
  if (name.toLowerCase().endsWith(".part")) return "it is a partial download (.part)";
  if (size > MAX_IMPORT_BYTES) return "it is larger than 4 GiB";
  return null;
}

/** The [start, end) byte ranges a file of `size` bytes is sent in (none for an empty file). */
export function chunkRanges(size: number, chunk = IMPORT_CHUNK): [number, number][] {
  const out: [number, number][] = [];
  for (let at = 0; at < size; at += chunk) out.push([at, Math.min(size, at + chunk)]);
  return out;
}

/** A share's title from what was dropped: "a.jpg", "a.jpg and b.jpg", "a.jpg and 4 more". */
export function dropTitle(names: string[]): string {
  if (!names.length) return "Shared files";
  if (names.length === 1) return names[0];
  if (names.length === 2) return `${names[0]} and ${names[1]}`;
  return `${names[0]} and ${names.length - 1} more`;
}

/** Base64 of bytes (the browser's own encoder where there is one). */
export function toBase64(bytes: Uint8Array): string {
  const native = (bytes as Uint8Array & { toBase64?: () => string }).toBase64;
  if (typeof native === "function") return native.call(bytes);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
