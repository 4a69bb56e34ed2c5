//! What reconciliation compares: an op's id and its stamp (the order items are kept in).

use crate::op::OpId;

/// An item of a reconciled set, ordered by timestamp then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    pub timestamp: u64,
    pub id: OpId,
}
