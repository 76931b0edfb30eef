//! tower-oauth-guard beside its peers, in one process, on the same tokens and proofs.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml            # 7 rounds × 1000
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- --quick # a smoke run
//! ```
//!
//! Every number in the table is a time per request divided by **A**, one aws-lc-rs ES256
//! signature verification with the key parsed per call (`UnparsedPublicKey::verify`), measured
//! in the same rounds. Rows are the paths a resource server takes for a request (RFC 6750
//! bearer tokens that are RFC 9068 JWTs, RFC 9449 DPoP), columns the libraries; `—` where a
//! library does not take that path. See the footnotes the run prints, and `README.md`.

mod clock;
mod contenders;
mod fixture;
mod huskarl_aws_lc;
mod report;

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use http::StatusCode;
use tokio::runtime::Runtime;

use crate::contenders::{
    DpopVerifier, Guard, Huskarl, Jsonwebtoken, JwtAuthorizer, Raw, SeenProofs, head, request07,
    request08, status07, status08,
};
use crate::fixture::{Fixture, RoundInputs, SplitJws};
use crate::report::median;

#[derive(Parser)]
#[command(
    about = "tower-oauth-guard and its peers: time per request as a multiple of one ES256 verification"
)]
struct Args {
    /// A short smoke run: 3 rounds of 200 calls (unless --rounds or --batch say otherwise).
    #[arg(long)]
    quick: bool,
    /// Interleaved rounds; the table shows the median (default 7; 3 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Calls of each contender per round (default 1000; 200 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
    /// Time with the wall clock instead of the process's CPU time (on an idle machine the two
    /// agree; on a busy one wall time also counts other processes' turns on the CPU).
    #[arg(long)]
    wall: bool,
}

/// The paths, the table's rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    /// A bearer JWT access token (RFC 6750, RFC 9068) never seen before: one signature.
    NewToken,
    /// The same bearer token on every call.
    SeenToken,
    /// A DPoP-bound token (`cnf.jkt`, RFC 9449 §6) seen before, with a new proof (§4.3).
    DpopSeen,
    /// A new DPoP-bound token with a new proof: two signatures.
    DpopNew,
    /// The bearer token seen before, through an axum router with the contender's layer, minus
    /// the same router without it.
    Router,
}

const ROWS: [Row; 5] = [
    Row::NewToken,
    Row::SeenToken,
    Row::DpopSeen,
    Row::DpopNew,
    Row::Router,
];

impl Row {
    fn label(self) -> &'static str {
        match self {
            Row::NewToken => "1 bearer JWT, new token (1 sig)",
            Row::SeenToken => "2 bearer JWT, token seen before",
            Row::DpopSeen => "3 DPoP: token seen, new proof (1 sig)",
            Row::DpopNew => "4 DPoP: new token + new proof (2 sigs)",
            Row::Router => "5 axum router+layer − bare router",
        }
    }
}

/// The contenders, the table's columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    /// tower-oauth-guard: `OAuthGuard::check` on the request head, or `guard.layer()`.
    Guard,
    /// jwt-authorizer: bearer JWTs (RFC 6750, RFC 7519) through its `Authorizer` or its layer.
    JwtAuthorizer,
    /// huskarl-resource-server's RFC 9068 validator, DPoP included, with its default crypto.
    Huskarl,
    /// The same, with the aws-lc-rs verifier platform of `huskarl_aws_lc`.
    HuskarlAwsLc,
    /// dpop-verifier: the proof checks of RFC 9449 §4.3, completed with a token check.
    DpopVerifier,
    /// jsonwebtoken alone: a JWS (RFC 7515) verified and its claims validated (RFC 7519 §7.2).
    Jsonwebtoken,
    /// The signature verifications the path needs, keys parsed once.
    Floor,
    /// The same on the round's new tokens and proofs, one per call as the contenders get them.
    FloorNew,
    /// Row 1 by this crate with its token cache off.
    GuardUncached,
    /// Row 1's new tokens verified by ring, jwt-authorizer's crypto.
    RingNew,
}

