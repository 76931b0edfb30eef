//! What the run prints besides the measurements: the machine, the date, the table's layout.

use std::time::{SystemTime, UNIX_EPOCH};

/// The median; the mean of the two middle values for an even count.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[mid],
        _ => f64::midpoint(v[mid - 1], v[mid]),
    }
}

/// `nproc` (the CPUs this process may run on), the CPU model from `/proc/cpuinfo`, and the
/// load average, which tells how busy the machine was with other work.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown CPU");
    format!("nproc {cpus}, {model}, load average {}", load_average())
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Now, as an RFC 3339 UTC timestamp.
pub fn date() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar; H. Hinnant's
    // `civil_from_days`, in eras of 400 years = 146 097 days, years from March).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The commit of the tower-oauth-guard source this binary was built from, and whether its
/// `src/` or manifest had uncommitted changes.
pub fn guard_source() -> String {
    let dir = env!("PEERS_GUARD_SOURCE");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return format!("{dir} (no git commit found)");
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "src",
        "Cargo.toml",
    ])
    .is_some_and(|s| !s.is_empty());
    let note = if dirty {
        ", with uncommitted changes in src/ or Cargo.toml"
    } else {
        ""
    };
    format!("{dir} at commit {commit}{note}")
}

/// One table: a label column, then one right-aligned column per header; `None` is `—`.
pub fn table(headers: &[&str], rows: &[(&str, Vec<Option<f64>>)]) -> String {
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = headers.iter().map(|h| h.chars().count().max(6)).collect();
    let mut line = format!("{:label_width$}", "");
    for (h, w) in headers.iter().zip(&widths) {
        line.push_str(&format!("  {h:>w$}"));
    }
    let mut out = format!("{}\n", line.trim_end());
    for (label, cells) in rows {
        let mut line = format!("{label:label_width$}");
        for (cell, w) in cells.iter().zip(&widths) {
            let text = cell.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
            line.push_str(&format!("  {text:>w$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
