//! The supervisor: owns the child table, the restart policy and the actor half of the health
//! board (DESIGN §3, supervision contract).
//!
//! actix's own `Supervisor` restarts an actor only when it stops itself; a panic in a handler
//! kills the actor for good, and an actor stuck in `ctx.wait` is never noticed. So this one:
//!
//! - runs every child on its own [`Arbiter`] (thread), so a stuck child cannot stall others
//!   and can be discarded by stopping its arbiter;
//! - polls each child: a closed mailbox means it died (a panic, or `ctx.stop()` on a fatal
//!   error), and a [`Ping`] that outlives the ping timeout means it hung;
//! - replaces a dead or hung child after a backoff from [`crate::policy::retry`], and marks it
//!   `failed` once it has been restarted `max_restarts` times within `restart_window`;
//! - records `actor.restarted` and `actor.failed` events and keeps per-child health.
//!
//! Children publish their current address through a [`Slot`], which callers read on every
//! use, so a restart is invisible to them. State that must survive a restart (breakers,
//! queues, journals) lives in `Arc`s captured by the child's factory, not in the actor.
//!
//! Messages: [`InjectFaultInto`] (tests only), [`Shutdown`], [`GetHealth`].

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde_json::json;

use crate::health::{ActorState, HealthBoard, HealthSnapshot, rfc3339};
use crate::pipeline::recorder::Recorder;
use crate::policy::retry::RetryPolicy;

/// How the supervisor watches and restarts children.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// Restarts allowed within `restart_window` before a child is marked failed.
    pub max_restarts: u32,
    /// The sliding window over which restarts are counted.
    pub restart_window: Duration,
    /// How often each child's liveness is checked.
    pub check_interval: Duration,
    /// A child that does not answer a ping within this is considered hung.
    pub ping_timeout: Duration,
    /// Delays between consecutive restarts of one child.
    pub backoff: RetryPolicy,
    /// How long shutdown waits for each child to stop.
    pub stop_timeout: Duration,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            check_interval: Duration::from_millis(200),
            ping_timeout: Duration::from_secs(2),
            backoff: RetryPolicy::new(Duration::from_millis(50), Duration::from_secs(5)),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Messages every child handles.

/// Liveness probe; a child that cannot answer within the ping timeout is replaced.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Ping;

/// Asks a child to stop itself during shutdown.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopChild;

/// A fault a test can inject into a child.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Panic inside the handler.
    Panic,
    /// Stop processing the mailbox forever (an async hang in `ctx.wait`).
    Hang,
}

/// Makes the receiving child panic or hang. Compiled only with `fault-injection`.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectFault(pub Fault);

/// Children must accept [`InjectFault`] when fault injection is compiled in.
#[cfg(feature = "fault-injection")]
pub trait FaultTarget: Actor<Context = Context<Self>> + Handler<InjectFault> {}
#[cfg(feature = "fault-injection")]
impl<A: Actor<Context = Context<A>> + Handler<InjectFault>> FaultTarget for A {}
/// Children must accept [`InjectFault`] when fault injection is compiled in.
#[cfg(not(feature = "fault-injection"))]
pub trait FaultTarget {}
#[cfg(not(feature = "fault-injection"))]
impl<A> FaultTarget for A {}

/// Implements [`Ping`], [`StopChild`] and (in tests) [`InjectFault`] for a child actor.
#[macro_export]
macro_rules! supervised_child {
    ($actor:ty) => {
        impl ::actix::Handler<$crate::supervisor::Ping> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::supervisor::Ping, _: &mut Self::Context) {}
        }
        impl ::actix::Handler<$crate::supervisor::StopChild> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::supervisor::StopChild, ctx: &mut Self::Context) {
                ::actix::ActorContext::stop(ctx);
            }
        }
        #[cfg(feature = "fault-injection")]
        impl ::actix::Handler<$crate::supervisor::InjectFault> for $actor {
            type Result = ();
            #[allow(clippy::panic)]
            fn handle(&mut self, msg: $crate::supervisor::InjectFault, ctx: &mut Self::Context) {
                match msg.0 {
                    $crate::supervisor::Fault::Panic => {
                        panic!("injected panic in {}", ::std::any::type_name::<$actor>())
                    }
                    $crate::supervisor::Fault::Hang => {
                        ::actix::AsyncContext::wait(
                            ctx,
                            ::actix::fut::wrap_future(::futures_util::future::pending::<()>()),
                        );
                    }
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Slots and child specs.

/// The current address of a supervised actor, updated on every restart.
#[derive(Debug)]
pub struct Slot<A: Actor>(Arc<RwLock<Option<Addr<A>>>>);

impl<A: Actor> Clone for Slot<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<A: Actor> Default for Slot<A> {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(None)))
    }
}

