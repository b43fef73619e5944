//! Tool arguments: a check of a call's arguments against the tool's own JSON input schema
//! (the subset the tools use: `type`, `enum`, `minimum`, `maximum`, `items`, `properties`,
//! `required`), and typed getters that name the argument in every error.
//!
//! Unknown arguments are ignored: older clients send extras the original daemon accepted.

use serde_json::{Map, Value};

use crate::error::GatewayError;

/// Checks `args` against an object `schema`; the first problem names its argument path
/// (`models[1].stance`).
pub fn validate(schema: &Value, args: &Map<String, Value>) -> Result<(), GatewayError> {
    check_object(schema, args, "")
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_object(
    schema: &Value,
    obj: &Map<String, Value>,
    prefix: &str,
) -> Result<(), GatewayError> {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if obj.get(name).is_none_or(Value::is_null) {
                return Err(GatewayError::validation(&join(prefix, name), "is required"));
            }
        }
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, sub) in props {
        match obj.get(name) {
            None | Some(Value::Null) => {}
            Some(value) => check_value(sub, value, &join(prefix, name))?,
        }
    }
    Ok(())
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn check_value(schema: &Value, value: &Value, path: &str) -> Result<(), GatewayError> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        let article = |t: &str| match t {
            "integer" | "array" | "object" => format!("an {t}"),
            other => format!("a {other}"),
        };
        let wanted: Vec<String> = types.iter().map(|t| article(t)).collect();
        return Err(GatewayError::validation(
            path,
            format!("must be {}", wanted.join(" or ")),
        ));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let listed: Vec<String> = options
            .iter()
            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
            .collect();
        return Err(GatewayError::validation(
            path,
            format!("must be one of {}", listed.join(", ")),
        ));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(GatewayError::validation(
                path,
                format!("must be at least {min}"),
            ));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(GatewayError::validation(
                path,
                format!("must be at most {max}"),
            ));
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && list.len() as u64 > max
        {
            return Err(GatewayError::validation(
                path,
                format!("must have at most {max} items"),
            ));
        }
        for (i, item) in list.iter().enumerate() {
            check_value(items, item, &format!("{path}[{i}]"))?;
        }
    }
    if let Some(obj) = value.as_object()
        && (schema.get("properties").is_some() || schema.get("required").is_some())
    {
        check_object(schema, obj, path)?;
    }
    Ok(())
}

/// Typed access to validated arguments.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a>(pub &'a Map<String, Value>);

impl<'a> Args<'a> {
    /// The value of `name`, absent when missing or null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string argument.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A required, non-blank string argument.
    pub fn required_str(&self, name: &str) -> Result<&'a str, GatewayError> {
        match self.str(name) {
            Some(s) if !s.trim().is_empty() => Ok(s),
            Some(_) => Err(GatewayError::validation(name, "must not be empty")),
            None => Err(GatewayError::validation(name, "is required")),
        }
    }

    /// A boolean argument with a default.
    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        self.get(name).and_then(Value::as_bool).unwrap_or(default)
    }

    /// An unsigned integer argument.
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(Value::as_u64)
    }

    /// A number argument.
    pub fn f64(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_f64)
    }

    /// A list of strings (non-strings are skipped; the schema has refused them already).
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn param(schema: Value, args: Value) -> Option<String> {
        match validate(&schema, args.as_object().unwrap()) {
            Ok(()) => None,
            Err(GatewayError::Validation { param, .. }) => Some(param),
            Err(other) => Some(format!("{other:?}")),
        }
    }

    #[test]
    fn names_the_bad_argument() {
        let schema = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "models": {"type": "array", "items": {"type": "object",
                    "properties": {"stance": {"type": "string", "enum": ["for"]}}, "required": ["model"]}}
            },
            "required": ["n"]
        });
        assert_eq!(param(schema.clone(), json!({})).as_deref(), Some("n"));
        assert_eq!(param(schema.clone(), json!({"n": 0})).as_deref(), Some("n"));
        assert_eq!(
            param(schema.clone(), json!({"n": "1"})).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(schema.clone(), json!({"n": 1, "mode": "c"})).as_deref(),
            Some("mode")
        );
        assert_eq!(
            param(
                schema.clone(),
                json!({"n": 1, "models": [{"model": "x"}, {"stance": "for"}]})
            )
            .as_deref(),
            Some("models[1].model")
        );
        assert_eq!(param(schema, json!({"n": 1, "extra": true})), None);
    }
}
