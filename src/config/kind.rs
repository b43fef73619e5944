//! Kinds of setting: how a raw value (an environment string or an `exai.toml` value) is
//! parsed, how the effective value is shown by `exai check-config`, and how its default is
//! written in `docs/configuration.md`.
//!
//! The kind is part of a setting's type ([`super::env::Setting`]), so the parser, the
//! redaction and the documented default cannot disagree: a token is a [`Token`], which parses
//! into a [`SecretString`] and can only be shown as `[redacted]`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use exai_actors::pipeline::journal::FsyncPolicy;
use exai_actors::provider::redact_url;

use super::error::{Errors, check_url};
use super::model::{LogFormat, MIN_TOKEN_LEN};

/// How `exai check-config` shows a secret.
pub const REDACTED: &str = "[redacted]";
/// Seconds in a day, for the retention settings.
const DAY_SECS: u64 = 24 * 3600;
/// Bytes in a MiB, for the documentation of byte sizes.
const MIB: u64 = 1024 * 1024;

/// A raw value and the key it came from (the environment variable or the `exai.toml` key),
/// which every problem names. Environment values are `toml::Value::String`s.
#[derive(Debug, Clone)]
pub struct Raw {
    /// Key to name in errors.
    pub key: String,
    /// The value.
    pub value: toml::Value,
}

/// A kind of setting.
pub trait Kind: Sync + 'static {
    /// The parsed value.
    type Value;
    /// The type as the documentation names it.
    const TYPE: &'static str;
    /// The value, or `None` (the default applies) after recording why it is not one. An
    /// empty text setting is `None` without a problem: empty means unset.
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Self::Value>;
    /// The value as `exai check-config` prints it.
    fn show(value: &Self::Value) -> Value;
    /// The value as the documentation writes it.
    fn doc(value: &Self::Value) -> String;
}

/// A scalar as text (toml numbers and booleans are accepted as their text), or `None` after
/// recording that a table or array is not `what`.
fn scalar_text(raw: &Raw, what: &str, errors: &mut Errors) -> Option<String> {
    match &raw.value {
        toml::Value::String(s) => Some(s.trim().to_owned()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => {
            errors.push(&raw.key, format!("expected {what}, got a table or array"));
            None
        }
    }
}

/// A value parsed with [`FromStr`], the problem naming `what` was expected.
fn parse_as<T: FromStr>(raw: &Raw, what: &str, errors: &mut Errors) -> Option<T>
where
    T::Err: Display,
{
    let text = scalar_text(raw, what, errors)?;
    match text.parse::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(&raw.key, format!("expected {what}, got {text:?} ({e})"));
            None
        }
    }
}

/// A string value, trimmed; `None` when empty (unset) or not a string (recorded).
fn text(raw: &Raw, errors: &mut Errors) -> Option<String> {
    match &raw.value {
        toml::Value::String(s) if s.trim().is_empty() => None,
        toml::Value::String(s) => Some(s.trim().to_owned()),
        _ => {
            errors.push(&raw.key, "expected a string");
            None
        }
    }
}

/// The wording of an integer kind.
pub trait Wording: Sync + 'static {
    /// What a problem says was expected.
    const WHAT: &'static str;
    /// The type in the documentation.
    const TYPE: &'static str;
    /// Whether the documentation writes whole MiB as `N MiB`.
    const BYTES: bool = false;
}

/// An integer setting of type `T`, worded by `W`.
pub struct Integer<T, W>(PhantomData<(T, W)>);

impl<T, W> Kind for Integer<T, W>
where
    T: FromStr + Display + serde::Serialize + Sync + 'static,
    T::Err: Display,
    W: Wording,
{
    type Value = T;
    const TYPE: &'static str = W::TYPE;
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<T> {
        parse_as(raw, W::WHAT, errors)
    }
    fn show(value: &T) -> Value {
        json!(value)
    }
    fn doc(value: &T) -> String {
        let text = value.to_string();
        match text.parse::<u64>() {
            Ok(n) if W::BYTES && n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
            _ => text,
        }
    }
}

/// Wording of a port.
pub struct PortWords;
impl Wording for PortWords {
    const WHAT: &'static str = "a port number 0-65535";
    const TYPE: &'static str = "port";
}
/// Wording of a count or limit.
pub struct CountWords;
impl Wording for CountWords {
    const WHAT: &'static str = "a positive integer";
    const TYPE: &'static str = "integer";
}
/// Wording of a count that may be zero.
pub struct NonNegativeWords;
impl Wording for NonNegativeWords {
    const WHAT: &'static str = "a non-negative integer";
    const TYPE: &'static str = "integer";
}
/// Wording of a size in bytes.
pub struct BytesWords;
impl Wording for BytesWords {
    const WHAT: &'static str = "a number of bytes";
    const TYPE: &'static str = "bytes";
    const BYTES: bool = true;
}

