//! Replay-check latency: the Redis store against a local redis-server, beside the
//! in-process store, in the same run, reported as ratios to the in-process store.
//!
//! `cargo bench --features redis --bench replay`. Uses `TOG_REDIS_URL` when set (scripts/test
//! starts one), else starts its own redis-server.

#[path = "../tests/it/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tower_oauth_guard::redis::RedisReplayStore;
use tower_oauth_guard::{MemoryReplayStore, ReplayCheck, ReplayKey, ReplayStore, ReplayWindow};

/// The guard's clock, fixed: the stores' cost must not depend on when the bench runs. Redis
/// remembers each proof for the window's 70 s from its own now (this `until` is long past).
const NOW: i64 = 1_700_000_000;
/// About as long as the guard's defaults ever ask (71 s, for a proof dated 5 s ahead).
const WINDOW: ReplayWindow = ReplayWindow {
    now: NOW,
    until: NOW + 70,
};
/// Client keys the proofs are spread over, as from many clients: each stays far below its
/// share of the stores however many iterations criterion runs.
const CLIENTS: u64 = 4096;
/// Generous: a benchmark measures, it must not fail closed on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Time and iterations per benchmark, over every iteration criterion ran (warm-up included).
#[derive(Default)]
struct Totals(Mutex<BTreeMap<&'static str, (Duration, u64)>>);

impl Totals {
    fn add(&self, name: &'static str, elapsed: Duration, iters: u64) {
        let mut map = self.0.lock().unwrap();
        let entry = map.entry(name).or_default();
        entry.0 += elapsed;
        entry.1 += iters;
    }

    fn mean(&self, name: &str) -> Option<Duration> {
        let map = self.0.lock().unwrap();
        let (time, iters) = map.get(name)?;
        (*iters > 0).then(|| *time / u32::try_from(*iters).unwrap_or(u32::MAX))
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn fresh_keys(n: u64) -> Vec<ReplayKey> {
    (0..n)
        .map(|_| {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            ReplayKey::new(&format!("bench-{}", i % CLIENTS), &i.to_string())
        })
        .collect()
}

/// Runs `iters` checks; `replayed` checks one already-seen key, else a new key each time.
fn measure(
    rt: &tokio::runtime::Runtime,
    store: &dyn ReplayStore,
    iters: u64,
    replayed: bool,
) -> Duration {
    let (keys, expected) = if replayed {
        let key = fresh_keys(1);
        rt.block_on(store.check_and_insert(&key[0], WINDOW))
            .unwrap();
        (key, ReplayCheck::Replayed)
    } else {
        (fresh_keys(iters), ReplayCheck::Fresh)
    };
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let key = &keys[if replayed { 0 } else { i as usize }];
            let check = store.check_and_insert(key, WINDOW).await.unwrap();
            debug_assert_eq!(check, expected);
            std::hint::black_box(check);
        }
        start.elapsed()
    })
}

fn replay_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = support::TestRedis::get();
    let prefix = format!("tog:bench:{}:", support::rand_u64());
    let connect = |local: bool| {
        let mut builder = RedisReplayStore::builder()
            .key_prefix(&prefix)
            .timeout(TIMEOUT);
        if local {
            builder = builder.local_cache(1_000_000);
        }
        rt.block_on(builder.connect(&redis.url())).unwrap()
    };
    let stores: Vec<(&'static str, Box<dyn ReplayStore>, bool)> = vec![
        (
            "memory/fresh",
            Box::new(MemoryReplayStore::new(u64::MAX)),
            false,
        ),
        ("redis/fresh", Box::new(connect(false)), false),
        ("redis+local/fresh", Box::new(connect(true)), false),
        (
            "memory/replayed",
            Box::new(MemoryReplayStore::new(u64::MAX)),
            true,
        ),
        ("redis/replayed", Box::new(connect(false)), true),
        ("redis+local/replayed", Box::new(connect(true)), true),
    ];
    let totals = Arc::new(Totals::default());
    let mut group = c.benchmark_group("replay_check");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    for (name, store, replayed) in &stores {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let elapsed = measure(&rt, store.as_ref(), iters, *replayed);
                totals.add(name, elapsed, iters);
                elapsed
            })
        });
    }
    group.finish();

    println!("\nreplay check, mean per check (same run), ratio to the in-process store:");
    for (name, _, replayed) in &stores {
        let base = if *replayed {
            "memory/replayed"
        } else {
            "memory/fresh"
        };
        if let (Some(t), Some(b)) = (totals.mean(name), totals.mean(base)) {
            println!(
                "  {name:<22} {t:>12.2?}   {:>8.1}x",
                t.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
}

/// The in-process store's insert+check of a new proof: the median over batches, each into
/// a store already holding the proofs of the batches before it.
fn memory_median(_: &mut Criterion) {
    const BATCHES: usize = 201;
    const BATCH: u64 = 5_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryReplayStore::new(u64::MAX);
    let mut per_check: Vec<Duration> = (0..BATCHES)
        .map(|_| measure(&rt, &store, BATCH, false) / BATCH as u32)
        .collect();
    per_check.sort();
    println!(
        "in-process store, insert+check of a new proof: median {:.0?} over {BATCHES} batches of {BATCH} ({} live proofs at the end)",
        per_check[BATCHES / 2],
        store.len()
    );
}

criterion_group!(benches, replay_check, memory_median);
criterion_main!(benches);
