//! AllPeers networking. So far: the user's identity (key pair, PeerId, certificate) and the
//! sealed key file. Transports, connector and the service framework come with the network
//! issues and build on [`identity::Identity`].

pub mod identity;

pub use identity::{Identity, IdentityError, KeyFile};
