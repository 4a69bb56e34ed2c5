//! The HTTP listener (hyper, HTTP/1.1) for the links in the mails:
//!
//! * `POST /u/<token>` — one-click unsubscribe (RFC 8058: mail clients POST
//!   `List-Unsubscribe=One-Click` to the `List-Unsubscribe` URL); the address goes on the
//!   suppression list and what is queued for it is dropped.
//! * `GET /u/<token>` — a page with a button that makes that POST. A GET changes nothing:
//!   link scanners and prefetchers open links in mail.
//! * `POST /c/<secret>` / `GET /c/<secret>` — the same for the double opt-in link.
//!
//! Tokens are checked before anything is stored; a forged or foreign token gets 404. Bounds:
//! request heads must arrive within [`HEAD_TIMEOUT`], bodies are read up to
//! [`MAX_BODY`], at most `http.max_connections` connections at once.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Inner;

/// Time a client has to send its request head (slowloris).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A one-click body is `List-Unsubscribe=One-Click` (26 bytes); a form adds little.
const MAX_BODY: usize = 1024;
/// Time one connection may live.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(listener: TcpListener, inner: Weak<Inner>) {
    let max = inner
        .upgrade()
        .map(|i| i.config.http.max_connections.max(1))
        .unwrap_or(1);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Full: close at once rather than queue without bound.
            continue;
        };
        let Some(gateway) = inner.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&gateway, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn page(status: StatusCode, title: &str, body_html: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>{body_html}</body></html>\n"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("referrer-policy", "no-referrer")
        .body(Full::new(Bytes::from(html)))
        .expect("static response")
}

fn not_found() -> Response<Full<Bytes>> {
    page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This link is not one of this hub's, or it has expired.</p>",
    )
}

async fn handle(gateway: &Inner, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let (route, token) = match path.strip_prefix("/u/") {
        Some(t) => ("u", t.to_string()),
        None => match path.strip_prefix("/c/") {
            Some(t) => ("c", t.to_string()),
            None => return not_found(),
        },
    };
    // Only URL-safe base64 appears in our tokens: anything else is not ours (and is never
    // echoed back into the page).
    if token.is_empty()
        || token.len() > super::tokens::TOKEN_CHARS
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return not_found();
    }
    match *req.method() {
        Method::GET => {
            let (title, button) = if route == "u" {
                ("Stop all mail from this hub?", "Stop all mail")
            } else {
                ("Confirm your address?", "Confirm")
            };
            page(
                StatusCode::OK,
                title,
                &format!(
                    "<form method=\"post\" action=\"/{route}/{token}\">\
                     <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                     <button type=\"submit\">{button}</button></form>"
                ),
            )
        }
        Method::POST => {
            // Read (bounded) and ignore the body: RFC 8058's is fixed, and the token alone
            // authorises.
            if Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
                .is_err()
            {
                return page(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "");
            }
            let done = if route == "u" {
                gateway.unsubscribe_token(&token).await
            } else {
                gateway.confirm_link(&token).await
            };
            match (done, route) {
                (Ok(true), "u") => page(
                    StatusCode::OK,
                    "Unsubscribed",
                    "<p>This hub will send no more mail to this address.</p>",
                ),
                (Ok(true), _) => page(
                    StatusCode::OK,
                    "Confirmed",
                    "<p>Your address is confirmed.</p>",
                ),
                (Ok(false), _) => not_found(),
                (Err(e), _) => {
                    allpeers_log::marrow!("mail link not applied: {e}");
                    page(StatusCode::INTERNAL_SERVER_ERROR, "Try again later", "")
                }
            }
        }
        _ => page(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", ""),
    }
}
