//! `examples/mcp_server.rs` served for real and spoken to in MCP's Streamable HTTP transport
//! (JSON-RPC in POSTs, answers as server-sent events): the 401 that sends a client to the
//! metadata, the metadata that sends it to the issuer, a session with a token for the server's
//! canonical URI, the admin tool refused without its scope, and a token for another audience.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::support::*;

#[allow(dead_code)]
#[path = "../../examples/mcp_server.rs"]
mod mcp_server;

const ACCEPT: &str = "application/json, text/event-stream";

/// A JSON-RPC POST to the MCP endpoint; returns the reply and its session id, if any.
async fn post(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: Value,
) -> (Reply, Option<String>) {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if let Some(session) = session {
        builder = builder.header("mcp-session-id", session);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let session = headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    (
        Reply {
            status,
            headers,
            body,
        },
        session,
    )
}

/// The JSON-RPC response in a reply, whether sent as JSON or as server-sent events.
fn rpc_result(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    if let Ok(value) = serde_json::from_str::<Value>(&reply.body) {
        return value;
    }
    reply
        .body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC response in {}", reply.body))
}

fn call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

#[tokio::test]
async fn the_mcp_example_sends_clients_to_its_metadata_and_serves_tokens_for_its_canonical_uri() {
    let issuer = TestIssuer::start().await;
    let (listener, base) = bind().await;
    let canonical = format!("{base}/mcp");
    let jwks = issuer.jwks_url();
    let guard = mcp_server::guard(&issuer.issuer, Some(&jwks), &canonical)
        .await
        .unwrap();
    let host = base.trim_start_matches("http://").to_owned();
    serve_on(listener, mcp_server::app(&guard, &host).unwrap());

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}});

    // No token: a 401 whose challenge names the metadata (RFC 9728 §5.1).
    let (anonymous, _) = post(&canonical, None, None, initialize.clone()).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource/mcp");
    let challenges = anonymous.www_authenticate();
    assert!(
        challenges
            .iter()
            .any(|c| c.contains(&format!(r#"resource_metadata="{metadata_url}""#))),
        "{challenges:?}"
    );

    // The metadata, outside the guard, names the issuer and the canonical URI.
    let doc = send("GET", &metadata_url, &[]).await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc = doc.json();
    assert_eq!(doc["resource"], canonical);
    assert_eq!(doc["authorization_servers"], json!([issuer.issuer]));
    assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));

    // A token for the canonical URI: initialize, list the tools, call one.
    let token = issuer.token(&canonical, json!({"scope": "mcp:tools"}));
    let (reply, session) = post(&canonical, Some(&token), None, initialize.clone()).await;
    let init = rpc_result(&reply);
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (reply, _) = post(&canonical, Some(&token), Some(&session), initialized).await;
    assert!(reply.status.is_success(), "{} {}", reply.status, reply.body);

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (reply, _) = post(&canonical, Some(&token), Some(&session), list).await;
    let tools = rpc_result(&reply);
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["admin_stats", "echo"]);

    let echo = call(3, "echo", json!({"text": "hi"}));
    let (reply, _) = post(&canonical, Some(&token), Some(&session), echo).await;
    let result = rpc_result(&reply);
    assert_eq!(
        result["result"]["content"][0]["text"], "alice: hi",
        "{result}"
    );

    // The admin tool without `mcp:admin`: a tool error naming the scope (the HTTP layer does
    // not read which tool is called, so no 403 here).
    let admin = call(4, "admin_stats", json!({}));
    let (reply, _) = post(&canonical, Some(&token), Some(&session), admin.clone()).await;
    let result = rpc_result(&reply);
    assert_eq!(result["result"]["isError"], true, "{result}");
    let text = result["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("insufficient_scope") && text.contains("mcp:admin"),
        "{text}"
    );

    // With it, in a session of its own.
    let admin_token = issuer.token(&canonical, json!({"scope": "mcp:tools mcp:admin"}));
    let (reply, admin_session) =
        post(&canonical, Some(&admin_token), None, initialize.clone()).await;
    rpc_result(&reply);
    let admin_session = admin_session.unwrap();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    post(
        &canonical,
        Some(&admin_token),
        Some(&admin_session),
        initialized,
    )
    .await;
    let (reply, _) = post(&canonical, Some(&admin_token), Some(&admin_session), admin).await;
    let result = rpc_result(&reply);
    assert_ne!(result["result"]["isError"], true, "{result}");

    // A token for another audience is refused before the MCP server sees the request.
    let elsewhere = issuer.token("https://other.example/mcp", json!({"scope": "mcp:tools"}));
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (reply, _) = post(&canonical, Some(&elsewhere), Some(&session), list).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(reply.www_authenticate()[0].contains("resource_metadata="));
}
