//! Byte pumps between a loopback TCP socket and a service stream (relay ends).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use allpeers_net::transport::{RecvStream, SendStream};

const CHUNK: usize = 64 * 1024;

/// Copies both ways until both directions ended (or one failed). Returns bytes copied
/// (tcp -> stream, stream -> tcp).
pub async fn pump(tcp: TcpStream, mut send: SendStream, mut recv: RecvStream) -> (u64, u64) {
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if send.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    total += n as u64;
                }
            }
        }
        let _ = send.finish().await;
        total
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match recv.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if wr.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    total += n as u64;
                }
            }
        }
        let _ = wr.shutdown().await;
        total
    };
    tokio::join!(up, down)
}
