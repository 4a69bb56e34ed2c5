//! The one table of error codes the daemon answers with (JSON-RPC `error.code`).
//!
//! JSON-RPC's own codes, then AllPeers' application codes in blocks of ten per area: the
//! framework (`-32000…`), resources (`-32010…`), the hub and the network (`-32020…`),
//! contacts and chat (`-32030…`), shares (`-32040…`), transfers (`-32050…`), media (`-32060…`), mail
//! (`-32070…`), apps (`-32080…`, with the EIP-1193 codes 4001, 4100, 4200, 4900 an app's provider
//! knows), files (`-32090…`). A new area takes the next block. `docs/api.md`'s error
//! table and the extension's `ErrorCode` object are generated from [`ErrorCode::ALL`].

macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $code:literal, $name:literal, $meaning:literal;
    )*) => {
        /// An error code of the local API. [`ErrorCode::code`] is its integer on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The integer on the wire.
            pub const fn code(self) -> i32 {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The short name, as in the docs' table (`"not found"`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// One line: when the daemon answers with this code.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)*
                }
            }

            /// The identifier, as in Rust and in the generated TypeScript (`"NotFound"`).
            pub const fn ident(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

error_codes! {
    /// The frame is not UTF-8 or not JSON.
    ParseError = -32700, "parse error",
        "the frame is not UTF-8 (offset given) or not JSON; the session goes on";
    /// JSON, but not a JSON-RPC request.
    InvalidRequest = -32600, "invalid request",
        "JSON, but not a request (not an object, no `id`, no `method`, `jsonrpc` ≠ \"2.0\", `params` not object/array)";
    /// No such method.
    MethodNotFound = -32601, "method not found", "unknown method (named)";
    /// The params do not have the method's shape.
    InvalidParams = -32602, "invalid params",
        "params of the wrong shape (the field and expectation named), unknown topic, bad log filter, a request the store refuses (`BadRequest`)";
    /// The daemon failed (logged).
    Internal = -32603, "internal", "the daemon failed (store, SQL, a task); logged";
    /// A method was called before `hello`.
    HelloRequired = -32000, "hello required", "a method other than `hello` came first";
    /// `hello` asked for an API version the daemon does not speak.
    UnsupportedVersion = -32001, "unsupported version",
        "`hello` asked for an API version this daemon does not speak";
    /// The frame's length prefix is over the limit; the connection is closed.
    FrameTooLarge = -32002, "frame too large", "a length prefix over 8 MiB; the connection closes";
    /// The stream ended inside a frame; the connection is closed.
    TruncatedFrame = -32003, "truncated frame",
        "the stream ended inside a frame; the connection closes";
    /// The passphrase does not open the identity.
    WrongPassphrase = -32004, "wrong passphrase",
        "`identity.unlock` or `identity.restore` with a passphrase that does not open the key";
    /// `identity.restore`: the backup is not a key file.
    BadBackup = -32005, "bad backup",
        "`identity.restore`: the file is not an AllPeers identity backup (too large, not JSON, another format or version, a key that does not match its PeerId); the message says which";
    /// `identity.restore`: the node has another identity.
    IdentityExists = -32006, "identity exists",
        "`identity.restore` without `replace: true` while the node has a different identity; `data`: `{peer_id}` (the current one)";
    /// The resource does not fit its type; `error.data.errors` = `[{path, reason}]`.
    InvalidResource = -32010, "invalid resource",
        "the resource does not fit its type; `data`: `{errors: [{path, reason}]}`";
    /// No resource with that id.
    NotFound = -32011, "not found", "no resource with that id";
    /// The id is taken, or the item is already in the list.
    Exists = -32012, "exists", "the id is taken, or the item is already in the list";
    /// The schema file was refused; `error.data` = `{file, line, reason}`.
    SchemaRefused = -32013, "schema refused",
        "`schemas.register` refused the file; `data`: `{file, line, reason}`";
    /// The query was refused; `error.data` = `{path, reason}`.
    InvalidQuery = -32014, "invalid query", "the query was refused; `data`: `{path, reason}`";
    /// A resource adapter refused the write; `error.data` = `{type, reason}`.
    AdapterRefused = -32015, "adapter refused",
        "a resource adapter refused the write; `data`: `{type, reason}`";
    /// `hub.register`: another key holds the name.
    NameTaken = -32020, "name taken", "`hub.register`: another key holds the name";
    /// The name breaks the naming rule.
    BadName = -32021, "bad name",
        "1–32 characters a-z 0-9 `-` `_` `.`, starting with a letter or digit (the message names the rule)";
    /// The hub's answer failed verification.
    AnswerRejected = -32022, "answer rejected",
        "the hub's answer failed verification: wrong signature, answer to another question (replay), or stale";
    /// The peer did not agree to be relayed to.
    RelayRefused = -32023, "relay refused", "the peer did not agree to be relayed to";
    /// The hub's relay quota is used up.
    Quota = -32024, "quota", "the hub's relay quota is used up";
    /// The hub (or the proxy to it) cannot be reached.
    HubUnreachable = -32025, "hub unreachable", "the hub (or the proxy to it) cannot be reached";
    /// The peer has no presence line at the hub.
    PeerOffline = -32026, "peer offline", "the peer has no presence line at the hub";
    /// No home hub is configured, or the node is offline.
    NoHub = -32027, "no hub",
        "no home hub is configured, or the node is offline (identity locked); contacts, presence and chat need the node online";
    /// No path to the peer worked.
    ConnectFailed = -32028, "connect failed",
        "`net.connect` (or a contact request): no path worked; `data.attempts` lists what was tried and why each failed";
    /// The peer is not an accepted contact.
    NotAContact = -32030, "not a contact", "not an accepted contact (`chat.open`, group members)";
    /// A name the hub does not know.
    UnknownPeer = -32031, "unknown peer", "a name the hub does not know (`contacts.add`)";
    /// No request to accept, no such chat.
    RequestOrChatNotFound = -32032, "not found (social)",
        "no contact request to accept, no such chat";
    /// A message, title or request text is over its limit.
    TooLarge = -32034, "too large", "a message, group title, request or status text over its limit";
    /// The peer refused the letter.
    RefusedByPeer = -32035, "refused by the peer", "the peer refused the letter (e.g. a contact request)";
    /// The home hub has no e-mail gateway.
    MailNoGateway = -32070, "no mail gateway", "the home hub has no e-mail gateway configured";
    /// Not a usable e-mail address.
    MailBadAddress = -32071, "bad address",
        "`mail.set_address` / `mail.invite`: not a bare ASCII `local@domain` with a dotted domain (254 characters at most)";
    /// No address registered, or not confirmed.
    MailNoAddress = -32072, "no address",
        "no e-mail address registered (or not confirmed), or no name at the hub to sign mail with";
    /// Wrong or expired confirmation code.
    MailBadCode = -32073, "bad code",
        "`mail.confirm`: wrong or expired code, or too many tries (set the address again)";
    /// Over a mail rate limit.
    MailRateLimited = -32074, "mail rate limited",
        "over a per-peer or per-address limit or the hub's daily cap: try later";
    /// A field is empty, too long, or not of its form.
    MailBadField = -32075, "bad mail field", "a note or title empty or over its limit";
    /// The address declined mail.
    MailDeclined = -32076, "declined",
        "the address asked for no mail from this hub, bounced, or was invited lately";
    /// No transfer with that id.
    TransferNotFound = -32050, "transfer not found", "no transfer with that id (`transfers.*`)";
    /// The .torrent is not one.
    BadTorrent = -32051, "bad torrent",
        "the .torrent is malformed, unsafe (a file path leaving the download directory) or not base64; the message says which";
    /// A source this build cannot fetch from.
    UnsupportedSource = -32052, "unsupported source",
        "`transfers.add` with a URL other than http(s) (`ftp://`, `file://`, …): give an http(s) URL, the file or a magnet link";
    /// The torrent is already a transfer.
    TransferExists = -32053, "transfer exists", "the torrent is already added (the message names its id)";
    /// A file to read cannot be read or shared.
    Unreadable = -32054, "unreadable",
        "the .torrent path or the file to seed cannot be read, is not a regular file, or is empty";
    /// The transfer engine failed.
    TransferFailed = -32055, "transfer failed",
        "the transfers engine is not running (its port could not be bound), or the download directory cannot be written, or a seeded file does not match its torrent";
    /// A magnet link's metadata did not come.
    NoMetadata = -32056, "no metadata",
        "`transfers.add` with a magnet link that names no peer (`x.pe`) and no tracker while the DHT is off: nobody could be asked for its metadata (a link that can be asked is listed at once, in state `fetching_metadata`)";
    /// The .torrent named by URL could not be fetched.
    FetchFailed = -32057, "fetch failed",
        "`transfers.add` with an http(s) URL: the .torrent could not be fetched within 30 s (connection, TLS certificate, HTTP status, over 16 MiB, too many redirects; the message says which)";
    /// `media.add`: a path does not exist or cannot be read.
    MediaPathNotFound = -32060, "path not found",
        "`media.add`: a path does not exist or cannot be read";
    /// `media.info`: the path or id is not a catalogued file.
    NotCatalogued = -32061, "not catalogued",
        "`media.info`: the path or id is not a catalogued file (add it with `media.add`)";
    /// Too many indexing jobs at once.
    MediaBusy = -32062, "media busy", "`media.add`: too many indexing jobs run at once; retry when one finishes";
    /// Too many watched paths.
    TooManyWatched = -32063, "too many watched paths",
        "`media.add` with `watch`: the catalog already keeps 256 paths up to date; unwatch one (`media.unwatch`) or add with `watch: false`";
    /// The member's level does not allow it.
    NotAllowed = -32040, "not allowed",
        "the share does not allow it: a read member writing, a non-admin adding or revoking, revoking the owner, sharing what we cannot share";
    /// No such share here.
    ShareNotFound = -32041, "share not found", "no share with that id on this node (or none offered)";
    /// The user denied the app's permission prompt (answered by the extension).
    UserRejected = 4001, "user rejected",
        "apps: the user denied the permission prompt (the extension answers it, EIP-1193 style)";
    /// The app's origin lacks the scope the method needs.
    Unauthorized = 4100, "unauthorized",
        "apps: the origin has not been granted the scope the method needs (the message names it), or the type or resource is not the app's";
    /// A method an app session is not served.
    Unsupported = 4200, "unsupported",
        "apps: a method an app session is not served (every method but the app-facing ones)";
    /// The extension has no line to the daemon.
    Disconnected = 4900, "disconnected",
        "apps: the extension has no line to the daemon (answered by the extension)";
    /// Over the origin's rate limit.
    RateLimited = -32080, "rate limited",
        "apps: the origin's sessions together made calls faster than its limit; retry shortly";
    /// `hello` named an origin that is not one.
    BadOrigin = -32081, "bad origin",
        "apps: `hello`'s `origin` is not `https://host[:port]`, a loopback `http` origin, or an extension's (lowercase, no path, ≤ 200 characters)";
    /// The resource is not a File whose content was shared.
    FileNotShared = -32090, "file not shared",
        "`files.get`: the resource is not a File (or a type extending it) with a `hash` and `size`, or no share holds it";
    /// No member that may hold the file is reachable.
    FileNoSource = -32091, "no source",
        "`files.get`: no other member of a share naming the file (the peers that may hold it)";
    /// The file could not be hashed for sharing.
    FileUnreadable = -32092, "file unreadable",
        "`shares.create`: a File's linked file on disk cannot be read (or changed while it was hashed)";
    /// No open import has that number.
    ImportUnknown = -32093, "no such import",
        "`files.import_write` / `files.import_cancel`: no open import has that number (finished, cancelled, or idle too long)";
    /// Too many imports are open.
    ImportBusy = -32094, "imports busy",
        "`files.import_start`: 16 imports are open already; finish or cancel one";
}

impl ErrorCode {
    /// The code for an integer on the wire; `None` for a code this build does not know.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.code() == code)
    }
}

