//! Problems: one [`ConfigError`] names its key; [`Errors`] is the list every stage of loading
//! adds to, so nothing stops at the first problem. A leaf of `config`.

/// One configuration problem, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable or `exai.toml` key at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found so far, in the order found.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    /// Records that `key` is wrong.
    pub fn push(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// `value` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// Checks that `value` parses as a URL with one of `schemes`.
pub fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(value).map_err(|e| ConfigError {
        key: key.to_owned(),
        message: format!("not a valid URL: {e}"),
    })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError {
            key: key.to_owned(),
            message: format!(
                "unsupported URL scheme {:?} (expected {})",
                parsed.scheme(),
                schemes.join(" or ")
            ),
        });
    }
    Ok(parsed)
}