const COLS: [Col; 10] = [
    Col::Guard,
    Col::JwtAuthorizer,
    Col::Huskarl,
    Col::HuskarlAwsLc,
    Col::DpopVerifier,
    Col::Jsonwebtoken,
    Col::Floor,
    Col::FloorNew,
    Col::GuardUncached,
    Col::RingNew,
];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Guard => "oauth-guard",
            Col::JwtAuthorizer => "jwt-authorizer",
            Col::Huskarl => "huskarl",
            Col::HuskarlAwsLc => "huskarl+aws-lc",
            Col::DpopVerifier => "dpop-verifier",
            Col::Jsonwebtoken => "jsonwebtoken",
            Col::Floor => "floor",
            Col::FloorNew => "floor, new",
            Col::GuardUncached => "guard, no cache",
            Col::RingNew => "ring, new",
        }
    }
}

/// Times a loop over `$items`, running `$body` for each: seconds per item. The items are made
/// before the clock starts; `$body` may `.await` inside an `async` block.
macro_rules! timed {
    ($items:expr, |$item:pat_param| $body:expr) => {{
        let items = $items.into_iter();
        let n = items.len();
        let start = clock::seconds();
        for $item in items {
            $body;
        }
        (clock::seconds() - start) / n as f64
    }};
}

/// Everyone, set up once.
struct Contenders {
    raw: Raw,
    guard: Guard,
    jwt_authorizer: JwtAuthorizer,
    huskarl: Huskarl,
    huskarl_aws_lc: Huskarl,
    dpop_verifier: DpopVerifier,
    jsonwebtoken: Jsonwebtoken,
}

/// One round's time of one cell, in seconds per call; for the router row also the bare
/// router's time, reported aside.
struct Sample {
    seconds: f64,
    bare: Option<f64>,
}

impl From<f64> for Sample {
    fn from(seconds: f64) -> Self {
        Sample {
            seconds,
            bare: None,
        }
    }
}

/// One table cell: a closure that makes its inputs from the round's, then times them.
struct Cell<'a> {
    row: Row,
    col: Col,
    time: Box<dyn FnMut(&RoundInputs) -> Sample + 'a>,
}

fn cell<'a>(row: Row, col: Col, time: impl FnMut(&RoundInputs) -> Sample + 'a) -> Cell<'a> {
    Cell {
        row,
        col,
        time: Box::new(time),
    }
}

/// Why a DPoP contender may refuse a proof made at the start of a round: rounds must end
/// within the 60 s a proof is accepted (RFC 9449 §11.1).
const STALE: &str = "(a round longer than a proof's 60 s? try a smaller --batch)";

/// The bearer tokens of a round for one row.
type TokensOf = fn(&Fixture, &RoundInputs) -> Vec<String>;

