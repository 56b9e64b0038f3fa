//! The worker's memory budget: a worker running eight jobs of wide rows at
//! once stays within its budget above its own baseline, and every job
//! completes (they wait for room rather than fail).

use std::time::Duration;

use serde_json::json;

use crate::harness::{TestApp, TestEnv, WorkerProcess, eventually, free_port};

const MIB: u64 = 1 << 20;

/// A field of /proc/PID/status, in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(series, _)| *series == name)
        .and_then(|(_, value)| value.trim().parse().ok())
}

#[tokio::test]
async fn eight_jobs_of_wide_rows_fit_the_workers_memory_budget() {
    const BUDGET: u64 = 48 * MIB;
    let app = TestApp::with_api(TestEnv::new().await, |_| {}).await;
    let metrics_port = free_port();
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let worker = WorkerProcess::start(
        &app.env,
        30,
        &[
            ("SYNCWAY_WORKER__CONCURRENCY", "8".into()),
            ("SYNCWAY_WORKER__MEMORY_BUDGET_BYTES", BUDGET.to_string()),
            ("SYNCWAY_CONNECTORS__MAX_BATCH_BYTES", (4 * MIB).to_string()),
            (
                "SYNCWAY_METRICS__LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            ),
            // As deploy/ runs the worker (see memory::warn_of_malloc).
            ("MALLOC_MMAP_THRESHOLD_", "131072".into()),
        ],
    );
    let budget = eventually("the worker's metrics", Duration::from_secs(30), || async {
        metric(&metrics, "syncway_worker_memory_budget_bytes").await
    })
    .await;
    assert_eq!(budget, BUDGET as f64);
    let baseline = status_bytes(worker.pid(), "VmRSS");

    // Eight jobs of 24 rows of 1 MiB each (192 MiB through the worker).
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let config = json!({"entity_count": 24, "payload_bytes": MIB});
        let connection = app.stub_connection(config, false).await;
        jobs.push((connection, app.run(connection, false).await));
    }
    for (connection, job) in &jobs {
        let finished = eventually("a wide job to end", Duration::from_secs(180), || async {
            let body = app.job(*connection, *job).await;
            matches!(body["status"].as_str(), Some("completed" | "failed")).then_some(body)
        })
        .await;
        assert_eq!(finished["status"], "completed", "{finished}");
        assert_eq!(finished["entities_inserted"], 24, "{finished}");
    }
    let peak = status_bytes(worker.pid(), "VmHWM");
    let waits = metric(&metrics, "syncway_worker_memory_waits_total")
        .await
        .unwrap_or_default();
    println!(
        "memory: baseline {:.1} MiB, peak {:.1} MiB, budget {} MiB, reads that waited {waits}",
        baseline as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        BUDGET / MIB
    );
    assert!(
        waits > 0.0,
        "the budget was never reached: the test proves nothing"
    );
    assert!(
        peak <= baseline + BUDGET,
        "peak RSS {peak} over the baseline {baseline} + the budget {BUDGET}"
    );
    assert_eq!(
        metric(&metrics, "syncway_worker_memory_reserved_bytes").await,
        Some(0.0),
        "every batch gave its share back"
    );
}
