//! Delivery: the retry decision (pure, [`Backoff::after`]), the SMTP transport built from
//! the config, and the background worker that drains the queue.
//!
//! The queue lives in the hub's database, so the worker keeps no state of its own: on each
//! turn it takes what is due (up to the pool size, leased to this instance: see
//! [`lease`]), sends it, records the outcome, and sleeps until the next entry is due (or
//! a lease runs out) or a new mail is queued (here, or at another instance of a cluster).
//! A hub stopped with mail queued finds it at the next start. A mail is marked sent right
//! after the server accepted it; a hub killed between the two sends it again
//! (at-least-once, the Message-ID is the same).

use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport as _, Tokio1Executor};
use tokio::sync::Semaphore;

use super::config::{RetryConfig, SmtpConfig, SmtpSecurity};
use super::store::{Queued, State};
use super::template::{Letter, Site, compose, render};
use super::{Inner, now_ms};

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 4xx, a dropped connection, a timeout, a TLS failure: may work later.
    Temporary(String),
    /// 5xx: will not work. `bad_address`: the server says the mailbox does not exist
    /// (550/551/553), so the address goes on the suppression list (a hard bounce).
    Permanent { reason: String, bad_address: bool },
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(u64),
    GiveUp,
}

/// Exponential backoff: `first`, doubling per attempt, at most `max`; nothing after
/// `give_up_after` since the mail was queued.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first_ms: u64,
    pub max_ms: u64,
    pub give_up_after_ms: u64,
}

impl Backoff {
    pub fn new(c: &RetryConfig) -> Backoff {
        Backoff {
            first_ms: c.first_ms.max(1),
            max_ms: c.max_ms.max(c.first_ms.max(1)),
            give_up_after_ms: c.give_up_after_secs.saturating_mul(1000),
        }
    }

    /// `attempts`: failed attempts so far, this one included (1 after the first).
    pub fn after(&self, failure: &Failure, attempts: u32, queued_at: u64, now: u64) -> Next {
        match failure {
            Failure::Permanent { .. } => Next::GiveUp,
            Failure::Temporary(_) => {
                let shift = attempts.saturating_sub(1).min(40);
                let delay = self.first_ms.saturating_mul(1u64 << shift).min(self.max_ms);
                let at = now.saturating_add(delay);
                if at.saturating_sub(queued_at) > self.give_up_after_ms {
                    Next::GiveUp
                } else {
                    Next::RetryAt(at)
                }
            }
        }
    }
}

/// Sorts a lettre error into temporary and permanent.
pub fn classify(e: &lettre::transport::smtp::Error) -> Failure {
    let reason = e.to_string();
    if e.is_permanent() {
        let bad_address = e
            .status()
            .map(|c| matches!(u16::from(c), 550 | 551 | 553))
            .unwrap_or(false);
        Failure::Permanent {
            reason,
            bad_address,
        }
    } else {
        Failure::Temporary(reason)
    }
}

/// How long one mail's whole SMTP transaction may take (`timeout_secs`). lettre's async
/// transport bounds only the connect, so a server that stops answering mid-way would hold a
/// delivery slot for ever; past this the attempt fails as temporary (and the transport is
/// rebuilt, so the abandoned connection is never reused).
pub fn send_deadline(c: &SmtpConfig) -> Duration {
    Duration::from_secs(c.timeout_secs.max(1))
}

/// How long a mail taken from the queue is leased to this instance (in a cluster no other
/// instance takes it before): its attempt is bounded by [`send_deadline`]; twice that plus
/// ten seconds leaves room for the database updates around it. A mail whose instance died
/// mid-send waits at most this long before another instance sends it (less once the
/// cluster finds that instance dead, see [`super::store`]).
pub fn lease(c: &SmtpConfig) -> Duration {
    send_deadline(c) * 2 + Duration::from_secs(10)
}

