//! `cargo run --example tour`: what bearer tokens, PKCE, DPoP and mTLS each stop, observed.
//!
//! Starts a protected API over TLS on 127.0.0.1 and an in-process authorization server, then
//! replays common attacks against it and prints what the API actually answered. Nothing is
//! needed beyond this repository. `--details` also prints every decisive request and answer.

use std::io::IsTerminal as _;
use std::process::ExitCode;

mod actors;
mod scenarios;
mod table;

#[tokio::main]
async fn main() -> ExitCode {
    let details = std::env::args().skip(1).any(|a| a == "--details");
    let tour = match scenarios::run().await {
        Ok(tour) => tour,
        Err(error) => {
            eprintln!("the tour could not run: {error}");
            return ExitCode::FAILURE;
        }
    };
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    println!(
        "A protected API on {} (tower-oauth-guard, served by serve_tls), an in-process\n\
         authorization server, alice (legitimate client) and mallory (attacker).\n\
         Every cell is the answer to a request made just now.\n",
        tour.api
    );
    print!("{}", tour.render(color));
    println!(
        "\n✓ legitimate request accepted, or attack rejected   ✗ attack accepted   · not what this defence is about\n\
         PKCE protects the authorization-code exchange at the authorization server; DPoP and mTLS\n\
         bind the access token to a key the client holds, and the guard checks that binding.\n"
    );
    if details {
        print!("{}", tour.details());
    } else {
        println!("cargo run --example tour -- --details   shows each decisive request and answer.");
    }
    ExitCode::SUCCESS
}
