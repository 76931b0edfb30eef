//! `examples/mcp_server.rs` served for real and spoken to in MCP's Streamable HTTP transport
//! (JSON-RPC in POSTs, answers as server-sent events): the 401 that sends a client to the
//! metadata, the metadata that sends it to the issuer, a session with a token for the server's
//! canonical URI, the admin tool's call refused with a scope challenge, sessions bound to their
//! user, and a token for another audience.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    post_raw(url, token, session, body.to_string()).await
}

/// A POST of exactly these bytes.
async fn post_raw(
    url: &str,
    token: Option<&str>,
    session: Option<&str>,
    body: String,
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
    let request = builder.body(Full::new(Bytes::from(body))).unwrap();
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

/// Sends `bytes` on a new connection, then closes its sending side (`close`) or leaves it
/// open, and returns the response's status line.
async fn raw_status(host: &str, bytes: &str, close: bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    if close {
        stream.shutdown().await.unwrap();
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "no response: {}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
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
    let timeout = Duration::from_millis(300);
    serve_on(listener, mcp_server::app(&guard, &host, timeout).unwrap());

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}});

    // No token: a 401 whose challenge names the metadata (RFC 9728 §5.1).
    let (anonymous, _) = post(&canonical, None, None, initialize.clone()).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource/mcp");
    // ... and the scope every request needs, which a client asks for first (RFC 6750 §3).
    assert_eq!(
        anonymous.www_authenticate(),
        [format!(
            r#"Bearer scope="mcp:tools", resource_metadata="{metadata_url}""#
        )]
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

    // The admin tool without `mcp:admin`: the guard's 403 challenge naming the scope and the
    // metadata (MCP's scope step-up), before rmcp runs the tool.
    let admin = call(4, "admin_stats", json!({}));
    let (reply, _) = post(&canonical, Some(&token), Some(&session), admin.clone()).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        reply.www_authenticate(),
        [format!(
            r#"Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="mcp:tools mcp:admin", resource_metadata="{metadata_url}""#
        )]
    );
    // Other spellings of the same call: an escaped name, extra members, the name last.
    for message in [
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"admin\u005fstats","arguments":{}}}"#,
        r#"{"params":{"arguments":{},"name":"admin_stats"},"id":6,"jsonrpc":"2.0","method":"tools\/call"}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","name":"admin_stats","arguments":{}}}"#,
    ] {
        let (reply, _) = post_raw(&canonical, Some(&token), Some(&session), message.into()).await;
        assert_eq!(reply.status, 403, "{message}: {}", reply.body);
    }
    // A name given twice: whichever one rmcp reads, the admin tool does not run.
    let twice = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"admin_stats","name":"echo","arguments":{"text":"x"}}}"#;
    let (reply, _) = post_raw(&canonical, Some(&token), Some(&session), twice.into()).await;
    assert!(
        !reply.body.contains("sessions"),
        "{} {}",
        reply.status,
        reply.body
    );
    // A message too large to read (rmcp's limit too) is refused, not passed on unread; one cut
    // short is a bad request; one that does not arrive in time, a timeout.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"admin_stats","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(mcp_server::MAX_MESSAGE_LEN)
    );
    let (reply, _) = post_raw(&canonical, Some(&token), Some(&session), huge).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
         mcp-session-id: {session}\r\ncontent-type: application/json\r\naccept: {ACCEPT}\r\n\
         content-length: 100\r\n\r\n{{\"jsonrpc\""
    );
    assert!(
        raw_status(&host, &head, true)
            .await
            .starts_with("HTTP/1.1 400")
    );
    assert!(
        raw_status(&host, &head, false)
            .await
            .starts_with("HTTP/1.1 408")
    );
    // A declared length over the limit: refused at once, before any of it is read.
    let too_long = head.replace(
        "content-length: 100",
        &format!("content-length: {}", mcp_server::MAX_MESSAGE_LEN + 1),
    );
    let status = raw_status(&host, &too_long, false).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

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

    // A session belongs to the user who opened it: another user's token that names it (a
    // leaked session id) finds no session, and cannot close it either.
    let bob = issuer.token(&canonical, json!({"sub": "bob", "scope": "mcp:tools"}));
    let echo = call(10, "echo", json!({"text": "hi"}));
    let (reply, _) = post(&canonical, Some(&bob), Some(&session), echo.clone()).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    let delete = http::Request::delete(&canonical)
        .header("authorization", format!("Bearer {bob}"))
        .header("mcp-session-id", &session)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let deleted = client().request(delete).await.unwrap();
    assert_eq!(deleted.status(), 404);
    let (reply, _) = post(&canonical, Some(&token), Some(&session), echo).await;
    assert_eq!(
        rpc_result(&reply)["result"]["content"][0]["text"],
        "alice: hi"
    );
    // A session id the server never gave out is unknown too.
    let list = json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list"});
    let (reply, _) = post(&canonical, Some(&token), Some("made-up"), list).await;
    assert_eq!(reply.status, 404, "{}", reply.body);

    // A token without `mcp:tools` may not even list the tools.
    let bare = issuer.token(&canonical, json!({}));
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (reply, _) = post(&canonical, Some(&bare), Some(&session), list).await;
    reply.assert_error(403, "Bearer", "insufficient_scope");
    assert!(reply.www_authenticate()[0].contains(r#"scope="mcp:tools""#));

    // A token for another audience is refused before the MCP server sees the request.
    let elsewhere = issuer.token("https://other.example/mcp", json!({"scope": "mcp:tools"}));
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"});
    let (reply, _) = post(&canonical, Some(&elsewhere), Some(&session), list).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(reply.www_authenticate()[0].contains("resource_metadata="));
}

/// The guard admits a token when the request's head arrives; the message follows. Whatever the
/// message, a token that expired meanwhile (beyond the leeway) is refused once it is in.
/// `Expect: 100-continue` tells the test when the head has been admitted: the `100` comes
/// when the server starts reading the body.
#[tokio::test]
async fn a_message_that_arrives_after_its_token_expired_is_refused() {
    let issuer = TestIssuer::start().await;
    let clock = TestClock::at(now());
    let (listener, base) = bind().await;
    let canonical = format!("{base}/mcp");
    let guard = issuer
        .guard(&canonical)
        .resource(&canonical)
        .clock(clock.clone())
        .leeway(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let host = base.trim_start_matches("http://").to_owned();
    let app = mcp_server::app(&guard, &host, mcp_server::MESSAGE_TIMEOUT).unwrap();
    serve_on(listener, app);
    let t = clock.now();
    let token = issuer.token(
        &canonical,
        json!({"scope": "mcp:tools", "iat": t, "exp": t + 10}),
    );
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}})
    .to_string();
    let status_after = |late: i64| {
        let (host, token, message, clock) = (&host, &token, &message, &clock);
        async move {
            clock.set(t);
            let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
            let head = format!(
                "POST /mcp HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\naccept: {ACCEPT}\r\n\
                 expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
                message.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
            clock.set(t + late);
            stream.write_all(message.as_bytes()).await.unwrap();
            let n = stream.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    // Expired, but within the leeway: served.
    let served = status_after(69).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    let refused = status_after(70).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("token expired"), "{refused}");
}
