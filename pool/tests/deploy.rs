//! The deploy files agree with the pool: the Grafana dashboard is valid JSON and
//! every metric it or the Prometheus alert rules query is one the pool exports;
//! Prometheus's `promtool` loads the rules and runs their unit tests, accepts the
//! scrape config and lints the metrics exposition. (The example configs are parsed
//! by `config::tests`.)
use std::collections::BTreeSet;

// The helper that finds (or installs) the outside programs tests need; std only,
// shared with the end-to-end tests by path because `pool` cannot depend on their
// crate. Not every helper is used here.
#[allow(dead_code)]
#[path = "../../tests/src/tools.rs"]
mod tools;

fn deploy(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Metric names in a PromQL expression, with histogram suffixes stripped.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("zkpool_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_owned();
        out.insert(base);
    }
    out
}

fn exported() -> String {
    pool::metrics::Metrics::new().encode(true)
}

fn assert_exported(names: &BTreeSet<String>, whence: &str) {
    let text = exported();
    assert!(!names.is_empty(), "{whence} queries no zkpool metric");
    for n in names {
        assert!(
            text.contains(&format!("# TYPE {n} ")),
            "{whence} queries {n}, which the pool does not export"
        );
    }
}

#[test]
fn the_grafana_dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/dashboards/zkpool.json"))
            .expect("dashboard is valid JSON");
    let panels = dashboard["panels"]
        .as_array()
        .expect("dashboard has panels");
    let mut names = BTreeSet::new();
    for p in panels {
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {} has no targets", p["title"]));
        for t in targets {
            names.extend(metrics_in(t["expr"].as_str().expect("target has an expr")));
        }
    }
    assert_exported(&names, "the Grafana dashboard");
}

/// Imported into an existing Grafana, the dashboard asks which Prometheus to read
/// instead of naming a datasource uid that Grafana may not have.
#[test]
fn the_grafana_dashboard_takes_its_datasource_as_a_variable() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/dashboards/zkpool.json"))
            .expect("dashboard is valid JSON");
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "{vars:?}"
    );
    for p in dashboard["panels"].as_array().expect("panels") {
        let mut sources = vec![&p["datasource"]];
        sources.extend(
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| &t["datasource"]),
        );
        for d in sources.into_iter().filter(|d| !d.is_null()) {
            assert_eq!(d["uid"], "${DS_PROMETHEUS}", "panel {}: {d}", p["title"]);
        }
    }
}

#[test]
fn the_alert_rules_query_only_exported_metrics() {
    let rules = deploy("prometheus/alerts.yml");
    let exprs: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert!(
        exprs.len() >= 4,
        "expected the alert rules, found {} exprs",
        exprs.len()
    );
    let names = exprs.iter().flat_map(|e| metrics_in(e)).collect();
    assert_exported(&names, "the alert rules");
}

#[test]
fn a_metric_the_pool_does_not_export_is_caught() {
    let names: BTreeSet<String> = metrics_in("rate(zkpool_no_such_thing_total[5m])");
    let text = exported();
    assert!(names
        .iter()
        .any(|n| !text.contains(&format!("# TYPE {n} "))));
}

/// The OpenAPI document lists exactly the routes the router serves.
#[test]
fn the_openapi_document_matches_the_routes() {
    let doc: serde_json::Value =
        serde_json::from_str(pool::http::OPENAPI).expect("openapi.json is valid JSON");
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = pool::http::routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(documented, served, "documented vs served routes");
}

/// Runs Prometheus's `promtool` (Debian package `prometheus`, installed when missing
/// where it can be; `ZKPOOL_PROMTOOL` overrides, see `tests/src/tools.rs`).
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let tool = tools::require("promtool").unwrap_or_else(|e| panic!("{e}"));
    let mut child = std::process::Command::new(&tool)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write to promtool");
    drop(input);
    let out = child.wait_with_output().expect("promtool ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn deploy_path(path: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
        .display()
        .to_string()
}

/// Prometheus's own rule engine loads the alert rules and runs their unit tests
/// (`deploy/prometheus/alerts_test.yml`): each alert fires on the series that should
/// page someone and stays silent on a healthy pool.
#[test]
fn prometheus_loads_the_alert_rules_and_their_unit_tests_pass() {
    let (ok, out) = promtool(
        &["check", "rules", &deploy_path("prometheus/alerts.yml")],
        None,
    );
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("9 rules found"), "{out}");
    let (ok, out) = promtool(
        &["test", "rules", &deploy_path("prometheus/alerts_test.yml")],
        None,
    );
    assert!(ok, "promtool test rules:\n{out}");
}

/// The Prometheus configs as the compose files mount them (rules under
/// /etc/prometheus) are valid once their rule file is where they say: one pool
/// (`docker-compose.yml`), and two pool processes on one database
/// (`docker-compose.cluster.yml`, which scrapes both).
#[test]
fn prometheus_accepts_the_scrape_configs() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (file, targets) in [
        ("prometheus/prometheus.yml", r#"["pool:8080"]"#),
        (
            "prometheus/prometheus-cluster.yml",
            r#"["pool-a:8080", "pool-b:8080"]"#,
        ),
    ] {
        let config = deploy(file).replace(
            "/etc/prometheus/alerts.yml",
            &deploy_path("prometheus/alerts.yml"),
        );
        assert!(
            config.contains(&deploy_path("prometheus/alerts.yml")) && config.contains(targets),
            "{file}: {config}"
        );
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).expect("write config");
        let (ok, out) = promtool(&["check", "config", &path.display().to_string()], None);
        assert!(ok, "promtool check config {file}:\n{out}");
    }
    // The cluster's compose file runs the two processes it scrapes, on the
    // config it mounts, after the one-off setup.
    let compose = deploy("docker-compose.cluster.yml");
    for needed in [
        "pool-a:",
        "pool-b:",
        "./pool-cluster.toml:/etc/zkpool/pool-cluster.toml:ro",
        "./prometheus/prometheus-cluster.yml:/etc/prometheus/prometheus.yml:ro",
        "service_completed_successfully",
    ] {
        assert!(
            compose.contains(needed),
            "docker-compose.cluster.yml lacks {needed}"
        );
    }
    let cluster = pool::Config::from_toml(&deploy("pool-cluster.toml"), "pool-cluster.toml")
        .expect("deploy/pool-cluster.toml is a valid config");
    assert!(cluster.storage.url.is_some());
    let defaults = pool::Config::from_toml(&deploy("pool.toml"), "pool.toml")
        .expect("deploy/pool.toml is a valid config");
    assert_eq!(defaults.storage.node_lease_secs, 10.0);
}

/// Alertmanager accepts the routing the compose file mounts.
#[test]
fn alertmanager_accepts_its_config() {
    let tool = tools::require("amtool").unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(tool)
        .args([
            "check-config",
            &deploy_path("alertmanager/alertmanager.yml"),
        ])
        .output()
        .expect("amtool ran");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "amtool check-config:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// What the pool serves on /metrics passes Prometheus's exposition-format and
/// naming lint.
#[test]
fn the_metrics_exposition_passes_promtools_lint() {
    let m = pool::metrics::Metrics::new();
    m.shares.with_label_values(&["accepted"]).inc();
    m.verify_seconds.observe(0.002);
    let (ok, out) = promtool(&["check", "metrics"], Some(&m.encode(true)));
    assert!(ok, "promtool check metrics:\n{out}");
}
