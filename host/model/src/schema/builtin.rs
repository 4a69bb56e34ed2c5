//! The built-in resource types, compiled in from `schemas/`.

/// (file name, source) of every built-in schema file.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "Resource.rng",
        include_str!("../../../../schemas/Resource.rng"),
    ),
    ("Peer.rng", include_str!("../../../../schemas/Peer.rng")),
    ("File.rng", include_str!("../../../../schemas/File.rng")),
    ("Audio.rng", include_str!("../../../../schemas/Audio.rng")),
    ("Video.rng", include_str!("../../../../schemas/Video.rng")),
    ("Image.rng", include_str!("../../../../schemas/Image.rng")),
    ("Text.rng", include_str!("../../../../schemas/Text.rng")),
    ("Link.rng", include_str!("../../../../schemas/Link.rng")),
    ("List.rng", include_str!("../../../../schemas/List.rng")),
    ("Chat.rng", include_str!("../../../../schemas/Chat.rng")),
    (
        "Message.rng",
        include_str!("../../../../schemas/Message.rng"),
    ),
    ("Share.rng", include_str!("../../../../schemas/Share.rng")),
];
