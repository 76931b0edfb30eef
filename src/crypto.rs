//! Crypto backends: which providers `jsonwebtoken` and `rustls` use.
//!
//! `aws-lc-rs` (default) is fast; `rust-crypto` verifies signatures in pure Rust. When both
//! features are on, aws-lc-rs wins. `jsonwebtoken` panics at first use when it cannot pick a
//! provider, so the guard installs one explicitly while it is built: a guard that was built can
//! never hit that panic.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::limits::{MAX_RSA_MODULUS_BITS, MIN_RSA_MODULUS_BITS};

/// The size in bits of a big-endian RSA modulus, if it is minimally encoded (RFC 7518
/// §6.3.1.1: no leading zero octet) and within [`MIN_RSA_MODULUS_BITS`]..=[`MAX_RSA_MODULUS_BITS`].
pub(crate) fn acceptable_rsa_modulus(n: &[u8]) -> bool {
    let Some(first) = n.first().copied().filter(|b| *b != 0) else {
        return false;
    };
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    (MIN_RSA_MODULUS_BITS..=MAX_RSA_MODULUS_BITS).contains(&bits)
}

/// The `jsonwebtoken` provider chosen by this crate's features, if any.
pub(crate) fn jwt_provider() -> Option<&'static jsonwebtoken::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Some(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
    }
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    {
        Some(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER)
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    {
        None
    }
}

/// Installs the feature-selected provider as `jsonwebtoken`'s process default.
///
/// Returns false when no crypto feature is on. An already installed provider is kept: the
/// application chose it on purpose.
pub(crate) fn install_jwt_provider() -> bool {
    match jwt_provider() {
        Some(p) => {
            let _already_installed = p.install_default();
            INSTALLED.store(true, Ordering::Release);
            true
        }
        None => false,
    }
}

/// Set once this crate has made sure `jsonwebtoken` has a provider.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether `jsonwebtoken` can be called without panicking: a feature-selected provider.
pub(crate) fn jwt_provider_ready() -> bool {
    ensure_jwt_provider();
    INSTALLED.load(Ordering::Acquire)
}

/// Installs the feature-selected `jsonwebtoken` provider once, for code paths that can run
/// without a built guard (standalone proof verification, tests).
pub(crate) fn ensure_jwt_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        install_jwt_provider();
    });
}

/// The rustls provider: the process default if the application installed one, else the one
/// this crate's features select.
#[cfg(any(
    feature = "fetch",
    feature = "serve-tls",
    feature = "redis",
    feature = "tonic"
))]
pub(crate) fn tls_provider() -> Option<std::sync::Arc<rustls::crypto::CryptoProvider>> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return Some(p.clone());
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        Some(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
    }
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    {
        Some(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    {
        None
    }
}
