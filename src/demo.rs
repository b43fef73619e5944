//! `exai demo`: exai with a simulated provider (the in-repo mock upstream) and a light, varied
//! stream of traffic, so a newcomer sees the dashboard working with no API keys. The provider
//! is flagged `simulated`, which listings and the dashboard show.

use std::time::Duration;

use serde_json::json;

use crate::app::Application;
use crate::config::{Config, ProviderSettings};
use exai_testkit::mock_upstream::{MockSettings, MockUpstream};

/// Name of the simulated provider.
pub const DEMO_PROVIDER: &str = "demo";
/// Gap between two demo requests.
const TRAFFIC_EVERY: Duration = Duration::from_millis(700);
/// Latency the simulated upstream adds, so charts show something other than zero.
const DEMO_LATENCY: Duration = Duration::from_millis(40);
/// What the traffic cycles through: normal answers (repeated, so some hit the cache), a slow
/// one, a failing one and a reasoning model.
pub const TRAFFIC: &[(&str, &str)] = &[
    ("mock-echo", "What is exai?"),
    ("mock-echo", "What is exai?"),
    ("mock-reasoning", "Think about caching."),
    ("mock-slow", "Take your time."),
    ("mock-echo", "Tell me about actors."),
    ("mock-500", "This one fails upstream."),
];

/// Adds the simulated provider to `config` and returns the running mock behind it.
pub fn add_simulated_provider(config: &mut Config) -> std::io::Result<MockUpstream> {
    let mock = MockUpstream::start(MockSettings {
        latency: DEMO_LATENCY,
        ..MockSettings::default()
    })?;
    let mut provider = ProviderSettings::simulated(DEMO_PROVIDER, mock.base_url());
    provider.max_retries = 0;
    provider.models = TRAFFIC.iter().map(|(m, _)| (*m).to_owned()).collect();
    config.providers.retain(|p| p.name != DEMO_PROVIDER);
    config.providers.push(provider);
    if config.registry.default_model.is_none() {
        config.registry.default_model = Some("mock-echo".to_owned());
    }
    Ok(mock)
}

/// Runs the demo until a signal.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let mock = add_simulated_provider(&mut config)?;
    let token = config.server.token.clone();
    let app = Application::build(config).await?;
    let url = format!("http://{}/v1/chat/completions", app.addr());
    tracing::info!(dashboard = %format!("http://{}/dashboard", app.addr()), "demo running with a simulated provider");
    let traffic = actix_rt::spawn(async move {
        let client = reqwest::Client::new();
        let mut ticker = tokio::time::interval(TRAFFIC_EVERY);
        for (model, prompt) in TRAFFIC.iter().cycle() {
            ticker.tick().await;
            let mut req = client.post(&url).json(&json!({
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
            }));
            if let Some(t) = &token {
                use secrecy::ExposeSecret as _;
                req = req.bearer_auth(t.expose_secret());
            }
            // Failures are part of the show (mock-500); the dashboard displays them.
            let _ = req.send().await;
        }
    });
    let result = app.run_until_stopped().await;
    traffic.abort();
    mock.stop();
    result
}