/// The SMTP transport of the config: implicit TLS or required STARTTLS, the WebPKI roots
/// plus `root_certs`, optional credentials, a pool.
pub fn transport(c: &SmtpConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let mut tls = TlsParameters::builder(c.host.clone());
    for path in &c.root_certs {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("mail.smtp.root_certs {}: {e}", path.display()))?;
        tls = tls.add_root_certificate(
            Certificate::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("mail.smtp.root_certs {}: {e}", path.display()))?,
        );
    }
    let tls = tls.build_rustls()?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
        .port(c.port)
        .timeout(Some(Duration::from_secs(c.timeout_secs.max(1))))
        .tls(match c.security {
            SmtpSecurity::Tls => Tls::Wrapper(tls),
            SmtpSecurity::Starttls => Tls::Required(tls),
        })
        .pool_config(
            PoolConfig::new()
                .max_size(c.pool_max.max(1))
                .idle_timeout(Duration::from_secs(c.pool_idle_secs)),
        );
    let password = match (&c.password, &c.password_file) {
        (_, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("mail.smtp.password_file {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        (Some(p), None) => Some(p.clone()),
        (None, None) => None,
    };
    if let Some(user) = &c.username {
        builder = builder.credentials(Credentials::new(user.clone(), password.unwrap_or_default()));
    }
    Ok(builder.build())
}

/// Longest the worker sleeps without looking at the queue (also how often it prunes; in a
/// cluster, a bound on missed wake-ups).
const IDLE_LOOK: Duration = Duration::from_secs(60);
/// Finished entries are kept this long (the daily counts need one day).
const KEEP_FINISHED_MS: u64 = 2 * 24 * 3600 * 1000;

/// Drains the queue for as long as the gateway lives: up to `pool_max` mails in flight,
/// each in a task of its own (a slow server for one mail does not hold up the others).
pub async fn run(inner: std::sync::Weak<Inner>) {
    let slots = match inner.upgrade() {
        Some(g) => Arc::new(Semaphore::new(g.config.smtp.pool_max.max(1) as usize)),
        None => return,
    };
    loop {
        // A free slot first: what is taken is attempted at once, well within its lease.
        let Ok(first) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(gateway) = inner.upgrade() else {
            return;
        };
        let now = now_ms();
        let lease_until = now + lease(&gateway.config.smtp).as_millis() as u64;
        let free = 1 + slots.available_permits();
        match gateway.store.claim(now, lease_until, free).await {
            Ok(due) if !due.is_empty() => {
                let mut first = Some(first);
                for q in due {
                    let permit = match first.take() {
                        Some(p) => p,
                        None => match slots.clone().try_acquire_owned() {
                            Ok(p) => p,
                            // Only this loop takes slots, so the ones counted are still
                            // free; were one not, the mail's lease would free it later.
                            Err(_) => break,
                        },
                    };
                    let gateway = gateway.clone();
                    tokio::spawn(async move {
                        deliver(&gateway, q).await;
                        drop(permit);
                        // The outcome may make the next look sooner (a retry time).
                        gateway.wake.notify_one();
                    });
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => allpeers_log::marrow!("mail queue unreadable: {e}"),
        }
        drop(first);
        let wait = {
            let store = &gateway.store;
            if let Err(e) = store.prune(now.saturating_sub(KEEP_FINISHED_MS)).await {
                allpeers_log::marrow!("mail queue prune failed: {e}");
            }
            match store.next_due().await {
                Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now)).min(IDLE_LOOK),
                _ => IDLE_LOOK,
            }
        };
        let wake = gateway.wake.clone();
        drop(gateway);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}

/// One attempt at one mail.
async fn deliver(gateway: &Arc<Inner>, q: Queued) {
    let now = now_ms();
    let record = |r: Result<(), super::store::StoreError>| {
        if let Err(e) = r {
            allpeers_log::marrow!(id = q.id, "mail queue not updated: {e}");
        }
    };
    // Unsubscribed since it was queued (the suppression cancels, but a race is cheap to close).
    match gateway.store.suppression(&q.recipient).await {
        Ok(Some(_)) => {
            record(
                gateway
                    .store
                    .finish(q.id, State::Cancelled, None, now)
                    .await,
            );
            return;
        }
        Ok(None) => {}
        Err(e) => allpeers_log::marrow!("suppression list unreadable: {e}"),
    }
    let letter: Letter = match serde_json::from_str(&q.letter) {
        Ok(l) => l,
        Err(e) => {
            record(
                gateway
                    .store
                    .finish(
                        q.id,
                        State::Failed,
                        Some(&format!("corrupt queue entry: {e}")),
                        now,
                    )
                    .await,
            );
            return;
        }
    };
    let kind = letter.kind();
    let unsubscribe_url = gateway.unsubscribe_url(&q.recipient);
    let rendered = render(
        &letter,
        &Site {
            hub_name: &gateway.hub_name,
            unsubscribe_url: &unsubscribe_url,
        },
    );
    let message_id = gateway
        .keys
        .message_id(q.id, q.queued_at, gateway.from.email.domain());
    let message = match compose(
        rendered,
        &gateway.from,
        &q.address,
        message_id,
        &unsubscribe_url,
        gateway.dkim.as_ref(),
    ) {
        Ok(m) => m,
        Err(e) => {
            record(
                gateway
                    .store
                    .finish(
                        q.id,
                        State::Failed,
                        Some(&format!("cannot compose: {e}")),
                        now,
                    )
                    .await,
            );
            return;
        }
    };
    let started = std::time::Instant::now();
    let transport = gateway.transport.lock().unwrap().clone();
    let deadline = send_deadline(&gateway.config.smtp);
    let result = match tokio::time::timeout(deadline, transport.send(message)).await {
        Ok(result) => result.map_err(|e| (classify(&e), e.to_string())),
        Err(_) => {
            // The connection stopped mid-transaction: a fresh pool for what follows.
            match self::transport(&gateway.config.smtp) {
                Ok(fresh) => *gateway.transport.lock().unwrap() = fresh,
                Err(e) => allpeers_log::marrow!("mail transport not rebuilt: {e}"),
            }
            let why = format!("no answer within {} s (timed out)", deadline.as_secs());
            Err((Failure::Temporary(why.clone()), why))
        }
    };
    drop(transport);
    let now = now_ms();
    let store = &gateway.store;
    match result {
        Ok(response) => {
            allpeers_log::flesh!(id = q.id, kind, code = %response.code(), ms = started.elapsed().as_millis() as u64, "mail sent");
            record(store.finish(q.id, State::Sent, None, now).await);
            gateway
                .counters
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Err((failure, e)) => {
            let attempts = q.attempts + 1;
            match (
                gateway.backoff.after(&failure, attempts, q.queued_at, now),
                &failure,
            ) {
                (Next::RetryAt(at), _) => {
                    allpeers_log::flesh!(
                        id = q.id,
                        kind,
                        attempts,
                        in_ms = at - now,
                        "mail deferred: {e}"
                    );
                    record(store.retry_at(q.id, at, &e).await);
                }
                (
                    Next::GiveUp,
                    Failure::Permanent {
                        bad_address: true, ..
                    },
                ) => {
                    allpeers_log::marrow!(id = q.id, kind, "mail bounced, address suppressed: {e}");
                    record(store.finish(q.id, State::Failed, Some(&e), now).await);
                    record(gateway.store.suppress(&q.recipient, "bounce", now).await);
                }
                (Next::GiveUp, _) => {
                    allpeers_log::marrow!(id = q.id, kind, attempts, "mail given up: {e}");
                    record(store.finish(q.id, State::Failed, Some(&e), now).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let b = Backoff::new(&RetryConfig {
            first_ms: 100,
            max_ms: 1000,
            give_up_after_secs: 10,
        });
        let t = Failure::Temporary("451".into());
        assert_eq!(b.after(&t, 1, 0, 0), Next::RetryAt(100));
        assert_eq!(b.after(&t, 2, 0, 0), Next::RetryAt(200));
        assert_eq!(b.after(&t, 4, 0, 0), Next::RetryAt(800));
        assert_eq!(b.after(&t, 5, 0, 0), Next::RetryAt(1000));
        assert_eq!(b.after(&t, u32::MAX, 0, 0), Next::RetryAt(1000));
        assert_eq!(
            b.after(&t, 3, 0, 9_500),
            Next::RetryAt(9_900),
            "just inside"
        );
        assert_eq!(
            b.after(&t, 3, 0, 9_700),
            Next::GiveUp,
            "past the give-up time"
        );
        let p = Failure::Permanent {
            reason: "550".into(),
            bad_address: true,
        };
        assert_eq!(b.after(&p, 1, 0, 0), Next::GiveUp);
    }
}
