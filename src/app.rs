//! Start-up and shutdown: [`Application::build`] binds the listener (port 0 allowed), starts
//! the supervisor and its actors; [`Application::run_until_stopped`] serves until a signal
//! (or [`ShutdownTrigger`]) and then shuts down in order.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::flusher::{MetricsPipeline, PipelineSettings};
use exai_actors::pipeline::journal::JournalSettings;
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::pipeline::store::{EventStore, RetentionSettings, open_store};
use exai_actors::policy::retry::RetryPolicy;
use exai_actors::supervisor::{ChildSpec, Shutdown, Supervisor, SupervisorSettings};
use secrecy::ExposeSecret;
use tokio::sync::Notify;

use crate::config::Config;
use crate::http;
use crate::lifecycle::Lifecycle;
use crate::state::{AppState, SurfaceState};

/// Lets tests (and the signal handler) start the graceful shutdown.
#[derive(Debug, Clone, Default)]
pub struct ShutdownTrigger(Arc<Notify>);

impl ShutdownTrigger {
    /// Starts the shutdown sequence.
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// A built, not yet serving, application.
pub struct Application {
    /// The bound address (the real port when 0 was asked for).
    addr: SocketAddr,
    /// The HTTP server, not yet polled.
    server: Server,
    /// Shared state, also used by the shutdown sequence.
    state: web::Data<AppState>,
    /// Fires the graceful shutdown.
    trigger: ShutdownTrigger,
}

impl Application {
    /// Builds everything and binds the listener. Must run inside an actix `System`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Arc::new(config);
        // Bind first: a taken port fails start-up before any actor or file is touched.
        let listener =
            TcpListener::bind((config.server.host, config.server.port)).with_context(|| {
                format!("cannot bind {}:{}", config.server.host, config.server.port)
            })?;
        let addr = listener.local_addr()?;
        let lifecycle = Arc::new(Lifecycle::new());
        let health = HealthBoard::new();
        let recorder = Recorder::new(config.instance.clone(), config.metrics.max_buffered);
        // `/metrics` folds every event as it is recorded, from the first one on.
        let metrics = Arc::new(crate::prometheus::Metrics::new());
        {
            let metrics = metrics.clone();
            let _ = recorder.observe(Arc::new(move |event| metrics.observe(event)));
        }

        let store = open_store(config.database_url.expose_secret())
            .context("EXAI_DATABASE_URL: cannot open the event store")?;
        migrate_or_retry(store.clone()).await;
        let pipeline = MetricsPipeline::new(
            pipeline_settings(&config),
            store.clone(),
            recorder.clone(),
            health.clone(),
        )
        .context("cannot open the spill journal")?;

        let mut children: Vec<ChildSpec> = Vec::new();
        children.push(pipeline.child_spec().0);
        let dashboard = web::Data::new(http::dashboard::DashboardState::new(
            &config,
            recorder.clone(),
            health.clone(),
        ));
        children.push(dashboard.child_spec());
        // The request path (providers, registry, cache) and the client surfaces (/ws, /v1).
        let mut gateway = crate::gateway::Gateway::build(&config, &recorder, &health)
            .context("cannot build the request path")?;
        children.extend(gateway.take_children());
        let surface = web::Data::new(
            SurfaceState::new(
                &config,
                gateway.dispatcher(),
                gateway.cache_handle(),
                recorder.clone(),
                health.clone(),
            )
            .with_history(store.clone(), lifecycle.clone()),
        );
        let supervisor = Supervisor::new(
            supervisor_settings(&config),
            children,
            health.clone(),
            recorder.clone(),
        )
        .start();
        gateway.startup_complete();
        let tables = gateway.dispatcher().registry().clone();
        metrics.set_known_models(Arc::new(move |model: &str| {
            exai_actors::registry::catalog::find(model).is_some_and(|c| c.id == model)
                || tables.tables().resolve(model).is_some()
        }));

        let state = web::Data::new(AppState {
            config: config.clone(),
            health,
            recorder,
            lifecycle: lifecycle.clone(),
            supervisor,
            pipeline,
            store,
            surface: surface.clone(),
            metrics,
        });
        let app_state = state.clone();
        let mcp = web::Data::from(crate::mcp::McpState::new(
            &config,
            state.recorder.clone(),
            state.health.clone(),
        ));
        // One guard in front of every route: Origin, Host and CORS (issue 12 §1).
        let policy = web::Data::new(http::guard::OriginPolicy::new(&config.server, addr));
        let bodies = web::Data::new(http::body::BodyBudget::new(&config.server));
        let access_log = web::Data::new(http::access::AccessLog(config.log.access_log));
        let grace = config.server.shutdown_grace.as_secs().max(1);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(http::guard::guard))
                .wrap(actix_web::middleware::from_fn(http::request_id::middleware))
                // Outermost: the request span and the access log see refusals too.
                .wrap(actix_web::middleware::from_fn(http::access::middleware))
                .app_data(access_log.clone())
                .app_data(policy.clone())
                .app_data(bodies.clone())
                .app_data(app_state.clone())
                .app_data(dashboard.clone())
                .configure(http::dashboard::configure)
                .configure(http::health::configure)
                .configure(http::history::configure)
                .configure(http::metrics::configure)
                .configure(http::debug::configure)
                // Before the `/` redirect: a WebSocket upgrade of `/` speaks the tool protocol.
                .app_data(surface.clone())
                .configure(configure_surfaces)
                .app_data(mcp.clone())
                .configure(crate::mcp::configure)
                .route(
                    "/",
                    web::get().to(|| async {
                        HttpResponse::Found()
                            .insert_header(("Location", "/dashboard"))
                            .finish()
                    }),
                )
        })
        .disable_signals()
        .shutdown_timeout(grace)
        .listen(listener)?
        .run();
        lifecycle.mark_started();
        crate::banner::log_startup_summary(&config);
        tracing::info!(%addr, instance = %config.instance, "exai listening");
        Ok(Self {
            addr,
            server,
            state,
            trigger: ShutdownTrigger::default(),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that starts the graceful shutdown.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    /// Serves until SIGTERM, SIGINT or the trigger, then shuts down in order.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = actix_rt::spawn(self.server);
        let trigger = self.trigger.0.clone();
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = trigger.notified() => {}
        }
        shutdown(&self.state, &handle).await;
        server.await.context("HTTP server task")??;
        Ok(())
    }
}