/// Every cell of the table, in row order.
#[allow(clippy::too_many_lines, reason = "one table, read top to bottom")]
fn cells<'a>(rt: &'a Runtime, f: &'a Fixture, c: &'a Contenders) -> Vec<Cell<'a>> {
    use Col as C;
    use Row as R;
    let g = &c.guard;
    let bearer_heads = |tokens: &[String]| tokens.iter().map(|t| head(t, None)).collect::<Vec<_>>();
    let bearer_headers = move |tokens: &[String]| {
        bearer_heads(tokens)
            .into_iter()
            .map(|p| p.headers)
            .collect::<Vec<_>>()
    };
    let dpop_seen_heads = |r: &RoundInputs| {
        let heads = r.proofs.iter().map(|p| head(&f.bound_token, Some(p)));
        heads.collect::<Vec<_>>()
    };
    let dpop_new_heads = |r: &RoundInputs| {
        let heads = r.new_bound.iter().map(|(t, p)| head(t, Some(p)));
        heads.collect::<Vec<_>>()
    };
    let mut cells = Vec::new();

    // Rows 1 and 2: bearer tokens, new ones or the same one.
    let tokens_of: [(Row, TokensOf); 2] = [
        (R::NewToken, |_, r| r.new_tokens.clone()),
        (R::SeenToken, |f, r| {
            vec![f.seen_token.clone(); r.new_tokens.len()]
        }),
    ];
    for (row, tokens_for) in tokens_of {
        let tokens = move |r: &RoundInputs| tokens_for(f, r);
        let guard = if row == R::NewToken {
            &g.bearer_new
        } else {
            &g.bearer_seen
        };
        cells.push(cell(row, C::Guard, move |r| {
            let mut heads = bearer_heads(&tokens(r));
            rt.block_on(async {
                timed!(heads.iter_mut(), |p| assert!(
                    g.check(guard, p).await,
                    "oauth-guard refused"
                ))
            })
            .into()
        }));
        cells.push(cell(row, C::JwtAuthorizer, move |r| {
            let headers = bearer_headers(&tokens(r));
            rt.block_on(async {
                timed!(headers.iter(), |h| assert!(
                    c.jwt_authorizer.check(h).await,
                    "jwt-authorizer refused"
                ))
            })
            .into()
        }));
        for (col, h) in [
            (C::Huskarl, &c.huskarl),
            (C::HuskarlAwsLc, &c.huskarl_aws_lc),
        ] {
            cells.push(cell(row, col, move |r| {
                let headers = bearer_headers(&tokens(r));
                rt.block_on(async {
                    timed!(headers.iter(), |x| assert!(
                        h.check(&h.bearer, x).await,
                        "huskarl refused"
                    ))
                })
                .into()
            }));
        }
        cells.push(cell(row, C::Jsonwebtoken, move |r| {
            let tokens = tokens(r);
            timed!(tokens.iter(), |t| assert!(
                black_box(c.jsonwebtoken.decode(t)).is_some(),
                "jsonwebtoken refused"
            ))
            .into()
        }));
        cells.push(cell(row, C::Floor, move |r| {
            timed!(0..r.new_tokens.len(), |_| assert!(
                c.raw.floor(black_box(&c.raw.token))
            ))
            .into()
        }));
        if row == R::NewToken {
            cells.push(cell(row, C::FloorNew, move |r| {
                let tokens: Vec<SplitJws> = r.new_tokens.iter().map(|t| SplitJws::new(t)).collect();
                timed!(tokens.iter(), |t| assert!(c.raw.floor(black_box(t)))).into()
            }));
            cells.push(cell(row, C::RingNew, move |r| {
                let tokens: Vec<SplitJws> = r.new_tokens.iter().map(|t| SplitJws::new(t)).collect();
                timed!(tokens.iter(), |t| assert!(c.raw.ring(black_box(t)))).into()
            }));
            cells.push(cell(row, C::GuardUncached, move |r| {
                let mut heads = bearer_heads(&tokens(r));
                rt.block_on(async {
                    timed!(heads.iter_mut(), |p| assert!(
                        g.check(&g.bearer_new_uncached, p).await,
                        "oauth-guard without a cache refused"
                    ))
                })
                .into()
            }));
        }
    }

    // Rows 3 and 4: DPoP, the bound token seen before or new, a new proof every call.
    for row in [R::DpopSeen, R::DpopNew] {
        let heads = move |r: &RoundInputs| {
            if row == R::DpopSeen {
                dpop_seen_heads(r)
            } else {
                dpop_new_heads(r)
            }
        };
        let guard = if row == R::DpopSeen {
            &g.dpop_seen
        } else {
            &g.dpop_new
        };
        cells.push(cell(row, C::Guard, move |r| {
            let mut heads = heads(r);
            rt.block_on(async {
                timed!(heads.iter_mut(), |p| assert!(
                    g.check(guard, p).await,
                    "oauth-guard refused {STALE}"
                ))
            })
            .into()
        }));
        for (col, h) in [
            (C::Huskarl, &c.huskarl),
            (C::HuskarlAwsLc, &c.huskarl_aws_lc),
        ] {
            cells.push(cell(row, col, move |r| {
                let headers: Vec<_> = heads(r).into_iter().map(|p| p.headers).collect();
                rt.block_on(async {
                    timed!(headers.iter(), |x| assert!(
                        h.check(&h.dpop, x).await,
                        "huskarl refused {STALE}"
                    ))
                })
                .into()
            }));
        }
        let mut store = SeenProofs::default();
        let dv = &c.dpop_verifier;
        cells.push(cell(row, C::DpopVerifier, move |r| {
            rt.block_on(async {
                if row == R::DpopSeen {
                    let token = &f.bound_token;
                    timed!(r.proofs.iter(), |p| assert!(
                        dv.check_known(&mut store, token, p).await,
                        "dpop-verifier refused {STALE}"
                    ))
                } else {
                    timed!(r.new_bound.iter(), |(t, p)| assert!(
                        dv.check_new(&mut store, &c.jsonwebtoken, t, p).await,
                        "dpop-verifier refused {STALE}"
                    ))
                }
            })
            .into()
        }));
        cells.push(cell(row, C::Floor, move |r| {
            let raw = &c.raw;
            let seconds = if row == R::DpopSeen {
                timed!(0..r.proofs.len(), |_| assert!(
                    raw.floor_proof(black_box(&raw.proof))
                ))
            } else {
                timed!(0..r.proofs.len(), |_| assert!(
                    raw.floor2(black_box(&raw.token), black_box(&raw.proof))
                ))
            };
            seconds.into()
        }));
        cells.push(cell(row, C::FloorNew, move |r| {
            let raw = &c.raw;
            let seconds = if row == R::DpopSeen {
                let proofs: Vec<SplitJws> = r.proofs.iter().map(|p| SplitJws::new(p)).collect();
                timed!(proofs.iter(), |p| assert!(raw.floor_proof(black_box(p))))
            } else {
                let pairs: Vec<(SplitJws, SplitJws)> = r
                    .new_bound
                    .iter()
                    .map(|(t, p)| (SplitJws::new(t), SplitJws::new(p)))
                    .collect();
                timed!(pairs.iter(), |(t, p)| assert!(
                    raw.floor2(black_box(t), black_box(p))
                ))
            };
            seconds.into()
        }));
    }

    // Row 5: the layer in a router, as (router with the layer) − (the same router without).
    cells.push(cell(R::Router, C::Guard, move |r| {
        let n = r.new_tokens.len();
        let bare: Vec<_> = (0..n).map(|_| request08(&f.seen_token)).collect();
        let with: Vec<_> = (0..n).map(|_| request08(&f.seen_token)).collect();
        rt.block_on(async {
            let bare = timed!(bare, |q| assert_eq!(
                status08(&g.bare, q).await,
                StatusCode::OK
            ));
            let with = timed!(with, |q| assert_eq!(
                status08(&g.router, q).await,
                StatusCode::OK
            ));
            Sample {
                seconds: with - bare,
                bare: Some(bare),
            }
        })
    }));
    let ja = &c.jwt_authorizer;
    cells.push(cell(R::Router, C::JwtAuthorizer, move |r| {
        let n = r.new_tokens.len();
        let bare: Vec<_> = (0..n).map(|_| request07(&f.seen_token)).collect();
        let with: Vec<_> = (0..n).map(|_| request07(&f.seen_token)).collect();
        rt.block_on(async {
            let bare = timed!(bare, |q| assert_eq!(
                status07(&ja.bare, q).await,
                StatusCode::OK
            ));
            let with = timed!(with, |q| assert_eq!(
                status07(&ja.router, q).await,
                StatusCode::OK
            ));
            Sample {
                seconds: with - bare,
                bare: Some(bare),
            }
        })
    }));
    cells
}

