// Reassembly of `chunk` notifications from the native host.
//
// Browsers drop the native port on a host->browser frame over 1 MiB, so the host splits a
// larger daemon message into `chunk` notifications carrying base64 of consecutive byte
// ranges of the original frame. This mirrors allpeers_model::api::chunk::Reassembler:
// bounded in total size and in messages in flight, so a hostile host cannot make it grow.

export const MAX_REASSEMBLED_LEN = 256 * 1024 * 1024;
export const MAX_PARTIAL_MESSAGES = 8;

export interface ChunkParams {
  message: number;
  index: number;
  count: number;
  total_len: number;
  data: string;
}

export class ChunkError extends Error {}

interface Partial {
  count: number;
  totalLen: number;
  received: number;
  parts: (Uint8Array | undefined)[];
}

function isNat(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Checks the shape of a `chunk` notification's params. */
export function parseChunkParams(v: unknown): ChunkParams {
  const p = v as Record<string, unknown> | null;
  if (
    !p ||
    typeof p !== "object" ||
    !isNat(p.message) ||
    !isNat(p.index) ||
    !isNat(p.count) ||
    !isNat(p.total_len) ||
    typeof p.data !== "string"
  ) {
    throw new ChunkError("chunk params are malformed");
  }
  return p as unknown as ChunkParams;
}

const fromBase64 = (Uint8Array as unknown as { fromBase64?: (s: string) => Uint8Array }).fromBase64;

function decodeBase64(data: string): Uint8Array {
  if (fromBase64) {
    try {
      return fromBase64(data);
    } catch {
      throw new ChunkError("chunk data is not base64");
    }
  }
  let bin: string;
  try {
    bin = atob(data);
  } catch {
    throw new ChunkError("chunk data is not base64");
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export class Reassembler {
  private partial = new Map<number, Partial>();

  /** Messages being reassembled now. */
  get inFlight(): number {
    return this.partial.size;
  }

  clear(): void {
    this.partial.clear();
  }

  /** Adds one chunk; returns the whole message's bytes once its last chunk arrived. */
  add(chunk: ChunkParams): Uint8Array | null {
    if (chunk.count === 0 || chunk.index >= chunk.count) {
      throw new ChunkError(`chunk ${chunk.index} of ${chunk.count} is out of range`);
    }
    if (chunk.total_len > MAX_REASSEMBLED_LEN) {
      throw new ChunkError(`chunked message of ${chunk.total_len} bytes is over the limit`);
    }
    if (chunk.count > Math.max(chunk.total_len, 1)) {
      throw new ChunkError("chunk does not agree with the earlier chunks of its message");
    }
    const data = decodeBase64(chunk.data);
    if (!this.partial.has(chunk.message) && this.partial.size >= MAX_PARTIAL_MESSAGES) {
      throw new ChunkError("too many chunked messages in flight");
    }
    let partial = this.partial.get(chunk.message);
    if (!partial) {
      partial = {
        count: chunk.count,
        totalLen: chunk.total_len,
        received: 0,
        parts: new Array(chunk.count).fill(undefined),
      };
      this.partial.set(chunk.message, partial);
    }
    if (partial.count !== chunk.count || partial.totalLen !== chunk.total_len) {
      this.partial.delete(chunk.message);
      throw new ChunkError("chunk does not agree with the earlier chunks of its message");
    }
    if (partial.parts[chunk.index] === undefined) partial.received++;
    partial.parts[chunk.index] = data;
    // Bound memory by what was announced, not by what a sender pushes.
    let held = 0;
    for (const part of partial.parts) held += part ? part.length : 0;
    if (held > partial.totalLen) {
      this.partial.delete(chunk.message);
      throw new ChunkError("chunk does not agree with the earlier chunks of its message");
    }
    if (partial.received < partial.count) return null;
    this.partial.delete(chunk.message);
    if (held !== partial.totalLen) {
      throw new ChunkError("chunk does not agree with the earlier chunks of its message");
    }
    const whole = new Uint8Array(held);
    let offset = 0;
    for (const part of partial.parts) {
      whole.set(part as Uint8Array, offset);
      offset += (part as Uint8Array).length;
    }
    return whole;
  }
}