impl<A: Actor> Slot<A> {
    /// An empty slot, filled when the supervisor starts the child.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live address, if the child is running.
    pub fn get(&self) -> Option<Addr<A>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes a new address.
    fn set(&self, addr: Addr<A>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(addr);
    }
}

/// A running instance of a child.
struct ChildRef {
    /// Liveness probe target.
    ping: Recipient<Ping>,
    /// Graceful stop target.
    stop: Recipient<StopChild>,
    /// Fault injection target.
    #[cfg(feature = "fault-injection")]
    fault: Recipient<InjectFault>,
    /// The thread it runs on; stopped to discard a hung instance.
    arbiter: Arbiter,
}

/// Builds a fresh instance of a child on a new arbiter.
type StartFn = Arc<dyn Fn(&str) -> ChildRef + Send + Sync>;

/// How to (re)start one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique name, as shown in `/health` and events.
    name: String,
    /// Factory for a new instance.
    start: StartFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .finish()
    }
}

impl ChildSpec {
    /// A child called `name`, built by `make` on each (re)start and published in `slot`.
    pub fn new<A, F>(name: impl Into<String>, slot: Slot<A>, make: F) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<Ping> + Handler<StopChild> + FaultTarget,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let start: StartFn = Arc::new(move |name: &str| {
            let arbiter = Arbiter::new();
            let thread_name = name.to_owned();
            arbiter.spawn_fn(move || CURRENT_CHILD.with(|c| *c.borrow_mut() = Some(thread_name)));
            let make = make.clone();
            let addr = A::start_in_arbiter(&arbiter.handle(), move |_| make());
            slot.set(addr.clone());
            ChildRef {
                ping: addr.clone().recipient(),
                stop: addr.clone().recipient(),
                #[cfg(feature = "fault-injection")]
                fault: addr.recipient(),
                arbiter,
            }
        });
        Self {
            name: name.into(),
            start,
        }
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

// ---------------------------------------------------------------------------------------
// Panic and fatal-error capture.

thread_local! {
    /// The child running on this thread, set when its arbiter starts.
    static CURRENT_CHILD: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The last panic message or fatal error per child, read when the supervisor notices a death.
fn last_errors() -> &'static Mutex<HashMap<String, String>> {
    static ERRORS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    ERRORS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Records why a child is about to stop itself, so `/health` can show it. Call before
/// `ctx.stop()` on a fatal error; the supervisor then restarts the child.
pub fn note_fatal(child: &str, error: impl std::fmt::Display) {
    last_errors()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(child.to_owned(), error.to_string());
}

/// Records a fatal error for whichever child runs on the current thread.
pub fn note_fatal_here(error: impl std::fmt::Display) {
    if let Some(name) = CURRENT_CHILD.with(|c| c.borrow().clone()) {
        note_fatal(&name, error);
    }
}

fn take_last_error(child: &str) -> Option<String> {
    last_errors()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(child)
}

/// Installs a panic hook that, on a child's thread, records the message for `/health` and
/// logs one line instead of the default multi-line report. Other threads keep the previous
/// hook. Idempotent.
pub fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let child = CURRENT_CHILD.with(|c| c.borrow().clone());
            let Some(child) = child else {
                previous(info);
                return;
            };
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = format!("panicked: {payload}{location}");
            tracing::error!(actor = %child, "{message}");
            note_fatal(&child, message);
        }));
    });
}

// ---------------------------------------------------------------------------------------
// The supervisor.

/// Supervisor-level messages.
///
/// Injects a fault into the named child. Compiled only with `fault-injection`.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct InjectFaultInto {
    /// Which child.
    pub child: String,
    /// What to do to it.
    pub fault: Fault,
}

