use super::*;

fn breaker(threshold: u32, cool_down_ms: u64) -> Breaker {
    Breaker::new(BreakerSettings {
        failure_threshold: threshold,
        cool_down: Duration::from_millis(cool_down_ms),
    })
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let mut b = breaker(3, 1000);
    let t = Instant::now();
    assert_eq!(b.allow_at(t), Permit::Granted);
    assert_eq!(b.on_failure_at(t), None);
    assert_eq!(b.on_failure_at(t), None);
    assert_eq!(b.on_failure_at(t), Some(Transition::Opened));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot_at(t).times_opened, 1);
    assert!(
        matches!(b.allow_at(t), Permit::Rejected { retry_in } if retry_in == Duration::from_secs(1))
    );
}

#[test]
fn success_resets_the_failure_count() {
    let mut b = breaker(3, 1000);
    let t = Instant::now();
    b.on_failure_at(t);
    b.on_failure_at(t);
    assert_eq!(b.on_success(), None);
    b.on_failure_at(t);
    b.on_failure_at(t);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.on_failure_at(t), Some(Transition::Opened));
}

#[test]
fn half_opens_after_cool_down_with_a_single_probe_then_closes() {
    let mut b = breaker(1, 100);
    let t = Instant::now();
    assert_eq!(b.on_failure_at(t), Some(Transition::Opened));
    assert!(!b.allow_at(t + Duration::from_millis(99)).is_allowed());
    let probe = b.allow_at(t + Duration::from_millis(100));
    assert_eq!(
        probe,
        Permit::Probe {
            transition: Some(Transition::HalfOpened)
        }
    );
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // Only one probe at a time.
    assert_eq!(
        b.allow_at(t + Duration::from_millis(101)),
        Permit::Rejected {
            retry_in: Duration::ZERO
        }
    );
    assert_eq!(b.on_success(), Some(Transition::Closed));
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.allow_at(t + Duration::from_millis(102)), Permit::Granted);
}

#[test]
fn failed_probe_reopens_and_restarts_the_cool_down() {
    let mut b = breaker(1, 100);
    let t = Instant::now();
    b.on_failure_at(t);
    let t2 = t + Duration::from_millis(150);
    assert!(b.allow_at(t2).is_probe());
    assert_eq!(b.on_failure_at(t2), Some(Transition::Opened));
    assert_eq!(b.state(), BreakerState::Open);
    assert!(!b.allow_at(t2 + Duration::from_millis(50)).is_allowed());
    assert!(b.allow_at(t2 + Duration::from_millis(100)).is_probe());
    assert_eq!(b.snapshot_at(t2).times_opened, 2);
}

#[test]
fn abandoned_probe_frees_the_slot() {
    let mut b = breaker(1, 100);
    let t = Instant::now();
    b.on_failure_at(t);
    let t2 = t + Duration::from_millis(100);
    assert!(b.allow_at(t2).is_probe());
    assert!(!b.allow_at(t2).is_allowed());
    b.on_abandoned();
    assert_eq!(b.allow_at(t2), Permit::Probe { transition: None });
}

#[test]
fn unreported_probe_expires_after_the_cool_down() {
    let mut b = breaker(1, 100);
    let t = Instant::now();
    b.on_failure_at(t);
    let t2 = t + Duration::from_millis(100);
    assert!(b.allow_at(t2).is_probe());
    assert!(!b.allow_at(t2 + Duration::from_millis(99)).is_allowed());
    assert!(b.allow_at(t2 + Duration::from_millis(100)).is_probe());
}

#[test]
fn late_outcomes_while_open_change_nothing() {
    let mut b = breaker(1, 100);
    let t = Instant::now();
    b.on_failure_at(t);
    assert_eq!(b.on_failure_at(t + Duration::from_millis(90)), None);
    assert_eq!(b.on_success(), None);
    assert_eq!(b.state(), BreakerState::Open);
    // The late failure did not extend the cool-down.
    assert!(b.allow_at(t + Duration::from_millis(100)).is_probe());
}

