//! The AllPeers node: the daemon with its local API, the native-messaging bridge, the
//! CLI's client, browser installation and the demo. The binary `allpeers` is `main.rs`.

pub mod apps;
pub mod client;
pub mod config;
pub mod core;
pub mod daemon;
pub mod files;
pub mod frames;
pub mod hub;
pub mod identity;
pub mod install;
pub mod lock;
pub mod mail;
pub mod media;
pub mod native_host;
pub mod net;
pub mod paths;
pub mod resources;
pub mod shares;
pub mod social;
pub mod transfers;