/// A port number.
pub type Port = Integer<u16, PortWords>;
/// A count or a limit (zero is rejected by validation where it makes no sense).
pub type Count<T> = Integer<T, CountWords>;
/// A count that may be zero.
pub type NonNegative = Integer<u32, NonNegativeWords>;
/// A size in bytes.
pub type Bytes<T> = Integer<T, BytesWords>;

/// `true` or `false`.
pub struct Flag;
impl Kind for Flag {
    type Value = bool;
    const TYPE: &'static str = "bool";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<bool> {
        parse_as(raw, "true or false", errors)
    }
    fn show(value: &bool) -> Value {
        json!(value)
    }
    fn doc(value: &bool) -> String {
        value.to_string()
    }
}

/// A positive number of seconds, fractions allowed.
pub struct Seconds;
impl Kind for Seconds {
    type Value = Duration;
    const TYPE: &'static str = "seconds";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Duration> {
        let s: f64 = parse_as(raw, "a number of seconds", errors)?;
        if s.is_finite() && s > 0.0 && s < 1e9 {
            Some(Duration::from_secs_f64(s))
        } else {
            errors.push(
                &raw.key,
                format!("must be a positive number of seconds, got {s}"),
            );
            None
        }
    }
    fn show(value: &Duration) -> Value {
        json!(value.as_secs_f64())
    }
    fn doc(value: &Duration) -> String {
        value.as_secs_f64().to_string()
    }
}

/// A positive whole number of milliseconds.
pub struct Millis;
impl Kind for Millis {
    type Value = Duration;
    const TYPE: &'static str = "milliseconds";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Duration> {
        match parse_as::<u64>(raw, "a number of milliseconds", errors)? {
            0 => {
                errors.push(&raw.key, "must be at least 1 ms");
                None
            }
            ms => Some(Duration::from_millis(ms)),
        }
    }
    fn show(value: &Duration) -> Value {
        json!(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }
    fn doc(value: &Duration) -> String {
        value.as_millis().to_string()
    }
}

/// A whole number of days.
pub struct Days;
impl Kind for Days {
    type Value = Duration;
    const TYPE: &'static str = "days";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Duration> {
        let n: u64 = parse_as(raw, "days", errors)?;
        Some(Duration::from_secs(n.saturating_mul(DAY_SECS)))
    }
    fn show(value: &Duration) -> Value {
        json!(value.as_secs() / DAY_SECS)
    }
    fn doc(value: &Duration) -> String {
        (value.as_secs() / DAY_SECS).to_string()
    }
}

/// A positive finite number.
pub struct Positive;
impl Kind for Positive {
    type Value = f64;
    const TYPE: &'static str = "number";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<f64> {
        let v: f64 = parse_as(raw, "a positive number", errors)?;
        if v.is_finite() && v > 0.0 {
            Some(v)
        } else {
            errors.push(&raw.key, format!("must be a positive number, got {v}"));
            None
        }
    }
    fn show(value: &f64) -> Value {
        json!(value)
    }
    fn doc(value: &f64) -> String {
        value.to_string()
    }
}

/// Free text; empty means unset.
pub struct Text;
impl Kind for Text {
    type Value = String;
    const TYPE: &'static str = "string";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<String> {
        text(raw, errors)
    }
    fn show(value: &String) -> Value {
        json!(value)
    }
    fn doc(value: &String) -> String {
        value.clone()
    }
}

/// A secret token of at least [`MIN_TOKEN_LEN`] characters.
pub struct Token;
impl Kind for Token {
    type Value = SecretString;
    const TYPE: &'static str = "secret";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<SecretString> {
        let value = text(raw, errors)?;
        let len = value.chars().count();
        if len < MIN_TOKEN_LEN {
            errors.push(
                &raw.key,
                format!("token too short: {len} characters, at least {MIN_TOKEN_LEN} required"),
            );
            return None;
        }
        Some(SecretString::from(value))
    }
    fn show(_: &SecretString) -> Value {
        json!(REDACTED)
    }
    fn doc(_: &SecretString) -> String {
        REDACTED.to_owned()
    }
}

/// The URL schemes a URL kind accepts.
pub trait Schemes: Sync + 'static {
    /// Accepted schemes, in the order errors list them.
    const SCHEMES: &'static [&'static str];
    /// The type in the documentation.
    const TYPE: &'static str;
}

/// A URL that may carry credentials: held as a secret, shown with its secrets replaced
/// ([`redact_url`]).
pub struct SecretUrl<S>(PhantomData<S>);
impl<S: Schemes> Kind for SecretUrl<S> {
    type Value = SecretString;
    const TYPE: &'static str = S::TYPE;
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<SecretString> {
        let value = text(raw, errors)?;
        check_url(&raw.key, &value, S::SCHEMES)
            .map_err(|e| errors.0.push(e))
            .ok()?;
        Some(SecretString::from(value))
    }
    fn show(value: &SecretString) -> Value {
        json!(redact_url(value.expose_secret()))
    }
    fn doc(value: &SecretString) -> String {
        redact_url(value.expose_secret())
    }
}

