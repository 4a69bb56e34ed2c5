import { ErrorCode, type ErrorCodeName } from "./api.gen.js";

/** The SDK's own error names (no daemon code of their own). */
export type SdkErrorName = "NotInstalled";

/** What every SDK call rejects with: the daemon's (or the extension's) numeric code and its name. */
export class AllPeersError extends Error {
  /** The numeric code, as in the contract's error table (4001, 4100, -32080 ...). */
  readonly code: number;
  /** The code's name (`UserRejected`, `Unauthorized` ...), or `Unknown` for a code this SDK does not know. */
  readonly codeName: ErrorCodeName | SdkErrorName | "Unknown";
  /** Extra data the daemon attached (e.g. `{errors: [...]}` for InvalidResource). */
  readonly data?: unknown;

  constructor(code: number, message: string, data?: unknown, codeName?: SdkErrorName) {
    super(message);
    this.name = "AllPeersError";
    this.code = code;
    this.codeName = codeName ?? nameOf(code);
    if (data !== undefined) this.data = data;
  }

  /** Any rejection (a provider's `{code, message, data}`, a TypeError ...) as an AllPeersError. */
  static from(error: unknown): AllPeersError {
    if (error instanceof AllPeersError) return error;
    if (typeof error === "object" && error !== null) {
      const { code, message, data } = error as { code?: unknown; message?: unknown; data?: unknown };
      if (typeof code === "number" && Number.isInteger(code)) {
        return new AllPeersError(code, typeof message === "string" ? message : `error ${code}`, data);
      }
      if (typeof message === "string") return new AllPeersError(ErrorCode.Internal, message);
    }
    return new AllPeersError(ErrorCode.Internal, String(error));
  }
}

const NAMES = new Map<number, ErrorCodeName>(
  (Object.entries(ErrorCode) as Array<[ErrorCodeName, number]>).map(([name, code]) => [code, name]),
);

function nameOf(code: number): ErrorCodeName | "Unknown" {
  return NAMES.get(code) ?? "Unknown";
}
