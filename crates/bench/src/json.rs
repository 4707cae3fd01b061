//! A hand-written JSON object builder: enough for one flat-ish line per workload.

use std::fmt::Write;

/// A JSON object under construction; keys keep their insertion order.
#[derive(Clone, Debug, Default)]
pub struct Json {
    body: String,
}

impl Json {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, k: &str) -> &mut Self {
        if !self.body.is_empty() {
            self.body.push_str(", ");
        }
        self.body.push_str(&quote(k));
        self.body.push_str(": ");
        self
    }

    /// A string value.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.body.push_str(&quote(v));
        self
    }

    /// A number; NaN and infinities become `null`, as JSON has no spelling for them.
    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        self.body.push_str(&number(v));
        self
    }

    /// A number or `null`.
    pub fn opt_num(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }

    /// An integer.
    pub fn int(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k);
        let _ = write!(self.body, "{v}");
        self
    }

    /// A boolean.
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.body.push_str(if v { "true" } else { "false" });
        self
    }

    /// A nested object.
    pub fn obj(&mut self, k: &str, v: &Json) -> &mut Self {
        let s = v.to_string();
        self.raw(k, &s)
    }

    /// Already-encoded JSON text (a list, `null`).
    pub fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.body.push_str(v);
        self
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{}}}", self.body)
    }
}

/// A number as JSON: Rust's shortest round-trip form (`2.5954436797658608e-40`).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    let s = format!("{v:?}");
    // `{:?}` writes `1e-7` and `1.5e16`, both valid JSON; `inf`/`NaN` were handled above.
    s
}

/// A list of integers as JSON.
pub fn int_list(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// A string as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