impl From<ErrorCode> for i32 {
    fn from(code: ErrorCode) -> i32 {
        code.code()
    }
}

impl TryFrom<i32> for ErrorCode {
    type Error = i32;

    /// The unknown integer back as the error.
    fn try_from(code: i32) -> Result<ErrorCode, i32> {
        ErrorCode::from_code(code).ok_or(code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_names_and_idents_are_unique() {
        let codes: HashSet<i32> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        let idents: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.ident()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len(), "a code is used twice");
        assert_eq!(names.len(), ErrorCode::ALL.len(), "a name is used twice");
        assert_eq!(idents.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn codes_convert_both_ways() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
            assert_eq!(ErrorCode::try_from(i32::from(code)), Ok(code));
            assert!(!code.meaning().is_empty());
        }
        assert_eq!(ErrorCode::try_from(-1), Err(-1));
        assert_eq!(ErrorCode::NotFound.code(), -32011);
        assert_eq!(ErrorCode::NoHub.code(), -32027);
    }

    #[test]
    fn application_codes_sit_in_their_areas_blocks() {
        // Standard JSON-RPC codes, AllPeers' reserved server range -32000..=-32099, or the
        // EIP-1193 provider codes apps know.
        for &code in ErrorCode::ALL {
            let n = code.code();
            assert!(
                (-32700..=-32600).contains(&n)
                    || (-32099..=-32000).contains(&n)
                    || [4001, 4100, 4200, 4900].contains(&n),
                "{code} is outside JSON-RPC's ranges"
            );
        }
    }
}
