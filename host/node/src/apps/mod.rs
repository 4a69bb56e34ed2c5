//! The `apps` area: web pages and other extensions building on AllPeers, with the user's
//! permission (issue 21).
//!
//! The extension opens one **app session** per origin, whose `hello` names that origin (taken
//! from the browser, never from the page); the session is bound to it for good
//! (`daemon::client::Session`). The router hands every call of an app session to [`serve`],
//! which answers only the app-facing methods of the contract (`contract::visit_app_methods`),
//! each behind its scope granted to the origin, under a rate limit shared by the origin's
//! sessions, as thin wrappers over the other areas' methods with the app's restrictions.
//! Events to an app session pass [`deliverable`], against the grant as it is at delivery.
//!
//! Domain rules, pure:
//! * [`rules`] — which origins are accepted, an app's type namespace, which types a schema,
//!   a query or a new resource may name, scope sets, which topics an app may hear.
//!
//! The daemon's side:
//! * [`state`] — the grants (memory and the store's `ap_app_grants`) and the rate limit.
//! * [`api`] — the trusted `apps.*` methods ([`AREA`]), [`serve`], [`deliverable`].

pub mod api;
pub mod rules;
pub mod state;

pub use api::{AREA, deliverable, serve};
