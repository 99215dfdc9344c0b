//! The deploy files agree with the pool: the Grafana dashboard is valid JSON and
//! every metric it or the Prometheus alert rules query is one the pool exports.
//! (The example configs are parsed by `config::tests`.)
use std::collections::BTreeSet;

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
    pool::metrics::Metrics::new().encode()
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
