//! `cargo run --example tour` plays its scenarios for real; this runs the same logic and pins
//! what every cell must show.

use crate::scenarios::*;
use crate::table::{Defence, Tour, Verdict};

/// Expected verdicts: bearer, PKCE, DPoP, mTLS (`None`: not applicable).
type Expected = [Option<Verdict>; 4];

const A: Option<Verdict> = Some(Verdict::Accepted);
const R: Option<Verdict> = Some(Verdict::Rejected);
const NA: Option<Verdict> = None;

const EXPECTED: [(&str, Expected); 10] = [
    (LEGITIMATE, [A, A, A, A]),
    (STOLEN_TOKEN, [A, NA, R, R]),
    (STOLEN_CODE, [A, R, NA, NA]),
    (REPLAYED_REQUEST, [A, NA, R, R]),
    (ALTERED_REQUEST, [A, NA, R, R]),
    (OTHER_AUDIENCE, [R, NA, R, R]),
    (EXPIRED, [R, NA, R, R]),
    (FORGED, [R, NA, R, R]),
    (KEY_STRIPPED, [NA, NA, R, R]),
    (SPOOFED_CLIENT_CERT, [NA, NA, NA, R]),
];

/// The decisive answer behind some cells: the right check refused, not just any.
const EVIDENCE: [(&str, Defence, &str); 12] = [
    (LEGITIMATE, Defence::Dpop, "200 (accepted as dpop)"),
    (LEGITIMATE, Defence::Mtls, "200 (accepted as mtls)"),
    (STOLEN_TOKEN, Defence::Dpop, "401 invalid_token"),
    (
        STOLEN_TOKEN,
        Defence::Mtls,
        "does not match the token binding",
    ),
    (STOLEN_CODE, Defence::Bearer, "200 (accepted as bearer)"),
    (
        STOLEN_CODE,
        Defence::Pkce,
        "token endpoint -> invalid_grant",
    ),
    (
        REPLAYED_REQUEST,
        Defence::Dpop,
        "401 invalid_dpop_proof (DPoP proof replayed)",
    ),
    (
        ALTERED_REQUEST,
        Defence::Dpop,
        "POST /api/transfer -> 401 invalid_dpop_proof",
    ),
    (
        OTHER_AUDIENCE,
        Defence::Bearer,
        "not intended for this resource",
    ),
    (EXPIRED, Defence::Mtls, "expired"),
    (FORGED, Defence::Bearer, "invalid signature"),
    (
        SPOOFED_CLIENT_CERT,
        Defence::Mtls,
        "client certificate required",
    ),
];

async fn tour() -> Tour {
    crate::scenarios::run().await.expect("the tour runs")
}

#[tokio::test]
async fn every_cell_shows_the_expected_outcome() {
    let tour = tour().await;
    assert_eq!(
        tour.rows.iter().map(|r| r.scenario).collect::<Vec<_>>(),
        EXPECTED.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "rows and their order"
    );
    for (scenario, expected) in EXPECTED {
        let row = tour.row(scenario).unwrap();
        assert_eq!(row.legitimate, scenario == LEGITIMATE, "{scenario}");
        for (defence, want) in Defence::ALL.into_iter().zip(expected) {
            let got = row.cell(defence);
            assert_eq!(
                got.map(|o| o.verdict),
                want,
                "{scenario} / {}: {:?}",
                defence.label(),
                got.map(|o| &o.evidence)
            );
        }
    }
    // The API was served over TLS on loopback, and --details lists every observation.
    assert!(tour.api.starts_with("https://127.0.0.1:"), "{}", tour.api);
    let details = tour.details();
    for row in &tour.rows {
        for (_, observation) in &row.cells {
            if let Some(o) = observation {
                assert!(details.contains(&o.evidence), "{details}");
            }
        }
    }
    for (scenario, defence, needle) in EVIDENCE {
        let evidence = &tour.row(scenario).unwrap().cell(defence).unwrap().evidence;
        assert!(
            evidence.contains(needle),
            "{scenario} / {}: {evidence:?} lacks {needle:?}",
            defence.label()
        );
    }
}

#[tokio::test]
async fn the_table_is_aligned_and_marks_each_cell() {
    let tour = tour().await;
    let plain = tour.render(false);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 2 + EXPECTED.len(), "{plain}");
    assert!(!plain.contains('\x1b'), "no colours without a terminal");
    // Every column starts at the same character offset on every line.
    let offsets = |line: &str| {
        ["bearer", "PKCE", "DPoP", "mTLS"]
            .map(|h| lines[0].find(h).map(|b| lines[0][..b].chars().count()))
            .map(|o| line.chars().nth(o.unwrap() - 1))
    };
    for (line, (scenario, expected)) in lines[2..].iter().zip(EXPECTED) {
        assert!(line.starts_with(scenario), "{line}");
        // The character just before each column is a space: cells do not overflow.
        assert!(offsets(line).iter().all(|c| *c == Some(' ')), "{line}");
        let marks: Vec<char> = line[scenario.len()..]
            .chars()
            .filter(|c| matches!(c, '✓' | '✗' | '·'))
            .collect();
        let want: Vec<char> = expected
            .iter()
            .map(|v| match (v, scenario == LEGITIMATE) {
                (None, _) => '·',
                (Some(Verdict::Accepted), true) | (Some(Verdict::Rejected), false) => '✓',
                _ => '✗',
            })
            .collect();
        assert_eq!(marks, want, "{line}");
    }
    let colored = tour.render(true);
    assert!(
        colored.contains("\x1b[31;1m✗ accepted!\x1b[0m"),
        "{colored}"
    );
    assert!(colored.contains("\x1b[32m✓ rejected\x1b[0m"), "{colored}");
}
