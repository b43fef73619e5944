//! The dispatcher: resolves a model through the registry's published tables and calls its
//! providers, walking the fallback chain — all on the caller's task, with no mailbox hop.
//!
//! Candidates are the providers serving the model, then those serving each model of its
//! fallback chain, in order. A candidate whose breaker is open is skipped without a call.
//! A call that fails for a reason that says the provider (not the request) is at fault —
//! see [`ProviderError::is_fallback_worthy`] — moves on to the next candidate, up to the
//! registry's `max_attempts` calls in total; any other failure is returned as is. When every
//! candidate failed, the error is [`ProviderError::Exhausted`], naming each provider and
//! cause.

use serde_json::Value;

use super::handle::RegistryHandle;
use super::tables::{Resolved, Target};
use crate::pipeline::request::CallContext;
use crate::provider::{ChatStream, Completion, ProviderError};

/// Notes in the client call's context which candidate answered: its canonical model, its
/// provider, and the model it stood in for when it came from the fallback chain.
fn note_answer(candidates: &[Candidate], answered: &Candidate) {
    let first = candidates.first().map(|c| c.model.as_str());
    CallContext::note(|t| {
        t.resolved_model = Some(answered.model.clone());
        t.provider = Some(answered.target.provider.name().to_owned());
        t.fallback_from = first.filter(|m| *m != answered.model).map(str::to_owned);
    });
}

/// Calls providers for a model name, with fallback. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    /// Where the tables come from.
    registry: RegistryHandle,
}

/// One candidate of a request: which model it stands for and how to call it.
#[derive(Debug, Clone)]
struct Candidate {
    /// The (canonical) model name it serves.
    model: String,
    /// Provider and upstream id.
    target: Target,
}

impl Dispatcher {
    /// A dispatcher over `registry`.
    pub fn new(registry: RegistryHandle) -> Self {
        Self { registry }
    }

    /// The registry behind it.
    pub fn registry(&self) -> &RegistryHandle {
        &self.registry
    }

    /// Resolves `model` (fast path: published tables; a miss waits for a refresh of a stale
    /// catalog).
    pub async fn resolve(&self, model: &str) -> Result<Resolved, ProviderError> {
        self.registry.resolve(model).await
    }

    /// A non-streaming completion for `model`, with fallback.
    pub async fn complete(&self, model: &str, body: Value) -> Result<Completion, ProviderError> {
        self.with_fallback(model, body, |target, payload| async move {
            target
                .provider
                .complete(&target.upstream_model, payload)
                .await
        })
        .await
    }

    /// A streaming completion for `model`, with fallback until a stream has started.
    pub async fn stream(&self, model: &str, body: Value) -> Result<ChatStream, ProviderError> {
        self.with_fallback(model, body, |target, payload| async move {
            target
                .provider
                .stream(&target.upstream_model, payload)
                .await
        })
        .await
    }

    /// Calls `call` on each admitted candidate in turn until one answers, a failure blames
    /// the request, or the attempts run out. The last candidate gets the body itself, the
    /// others a copy.
    async fn with_fallback<T, F, Fut>(
        &self,
        model: &str,
        body: Value,
        call: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn(Target, Value) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let candidates = self.candidates(model).await?;
        let mut run = Run::new(model, self.registry.tables().max_attempts());
        let last = candidates.len().saturating_sub(1);
        let mut body = Some(body);
        for (i, candidate) in candidates.iter().enumerate() {
            if !run.admit(candidate) {
                continue;
            }
            let payload = if i == last { body.take() } else { body.clone() };
            let Some(payload) = payload else { break };
            match call(candidate.target.clone(), payload).await {
                Ok(answer) => {
                    note_answer(&candidates, candidate);
                    return Ok(answer);
                }
                Err(error) => run.failed(candidate, error)?,
            }
            if run.exhausted() {
                break;
            }
        }
        Err(run.into_error())
    }

    /// The model's targets followed by its fallback chain's, without duplicates.
    async fn candidates(&self, model: &str) -> Result<Vec<Candidate>, ProviderError> {
        let resolved = self.registry.resolve(model).await?;
        let tables = self.registry.tables();
        let mut out: Vec<Candidate> = Vec::new();
        let mut push = |model: &str, targets: Vec<Target>| {
            for target in targets {
                let duplicate = out.iter().any(|c| {
                    c.target.provider.name() == target.provider.name()
                        && c.target.upstream_model == target.upstream_model
                });
                if !duplicate {
                    out.push(Candidate {
                        model: model.to_owned(),
                        target,
                    });
                }
            }
        };
        push(&resolved.model, resolved.targets);
        for next in tables.fallbacks(model, &resolved.model) {
            match tables.resolve(next) {
                Some(r) => push(&r.model, r.targets),
                None => tracing::debug!(model, fallback = %next, "fallback model is not served"),
            }
        }
        Ok(out)
    }
}

/// Book-keeping of one dispatch across candidates.
struct Run<'a> {
    /// The model asked for.
    model: &'a str,
    /// Calls allowed.
    max_attempts: usize,
    /// Calls made.
    calls: usize,
    /// `provider/model: cause` per candidate tried or skipped.
    tried: Vec<String>,
    /// The last failure.
    last: Option<ProviderError>,
}

impl<'a> Run<'a> {
    fn new(model: &'a str, max_attempts: usize) -> Self {
        Self {
            model,
            max_attempts,
            calls: 0,
            tried: Vec::new(),
            last: None,
        }
    }

    /// Whether to call `candidate`: skips it (noting why, and counted as a refusal) when its
    /// provider's or its model's breaker is open.
    fn admit(&mut self, candidate: &Candidate) -> bool {
        let target = &candidate.target;
        if let Some(error) = target.provider.breaker_rejection(&target.upstream_model) {
            self.note(candidate, &error);
            self.last = Some(error);
            return false;
        }
        self.calls += 1;
        true
    }

    /// A call failed: keep going if it is the provider's fault, else give up with it.
    fn failed(&mut self, candidate: &Candidate, error: ProviderError) -> Result<(), ProviderError> {
        if !error.is_fallback_worthy() {
            return Err(error);
        }
        tracing::debug!(model = %candidate.model, %error, "trying the next candidate");
        self.note(candidate, &error);
        self.last = Some(error);
        Ok(())
    }

    fn note(&mut self, candidate: &Candidate, error: &ProviderError) {
        self.tried.push(format!(
            "{}/{}: {error}",
            candidate.target.provider.name(),
            candidate.target.upstream_model
        ));
    }

    fn exhausted(&self) -> bool {
        self.calls >= self.max_attempts
    }

    fn into_error(self) -> ProviderError {
        let Some(last) = self.last else {
            return ProviderError::UnknownModel {
                model: self.model.to_owned(),
            };
        };
        if self.tried.len() == 1 {
            return last;
        }
        ProviderError::Exhausted {
            model: self.model.to_owned(),
            attempts: self.tried.len(),
            summary: self.tried.join("; "),
            last: Box::new(last),
        }
    }
}