/// Registers the client surfaces: `/ws` (and the WebSocket upgrade of `/`), `/v1` and
/// `/v1/messages`. Register it before any other `/` route: a plain `GET /` falls through to
/// the next matching resource. They need a `web::Data<SurfaceState>`.
pub fn configure_surfaces(cfg: &mut web::ServiceConfig) {
    crate::ws::configure(cfg);
    http::v1::configure(cfg);
    http::anthropic::configure(cfg);
}

/// The ordered shutdown.
async fn shutdown(state: &AppState, server: &ServerHandle) {
    let grace = state.config.server.shutdown_grace;
    // 1. Readiness fails at once, and stays failing while balancers notice.
    if !state.lifecycle.begin_shutdown() {
        return;
    }
    tracing::info!(grace_s = grace.as_secs_f64(), "shutting down");
    tokio::time::sleep(state.config.server.shutdown_ready_delay).await;
    // 2. Stop accepting, and 3. drain in-flight requests within the grace period
    //    (actix waits up to `shutdown_timeout` for open requests, then drops them).
    //    `/ws` sessions finish their running calls, then close with 1001.
    state.surface.begin_shutdown();
    server.stop(true).await;
    // 4. Sockets are closed by the server stop above.
    // 5. Flush events, then 6. stop actors in reverse start order, and flush whatever the
    //    stopping actors recorded.
    flush(state).await;
    if tokio::time::timeout(grace, state.supervisor.send(Shutdown))
        .await
        .is_err()
    {
        tracing::warn!("actors did not stop within the grace period");
    }
    flush(state).await;
    tracing::info!("shutdown complete");
}

/// Flushes recorded events; whatever cannot reach the store stays in the journal.
async fn flush(state: &AppState) {
    match tokio::time::timeout(state.config.server.shutdown_grace, state.pipeline.flush()).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "final flush failed; events stay in the spill journal")
        }
        Err(_) => {
            tracing::warn!("final flush timed out; unflushed events stay in the spill journal")
        }
    }
}

/// How long start-up waits for migrations before carrying on and retrying in the background.
const STARTUP_MIGRATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Gap between background migration attempts while the database is unreachable.
const MIGRATE_RETRY: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(500), Duration::from_secs(30));

/// Applies migrations. If the database is unreachable at start, exai still starts (events
/// spill to the journal) and keeps retrying in the background until the schema is in place.
async fn migrate_or_retry(store: Arc<dyn EventStore>) {
    let first = tokio::time::timeout(STARTUP_MIGRATE_TIMEOUT, store.migrate()).await;
    let error = match first {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    let mut log = exai_actors::policy::failure_log::FailureLog::new("migrations");
    log.failure(&error);
    actix_rt::spawn(async move {
        let mut backoff = MIGRATE_RETRY.start();
        loop {
            tokio::time::sleep(backoff.next_delay()).await;
            match store.migrate().await {
                Ok(()) => {
                    log.success();
                    return;
                }
                Err(e) => {
                    log.failure(&e);
                }
            }
        }
    });
}

/// Pipeline settings from configuration.
pub fn pipeline_settings(config: &Config) -> PipelineSettings {
    let m = &config.metrics;
    let mut settings = PipelineSettings::new(config.data_dir.join("spill"));
    settings.batch_size = m.batch_size;
    settings.flush_interval = m.flush_interval;
    settings.journal = JournalSettings {
        fsync: m.fsync,
        ..JournalSettings::new(config.data_dir.join("spill"))
    };
    settings.retention = RetentionSettings {
        raw: m.retention_raw,
        minute: m.retention_1min,
        hour: m.retention_1hour,
    };
    settings
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Supervisor settings from configuration.
pub fn supervisor_settings(config: &Config) -> SupervisorSettings {
    let s = &config.supervisor;
    SupervisorSettings {
        max_restarts: s.max_restarts,
        restart_window: s.restart_window,
        check_interval: s.check_interval,
        ping_timeout: s.ping_timeout,
        backoff: RetryPolicy::new(s.backoff_initial, s.backoff_max),
        stop_timeout: Duration::from_secs(5),
    }
}
