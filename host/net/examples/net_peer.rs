//! A small AllPeers endpoint in its own process, for cross-process tests.
//!
//! `net_peer --key FILE [--quic ADDR] [--tcp ADDR]` loads (or creates) an unsealed identity
//! file, listens, registers `allpeers/echo/1` (String -> String), the speed-test service and
//! `allpeers/sink/1` (a stream that reads everything and answers the byte count), prints
//! `READY <peer id> <quic addr> <tcp addr>` and serves until its standard input closes.

use std::net::SocketAddr;
use std::path::PathBuf;

use allpeers_net::service::speed;
use allpeers_net::{
    Endpoint, EndpointConfig, Identity, KeyFile, Namespace, ServiceFn, TransportKind,
};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut key = None;
    let mut config = EndpointConfig::loopback();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--key" => key = Some(PathBuf::from(value())),
            "--quic" => config.quic = Some(value().parse::<SocketAddr>().expect("an address")),
            "--tcp" => config.tcp = Some(value().parse::<SocketAddr>().expect("an address")),
            other => panic!("unknown argument {other}"),
        }
    }
    let key = key.expect("--key FILE");
    let identity = if key.exists() {
        KeyFile::read(&key)
            .and_then(|f| f.open(None, &key.display().to_string()))
            .expect("identity file")
    } else {
        let identity = Identity::generate();
        KeyFile::new(&identity, None)
            .write(&key)
            .expect("write identity");
        identity
    };
    let endpoint = Endpoint::bind(identity, config).await.expect("bind");
    endpoint.register(
        Namespace::allpeers("echo", 1).unwrap(),
        ServiceFn::new().on_request(|_ctx, text: String| async move { Ok(text) }),
    );
    endpoint.register(speed::namespace(), speed::service());
    endpoint.register(
        Namespace::allpeers("sink", 1).unwrap(),
        ServiceFn::new().on_stream(|_ctx, mut send, mut recv| async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            while let Ok(n) = recv.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let _ = send.write_all(&total.to_be_bytes()).await;
            let _ = send.finish().await;
        }),
    );
    let quic = endpoint.local_address(TransportKind::Quic).unwrap().addr;
    let tcp = endpoint.local_address(TransportKind::Tcp).unwrap().addr;
    println!("READY {} {quic} {tcp}", endpoint.peer_id());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    endpoint.shutdown().await;
}