/// The event store's URL schemes.
pub struct StoreSchemes;
impl Schemes for StoreSchemes {
    const SCHEMES: &'static [&'static str] = &["sqlite", "postgres", "postgresql"];
    const TYPE: &'static str = "URL (sqlite, postgres)";
}
/// Redis's URL schemes.
pub struct RedisSchemes;
impl Schemes for RedisSchemes {
    const SCHEMES: &'static [&'static str] = &["redis", "rediss"];
    const TYPE: &'static str = "URL (redis, rediss)";
}

/// `pretty` (or `text`) or `json`.
pub struct Format;
impl Kind for Format {
    type Value = LogFormat;
    const TYPE: &'static str = "`pretty` or `json`";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<LogFormat> {
        match text(raw, errors)?.as_str() {
            "pretty" | "text" => Some(LogFormat::Pretty),
            "json" => Some(LogFormat::Json),
            other => {
                errors.push(&raw.key, format!("expected json or pretty, got {other:?}"));
                None
            }
        }
    }
    fn show(value: &LogFormat) -> Value {
        json!(Self::doc(value))
    }
    fn doc(value: &LogFormat) -> String {
        match value {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
        .to_owned()
    }
}

/// The journal's fsync policy: `always`, `batch` or `never` (parsed by the journal module).
pub struct Fsync;
impl Kind for Fsync {
    type Value = FsyncPolicy;
    const TYPE: &'static str = "`always`, `batch` or `never`";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<FsyncPolicy> {
        let v = text(raw, errors)?;
        v.parse().map_err(|e: String| errors.push(&raw.key, e)).ok()
    }
    fn show(value: &FsyncPolicy) -> Value {
        json!(Self::doc(value))
    }
    fn doc(value: &FsyncPolicy) -> String {
        match value {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Batch => "batch",
            FsyncPolicy::Never => "never",
        }
        .to_owned()
    }
}

/// A setting of kind `K` that may be unset: no default, shown as `null`.
pub struct Maybe<K>(PhantomData<K>);
impl<K: Kind> Kind for Maybe<K> {
    type Value = Option<K::Value>;
    const TYPE: &'static str = K::TYPE;
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Self::Value> {
        K::parse(raw, errors).map(Some)
    }
    fn show(value: &Self::Value) -> Value {
        value.as_ref().map_or(Value::Null, K::show)
    }
    fn doc(value: &Self::Value) -> String {
        value.as_ref().map_or_else(|| "—".to_owned(), K::doc)
    }
}

/// Browser origins: a comma-separated environment value, or a toml array of strings (or one
/// comma-separated string); each exact `http(s)://host[:port]` with no path, normalised.
/// Every item that is not an origin is a problem; the others are kept.
pub struct Origins;
impl Kind for Origins {
    type Value = Vec<String>;
    const TYPE: &'static str = "origin list";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Vec<String>> {
        let items: Vec<String> = match &raw.value {
            toml::Value::String(s) => s.split(',').map(str::to_owned).collect(),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_str) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => {
                errors.push(&raw.key, "expected a list of origins");
                return None;
            }
        };
        let mut origins = Vec::new();
        for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
            match crate::http::origin::normalize_origin(item) {
                Some(origin) => origins.push(origin),
                None => errors.push(
                    &raw.key,
                    format!(
                        "{item:?} is not an origin like https://app.example or http://host:3000"
                    ),
                ),
            }
        }
        Some(origins)
    }
    fn show(value: &Vec<String>) -> Value {
        json!(value)
    }
    fn doc(value: &Vec<String>) -> String {
        if value.is_empty() {
            "—".to_owned()
        } else {
            value.join(",")
        }
    }
}