/// Stops every child in reverse start order, waiting for each.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Returns the current health snapshot.
#[derive(Debug, Message)]
#[rtype(result = "HealthSnapshot")]
pub struct GetHealth;

/// Book-keeping for one child.
struct Child {
    /// How to build it.
    spec: ChildSpec,
    /// The running instance; `None` while restarting, failed or stopped.
    running: Option<ChildRef>,
    /// Restart times within the window, oldest first.
    recent_restarts: VecDeque<Instant>,
    /// Total restarts since start.
    restarts: u32,
    /// Bumped on each (re)start so stale ping replies are ignored.
    generation: u64,
    /// Whether a ping is outstanding.
    ping_in_flight: bool,
}

/// The root actor. See the module docs.
pub struct Supervisor {
    /// Restart and liveness policy.
    settings: SupervisorSettings,
    /// Children in start order.
    children: Vec<Child>,
    /// Where per-actor health is published.
    health: HealthBoard,
    /// Where `actor.restarted` / `actor.failed` events go.
    recorder: Recorder,
    /// Set once shutdown begins; stops restarts.
    shutting_down: bool,
}

impl Supervisor {
    /// A supervisor for `children`, started in the order given.
    pub fn new(
        settings: SupervisorSettings,
        children: Vec<ChildSpec>,
        health: HealthBoard,
        recorder: Recorder,
    ) -> Self {
        Self {
            settings,
            children: children
                .into_iter()
                .map(|spec| Child {
                    spec,
                    running: None,
                    recent_restarts: VecDeque::new(),
                    restarts: 0,
                    generation: 0,
                    ping_in_flight: false,
                })
                .collect(),
            health,
            recorder,
            shutting_down: false,
        }
    }

    /// Starts (or restarts) child `idx`.
    fn start_child(&mut self, idx: usize) {
        let Some(child) = self.children.get_mut(idx) else {
            return;
        };
        let name = child.spec.name.clone();
        child.running = Some((child.spec.start)(&name));
        child.generation += 1;
        child.ping_in_flight = false;
        self.health
            .update_actor(&name, |h| h.state = ActorState::Running);
    }