/// Before anything is timed: every contender admits the valid inputs of each path it takes,
/// and refuses a token signed by another key (and, for DPoP, a proof signed by another key
/// than the one in its header), so that no number below is a refusal's cost.
fn check_everyone(rt: &Runtime, f: &Fixture, c: &Contenders) {
    let must = |ok: bool, who: &str, what: &str| assert!(ok, "{who} must {what}");
    let raw = &c.raw;
    let forged = SplitJws::new(&f.forged_token(false));
    must(raw.a(&raw.token), "A", "verify the token");
    must(!raw.a(&forged), "A", "refuse the forged token");
    must(
        raw.floor(&raw.token) && raw.floor2(&raw.token, &raw.proof),
        "the floor",
        "verify",
    );
    must(!raw.floor(&forged), "the floor", "refuse the forged token");
    must(raw.ring(&raw.token), "ring", "verify the token");
    must(!raw.ring(&forged), "ring", "refuse the forged token");

    let g = &c.guard;
    let ja = &c.jwt_authorizer;
    let jwt = &c.jsonwebtoken;
    let dv = &c.dpop_verifier;
    rt.block_on(async {
        for (token, valid) in [
            (f.access_token(false), true),
            (f.seen_token.clone(), true),
            (f.forged_token(false), false),
        ] {
            let what = if valid {
                "admit a valid bearer token"
            } else {
                "refuse a forged bearer token"
            };
            for guard in [&g.bearer_new, &g.bearer_new_uncached, &g.bearer_seen] {
                must(
                    g.check(guard, &mut head(&token, None)).await == valid,
                    "oauth-guard",
                    what,
                );
            }
            let headers = head(&token, None).headers;
            must(ja.check(&headers).await == valid, "jwt-authorizer", what);
            for h in [&c.huskarl, &c.huskarl_aws_lc] {
                must(h.check(&h.bearer, &headers).await == valid, "huskarl", what);
            }
            must(jwt.decode(&token).is_some() == valid, "jsonwebtoken", what);
            let status = if valid {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            must(
                status08(&g.router, request08(&token)).await == status,
                "oauth-guard's layer",
                what,
            );
            must(
                status07(&ja.router, request07(&token)).await == status,
                "jwt-authorizer's layer",
                what,
            );
        }

        let new_bound = f.access_token(true);
        let forged_bound = f.forged_token(true);
        let cases = [
            (
                f.bound_token.clone(),
                f.proof(&f.bound_token),
                true,
                "admit a bound token with its proof",
            ),
            (
                new_bound.clone(),
                f.proof(&new_bound),
                true,
                "admit a new bound token with its proof",
            ),
            (
                forged_bound.clone(),
                f.proof(&forged_bound),
                false,
                "refuse a forged bound token",
            ),
            (
                f.bound_token.clone(),
                f.forged_proof(&f.bound_token),
                false,
                "refuse a forged proof",
            ),
        ];
        for (token, proof, valid, what) in cases {
            for guard in [&g.dpop_seen, &g.dpop_new] {
                let mut parts = head(&token, Some(&proof));
                must(
                    g.check(guard, &mut parts).await == valid,
                    "oauth-guard",
                    what,
                );
            }
            for h in [&c.huskarl, &c.huskarl_aws_lc] {
                must(
                    h.check(&h.dpop, &head(&token, Some(&proof)).headers).await == valid,
                    "huskarl",
                    what,
                );
            }
            // Each with a store of its own: the same proof goes to both.
            let known = dv
                .check_known(&mut SeenProofs::default(), &token, &proof)
                .await;
            let decoded = dv
                .check_new(&mut SeenProofs::default(), jwt, &token, &proof)
                .await;
            let seen_before = token == f.bound_token;
            must(
                known == (valid && seen_before),
                "dpop-verifier (known token)",
                what,
            );
            must(decoded == valid, "dpop-verifier (jsonwebtoken)", what);
        }
        // A proof is good once (RFC 9449 §11.1).
        let proof = f.proof(&f.bound_token);
        let mut parts = head(&f.bound_token, Some(&proof));
        must(
            g.check(&g.dpop_seen, &mut parts).await,
            "oauth-guard",
            "admit a proof once",
        );
        let mut parts = head(&f.bound_token, Some(&proof));
        must(
            !g.check(&g.dpop_seen, &mut parts).await,
            "oauth-guard",
            "refuse a replayed proof",
        );
    });
}

fn main() {
    let args = Args::parse();
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 7 }) as usize;
    let batch = args.batch.unwrap_or(if args.quick { 200 } else { 1000 }) as usize;
    let warmup = batch.min(200);
    if args.wall {
        clock::use_wall_time();
    }

    println!("tower-oauth-guard and its peers, {}", report::date());
    println!("machine: {}", report::machine());
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let f = Fixture::new();
    // Every proof a DPoP guard will see: the checks, the warm-up round, the timed rounds.
    let proofs = u64::try_from((rounds + 1) * batch + warmup + 100).expect("fits");
    let jsonwebtoken = Jsonwebtoken::new(&f);
    let c = Contenders {
        raw: Raw::new(&f),
        guard: rt.block_on(Guard::new(&f, proofs)),
        jwt_authorizer: rt.block_on(JwtAuthorizer::new(&f)),
        huskarl: rt.block_on(Huskarl::new(&f, None)),
        huskarl_aws_lc: rt.block_on(Huskarl::aws_lc(&f)),
        dpop_verifier: DpopVerifier::new(&f, &jsonwebtoken),
        jsonwebtoken,
    };
    assert_eq!(
        tower_oauth_guard::jwk_thumbprint(&f.client.public_jwk().to_string())
            .ok()
            .as_deref(),
        Some(f.client.thumbprint().as_str()),
        "the bench's RFC 7638 thumbprint agrees with tower-oauth-guard's"
    );
    check_everyone(&rt, &f, &c);
    println!("checked: every contender admits the valid inputs of its paths and refuses forgeries");

    let mut cells = cells(&rt, &f, &c);
    let n = cells.len();
    let time_a = |calls: usize| timed!(0..calls, |_| assert!(c.raw.a(black_box(&c.raw.token))));
    // Warm-up: caches, allocators, lazily built state; not counted.
    let inputs = RoundInputs::new(&f, warmup);
    time_a(warmup);
    for cell in &mut cells {
        (cell.time)(&inputs);
    }

    let mut a_seconds = Vec::new();
    let mut ratios = vec![Vec::with_capacity(rounds); n];
    let mut bare = vec![Vec::with_capacity(rounds); n];
    let started = Instant::now();
    for round in 0..rounds {
        let inputs = RoundInputs::new(&f, batch);
        // A before the first cell and after every cell: each cell is timed between two As, so
        // that a machine whose speed drifts (a busy sibling hyperthread) moves both alike.
        let mut a_marks = vec![time_a(batch)];
        let mut samples: Vec<Option<(Sample, usize)>> = (0..n).map(|_| None).collect();
        // Each round starts at another cell, so no cell always follows the same one.
        for i in (0..n).map(|k| (k + round * n / rounds) % n) {
            samples[i] = Some(((cells[i].time)(&inputs), a_marks.len() - 1));
            a_marks.push(time_a(batch));
        }
        for (i, sample) in samples.into_iter().enumerate() {
            let (sample, mark) = sample.expect("every cell ran");
            let a = f64::midpoint(a_marks[mark], a_marks[mark + 1]);
            ratios[i].push(sample.seconds / a);
            if let Some(b) = sample.bare {
                bare[i].push(b / a);
            }
        }
        eprintln!(
            "round {}/{rounds}: A = {:.1} µs (median of the round's {})",
            round + 1,
            median(&a_marks) * 1e6,
            a_marks.len()
        );
        a_seconds.extend(a_marks);
    }
    let elapsed = started.elapsed();

    let value = |row: Row, col: Col| {
        let i = cells.iter().position(|c| c.row == row && c.col == col)?;
        Some(median(&ratios[i]))
    };
    let rows: Vec<(&str, Vec<Option<f64>>)> = ROWS
        .iter()
        .map(|&row| {
            (
                row.label(),
                COLS.iter().map(|&col| value(row, col)).collect(),
            )
        })
        .collect();
    let headers: Vec<&str> = COLS.iter().map(|c| c.header()).collect();
    println!();
    println!(
        "Time per request as a multiple of A (lower is better), median of {rounds} interleaved rounds of {batch} calls:"
    );
    println!();
    print!("{}", report::table(&headers, &rows));
    println!();
    let a = median(&a_seconds);
    let (lo, hi) = a_seconds
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), &s| {
            (lo.min(s), hi.max(s))
        });
    println!(
        "aside: A = {:.1} µs per call (median of all its batches; {:.1}–{:.1} µs, on the clock of [1]); the timed rounds took {:.1} s of wall time; load average now {}",
        a * 1e6,
        lo * 1e6,
        hi * 1e6,
        elapsed.as_secs_f64(),
        report::load_average()
    );
    // How far apart a cell's rounds were: (max − min) / median of its per-round ratios.
    let spreads: Vec<(f64, usize)> = ratios
        .iter()
        .enumerate()
        .filter(|(i, _)| cells[*i].row != Row::Router)
        .map(|(i, r)| {
            let (lo, hi) = r
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            ((hi - lo) / median(r), i)
        })
        .collect();
    let typical = median(&spreads.iter().map(|s| s.0).collect::<Vec<_>>());
    if let Some(&(widest, i)) = spreads.iter().max_by(|a, b| a.0.total_cmp(&b.0)) {
        println!(
            "aside: round-to-round spread of a cell, (max − min) / median: {:.0}% typical, {:.0}% at most (row {}, {})",
            typical * 100.0,
            widest * 100.0,
            cells[i]
                .row
                .label()
                .split_whitespace()
                .next()
                .unwrap_or("?"),
            cells[i].col.header()
        );
    }
    let bare_of = |col: Col| {
        let i = cells
            .iter()
            .position(|c| c.row == Row::Router && c.col == col)?;
        Some(median(&bare[i]))
    };
    if let (Some(b08), Some(b07)) = (bare_of(Col::Guard), bare_of(Col::JwtAuthorizer)) {
        println!(
            "aside: the bare routers of row 5 cost {b08:.2} A (axum 0.8) and {b07:.2} A (axum 0.7) per request"
        );
    }
    footnotes();
}

