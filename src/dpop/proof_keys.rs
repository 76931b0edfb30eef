//! DPoP clients' proof keys, kept by the exact header they came in (RFC 9449 §4.2).
//!
//! A client signs every proof with the same key and sends the same protected header, so the
//! header checks, the key parsing and the RFC 7638 thumbprint are done once per client. The
//! cache holds only headers whose key made a valid signature, is keyed by the header's exact
//! base64url text (no normalization, no digest that two headers could share) and is bounded
//! in bytes: a flood of new keys costs each of them the full checks, nothing more.

use std::sync::Arc;

use crate::limits::MAX_DPOP_PROOF_LEN;

/// Default bound on the headers kept, in bytes of header text plus a fixed charge per entry.
pub(crate) const DEFAULT_PROOF_KEYS_BYTES: u64 = 4 * 1024 * 1024;

/// Charged per entry beyond its header text: the parsed key, the thumbprint and the
/// cache's bookkeeping, rounded up.
const ENTRY_OVERHEAD: u32 = 512;

/// Proof keys by protected header text.
pub(crate) struct ProofKeys<K> {
    cache: moka::sync::Cache<Box<str>, Arc<K>>,
}

impl<K: Send + Sync + 'static> ProofKeys<K> {
    /// A cache holding at most about `max_bytes` (see [`ENTRY_OVERHEAD`]).
    pub(crate) fn new(max_bytes: u64) -> Self {
        ProofKeys {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weight)
                .build(),
        }
    }

    /// The key a proof with exactly this header was verified with before.
    pub(crate) fn get(&self, header: &str) -> Option<Arc<K>> {
        self.cache.get(header)
    }

    /// Remembers `key` for `header`; the caller has verified a signature with it, and found
    /// no key for that header.
    pub(crate) fn insert(&self, header: &str, key: &Arc<K>) {
        // A header is part of a proof, so never longer than one; checked anyway, since the
        // bound of the cache depends on it.
        if header.len() <= MAX_DPOP_PROOF_LEN {
            self.cache.insert(header.into(), Arc::clone(key));
        }
    }
}

/// An entry's charge against the bound: its header text and [`ENTRY_OVERHEAD`].
#[allow(
    clippy::borrowed_box,
    reason = "moka's weigher receives the key as stored"
)]
fn weight<K>(header: &Box<str>, _: &Arc<K>) -> u32 {
    u32::try_from(header.len())
        .unwrap_or(u32::MAX)
        .saturating_add(ENTRY_OVERHEAD)
}

impl<K: Send + Sync + 'static> Default for ProofKeys<K> {
    fn default() -> Self {
        Self::new(DEFAULT_PROOF_KEYS_BYTES)
    }
}
