//! The supervisor: owns the child table, the restart policy and the actor half of the health
//! board (DESIGN §3, supervision contract).
//!
//! actix's own `Supervisor` restarts an actor only when it stops itself; a panic in a handler
//! kills the actor for good, and an actor stuck in `ctx.wait` is never noticed. So this one:
//!
//! - runs children on a few shared, named threads ([`HOUSEKEEPING_THREAD`] for the timers,
//!   catalog refresh, Redis upkeep and the dashboard; [`FLUSHER_THREAD`] for the event
//!   flusher, so a slow store never delays a timer). Each child is its own task there, so a
//!   panic or an async hang in one leaves its thread-mates running, and the supervisor can
//!   drop one stuck instance without touching the others;
//! - polls each child: a closed mailbox means it died (a panic, or `ctx.stop()` on a fatal
//!   error), and a [`Ping`] that outlives the ping timeout means it hung. A hung child's
//!   thread is then probed: when the thread itself does not answer (a handler blocked it), the
//!   thread is replaced and every child on it is restarted on the new one;
//! - replaces a dead or hung child after a backoff from [`crate::policy::retry`], on the same
//!   named thread, and marks it `failed` once it has been restarted `max_restarts` times
//!   within `restart_window`;
//! - records `actor.restarted` and `actor.failed` events and keeps per-child health.
//!
//! Children publish their current address through a [`Slot`], which callers read on every
//! use, so a restart is invisible to them. State that must survive a restart (breakers,
//! queues, journals) lives in `Arc`s captured by the child's factory, not in the actor.
//!
//! Messages: [`InjectFaultInto`] (tests only), [`Shutdown`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix::dev::channel;
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use futures_util::future::{AbortHandle, Abortable};
use serde_json::json;
use tokio::sync::oneshot;

use crate::health::{ActorState, HealthBoard, rfc3339};
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
    /// Block the child's thread for this long (a synchronous hang that stalls its
    /// thread-mates too).
    Block(Duration),
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
                    $crate::supervisor::Fault::Block(duration) => ::std::thread::sleep(duration),
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

/// The thread most children share: provider health, the registry's catalog refresh, the
/// cache's Redis upkeep, the dashboard's ticks. None of it blocks.
pub const HOUSEKEEPING_THREAD: &str = "exai-housekeep";
/// The event flusher's thread: store writes, journal spills and retention run here, so a
/// stalled store never delays a timer on [`HOUSEKEEPING_THREAD`].
pub const FLUSHER_THREAD: &str = "exai-flusher";

/// A running instance of a child.
struct ChildRef {
    /// Liveness probe target.
    ping: Recipient<Ping>,
    /// Graceful stop target.
    stop: Recipient<StopChild>,
    /// Fault injection target.
    #[cfg(feature = "fault-injection")]
    fault: Recipient<InjectFault>,
    /// Drops this instance (its task on the shared thread), even while it is stuck.
    abort: AbortHandle,
}

/// Builds a fresh instance of a child as a task on the given thread.
type StartFn = Arc<dyn Fn(&str, &ArbiterHandle) -> ChildRef + Send + Sync>;

/// How to (re)start one child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique name, as shown in `/health` and events.
    name: String,
    /// The shared thread it runs on (and comes back on after a restart).
    thread: String,
    /// Factory for a new instance.
    start: StartFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("thread", &self.thread)
            .finish()
    }
}

