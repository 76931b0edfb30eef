//! `GET /metrics`: the guard's metrics ([`tower_oauth_guard::metrics`]) in the Prometheus text
//! format, through `metrics-exporter-prometheus` as the process's recorder.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of the guard's latency histogram, in seconds: from a cached token (microseconds)
/// to a key fetch (tens of milliseconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1, 1.0,
];

/// Installs the Prometheus recorder; call before the guard is built, so that nothing the guard
/// records is lost.
pub fn install() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(tower_oauth_guard::metrics::DURATION.to_owned()),
            LATENCY_BUCKETS,
        )?
        .install_recorder()?)
}
