//! rustls configurations for peer connections: TLS 1.3 only, mutual authentication with the
//! peers' self-signed identity certificates, the key pinned to a PeerId.
//!
//! * The dialer names the PeerId it means to reach as the TLS server name (the PeerId's text
//!   form is a valid DNS label). Its [`PeerServerVerifier`] accepts the server's certificate
//!   only if the certificate's Ed25519 key *is* that PeerId; the TLS 1.3 handshake signature
//!   then proves the server holds the key.
//! * The listener's [`PeerClientVerifier`] requires a client certificate with an Ed25519 key
//!   and accepts any such key: the connection reports the remote PeerId, and what a peer may
//!   do is decided above (services, sharing).
//! * ALPN carries the protocol version ([`ALPN`]); a peer speaking another version fails the
//!   handshake. A TCP connection that carries one bulk stream instead of yamux says so with
//!   [`BULK_ALPN`] ([`listener_config`], [`bulk_client_config`]): same certificates, same
//!   verifiers, so the same mutual authentication and key pinning.
//! * Session resumption is off: every handshake checks the certificate again.
//!
//! The crypto provider is ring, passed explicitly (no process-wide default needed).

use std::sync::Arc;

use allpeers_model::PeerId;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, SignatureScheme};

use crate::identity::Identity;

/// ALPN of the AllPeers peer protocol, version 1.
pub const ALPN: &[u8] = b"allpeers/1";
/// ALPN of a TCP connection carrying one unmultiplexed stream (a bulk transfer), version 1.
pub const BULK_ALPN: &[u8] = b"allpeers-bulk/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("identity certificate: {0}")]
    Certificate(String),
    #[error("tls configuration: {0}")]
    Config(String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server name a dialer uses to reach `peer`.
pub fn server_name(peer: &PeerId) -> ServerName<'static> {
    ServerName::try_from(peer.to_string()).expect("a PeerId is a valid DNS label")
}

/// The PeerId of the certificate chain a finished handshake saw.
pub fn remote_peer_id(certs: Option<&[CertificateDer<'_>]>) -> Option<PeerId> {
    let end_entity = certs?.first()?;
    Identity::peer_id_from_certificate(end_entity).ok()
}

fn cert_and_key(
    identity: &Identity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert = identity
        .certificate()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pkcs8_der.to_vec()));
    Ok((vec![CertificateDer::from(cert.cert_der)], key))
}

/// The listener's config: asks every client for its identity certificate.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let (chain, key) = cert_and_key(identity)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PeerClientVerifier { algorithms }))
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The TCP listener's config: [`server_config`] that also takes bulk connections ([`BULK_ALPN`]).
pub fn listener_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = server_config(identity)?;
    config.alpn_protocols.push(BULK_ALPN.to_vec());
    Ok(config)
}

/// The dialer's config for a bulk connection: [`client_config`] offering only [`BULK_ALPN`].
pub fn bulk_client_config(identity: &Identity) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = client_config(identity)?;
    config.alpn_protocols = vec![BULK_ALPN.to_vec()];
    Ok(config)
}

/// The dialer's config. The PeerId to reach is the server name of each connection.
pub fn client_config(identity: &Identity) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let (chain, key) = cert_and_key(identity)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier { algorithms }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

fn peer_of(cert: &CertificateDer<'_>) -> Result<PeerId, rustls::Error> {
    Identity::peer_id_from_certificate(cert).map_err(|e| {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(e),
        )))
    })
}

/// Accepts a server certificate only if its key is the PeerId named as the server name.
#[derive(Debug)]
pub struct PeerServerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

#[derive(Debug, thiserror::Error)]
#[error("the certificate's key is {found:?}, not the PeerId dialled ({expected:?})")]
struct WrongPeer {
    expected: PeerId,
    found: PeerId,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "peer certificates are self-signed: no chain expected".into(),
            ));
        }
        let expected: PeerId = match server_name {
            ServerName::DnsName(name) => name.as_ref().parse().map_err(|_| {
                rustls::Error::General(format!("server name {name:?} is not a PeerId"))
            })?,
            other => {
                return Err(rustls::Error::General(format!(
                    "server name {other:?} is not a PeerId"
                )));
            }
        };
        let found = peer_of(end_entity)?;
        if found != expected {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(WrongPeer {
                    expected,
                    found,
                }))),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Requires a client certificate with an Ed25519 key; the PeerId is read after the handshake.
#[derive(Debug)]
pub struct PeerClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PeerClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "peer certificates are self-signed: no chain expected".into(),
            ));
        }
        peer_of(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
