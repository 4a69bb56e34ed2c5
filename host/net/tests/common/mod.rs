#![allow(dead_code)]
//! Helpers shared by the endpoint tests: endpoints on loopback, test services, a time bound.

use std::future::Future;
use std::time::Duration;

use allpeers_net::service::ServiceError;
use allpeers_net::{Endpoint, EndpointConfig, Identity, Namespace, ServiceFn, TransportKind};

/// Every test step is bounded by this.
pub const BOUND: Duration = Duration::from_secs(30);

pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test step timed out")
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "allpeers_net=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn ns(name: &str) -> Namespace {
    Namespace::allpeers(name, 1).unwrap()
}

pub async fn endpoint() -> Endpoint {
    endpoint_with(EndpointConfig::loopback()).await
}

pub async fn endpoint_with(config: EndpointConfig) -> Endpoint {
    init_logs();
    Endpoint::bind(Identity::generate(), config).await.unwrap()
}

/// Tells `from` where `to` listens on `transport`.
pub fn introduce(from: &Endpoint, to: &Endpoint, transport: TransportKind) {
    from.add_peer_address(to.peer_id(), to.local_address(transport).unwrap());
}

/// Two endpoints that know each other's address on `transport`.
pub async fn pair(transport: TransportKind) -> (Endpoint, Endpoint) {
    let a = endpoint().await;
    let b = endpoint().await;
    introduce(&a, &b, transport);
    introduce(&b, &a, transport);
    (a, b)
}

/// `allpeers/echo/1`: answers the request text; "fail" is refused.
pub fn echo() -> ServiceFn {
    ServiceFn::new().on_request(|_ctx, text: String| async move {
        if text == "fail" {
            Err(ServiceError::refused("asked to fail"))
        } else {
            Ok(text)
        }
    })
}

/// Runs an async test body once per transport.
#[macro_export]
macro_rules! both_transports {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn quic() {
                $crate::common::bounded($body(allpeers_net::TransportKind::Quic)).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                $crate::common::bounded($body(allpeers_net::TransportKind::Tcp)).await
            }
        }
    };
}
