//! The integration tests, in one binary with one copy of the fixtures (`support`): real HTTP,
//! TLS, gRPC and Redis on 127.0.0.1, module by module in the order a request meets the guard.

// The fixtures serve axum routers and sign with a crypto backend.
#![cfg(all(feature = "axum", any(feature = "aws-lc-rs", feature = "rust-crypto")))]

mod support;

mod jwt;

mod introspection;

mod dpop;

mod mtls;

mod security;

mod properties;

mod limits;

// What the resource says about itself (RFC 9728), and step-up authentication (RFC 9470).
mod metadata;
mod step_up;

// The hot paths (parsed keys, proof-key cache, one token digest, the replay store) attacked.
mod hot_paths;
mod one_pass_claims;

mod grpc;

mod hyper_api;

mod examples;

// An MCP server (rmcp, Streamable HTTP) behind the guard.
#[cfg(feature = "fetch")]
mod mcp;

mod tower_http_auth;

#[cfg(feature = "metrics")]
mod metrics;

mod replay_redis;

mod tour;

// The tour's own modules, at the root where its code expects them (`crate::scenarios`).
#[path = "../../examples/tour/actors.rs"]
mod actors;
#[path = "../../examples/tour/scenarios.rs"]
mod scenarios;
#[path = "../../examples/tour/table.rs"]
mod table;