/// What each number is, and what the run was built from.
fn footnotes() {
    let notes = [
        "Method: each round makes fresh inputs (outside the clock), then times a batch of every \
         cell one after the other (starting at a different cell each round), and A before the \
         first cell and after every cell. A cell's ratio in a round is its time \
         per call divided by the mean of the two A timed just before and just after it; the table \
         shows the median of the per-round ratios. One thread, one current-thread tokio runtime; \
         async calls are awaited in a loop inside one block_on. Clock: {clock}.",
        "A: aws_lc_rs UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(msg, sig) on the \
         seen-before token (RFC 7518 §3.4 ES256), the key parsed from its SEC1 point every call.",
        "floor: the same verification with a pre-parsed key (ParsedPublicKey::verify_sig): the token's \
         signature for rows 1–2, the proof's (client key) for row 3, both for row 4; no floor for a \
         router. \"floor, new\": the same verifications of the round's new tokens and proofs, one \
         per call, each split and decoded beforehand: what a signature costs when its input is \
         new, not already in the CPU's caches (rows 1, 3 and 4). \"ring, new\": row 1's new tokens \
         verified by ring 0.17 (UnparsedPublicKey, ECDSA_P256_SHA256_FIXED), the crypto \
         jwt-authorizer runs on: its floor.",
        "Inputs: the same for every contender. ES256 access tokens as RFC 9068 §2 (typ at+jwt; iss, \
         aud, exp, iat, sub, client_id, jti, scope), one issuer key with a kid in a static JWK Set; \
         bound ones carry cnf.jkt, the RFC 7638 thumbprint of the client's P-256 key. DPoP proofs \
         (RFC 9449 §4.2: typ dpop+jwt, jwk, jti, htm GET, htu, iat, ath) made fresh for each round; \
         each contender has its own replay memory, so each sees every proof once.",
        "oauth-guard (tower-oauth-guard): OAuthGuard::check(&mut Parts, &Policy::default(), \
         Presence::Required) on the request head (Authorization, DPoP and Host headers), with \
         require_at_jwt_typ(); one guard per row; token cache on (the default). Row 1: every token \
         new to the guard, so each costs its verification and its insertion into the cache. Rows \
         3–4: Dpop::required(PublicUri::fixed(origin)) with a MemoryReplayStore large enough for \
         every proof of the run. Row 5: guard.layer() on an axum 0.8 Router. \"guard, no cache\": \
         row 1 by a guard built with no_token_cache(): the difference is what inserting a new \
         token into the cache costs.",
        "jwt-authorizer: Authorizer::extract_token(headers) + check_auth(token) (what its layer does \
         per request), keys from_jwks_text, Validation with iss and aud (exp checked by default). It \
         has no DPoP. Row 5: its AuthorizationLayer on an axum 0.7 Router (it is written for axum \
         0.7), minus a bare axum 0.7 router. Its crypto is jsonwebtoken 9 on ring.",
        "huskarl / huskarl+aws-lc: huskarl-resource-server's Rfc9068Validator::validate_request(headers, \
         GET, absolute URI, None) (checks typ at+jwt, iss, aud, exp, iat, sub, client_id), keys from \
         a static JWK Set through its MultiKeyVerifier. \"huskarl\" runs its default verifier \
         platform (huskarl-crypto-native: RustCrypto p256); \"huskarl+aws-lc\" plugs in this bench's \
         aws-lc-rs JwsVerifierPlatform (src/huskarl_aws_lc.rs). Rows 3–4: require_dpop(true) with a \
         proof-jti checker (an in-memory set; huskarl ships only the trait). It has no token cache, so \
         rows 1 and 2 do the same work, and no released axum layer (huskarl-axum is unreleased).",
        "dpop-verifier: proof verification only (RFC 9449 §4.3, ES256 with RustCrypto p256, an \
         in-memory set of jti hashes as its ReplayStore, iat from 60 s ago to 5 s ahead), given the \
         proof and token as strings. Row 3: plus a HashMap lookup of the token's claims, validated \
         before, an exp check and the cnf.jkt comparison. Row 4: plus jsonwebtoken 11 decoding and \
         validating the new token (as the jsonwebtoken column), and the cnf.jkt comparison.",
        "jsonwebtoken: jsonwebtoken 11 (aws_lc_rs) decode::<Claims>(token, DecodingKey::from_jwk, \
         Validation::new(ES256) with iss, aud, and exp, iss, aud, sub required) on the token string; \
         no header parsing, no typ check, no cache.",
        "Row 5: (time of a request through the router with the layer) − (the same through the router \
         without it), both driven in process by tower::ServiceExt::oneshot on a clone of the Router \
         (no sockets); the token is the seen-before one of row 2.",
    ];
    println!();
    for (i, note) in notes.iter().enumerate() {
        println!("[{}] {}", i + 1, note.replace("{clock}", clock::describe()));
    }
    println!(
        "[{}] tower-oauth-guard source: {}",
        notes.len() + 1,
        report::guard_source()
    );
    println!(
        "[{}] versions (benches/peers/Cargo.lock): {}",
        notes.len() + 2,
        env!("PEERS_VERSIONS")
    );
}
