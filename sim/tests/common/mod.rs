//! Shared helpers: start an in-process simulator and drive its control API over HTTP.
#![allow(dead_code)]

use serde_json::Value;
use sim::{AuthMode, EndpointSpec, Kind, Sim, SimConfig};

pub fn spec(name: &str, kind: Kind) -> EndpointSpec {
    let mut spec = EndpointSpec::new(name, kind);
    spec.auth = AuthMode::Present;
    spec
}

pub async fn start(endpoints: Vec<EndpointSpec>) -> Sim {
    let config = SimConfig {
        seed: 7,
        control: Some("127.0.0.1:0".parse().unwrap()),
        endpoints,
    };
    Sim::start(config).await.expect("simulator starts")
}

/// PATCHes an endpoint's faults through its own control API; panics on a non-2xx.
pub async fn set_faults(sim: &Sim, name: &str, patch: Value) {
    let response = reqwest::Client::new()
        .patch(format!("{}/_sim/faults", sim.url(name)))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "setting faults {patch}: {} {}",
        response.status(),
        response.text().await.unwrap()
    );
}

pub async fn stats(sim: &Sim, name: &str) -> Value {
    reqwest::get(format!("{}/_sim/stats", sim.url(name)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
