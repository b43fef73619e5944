#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A child that counts how often it was built.
struct Worker;
impl Actor for Worker {
    type Context = Context<Self>;
}
crate::supervised_child!(Worker);

/// Asks a worker which thread it runs on.
#[derive(Message)]
#[rtype(result = "(Option<String>, std::thread::ThreadId)")]
struct WhereAmI;
impl Handler<WhereAmI> for Worker {
    type Result = MessageResult<WhereAmI>;
    fn handle(&mut self, _: WhereAmI, _: &mut Self::Context) -> Self::Result {
        let here = std::thread::current();
        MessageResult((here.name().map(str::to_owned), here.id()))
    }
}

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
    let sup = Supervisor::new(fast(), vec![spec, other], board.clone(), recorder.clone()).start();
    (sup, board, recorder, slot, builds)
}

async fn where_is(slot: &Slot<Worker>) -> (Option<String>, std::thread::ThreadId) {
    slot.get().unwrap().send(WhereAmI).await.unwrap()
}

#[actix_rt::test]
async fn children_share_named_threads_and_a_restart_comes_back_on_its_own() {
    let board = HealthBoard::new();
    let recorder = Recorder::new("t", 100);
    let (a, b, flusher) = (Slot::new(), Slot::new(), Slot::new());
    let b_builds = Arc::new(AtomicUsize::new(0));
    let counted = b_builds.clone();
    let specs = vec![
        ChildSpec::new("a", a.clone(), || Worker),
        ChildSpec::new("b", b.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Worker
        }),
        ChildSpec::new("flusher", flusher.clone(), || Worker).on_thread(FLUSHER_THREAD),
    ];
    let sup = Supervisor::new(fast(), specs, board.clone(), recorder).start();
    for name in ["a", "b", "flusher"] {
        wait_for(&board, name, |h| h.state == ActorState::Running).await;
    }
    let (a_name, a_thread) = where_is(&a).await;
    let (b_name, b_thread) = where_is(&b).await;
    let (f_name, f_thread) = where_is(&flusher).await;
    assert_eq!(a_name.as_deref(), Some(HOUSEKEEPING_THREAD));
    assert_eq!(b_name, a_name);
    assert_eq!(a_thread, b_thread, "a and b share one thread");
    assert_eq!(f_name.as_deref(), Some(FLUSHER_THREAD));
    assert_ne!(f_thread, a_thread);
    assert_ne!(a_thread, std::thread::current().id());

    let b_before = b.get().unwrap();
    inject_fault(&sup, "a", "panic").await.unwrap();
    wait_for(&board, "a", |h| {
        h.restarts == 1 && h.state == ActorState::Running
    })
    .await;
    // Back on the same thread, and its thread-mate never noticed.
    assert_eq!(where_is(&a).await, (a_name, a_thread));
    assert!(b_before.connected());
    assert_eq!(board.actor("b").unwrap().restarts, 0);
    assert_eq!(b_builds.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn a_blocked_thread_is_replaced_with_every_child_on_it() {
    let (sup, board, _, slot, _) = setup();
    wait_for(&board, "worker", |h| h.state == ActorState::Running).await;
    let (name, blocked) = where_is(&slot).await;
    sup.send(InjectFaultInto {
        child: "worker".into(),
        fault: Fault::Block(Duration::from_millis(800)),
    })
    .await
    .unwrap()
    .unwrap();
    for child in ["worker", "other"] {
        wait_for(&board, child, |h| {
            h.restarts == 1 && h.state == ActorState::Running
        })
        .await;
        let error = board.actor(child).unwrap().last_error.unwrap();
        assert!(error.contains("blocked"), "{child}: {error}");
    }
    let (new_name, replacement) = where_is(&slot).await;
    assert_eq!(new_name, name);
    assert_ne!(replacement, blocked);
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
