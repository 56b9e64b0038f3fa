//! CPU time spent by each component during a measured phase, read from
//! `/proc` (Linux): the benchmark reports it per job, so a regression shows
//! where it happened.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks (user + system) by component name at one instant.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(BTreeMap<String, u64>);

impl CpuSnapshot {
    /// Every process, grouped: syncway binaries by name, Postgres backends,
    /// the RabbitMQ VM, this benchmark.
    pub fn take() -> Self {
        let mut totals = BTreeMap::new();
        let own = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return CpuSnapshot(totals);
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|pid| pid.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // comm is in parentheses and may contain spaces; fields follow.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let ticks: u64 = [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
                .sum();
            let group = if pid == own {
                "syncway-bench (HTTP clients)"
            } else {
                match comm {
                    "syncway-api" | "syncway-worker" => comm,
                    "postgres" => "postgres",
                    "beam.smp" => "rabbitmq",
                    _ => continue,
                }
            };
            *totals.entry(group.to_owned()).or_insert(0) += ticks;
        }
        CpuSnapshot(totals)
    }

    /// CPU milliseconds per `jobs` spent by each component since `earlier`.
    /// Processes that exited in between are not counted.
    pub fn per_job_since(&self, earlier: &CpuSnapshot, jobs: usize) -> Vec<(String, f64)> {
        self.0
            .iter()
            .map(|(group, &ticks)| {
                let before = earlier.0.get(group).copied().unwrap_or(0);
                let seconds = ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
                (group.clone(), seconds * 1000.0 / jobs.max(1) as f64)
            })
            .collect()
    }
}