impl ChildSpec {
    /// A child called `name`, built by `make` on each (re)start and published in `slot`. It
    /// runs on [`HOUSEKEEPING_THREAD`] unless [`ChildSpec::on_thread`] says otherwise.
    pub fn new<A, F>(name: impl Into<String>, slot: Slot<A>, make: F) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<Ping> + Handler<StopChild> + FaultTarget,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let start: StartFn = Arc::new(move |name: &str, thread: &ArbiterHandle| {
            let (tx, rx) = channel::channel(MAILBOX_CAPACITY);
            let addr = Addr::new(tx);
            let (abort, registration) = AbortHandle::new_pair();
            let make = make.clone();
            let child = name.to_owned();
            // The instance is built inside its own task, so a panic while building or in
            // `started` is caught there like any handler's and cannot take the thread down.
            thread.spawn_fn(move || {
                let instance = CURRENT_CHILD.scope(child, async move {
                    let context = Context::with_receiver(rx);
                    let _ = Abortable::new(context.into_future(make()), registration).await;
                });
                drop(actix_rt::spawn(instance));
            });
            slot.set(addr.clone());
            ChildRef {
                ping: addr.clone().recipient(),
                stop: addr.clone().recipient(),
                #[cfg(feature = "fault-injection")]
                fault: addr.recipient(),
                abort,
            }
        });
        Self {
            name: name.into(),
            thread: HOUSEKEEPING_THREAD.to_owned(),
            start,
        }
    }

    /// Runs the child on the named shared thread instead (created on first use).
    pub fn on_thread(mut self, thread: impl Into<String>) -> Self {
        self.thread = thread.into();
        self
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared thread the child runs on.
    pub fn thread(&self) -> &str {
        &self.thread
    }
}

/// A child's mailbox size (actix's default).
const MAILBOX_CAPACITY: usize = 16;

// ---------------------------------------------------------------------------------------
// Shared threads.

/// One named thread with an actix event loop, shared by the children placed on it.
struct SharedThread {
    /// Where children are spawned.
    handle: ArbiterHandle,
    /// Ends the thread's event loop (dropping every task on it); `None` once sent, or for the
    /// fallback that borrows the supervisor's own thread.
    stop: Option<oneshot::Sender<()>>,
    /// Bumped on every replacement, so a stale probe result is ignored.
    generation: u64,
}

impl SharedThread {
    /// Starts the thread `name` with its own actix system and event loop. If the OS refuses
    /// a thread, the children run on the supervisor's own thread instead (logged).
    fn start(name: &str, generation: u64) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let (stop_tx, stop_rx) = oneshot::channel::<()>();
                    if ready_tx.send((Arbiter::current(), stop_tx)).is_ok() {
                        let _ = stop_rx.await;
                    }
                });
            });
        let started = spawned
            .map_err(|e| e.to_string())
            .and_then(|_| ready_rx.recv().map_err(|e| e.to_string()));
        match started {
            Ok((handle, stop)) => Self {
                handle,
                stop: Some(stop),
                generation,
            },
            Err(error) => {
                tracing::error!(thread = %name, %error, "cannot start a thread; its actors share the supervisor's");
                Self {
                    handle: Arbiter::current(),
                    stop: None,
                    generation,
                }
            }
        }
    }

    /// Ends the thread's event loop. A thread blocked in a handler exits once it unblocks.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for SharedThread {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Panic and fatal-error capture.