    /// Checks every running child: dead ones are restarted, live ones are pinged.
    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let ping_timeout = self.settings.ping_timeout;
        for idx in 0..self.children.len() {
            let child = &mut self.children[idx];
            let Some(running) = &child.running else {
                continue;
            };
            if !running.ping.connected() {
                self.child_down(idx, "actor stopped".to_owned(), ctx);
                continue;
            }
            if child.ping_in_flight {
                continue;
            }
            child.ping_in_flight = true;
            let generation = child.generation;
            let ping = running.ping.send(Ping);
            let probe = async move { tokio::time::timeout(ping_timeout, ping).await };
            ctx.spawn(probe.into_actor(self).map(move |result, act, ctx| {
                let Some(child) = act.children.get_mut(idx) else {
                    return;
                };
                if child.generation != generation || child.running.is_none() {
                    return;
                }
                child.ping_in_flight = false;
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => act.child_down(idx, "actor stopped".to_owned(), ctx),
                    Err(_) => act.child_down(
                        idx,
                        format!(
                            "hung: no answer to ping within {} ms",
                            ping_timeout.as_millis()
                        ),
                        ctx,
                    ),
                }
            }));
        }
    }

    /// Child `idx` died or hung: discard it and schedule a restart, or give up.
    fn child_down(&mut self, idx: usize, fallback_error: String, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let window = self.settings.restart_window;
        let max_restarts = self.settings.max_restarts;
        let Some(child) = self.children.get_mut(idx) else {
            return;
        };
        let Some(old) = child.running.take() else {
            return;
        };
        // Discards the instance even if it is stuck: its event loop is dropped.
        old.arbiter.stop();
        let name = child.spec.name.clone();
        let error = take_last_error(&name).unwrap_or(fallback_error);
        let now = Instant::now();
        while child
            .recent_restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            child.recent_restarts.pop_front();
        }
        let in_window = u32::try_from(child.recent_restarts.len()).unwrap_or(u32::MAX);
        if in_window >= max_restarts {
            tracing::error!(
                actor = %name,
                restarts = child.restarts,
                error = %error,
                "actor failed: {in_window} restarts within {} s; giving up",
                window.as_secs()
            );
            self.health.update_actor(&name, |h| {
                h.state = ActorState::Failed;
                h.last_error = Some(error.clone());
            });
            self.recorder.record(
                "supervisor",
                "actor.failed",
                json!({ "actor": name, "ok": false, "restarts": child.restarts, "error": error }),
            );
            return;
        }
        let delay = self.settings.backoff.delay_for(in_window);
        self.health.update_actor(&name, |h| {
            h.state = ActorState::Restarting;
            h.last_error = Some(error.clone());
        });
        ctx.run_later(delay, move |act, _| {
            if act.shutting_down {
                return;
            }
            act.start_child(idx);
            let Some(child) = act.children.get_mut(idx) else {
                return;
            };
            child.restarts += 1;
            child.recent_restarts.push_back(Instant::now());
            let restarts = child.restarts;
            let at = rfc3339(SystemTime::now());
            act.health.update_actor(&name, |h| {
                h.restarts = restarts;
                h.last_restart_at = Some(at);
            });
            tracing::warn!(actor = %name, restarts, error = %error, backoff_ms = delay.as_millis() as u64, "actor restarted");
            act.recorder.record(
                "supervisor",
                "actor.restarted",
                json!({
                    "actor": name,
                    "ok": false,
                    "restarts": restarts,
                    "error": error,
                    "backoff_ms": delay.as_millis() as u64,
                }),
            );
        });
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        install_panic_hook();
        for idx in 0..self.children.len() {
            self.start_child(idx);
        }
        ctx.run_interval(self.settings.check_interval, |act, ctx| act.check(ctx));
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<InjectFaultInto> for Supervisor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: InjectFaultInto, _: &mut Self::Context) -> Self::Result {
        let child = self
            .children
            .iter()
            .find(|c| c.spec.name == msg.child)
            .ok_or_else(|| format!("no child named {}", msg.child))?;
        let running = child
            .running
            .as_ref()
            .ok_or_else(|| format!("{} is not running", msg.child))?;
        running
            .fault
            .try_send(InjectFault(msg.fault))
            .map_err(|e| format!("{}: {e}", msg.child))
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let stop_timeout = self.settings.stop_timeout;
        let mut order = Vec::new();
        for child in self.children.iter_mut().rev() {
            if let Some(running) = child.running.take() {
                self.health
                    .update_actor(&child.spec.name, |h| h.state = ActorState::Stopping);
                order.push((child.spec.name.clone(), running));
            }
        }
        let health = self.health.clone();
        Box::pin(
            async move {
                for (name, running) in order {
                    let stopped =
                        tokio::time::timeout(stop_timeout, running.stop.send(StopChild)).await;
                    if stopped.is_err() {
                        tracing::warn!(actor = %name, "actor did not stop in time; discarding it");
                    }
                    running.arbiter.stop();
                    health.update_actor(&name, |h| h.state = ActorState::Stopped);
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetHealth> for Supervisor {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _: GetHealth, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.health.snapshot())
    }
}

/// Whether this build carries the test-only fault-injection messages.
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

/// Injects `fault` (`"panic"` or `"hang"`) into the named child. Always compiled so callers
/// need no feature gate of their own; without the `fault-injection` feature it refuses.
pub async fn inject_fault(
    supervisor: &Addr<Supervisor>,
    child: &str,
    fault: &str,
) -> Result<(), String> {
    #[cfg(feature = "fault-injection")]
    {
        let fault = match fault {
            "panic" => Fault::Panic,
            "hang" => Fault::Hang,
            other => return Err(format!("unknown fault {other:?}; expected panic or hang")),
        };
        supervisor
            .send(InjectFaultInto {
                child: child.to_owned(),
                fault,
            })
            .await
            .map_err(|e| e.to_string())?
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (supervisor, child, fault);
        Err("fault injection is not compiled into this build".to_owned())
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A child that counts how often it was built.
    struct Worker;
    impl Actor for Worker {
        type Context = Context<Self>;
    }
    crate::supervised_child!(Worker);

    fn fast() -> SupervisorSettings {
        SupervisorSettings {
            max_restarts: 3,
            restart_window: Duration::from_secs(60),
            check_interval: Duration::from_millis(20),
            ping_timeout: Duration::from_millis(150),
            backoff: RetryPolicy::new(Duration::from_millis(10), Duration::from_millis(50)),
            stop_timeout: Duration::from_secs(1),
        }
    }

    async fn wait_for(
        board: &HealthBoard,
        name: &str,
        f: impl Fn(&crate::health::ActorHealth) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if board.actor(name).is_some_and(|h| f(&h)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out: {:?}",
                board.actor(name)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn setup() -> (
        Addr<Supervisor>,
        HealthBoard,
        Recorder,
        Slot<Worker>,
        Arc<AtomicUsize>,
    ) {
        let board = HealthBoard::new();
        let recorder = Recorder::new("t", 100);
        let slot = Slot::new();
        let builds = Arc::new(AtomicUsize::new(0));
        let b = builds.clone();
        let spec = ChildSpec::new("worker", slot.clone(), move || {
            b.fetch_add(1, Ordering::SeqCst);
            Worker
        });
        let other = ChildSpec::new("other", Slot::<Worker>::new(), || Worker);
        let sup =
            Supervisor::new(fast(), vec![spec, other], board.clone(), recorder.clone()).start();
        (sup, board, recorder, slot, builds)
    }

    #[actix_rt::test]
    async fn panic_becomes_a_restart_with_an_event() {
        let (sup, board, recorder, slot, builds) = setup();
        wait_for(&board, "worker", |h| h.state == ActorState::Running).await;
        let first = slot.get().unwrap();
        inject_fault(&sup, "worker", "panic").await.unwrap();
        wait_for(&board, "worker", |h| {
            h.restarts == 1 && h.state == ActorState::Running
        })
        .await;
        let second = slot.get().unwrap();
        // The replacement is built on its own thread; a ping answered means it exists.
        second.send(Ping).await.unwrap();
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        assert!(!first.connected());
        let h = board.actor("worker").unwrap();
        assert!(h.last_error.unwrap().contains("injected panic"));
        assert!(h.last_restart_at.is_some());
        assert_eq!(board.actor("other").unwrap().restarts, 0);
        let events = recorder.drain(100);
        assert!(
            events
                .iter()
                .any(|e| e.kind == "actor.restarted" && e.data["actor"] == "worker")
        );
    }

    #[actix_rt::test]
    async fn hung_child_is_replaced() {
        let (sup, board, _, slot, _) = setup();
        wait_for(&board, "worker", |h| h.state == ActorState::Running).await;
        inject_fault(&sup, "worker", "hang").await.unwrap();
        wait_for(&board, "worker", |h| {
            h.restarts == 1 && h.state == ActorState::Running
        })
        .await;
        assert!(
            board
                .actor("worker")
                .unwrap()
                .last_error
                .unwrap()
                .contains("hung")
        );
        slot.get().unwrap().send(Ping).await.unwrap();
    }

    #[actix_rt::test]
    async fn crash_loop_ends_in_failed() {
        let (sup, board, recorder, _, _) = setup();
        for n in 1..=3 {
            wait_for(&board, "worker", |h| {
                h.restarts == n - 1 && h.state == ActorState::Running
            })
            .await;
            inject_fault(&sup, "worker", "panic").await.unwrap();
        }
        wait_for(&board, "worker", |h| {
            h.restarts == 3 && h.state == ActorState::Running
        })
        .await;
        inject_fault(&sup, "worker", "panic").await.unwrap();
        wait_for(&board, "worker", |h| h.state == ActorState::Failed).await;
        assert_eq!(board.snapshot().status, crate::health::Status::Unhealthy);
        let events = recorder.drain(100);
        assert!(events.iter().any(|e| e.kind == "actor.failed"));
    }

    #[actix_rt::test]
    async fn shutdown_stops_children_in_order() {
        let (sup, board, _, slot, _) = setup();
        wait_for(&board, "worker", |h| h.state == ActorState::Running).await;
        let addr = slot.get().unwrap();
        sup.send(Shutdown).await.unwrap();
        assert_eq!(board.actor("worker").unwrap().state, ActorState::Stopped);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!addr.connected());
    }
}
