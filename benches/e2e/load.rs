//! The load: keep-alive HTTP/1.1 connections, one request in flight on each, for a bounded
//! time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tower_oauth_guard::DPOP;

use crate::credentials::{Credential, Credentials, Issuer};
use crate::server::{Server, own_cpu_time};
use crate::{Error, Scenario};

/// What one window of one scenario measured.
#[derive(Default)]
pub struct Window {
    pub requests: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Answers other than 200, and the first of them.
    pub refused: usize,
    pub sample: Option<Answer>,
    /// The pool ran out before the time was up.
    pub ran_out: bool,
    /// CPU time the server's and this process's threads used meanwhile, where known.
    pub server_cpu: Option<Duration>,
    pub client_cpu: Option<Duration>,
}

impl Window {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds `other` to this one (a connection's tally to the window's, or the rounds).
    pub fn merge(&mut self, other: Window) {
        let add = |a: Option<Duration>, b: Option<Duration>| Some(a.unwrap_or_default() + b?);
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.server_cpu = add(self.server_cpu, other.server_cpu);
        self.client_cpu = add(self.client_cpu, other.client_cpu);
        self.latencies.extend(other.latencies);
        self.refused += other.refused;
        self.sample = self.sample.take().or(other.sample);
        self.ran_out |= other.ran_out;
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// What the server answered.
pub struct Answer {
    status: StatusCode,
    /// The guard says why it refused in its challenge (RFC 6750 §3, RFC 9449 §7.1).
    challenge: Option<HeaderValue>,
    body: Bytes,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(challenge) = &self.challenge {
            write!(
                f,
                ", {WWW_AUTHENTICATE}: {}",
                String::from_utf8_lossy(challenge.as_bytes())
            )?;
        }
        write!(f, ", body: {:?}", String::from_utf8_lossy(&self.body))
    }
}

/// One request, and its answer read to the end.
async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &HeaderValue,
    path: &str,
    credential: Option<&Credential>,
) -> Result<Answer, Error> {
    let mut request = Request::get(path).header(HOST, host.clone());
    if let Some(c) = credential {
        request = request.header(AUTHORIZATION, c.authorization.clone());
        if let Some(proof) = &c.dpop {
            request = request.header(DPOP, proof.clone());
        }
    }
    sender.ready().await?;
    let response = sender.send_request(request.body(Empty::new())?).await?;
    let (status, challenge) = (response.status(), response.headers().get(WWW_AUTHENTICATE));
    let challenge = challenge.cloned();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        challenge,
        body,
    })
}

/// Requests until `length` is up or the credentials run out, on connections of its own so
/// that every window starts alike.
pub async fn window(
    server: &Server,
    connections: u64,
    path: &'static str,
    credentials: Credentials,
    length: Duration,
) -> Result<Window, Error> {
    let addr = server.addr;
    let host = HeaderValue::try_from(addr.to_string())?;
    let credentials = Arc::new(credentials);
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..connections {
        senders.push(connect(addr).await?);
    }
    let cpu_before = (server.cpu_time(), own_cpu_time());
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = tokio::task::JoinSet::new();
    for mut sender in senders {
        let (host, credentials, next) = (host.clone(), credentials.clone(), next.clone());
        tasks.spawn(async move {
            let mut tally = Window::default();
            while Instant::now() < deadline {
                let Some(credential) = credentials.nth(next.fetch_add(1, Relaxed)) else {
                    tally.ran_out = true;
                    break;
                };
                let sent = Instant::now();
                let answer = send(&mut sender, &host, path, credential).await?;
                tally.latencies.push(sent.elapsed());
                tally.requests += 1;
                if answer.status != StatusCode::OK {
                    tally.refused += 1;
                    tally.sample.get_or_insert(answer);
                }
            }
            Ok::<_, Error>(tally)
        });
    }
    let mut total = Window::default();
    while let Some(tally) = tasks.join_next().await {
        total.merge(tally??);
    }
    total.elapsed = start.elapsed();
    let used = |before: Option<Duration>, after: Option<Duration>| after?.checked_sub(before?);
    total.server_cpu = used(cpu_before.0, server.cpu_time());
    total.client_cpu = used(cpu_before.1, own_cpu_time());
    Ok(total)
}

/// One request of `scenario` on its own connection, before any timing: the server must
/// answer 200 with the expected binding, or the figures would measure something else.
pub async fn probe(addr: SocketAddr, issuer: &Issuer, scenario: Scenario) -> Result<(), Error> {
    let credentials = issuer.credentials(scenario, 1);
    let credential = credentials.nth(0).expect("one credential");
    let host = HeaderValue::try_from(addr.to_string())?;
    let mut sender = connect(addr).await?;
    let answer = send(&mut sender, &host, scenario.path(), credential).await?;
    let binding = serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["binding"].as_str().map(str::to_owned));
    let what = binding.unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    if answer.status != StatusCode::OK || what != scenario.expected_answer() {
        return Err(format!("{}: the probe was answered {answer}", scenario.name()).into());
    }
    Ok(())
}