#[test]
fn would_reject_does_not_consume_the_probe() {
    let mut b = breaker(1, 100);
    let t = Instant::now();
    b.on_failure_at(t);
    assert!(b.would_reject(t));
    let later = t + Duration::from_millis(100);
    assert!(!b.would_reject(later));
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.allow_at(later).is_probe());
    assert!(b.would_reject(later));
}

#[test]
fn state_and_transitions_serialise_as_documented() {
    assert_eq!(
        serde_json::to_string(&BreakerState::HalfOpen)
            .ok()
            .as_deref(),
        Some("\"half_open\"")
    );
    assert_eq!(Transition::Opened.event_kind(), "breaker.opened");
    assert_eq!(Transition::HalfOpened.event_kind(), "breaker.half_opened");
    assert_eq!(Transition::Closed.event_kind(), "breaker.closed");
    assert_eq!(Transition::HalfOpened.to_state(), BreakerState::HalfOpen);
}

#[test]
fn zero_threshold_is_treated_as_one() {
    let mut b = breaker(0, 100);
    assert_eq!(b.on_failure_at(Instant::now()), Some(Transition::Opened));
}

fn set(threshold: u32, max_models: usize) -> BreakerSet {
    BreakerSet::new(
        BreakerSettings {
            failure_threshold: threshold,
            cool_down: Duration::from_millis(100),
        },
        max_models,
    )
}

#[test]
fn a_failing_model_fences_only_itself() {
    let mut s = set(2, 8);
    let t = Instant::now();
    assert!(matches!(s.allow_at("bad", t), SetPermit::Granted { .. }));
    assert!(
        s.report_at("bad", Outcome::ModelFailure, Probes::default(), t)
            .is_empty()
    );
    assert_eq!(
        s.report_at("bad", Outcome::ModelFailure, Probes::default(), t),
        vec![(Scope::Model("bad".into()), Transition::Opened)]
    );
    assert!(matches!(
        s.allow_at("bad", t),
        SetPermit::Rejected { scope: Scope::Model(m), .. } if m == "bad"
    ));
    assert!(matches!(s.allow_at("good", t), SetPermit::Granted { .. }));
    assert_eq!(s.provider_state(), BreakerState::Closed);
    assert_eq!(s.state_for("bad"), BreakerState::Open);
    assert_eq!(s.state_for("good"), BreakerState::Closed);
    // After the cool-down the model's probe closes it and the entry goes away.
    let later = t + Duration::from_millis(100);
    assert!(matches!(
        s.allow_at("bad", later),
        SetPermit::Granted {
            probes: Probes { model: true, .. },
            ..
        }
    ));
    assert_eq!(
        s.report_at("bad", Outcome::Success, Probes::default(), later),
        vec![(Scope::Model("bad".into()), Transition::Closed)]
    );
    assert_eq!(s.tracked_models(), 0);
}

#[test]
fn transport_failures_fence_the_whole_provider() {
    let mut s = set(2, 8);
    let t = Instant::now();
    s.report_at("a", Outcome::TransportFailure, Probes::default(), t);
    assert_eq!(
        s.report_at("b", Outcome::TransportFailure, Probes::default(), t),
        vec![(Scope::Provider, Transition::Opened)]
    );
    assert!(matches!(
        s.allow_at("c", t),
        SetPermit::Rejected {
            scope: Scope::Provider,
            ..
        }
    ));
    assert_eq!(
        s.tracked_models(),
        0,
        "transport failures create no model entries"
    );
}

#[test]
fn the_model_table_stays_bounded() {
    let mut s = set(1, 4);
    let t = Instant::now();
    for i in 0..100 {
        s.report_at(
            &format!("m{i}"),
            Outcome::ModelFailure,
            Probes::default(),
            t,
        );
    }
    assert_eq!(s.tracked_models(), 4);
    // Successes of unknown models add nothing.
    s.report_at("other", Outcome::Success, Probes::default(), t);
    assert_eq!(s.tracked_models(), 4);
    let mut s = set(3, 4);
    for i in 0..100 {
        s.report_at(
            &format!("m{i}"),
            Outcome::ModelFailure,
            Probes::default(),
            t,
        );
    }
    assert_eq!(
        s.tracked_models(),
        4,
        "closed entries are evicted at the cap"
    );
}
