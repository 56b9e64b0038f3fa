use super::*;

fn with_file(contents: &str, check: impl FnOnce(anyhow::Result<Settings>)) {
    // Tests run in parallel: every file gets its own name.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("syncway-settings-{}-{n}.toml", std::process::id()));
    if std::fs::write(&path, contents).is_err() {
        panic!("cannot write {}", path.display());
    }
    check(Settings::load(Role::Worker, Some(&path)));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_file_overrides_the_defaults_it_names() {
    with_file(
        "[worker]\nconcurrency = 7\n[amqp]\nnamespace = \"staging\"\n",
        |settings| {
            let settings = settings.unwrap();
            assert_eq!(settings.worker.concurrency, 7);
            assert_eq!(settings.amqp.namespace, "staging");
            // Untouched keys keep their defaults, per role.
            assert_eq!(settings.worker.lease_seconds, 30);
            assert_eq!(settings.retry.max_attempts, 5);
            assert_eq!(settings.retry.base_delay_ms, 5000);
            assert_eq!(settings.retry.max_delay_ms, 300_000);
            assert_eq!(settings.metrics.listen, "0.0.0.0:9091");
            assert!(settings.auth.bootstrap_api_key.is_none());
        },
    );
}

#[test]
fn invalid_values_are_refused_with_the_reason() {
    with_file("[worker]\nconcurrency = 0\n", |settings| {
        let error = settings.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("worker.concurrency"), "{error}");
    });
    with_file("[amqp]\nnamespace = \"a b\"\n", |settings| {
        let error = settings.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("amqp.namespace"), "{error}");
    });
    with_file(
        "[retry]\nbase_delay_ms = 10\nmax_delay_ms = 5\n",
        |settings| {
            let error = settings.err().map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(error.contains("retry.base_delay_ms"), "{error}");
        },
    );
    with_file("[worker]\nconcurrency = \"many\"\n", |settings| {
        assert!(settings.is_err());
    });
}

#[test]
fn list_settings_take_comma_separated_text_or_arrays_and_empty_means_none() {
    with_file(
        "[connectors]\nallow_cidrs = \"10.20.0.0/16, 127.0.0.1/32\"\nallow_hosts = \"\"\n\
         [connectors.local_files]\nroots = [\"/srv/a\", \"/srv/b\"]\n\
         [security]\nprevious_keys = \"aa,bb\"\n",
        |settings| {
            let settings = settings.expect("valid settings");
            assert_eq!(
                settings.connectors.allow_cidrs,
                ["10.20.0.0/16", "127.0.0.1/32"]
            );
            assert!(settings.connectors.allow_hosts.is_empty());
            assert_eq!(settings.connectors.local_files.roots, ["/srv/a", "/srv/b"]);
            assert_eq!(settings.security.previous_keys.len(), 2);
            assert_eq!(settings.worker.max_job_seconds, 86_400);
            assert_eq!(settings.limits.max_running_jobs_per_org, None);
            // Debug shows no password.
            assert!(!format!("{settings:?}").contains("guest:guest"));
        },
    );
    with_file("[retry]\nmax_delay_ms = 5000000000\n", |settings| {
        let error = settings.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("retry.max_delay_ms"), "{error}");
    });
}

#[test]
fn a_missing_file_is_an_error() {
    let missing = std::path::Path::new("/nonexistent/syncway.toml");
    assert!(Settings::load(Role::Api, Some(missing)).is_err());
}

#[test]
fn sessions_are_bounded_by_a_third_of_the_lease_and_at_least_a_second() {
    with_file("[worker]\nlease_seconds = 30\n", |settings| {
        let bound = settings.unwrap().worker.session_bound();
        assert_eq!(bound, std::time::Duration::from_secs(10));
    });
    with_file("[worker]\nlease_seconds = 2\n", |settings| {
        let bound = settings.unwrap().worker.session_bound();
        assert_eq!(bound, std::time::Duration::from_secs(1));
    });
}
