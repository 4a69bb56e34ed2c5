//! Resource adapters (the seed's per-type hooks): registered by type, they apply to subtypes
//! too, ancestors' adapters first. The write path runs them (see `write::prepare_new`).

use std::collections::HashMap;
use std::sync::Arc;

use allpeers_model::resource::Resource;
use allpeers_model::schema::Registry;

use crate::error::{Result, StoreError};

/// Per-type hooks. Every method may refuse the write with a reason.
pub trait ResourceAdapter: Send + Sync {
    /// Fills in a new resource before validation (defaults, generated values).
    fn initialise(&self, _r: &mut Resource) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Recomputes derived properties, on create and on every update, before validation.
    fn derive(&self, _r: &mut Resource) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Checks beyond the schema, after schema validation; an `Err` refuses the write.
    fn validate(&self, _r: &Resource) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// The adapters that apply to one type, in order (ancestors first), each with the type it was
/// registered for (named in refusals).
pub(crate) struct Chain(Vec<(String, Arc<dyn ResourceAdapter>)>);

impl Chain {
    fn each(
        &self,
        mut f: impl FnMut(&dyn ResourceAdapter) -> std::result::Result<(), String>,
    ) -> Result<()> {
        for (type_name, a) in &self.0 {
            f(a.as_ref()).map_err(|reason| StoreError::Adapter {
                type_name: type_name.clone(),
                reason,
            })?;
        }
        Ok(())
    }

    pub fn initialise(&self, r: &mut Resource) -> Result<()> {
        self.each(|a| a.initialise(r))
    }

    pub fn derive(&self, r: &mut Resource) -> Result<()> {
        self.each(|a| a.derive(r))
    }

    pub fn validate(&self, r: &Resource) -> Result<()> {
        self.each(|a| a.validate(r))
    }
}

/// Adapters by the type they were registered for.
#[derive(Default)]
pub(crate) struct Adapters(HashMap<String, Vec<Arc<dyn ResourceAdapter>>>);

impl Adapters {
    pub fn register(
        &mut self,
        reg: &Registry,
        type_name: &str,
        adapter: Arc<dyn ResourceAdapter>,
    ) -> Result<()> {
        if reg.get(type_name).is_none() {
            return Err(StoreError::BadRequest(format!(
                "unknown type '{type_name}'"
            )));
        }
        self.0
            .entry(type_name.to_string())
            .or_default()
            .push(adapter);
        Ok(())
    }

    /// The adapters for `type_name`: its ancestors' first, then its own.
    pub fn chain(&self, reg: &Registry, type_name: &str) -> Chain {
        Chain(
            reg.chain(type_name)
                .iter()
                .flat_map(|t| {
                    self.0
                        .get(&t.name)
                        .into_iter()
                        .flatten()
                        .map(|a| (t.name.clone(), a.clone()))
                })
                .collect(),
        )
    }
}
