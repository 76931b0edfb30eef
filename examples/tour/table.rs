//! What the tour observed, and how it is printed: one row per scenario, one column per
//! defence, one [`Observation`] per cell.

use std::fmt::Write as _;

/// The columns: what protects the client in that column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defence {
    /// A plain bearer token (and, for codes, an authorization request without PKCE).
    Bearer,
    /// PKCE on the authorization-code exchange (RFC 7636).
    Pkce,
    /// A DPoP-bound token (RFC 9449).
    Dpop,
    /// A certificate-bound token (RFC 8705).
    Mtls,
}

impl Defence {
    /// Every column, in order.
    pub const ALL: [Defence; 4] = [Defence::Bearer, Defence::Pkce, Defence::Dpop, Defence::Mtls];

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            Defence::Bearer => "bearer",
            Defence::Pkce => "PKCE",
            Defence::Dpop => "DPoP",
            Defence::Mtls => "mTLS",
        }
    }
}

/// What the server did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request reached the handler (or the token endpoint issued a token).
    Accepted,
    /// The guard (or the token endpoint) refused.
    Rejected,
}

/// One observed outcome and the exchange that produced it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Accepted or rejected.
    pub verdict: Verdict,
    /// The attacker's (or client's) decisive request and the answer, e.g.
    /// `GET /api/balance -> 401 invalid_token (...)`.
    pub evidence: String,
}

/// One scenario across the four columns; `None` where the defence is not about this scenario.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario, one of the constants of `scenarios`.
    pub scenario: &'static str,
    /// True for the row of legitimate requests, which should be accepted.
    pub legitimate: bool,
    /// One cell per [`Defence::ALL`] entry.
    pub cells: Vec<(Defence, Option<Observation>)>,
}

impl Row {
    /// The cell of `defence`.
    pub fn cell(&self, defence: Defence) -> Option<&Observation> {
        self.cells
            .iter()
            .find(|(d, _)| *d == defence)
            .and_then(|(_, o)| o.as_ref())
    }

    /// Whether a cell is the good outcome: legitimate requests accepted, attacks rejected.
    pub fn is_good(&self, observation: &Observation) -> bool {
        (observation.verdict == Verdict::Accepted) == self.legitimate
    }
}

/// Everything the tour observed.
#[derive(Debug, Clone)]
pub struct Tour {
    /// The protected API's base URL.
    pub api: String,
    /// One row per scenario.
    pub rows: Vec<Row>,
}

impl Tour {
    /// The row of `scenario`.
    #[cfg_attr(not(test), allow(dead_code))] // tests/tour.rs reads rows by name
    pub fn row(&self, scenario: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == scenario)
    }

    /// The table, aligned; ANSI colours when `color`.
    pub fn render(&self, color: bool) -> String {
        const HEADING: &str = "attack / property";
        const NOT_APPLICABLE: &str = "·";
        let paint = |text: &str, code: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_owned()
            }
        };
        let cell_text = |row: &Row, o: &Observation| match (o.verdict, row.is_good(o)) {
            (Verdict::Accepted, true) => "✓ accepted",
            (Verdict::Accepted, false) => "✗ accepted!",
            (Verdict::Rejected, true) => "✓ rejected",
            (Verdict::Rejected, false) => "✗ rejected!",
        };
        let first = self
            .rows
            .iter()
            .map(|r| width(r.scenario))
            .chain([width(HEADING)])
            .max()
            .unwrap_or(0);
        let column = width("✗ accepted!") + 2;
        let mut out = String::new();
        let _ = write!(out, "{}", pad(HEADING, first + 2));
        for d in Defence::ALL {
            let _ = write!(out, "{}", pad(d.label(), column));
        }
        let line = out.trim_end().to_owned();
        out = format!("{}\n{}\n", paint(&line, "1"), "─".repeat(width(&line)));
        for row in &self.rows {
            let _ = write!(out, "{}", pad(row.scenario, first + 2));
            for d in Defence::ALL {
                let (text, code) = match row.cell(d) {
                    None => (NOT_APPLICABLE, "2"),
                    Some(o) => (
                        cell_text(row, o),
                        if row.is_good(o) { "32" } else { "31;1" },
                    ),
                };
                let _ = write!(
                    out,
                    "{}{}",
                    paint(text, code),
                    pad("", column - width(text))
                );
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out
    }

    /// Every cell's decisive exchange, one per line.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            let _ = writeln!(out, "{}:", row.scenario);
            for (d, o) in &row.cells {
                if let Some(o) = o {
                    let _ = writeln!(out, "  {:<6} {}", d.label(), o.evidence);
                }
            }
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, to: usize) -> String {
    format!("{s}{}", " ".repeat(to.saturating_sub(width(s))))
}