tokio::task_local! {
    /// The child whose task is being polled, for the panic hook and [`note_fatal_here`].
    static CURRENT_CHILD: String;
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

/// Records a fatal error for the child whose handler (or `started`) is running.
pub fn note_fatal_here(error: impl std::fmt::Display) {
    if let Ok(name) = CURRENT_CHILD.try_with(String::clone) {
        note_fatal(&name, error);
    }
}

fn take_last_error(child: &str) -> Option<String> {
    last_errors()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(child)
}

/// Installs a panic hook that, inside a child's task, records the message for `/health` and
/// logs one line instead of the default multi-line report. Everything else keeps the
/// previous hook. Idempotent.
pub fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let Ok(child) = CURRENT_CHILD.try_with(String::clone) else {
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
    /// The shared threads by name, started when their first child starts.
    threads: HashMap<String, SharedThread>,
    /// Threads started so far; numbers each thread's generation.
    threads_started: u64,
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
            threads: HashMap::new(),
            threads_started: 0,
        }
    }

    /// The named shared thread, started on first use (and after a blocked one was dropped).
    fn thread(&mut self, name: &str) -> ArbiterHandle {
        if let Some(thread) = self.threads.get(name) {
            return thread.handle.clone();
        }
        self.threads_started += 1;
        let thread = SharedThread::start(name, self.threads_started);
        let handle = thread.handle.clone();
        self.threads.insert(name.to_owned(), thread);
        handle
    }

    /// Starts (or restarts) child `idx`.
    fn start_child(&mut self, idx: usize) {
        let Some(child) = self.children.get_mut(idx) else {
            return;
        };
        let name = child.spec.name.clone();
        let start = child.spec.start.clone();
        let thread = child.spec.thread.clone();
        let running = start(&name, &self.thread(&thread));
        let Some(child) = self.children.get_mut(idx) else {
            return;
        };
        child.running = Some(running);
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
                match result {
                    Ok(Ok(())) => child.ping_in_flight = false,
                    Ok(Err(_)) => act.child_down(idx, "actor stopped".to_owned(), ctx),
                    // The ping stays in flight until the thread probe decides.
                    Err(_) => act.child_hung(idx, generation, ctx),
                }
            }));
        }
    }

    /// Child `idx` did not answer its ping: probe its thread. A thread that answers means
    /// only this child is stuck; one that does not is blocked, and is replaced with every
    /// child on it.
    fn child_hung(&mut self, idx: usize, generation: u64, ctx: &mut Context<Self>) {
        let ping_timeout = self.settings.ping_timeout;
        let Some(thread_name) = self.children.get(idx).map(|c| c.spec.thread.clone()) else {
            return;
        };
        let Some(thread) = self.threads.get(&thread_name) else {
            return;
        };
        let thread_generation = thread.generation;
        let (tx, rx) = oneshot::channel();
        let sent = thread.handle.spawn_fn(move || {
            let _ = tx.send(());
        });
        let probe = async move {
            sent && matches!(tokio::time::timeout(ping_timeout, rx).await, Ok(Ok(())))
        };
        ctx.spawn(probe.into_actor(self).map(move |thread_alive, act, ctx| {
            let current = act
                .children
                .get(idx)
                .is_some_and(|c| c.generation == generation && c.running.is_some());
            if !current {
                return;
            }
            if thread_alive {
                let error = format!(
                    "hung: no answer to ping within {} ms",
                    ping_timeout.as_millis()
                );
                act.child_down(idx, error, ctx);
            } else {
                act.thread_blocked(&thread_name, thread_generation, ctx);
            }
        }));
    }

    /// The shared thread `name` is blocked: replace it and restart every child it ran.
    fn thread_blocked(&mut self, name: &str, generation: u64, ctx: &mut Context<Self>) {
        if self
            .threads
            .get(name)
            .is_none_or(|t| t.generation != generation)
        {
            return;
        }
        // Its event loop ends (dropping every task on it) once the blocking handler returns;
        // the first restart below starts the replacement under the same name.
        if let Some(mut blocked) = self.threads.remove(name) {
            blocked.stop();
        }
        let error = format!(
            "hung: thread {name} blocked (no answer within {} ms)",
            self.settings.ping_timeout.as_millis()
        );
        tracing::error!(thread = %name, "{error}; replacing the thread and restarting its actors");
        let on_thread: Vec<usize> = (0..self.children.len())
            .filter(|&i| self.children[i].spec.thread == name && self.children[i].running.is_some())
            .collect();
        for idx in on_thread {
            self.child_down(idx, error.clone(), ctx);
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
        // Discards the instance even if it is stuck in `ctx.wait`: its task is dropped.
        old.abort.abort();
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
        let threads = std::mem::take(&mut self.threads);
        Box::pin(
            async move {
                for (name, running) in order {
                    let stopped =
                        tokio::time::timeout(stop_timeout, running.stop.send(StopChild)).await;
                    if stopped.is_err() {
                        tracing::warn!(actor = %name, "actor did not stop in time; discarding it");
                    }
                    running.abort.abort();
                    health.update_actor(&name, |h| h.state = ActorState::Stopped);
                }
                // Every child is gone: end the shared threads' event loops.
                drop(threads);
            }
            .into_actor(self),
        )
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
mod tests;