/// Directories: a path list like `PATH` (environment, or a toml string), or a toml array.
pub struct Paths;
impl Kind for Paths {
    type Value = Vec<std::path::PathBuf>;
    const TYPE: &'static str = "path list";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Self::Value> {
        match &raw.value {
            toml::Value::String(v) => Some(
                std::env::split_paths(v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect(),
            ),
            toml::Value::Array(a) => {
                let paths: Option<Vec<_>> = a
                    .iter()
                    .map(|v| v.as_str().map(std::path::PathBuf::from))
                    .collect();
                if paths.is_none() {
                    errors.push(&raw.key, "expected an array of directory paths");
                }
                paths
            }
            _ => {
                errors.push(&raw.key, "expected an array of directory paths");
                None
            }
        }
    }
    fn show(value: &Self::Value) -> Value {
        json!(
            value
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        )
    }
    fn doc(value: &Self::Value) -> String {
        value
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Fallback chains, model → models to try next: a toml table `model = ["next", …]`, or the
/// environment's `model=a,b;other=c`.
pub struct Chains;
impl Kind for Chains {
    type Value = BTreeMap<String, Vec<String>>;
    const TYPE: &'static str = "model chains";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Self::Value> {
        let mut chains = BTreeMap::new();
        match &raw.value {
            toml::Value::Table(t) => {
                for (model, next) in t {
                    let list = next.as_array().map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                    });
                    match list {
                        Some(list) if !list.is_empty() => {
                            chains.insert(model.clone(), list);
                        }
                        _ => errors.push(
                            &format!("{}.{model}", raw.key),
                            "expected a non-empty array of model names",
                        ),
                    }
                }
            }
            toml::Value::String(spec) => {
                for part in spec.split(';').filter(|p| !p.trim().is_empty()) {
                    match part.split_once('=') {
                        Some((model, next))
                            if !model.trim().is_empty() && !next.trim().is_empty() =>
                        {
                            chains.insert(
                                model.trim().to_owned(),
                                next.split(',')
                                    .map(|s| s.trim().to_owned())
                                    .filter(|s| !s.is_empty())
                                    .collect(),
                            );
                        }
                        _ => errors.push(
                            &raw.key,
                            format!("expected model=a,b;other=c, got {part:?}"),
                        ),
                    }
                }
            }
            _ => errors.push(&raw.key, "expected a table of model = [\"next\", …]"),
        }
        Some(chains)
    }
    fn show(value: &Self::Value) -> Value {
        json!(value)
    }
    fn doc(_: &Self::Value) -> String {
        "—".to_owned()
    }
}

/// Model aliases, name → model: a toml table `name = "model"`, or the environment's
/// `name=model,other=model`.
pub struct Aliases;
impl Kind for Aliases {
    type Value = BTreeMap<String, String>;
    const TYPE: &'static str = "aliases";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Self::Value> {
        let mut aliases = BTreeMap::new();
        match &raw.value {
            toml::Value::Table(t) => {
                for (name, target) in t {
                    match target.as_str().filter(|s| !s.trim().is_empty()) {
                        Some(target) => {
                            aliases.insert(name.clone(), target.trim().to_owned());
                        }
                        None => {
                            errors.push(&format!("{}.{name}", raw.key), "expected a model name")
                        }
                    }
                }
            }
            toml::Value::String(spec) => {
                for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
                    match part.split_once('=') {
                        Some((name, target))
                            if !name.trim().is_empty() && !target.trim().is_empty() =>
                        {
                            aliases.insert(name.trim().to_owned(), target.trim().to_owned());
                        }
                        _ => errors.push(
                            &raw.key,
                            format!("expected name=model,other=model, got {part:?}"),
                        ),
                    }
                }
            }
            _ => errors.push(&raw.key, "expected a table of name = \"model\""),
        }
        Some(aliases)
    }
    fn show(value: &Self::Value) -> Value {
        json!(value)
    }
    fn doc(_: &Self::Value) -> String {
        "—".to_owned()
    }
}

/// Model prices, USD per million tokens: a toml table `"model" = { input, output,
/// cached_input }`, or the environment's `model=in/out[/cached];model2=…`
/// ([`crate::pricing::parse_env`]).
pub struct Prices;
impl Kind for Prices {
    type Value = BTreeMap<String, crate::pricing::Price>;
    const TYPE: &'static str = "prices";
    fn parse(raw: &Raw, errors: &mut Errors) -> Option<Self::Value> {
        let mut prices = BTreeMap::new();
        match &raw.value {
            toml::Value::Table(t) => {
                for (model, price) in t {
                    let key = format!("{}.\"{model}\"", raw.key);
                    match price.clone().try_into::<crate::pricing::Price>() {
                        Ok(price) => match price.problem() {
                            Some(problem) => errors.push(&key, problem),
                            None => {
                                prices.insert(model.clone(), price);
                            }
                        },
                        Err(e) => errors.push(
                            &key,
                            format!("expected {{ input = …, output = …, cached_input = … }} ({e})"),
                        ),
                    }
                }
            }
            toml::Value::String(spec) => match crate::pricing::parse_env(spec) {
                Ok(entries) => prices.extend(entries),
                Err(problems) => {
                    for problem in problems {
                        errors.push(&raw.key, problem);
                    }
                }
            },
            _ => errors.push(
                &raw.key,
                "expected a table of \"model\" = { input, output }",
            ),
        }
        Some(prices)
    }
    fn show(value: &Self::Value) -> Value {
        json!(value)
    }
    fn doc(_: &Self::Value) -> String {
        "the built-in table".to_owned()
    }
}
