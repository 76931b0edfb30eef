//! Every bound on what a client, a proxy or an issuer can make the guard read, in one place.
//! Each is checked before the input is decoded, parsed or verified, and an input past its
//! bound is refused, never truncated.

// Request head (RFC 6750 §2.1, RFC 9449 §4.1).

/// Longest access token accepted; larger tokens are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Longest `DPoP` header (proof) accepted. Proofs are checked before the request is
/// authenticated, so this caps the base64, JSON and signature work an anonymous client can
/// cause, and with it the size of every JSON document parsed for a proof. An RS256 proof
/// carrying an 8192-bit key (the largest aws-lc verifies) is about 3.6 KB, so 4096 bytes turns
/// away no legitimate key.
pub const MAX_DPOP_PROOF_LEN: usize = 4096;

/// Longest `jti` accepted, in characters. Replay stores keep a digest of it, not the value, so
/// this bounds the work per proof rather than the store. RFC 9449 §4.2 suggests 96 random bits
/// or a UUID (16 or 36 characters); 256 leaves room for any reasonable encoding.
pub const MAX_JTI_LEN: usize = 256;

/// Longest `htu` accepted; real endpoint URIs are far shorter and this bounds work on attacker
/// input.
pub const MAX_HTU_LEN: usize = 2048;

// Headers consulted for the public origin and the client certificate (RFC 7239, RFC 9440).

/// Longest `Host` / `X-Forwarded-Host` value read: DNS names stop at 253 octets, plus port and
/// IPv6 brackets.
pub const MAX_HOST_HEADER_LEN: usize = 512;

/// Longest `Forwarded` / `X-Forwarded-Proto` line read: enough for several proxy hops of
/// for/by/host/proto.
pub const MAX_FORWARDED_HEADER_LEN: usize = 4096;

/// Longest `X-Forwarded-Prefix` line read: a mount point, not a full path.
pub const MAX_PREFIX_HEADER_LEN: usize = 1024;

/// Longest `Client-Cert` value accepted: ~12 KiB of DER, far above real leaf certificates.
pub const MAX_CLIENT_CERT_HEADER_LEN: usize = 16 * 1024;

/// Longest combined `Client-Cert-Chain` value accepted: room for [`MAX_CHAIN_CERTS`] large
/// certificates.
pub const MAX_CLIENT_CERT_CHAIN_HEADER_LEN: usize = 64 * 1024;

/// Most parameters accepted on one certificate of `Client-Cert` or `Client-Cert-Chain`
/// (RFC 8941 §3.1.2); RFC 9440 defines none, and each would be built before being ignored.
pub const MAX_CLIENT_CERT_PARAMETERS: usize = 8;

/// Most intermediates accepted in `Client-Cert-Chain`; real chains have 1-3.
pub const MAX_CHAIN_CERTS: usize = 8;

// What the issuer serves (RFC 7517, RFC 8414).

/// Largest JWK Set document accepted; real ones are a few KiB.
pub const MAX_JWKS_LEN: usize = 256 * 1024;

/// Most entries of a JWK Set's `keys` read; the rest are skipped unread. More is a
/// misconfiguration or an attack on lookup time and memory.
pub const MAX_KEYS: usize = 64;

/// Largest authorization-server metadata document accepted.
pub const MAX_METADATA_LEN: usize = 64 * 1024;

/// Longest introspection answer read (RFC 7662 §2.2); a longer one fails closed (`503`).
pub const MAX_INTROSPECTION_RESPONSE_LEN: usize = 64 * 1024;

/// Smallest RSA modulus accepted for any signature, in bits (RFC 7518 §3.3 requires 2048).
/// aws-lc refuses smaller keys itself; the pure-Rust backend would not, so the guard checks
/// before any key reaches a backend.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;

/// Largest RSA modulus accepted, in bits: aws-lc's own limit; verification cost grows with it.
pub const MAX_RSA_MODULUS_BITS: usize = 8192;

// Configuration.

/// Longest `realm` accepted (RFC 6750 §3): a name, not a document.
pub const MAX_REALM_LEN: usize = 256;
